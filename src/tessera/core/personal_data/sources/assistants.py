"""Assistants the user created (the organization's configuration: kept, unlinked from them)."""

from __future__ import annotations

from tessera.core.assistants.models import Assistant
from tessera.core.personal_data.sources.common import AuthoredRows


class AssistantsSource(AuthoredRows):
    def __init__(self) -> None:
        super().__init__(
            "assistants", Assistant.created_by, Assistant.org_id, ("id", "org_id", "name", "title", "created_at")
        )
