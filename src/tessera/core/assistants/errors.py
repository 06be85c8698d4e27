from __future__ import annotations

from tessera.core.errors import Conflict, NotFound


class AssistantNotFound(NotFound):
    """The assistant does not exist, belongs to another organization, or answers only from collections you
    cannot see."""

    code = "assistant_not_found"


class AssistantNameTaken(Conflict):
    """Another assistant of this organization has that name."""

    code = "assistant_name_taken"
