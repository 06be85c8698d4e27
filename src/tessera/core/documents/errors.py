from __future__ import annotations

from tessera.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    UnsupportedMediaType,
)


class CollectionNotFound(NotFound):
    """The collection does not exist, belongs to another organization or is not visible to you."""

    code = "collection_not_found"


class CollectionNameTaken(Conflict):
    """Another collection of this organization has that name."""

    code = "collection_name_taken"


class CollectionNotEmpty(Conflict):
    """The collection still holds documents; delete them first or pass `force=true`."""

    code = "collection_not_empty"


class NotCollectionManager(PermissionDenied):
    """Only the collection's owner or an organization admin may change or delete it."""

    code = "not_collection_manager"


class DocumentNotFound(NotFound):
    """The document does not exist, belongs to another organization or sits in a collection you cannot see."""

    code = "document_not_found"


class EmptyFile(InvalidInput):
    """The file is empty."""

    code = "empty_file"


class FileTooLarge(PayloadTooLarge):
    """The file is larger than the configured limit."""

    code = "file_too_large"


class UnsupportedDocumentType(UnsupportedMediaType):
    """The file's type (detected from its content) is not one Tessera can ingest."""

    code = "unsupported_document_type"


class InvalidFilename(InvalidInput):
    """The file name is empty, too long, or holds path separators or control characters."""

    code = "invalid_filename"


class InvalidMetadata(InvalidInput):
    """The metadata does not fit the collection's metadata schema."""

    code = "invalid_metadata"


class IdempotencyKeyReused(Conflict):
    """The Idempotency-Key was already used for a different request."""

    code = "idempotency_key_reused"


class UrlNotAllowed(InvalidInput):
    """The URL is not http(s), or points at a private, loopback or link-local address."""

    code = "url_not_allowed"


class UrlFetchFailed(InvalidInput):
    """The URL could not be fetched (error status, timeout, too many redirects)."""

    code = "url_fetch_failed"


class DocumentBusy(Conflict):
    """The document is being processed; wait for it to finish or fail."""

    code = "document_busy"
