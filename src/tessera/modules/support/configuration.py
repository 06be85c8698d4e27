"""The organization's support bot settings and end users' profiles and consents."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.chat.models import ChatMessage, Conversation
from tessera.core.db.base import utcnow
from tessera.core.documents.models import Collection
from tessera.core.errors import InvalidInput
from tessera.modules.support import faqs, search
from tessera.modules.support.models import SupportProfile, SupportSettings
from tessera.modules.support.schemas import (
    ConsentRead,
    ProfileRead,
    ProfileUpdate,
    SupportSettingsRead,
    SupportSettingsUpdate,
)
from tessera.modules.support.settings import SupportModuleSettings

CONSENTS = ("gdpr_consent", "data_processing_consent", "marketing_consent")
# Settings where `null` means something: the server's threshold, every collection, kept forever, the API's links.
NULLABLE_SETTINGS = frozenset({"match_threshold", "collections", "retention_days", "faq_url_template"})


def settings_read(row: SupportSettings, defaults: SupportModuleSettings) -> SupportSettingsRead:
    return SupportSettingsRead(
        chatbot_enabled=row.chatbot_enabled,
        match_threshold=row.match_threshold,
        effective_match_threshold=search.effective_threshold(row, defaults),
        collections=[uuid.UUID(c) for c in row.collections] if row.collections is not None else None,
        handoff_emails=row.handoff_emails,
        default_language=row.default_language,
        retention_days=row.retention_days,
        require_consent=row.require_consent if row.require_consent is not None else True,
        consent_version=row.consent_version or "1",
        faq_url_template=row.faq_url_template,
    )


async def get_settings(session: AsyncSession, principal: Principal) -> SupportSettings:
    return await faqs.settings_row(session, faqs.org_of(principal))


async def update_settings(
    session: AsyncSession, principal: Principal, body: SupportSettingsUpdate, meta: RequestMeta
) -> SupportSettings:
    org_id = faqs.org_of(principal)
    row = await faqs.settings_row(session, org_id, create=True)
    changes = body.model_dump(exclude_unset=True, mode="json")
    if "collections" in changes and body.collections is not None:
        known = set(
            (
                await session.execute(
                    sa.select(Collection.id).where(Collection.org_id == org_id, Collection.id.in_(body.collections))
                )
            ).scalars()
        )
        unknown = [str(c) for c in body.collections if c not in known]
        if unknown:
            raise InvalidInput(f"Unknown collection: {unknown[0]}", details={"collections": unknown})
    for name, value in changes.items():
        if value is not None or name in NULLABLE_SETTINGS:
            setattr(row, name, value)
    row.updated_at = utcnow()
    await record_event(
        session, action="support.settings_updated", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="support_settings", target_id=org_id, details={"changed": sorted(changes)},
    )  # fmt: skip
    await session.flush()
    return row


# Profiles and consents


async def profile_of(session: AsyncSession, principal: Principal) -> SupportProfile | None:
    query = sa.select(SupportProfile).where(
        SupportProfile.org_id == faqs.org_of(principal), SupportProfile.user_id == principal.user_id
    )
    return (await session.execute(query)).scalar_one_or_none()


def profile_read(profile: SupportProfile | None, require_consent: bool) -> ProfileRead:
    def consent(name: str) -> ConsentRead:
        if profile is None:
            return ConsentRead(given=False, at=None, version=None)
        return ConsentRead(
            given=getattr(profile, name), at=getattr(profile, f"{name}_at"), version=getattr(profile, f"{name}_version")
        )

    consented = profile is not None and profile.data_processing_consent
    return ProfileRead(
        language=profile.language if profile else None,
        timezone=profile.timezone if profile else None,
        gdpr_consent=consent("gdpr_consent"),
        data_processing_consent=consent("data_processing_consent"),
        marketing_consent=consent("marketing_consent"),
        stores_conversations=consented or not require_consent,
    )


async def update_profile(
    session: AsyncSession, principal: Principal, body: ProfileUpdate, meta: RequestMeta
) -> SupportProfile:
    """Set language, time zone and consents. Each consent change is stamped with the time and the
    organization's consent version, and audited. Withdrawing data-processing consent deletes the
    user's stored conversations in this organization: from then on nothing is kept."""
    org_id = faqs.org_of(principal)
    org = await faqs.settings_row(session, org_id)
    profile = await profile_of(session, principal)
    if profile is None:
        profile = SupportProfile(org_id=org_id, user_id=principal.user_id)
        session.add(profile)
    if body.language is not None:
        profile.language = body.language
    if body.timezone is not None:
        profile.timezone = body.timezone
    now = utcnow()
    changed: dict[str, bool] = {}
    for name in CONSENTS:
        value = getattr(body, name)
        if value is None or value == getattr(profile, name):
            continue
        setattr(profile, name, value)
        setattr(profile, f"{name}_at", now)
        setattr(profile, f"{name}_version", org.consent_version or "1")
        changed[name] = value
    if changed.get("data_processing_consent") is False:
        await delete_conversations(session, org_id, principal.user_id)
    if changed:
        await record_event(
            session, action="support.consent_changed", org_id=org_id, actor=principal.actor, meta=meta,
            target_type="user", target_id=principal.user_id, details={"consents": changed},
        )  # fmt: skip
    profile.updated_at = now
    await session.flush()
    return profile


async def delete_conversations(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> int:
    owned = sa.select(Conversation.id).where(Conversation.org_id == org_id, Conversation.user_id == user_id)
    await session.execute(sa.delete(ChatMessage).where(ChatMessage.conversation_id.in_(owned)))
    result = await session.execute(
        sa.delete(Conversation).where(Conversation.org_id == org_id, Conversation.user_id == user_id)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
