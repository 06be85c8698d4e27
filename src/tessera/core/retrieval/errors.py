from __future__ import annotations

from tessera.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied


class EvaluationNotFound(NotFound):
    """The evaluation does not exist, belongs to another organization or to a collection you cannot see."""

    code = "evaluation_not_found"


class UnknownJudgedDocuments(InvalidInput):
    """Judged queries name documents that are not in this collection (`details.unknown_document_ids`)."""

    code = "unknown_judged_documents"


class EvaluationCreatorGone(PermissionDenied):
    """The member who started the evaluation left the organization or was disabled before it ran."""

    code = "evaluation_creator_gone"


class ReindexInProgress(Conflict):
    """A re-index of this collection is already queued or running (`details.job_id`)."""

    code = "reindex_in_progress"


class InvalidArchive(InvalidInput):
    """The archive is not a Tessera collection export, is of an unknown format version, or is damaged."""

    code = "invalid_archive"
