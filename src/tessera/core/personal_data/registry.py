"""The sources of personal data: the core's, listed here, and those product modules register.

A source covers the tables of one area. The export (`GET /me/export`) asks every source in
`sources()` order; the erase (`DELETE /me`, `POST /members/{id}/erase`) runs them in
`erasure_order()`: product modules first, since their rows may point at core rows (a
conversation, an API key) they need to find theirs, then the core's in the order listed below.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.personal_data.sources import (
    assistants,
    audit,
    auth,
    chat,
    documents,
    intents,
    moderation,
    notifications,
    privacy,
    retrieval,
    usage,
)

SOURCE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class PersonalDataSource(Protocol):
    """The personal data one area keeps about a user."""

    name: str
    """The key of this source's data in the archive (`conversations`); snake_case, unique."""

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        """Everything this source holds about the user, in every organization.

        Returns:
            Data that `pydantic_core.to_jsonable_python` can encode (dicts, lists, strings,
            numbers, booleans, None, UUIDs, datetimes, enums). Never secrets or their hashes
            (password, MFA secret, API key or token hashes).
        """
        ...

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        """Erase the user's personal data, in the caller's transaction (never commit).

        Delete what belongs to the person (their messages, their sessions); where a row belongs
        to the organization and only names the person (a document they uploaded), unlink it
        (set the user column to NULL) and scrub any copy of their name or e-mail from it. The
        `user_account` row itself is deleted after every source has run, so a source may read it.
        Record no audit event (the erasure records one for all sources). Must be idempotent:
        erasing twice erases nothing the second time.

        Args:
            session: the request's session.
            user_id: whose data.
            org_id: the organization to erase in (an admin erasing a member), or None for
                every organization and what belongs to no organization (the account is erased).

        Returns:
            How many rows were deleted or changed.
        """
        ...


# Ordered: the audit trail first (it recognises the user's API keys, which a later source
# deletes); the pseudonym vault before the conversations whose ids name its scopes.
CORE_SOURCES: tuple[PersonalDataSource, ...] = (
    audit.AuditTrailSource(),
    auth.MembershipsSource(),
    auth.SessionsSource(),
    auth.ApiKeysSource(),
    auth.InvitationsSource(),
    privacy.PiiVaultSource(),
    chat.ConversationsSource(),
    moderation.ModerationFlagsSource(),
    usage.UsageSource(),
    notifications.NotificationsSource(),
    documents.CollectionsSource(),
    documents.DocumentsSource(),
    documents.IdempotentRequestsSource(),
    assistants.AssistantsSource(),
    intents.IntentSetsSource(),
    retrieval.RetrievalEvaluationsSource(),
)
CORE_SOURCE_NAMES = frozenset(source.name for source in CORE_SOURCES)

_registered: dict[str, PersonalDataSource] = {}


def register_source(source: PersonalDataSource) -> None:
    """Add a product module's source. Registering the same name again replaces it in place (so a
    module may register at import and tests may re-register); a name another kind of source
    already uses is a `ValueError`."""
    name = source.name
    if not SOURCE_NAME.fullmatch(name):
        raise ValueError(f"personal data source name {name!r} must be snake_case (at most 63 characters)")
    existing = next((s for s in CORE_SOURCES if s.name == name), None) or _registered.get(name)
    if existing is not None and type(existing) is not type(source):
        raise ValueError(f"another personal data source is registered as {name!r}: {type(existing).__qualname__}")
    if name in CORE_SOURCE_NAMES:
        return
    _registered[name] = source


def sources() -> list[PersonalDataSource]:
    """Every source: the core's, then the modules' in the order they registered."""
    return [*CORE_SOURCES, *_registered.values()]


def erasure_order() -> list[PersonalDataSource]:
    """The order erasure runs sources in: product modules' first, then the core's."""
    return [*_registered.values(), *CORE_SOURCES]
