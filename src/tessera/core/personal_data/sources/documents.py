"""Collections the user owns or is shared with, documents they uploaded, and the stored answers
to their idempotent uploads.

Collections and documents are the organization's knowledge, not the uploader's: erasing a member
must not empty the knowledge base others work from. So they stay, unlinked from the user (owner
and uploader set to NULL, the user taken off share lists), and their e-mail and name are scrubbed
from the documents' metadata. A private collection without an owner stays visible to the
organization's admins, who decide what becomes of it. Content that is itself about the person is
deleted through the documents API.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, cast, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.models import User
from tessera.core.documents.models import Collection, Document, IdempotentRequest
from tessera.core.personal_data.sources.common import affected, fields, in_org, scrub

_DOCUMENT_FIELDS = (
    "id", "org_id", "collection_id", "filename", "title", "doc_type", "media_type", "size_bytes", "status",
    "created_at",
)  # fmt: skip


def _shared_with(user_id: uuid.UUID) -> Any:
    # A JSON list of id strings: found as text on both backends, then checked exactly.
    return cast(Collection.shared_user_ids, Text).contains(str(user_id), autoescape=True)


class CollectionsSource:
    name = "collections"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        owned = await session.execute(
            select(Collection).where(Collection.owner_id == user_id).order_by(Collection.created_at)
        )
        shared = await session.execute(select(Collection).where(_shared_with(user_id)).order_by(Collection.created_at))
        keep = ("id", "org_id", "name", "visibility", "created_at")
        return {
            "owned": [fields(row, *keep) for row in owned.scalars()],
            "shared_with_you": [fields(row, *keep) for row in shared.scalars() if str(user_id) in row.shared_user_ids],
        }

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        owned = await session.execute(
            in_org(update(Collection).where(Collection.owner_id == user_id), Collection.org_id, org_id).values(
                owner_id=None
            )
        )
        count = affected(owned)
        shared = await session.execute(
            in_org(select(Collection).where(_shared_with(user_id)), Collection.org_id, org_id)
        )
        for collection in shared.scalars():
            remaining = [member for member in collection.shared_user_ids if member != str(user_id)]
            if remaining != collection.shared_user_ids:
                collection.shared_user_ids = remaining
                count += 1
        await session.flush()
        return count


class DocumentsSource:
    name = "documents"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(
            select(Document).where(Document.created_by == user_id).order_by(Document.created_at)
        )
        return [fields(row, *_DOCUMENT_FIELDS) for row in rows.scalars()]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        account = (await session.execute(select(User.email, User.name).where(User.id == user_id))).one_or_none()
        needles = [str(user_id)] + ([account.email.lower(), account.name.strip().lower()] if account else [])
        needles = [needle for needle in needles if needle]
        rows = await session.execute(
            in_org(select(Document).where(Document.created_by == user_id), Document.org_id, org_id)
        )
        count = 0
        for document in rows.scalars():
            document.created_by = None
            document.user_metadata = scrub(document.user_metadata, needles)
            document.properties = scrub(document.properties, needles)
            count += 1
        await session.flush()
        return count


class IdempotentRequestsSource:
    """Stored answers to the user's uploads sent with an `Idempotency-Key`: a cache, deleted."""

    name = "idempotent_requests"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(
            select(IdempotentRequest).where(IdempotentRequest.user_id == user_id).order_by(IdempotentRequest.created_at)
        )
        return [fields(row, "org_id", "key", "status_code", "created_at") for row in rows.scalars()]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        result = await session.execute(
            in_org(
                delete(IdempotentRequest).where(IdempotentRequest.user_id == user_id), IdempotentRequest.org_id, org_id
            )
        )
        return affected(result)
