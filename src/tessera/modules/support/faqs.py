"""FAQ categories and FAQs: writes keep each FAQ's vectors current and move the organization's
FAQ revision, so every process rebuilds its in-memory index (`search.py`) on its next search.

Readers (`faqs:read`) see published FAQs only; support managers (`support:manage`: agents, admins)
see and edit every status. Services never commit: the request's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.ai.client import AIClient
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id, utcnow
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import AppError, InvalidInput
from tessera.core.observability.logging import get_logger
from tessera.core.pagination import PageParams, paginate
from tessera.modules.support.errors import (
    FaqCategoryNotFound,
    FaqCategorySlugTaken,
    FaqNotFound,
    FaqSlugTaken,
)
from tessera.modules.support.models import (
    Faq,
    FaqCategory,
    FaqFeedback,
    FaqPhrasing,
    FaqStatus,
    PhrasingSource,
    SupportSettings,
)
from tessera.modules.support.schemas import (
    MAX_PHRASING_CHARS,
    CategoryCreate,
    CategoryUpdate,
    FaqCreate,
    FaqFeedbackCreate,
    FaqFeedbackRead,
    FaqRead,
    FaqUpdate,
    slugify,
)
from tessera.modules.support.settings import SupportModuleSettings

MANAGE = "support:manage"
logger = get_logger("tessera.support.faqs")


def org_of(principal: Principal) -> uuid.UUID:
    assert principal.org_id is not None  # routes require an active organization
    return principal.org_id


def manages(principal: Principal) -> bool:
    return principal.can(MANAGE)


def to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


# Organization settings


async def settings_row(session: AsyncSession, org_id: uuid.UUID, *, create: bool = False) -> SupportSettings:
    """The organization's support settings; `create` stores the defaults on first use (writes only)."""
    row = await session.get(SupportSettings, org_id)
    if row is None:
        row = SupportSettings(org_id=org_id)
        if create:
            session.add(row)
            await session.flush()
    return row


async def bump_revision(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Tell every process that this organization's FAQs changed (in the writer's transaction)."""
    await settings_row(session, org_id, create=True)
    await session.execute(
        sa.update(SupportSettings)
        .where(SupportSettings.org_id == org_id)
        .values(faq_revision=SupportSettings.faq_revision + 1)
    )


def faq_url(faq: Faq, template: str | None) -> str:
    return template.replace("{slug}", faq.slug) if template else f"/api/v1/faqs/{faq.id}"


# Categories


async def get_category(session: AsyncSession, principal: Principal, category_id: uuid.UUID) -> FaqCategory:
    found = await session.get(FaqCategory, category_id)
    if found is None or found.org_id != principal.org_id:
        raise FaqCategoryNotFound("FAQ category not found")
    return found


async def _category_slug_free(session: AsyncSession, org_id: uuid.UUID, slug: str, own: uuid.UUID | None) -> None:
    query = sa.select(FaqCategory.id).where(FaqCategory.org_id == org_id, FaqCategory.slug == slug)
    taken = (await session.execute(query)).scalar_one_or_none()
    if taken is not None and taken != own:
        raise FaqCategorySlugTaken(f"Another category has the slug {slug!r}")


async def create_category(session: AsyncSession, principal: Principal, body: CategoryCreate) -> FaqCategory:
    org_id = org_of(principal)
    slug = body.slug or slugify(body.name)
    await _category_slug_free(session, org_id, slug, None)
    category = FaqCategory(
        org_id=org_id, name=body.name, slug=slug, description=body.description, position=body.position
    )
    session.add(category)
    await session.flush()
    return category


async def list_categories(session: AsyncSession, principal: Principal) -> list[tuple[FaqCategory, int]]:
    """Every category in order, with how many FAQs the caller can see in each."""
    visible = sa.and_(Faq.category_id == FaqCategory.id, *([] if manages(principal) else [_published()]))
    count = sa.select(sa.func.count(Faq.id)).where(visible).scalar_subquery()
    query = (
        sa.select(FaqCategory, count)
        .where(FaqCategory.org_id == org_of(principal))
        .order_by(FaqCategory.position, FaqCategory.name, FaqCategory.id)
    )
    return [(category, faqs) for category, faqs in (await session.execute(query)).all()]


async def count_in_category(session: AsyncSession, principal: Principal, category_id: uuid.UUID) -> int:
    query = sa.select(sa.func.count(Faq.id)).where(Faq.category_id == category_id)
    if not manages(principal):
        query = query.where(_published())
    return int((await session.execute(query)).scalar_one())


async def update_category(
    session: AsyncSession, principal: Principal, category_id: uuid.UUID, body: CategoryUpdate
) -> FaqCategory:
    category = await get_category(session, principal, category_id)
    if body.slug is not None and body.slug != category.slug:
        await _category_slug_free(session, category.org_id, body.slug, category.id)
        category.slug = body.slug
    for name in ("name", "description", "position"):
        value = getattr(body, name)
        if value is not None:
            setattr(category, name, value)
    category.updated_at = utcnow()
    await session.flush()
    return category


async def reorder_categories(session: AsyncSession, principal: Principal, ids: Sequence[uuid.UUID]) -> None:
    """Positions 0, 1, 2… in the order given; categories left out keep their order after them."""
    org_id = org_of(principal)
    if len(set(ids)) != len(ids):
        raise InvalidInput("A category appears twice in `ids`")
    rows = (await session.execute(sa.select(FaqCategory).where(FaqCategory.org_id == org_id))).scalars().all()
    by_id = {row.id: row for row in rows}
    missing = [str(i) for i in ids if i not in by_id]
    if missing:
        raise FaqCategoryNotFound(f"FAQ category not found: {missing[0]}")
    rest = sorted((r for r in rows if r.id not in set(ids)), key=lambda r: (r.position, r.name, r.id))
    for position, row in enumerate([by_id[i] for i in ids] + rest):
        row.position = position
    await session.flush()


async def delete_category(session: AsyncSession, principal: Principal, category_id: uuid.UUID) -> None:
    """Its FAQs stay, without a category."""
    category = await get_category(session, principal, category_id)
    await session.execute(sa.update(Faq).where(Faq.category_id == category.id).values(category_id=None))
    await session.delete(category)
    await bump_revision(session, category.org_id)
    await session.flush()


# FAQs


def _published() -> sa.ColumnElement[bool]:
    return Faq.status == FaqStatus.published


async def get_faq(session: AsyncSession, principal: Principal, faq_id: uuid.UUID) -> Faq:
    found = await session.get(Faq, faq_id)
    if found is None or found.org_id != principal.org_id:
        raise FaqNotFound("FAQ not found")
    if found.status != FaqStatus.published and not manages(principal):
        raise FaqNotFound("FAQ not found")
    return found


async def get_faq_by_slug(session: AsyncSession, principal: Principal, slug: str) -> Faq:
    query = sa.select(Faq).where(Faq.org_id == org_of(principal), Faq.slug == slug)
    found = (await session.execute(query)).scalar_one_or_none()
    if found is None or (found.status != FaqStatus.published and not manages(principal)):
        raise FaqNotFound("FAQ not found")
    return found


async def _faq_slug_free(session: AsyncSession, org_id: uuid.UUID, slug: str, own: uuid.UUID | None) -> None:
    taken = (
        await session.execute(sa.select(Faq.id).where(Faq.org_id == org_id, Faq.slug == slug))
    ).scalar_one_or_none()
    if taken is not None and taken != own:
        raise FaqSlugTaken(f"Another FAQ has the slug {slug!r}")


def first_free_slug(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`…: the first one not in `taken`."""
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


async def _check_category(session: AsyncSession, principal: Principal, category_id: uuid.UUID | None) -> None:
    if category_id is not None:
        await get_category(session, principal, category_id)


async def embed_faq(faq: Faq, embedder: Embedder) -> None:
    vectors = await embedder.embed([faq.question, faq.answer], kind="passage")
    faq.question_vector, faq.answer_vector = to_bytes(vectors[0]), to_bytes(vectors[1])
    faq.embedding_model = embedder.name


async def _set_phrasings(session: AsyncSession, faq: Faq, texts: Sequence[str], embedder: Embedder) -> None:
    """Replace the editors' phrasings (learned ones stay)."""
    await session.execute(
        sa.delete(FaqPhrasing).where(FaqPhrasing.faq_id == faq.id, FaqPhrasing.source == PhrasingSource.manual)
    )
    unique = list(dict.fromkeys(t for t in texts if t.casefold() != faq.question.casefold()))
    learned = set(
        (
            await session.execute(
                sa.select(FaqPhrasing.text).where(
                    FaqPhrasing.faq_id == faq.id, FaqPhrasing.source == PhrasingSource.feedback
                )
            )
        ).scalars()
    )
    unique = [t for t in unique if t not in learned]
    if not unique:
        return
    vectors = await embedder.embed(unique, kind="query")
    for text, vector in zip(unique, vectors, strict=True):
        session.add(
            FaqPhrasing(
                faq_id=faq.id, org_id=faq.org_id, text=text, source=PhrasingSource.manual,
                vector=to_bytes(vector), embedding_model=embedder.name,
            )
        )  # fmt: skip


async def create_faq(session: AsyncSession, principal: Principal, body: FaqCreate, embedder: Embedder) -> Faq:
    await _check_category(session, principal, body.category_id)
    if body.slug is not None:
        await _faq_slug_free(session, org_of(principal), body.slug, None)
    return (await create_faqs(session, principal, [(body, body.category_id)], embedder))[0]


async def create_faqs(
    session: AsyncSession,
    principal: Principal,
    rows: Sequence[tuple[FaqCreate, uuid.UUID | None]],
    embedder: Embedder,
) -> list[Faq]:
    """New FAQs (each with its category id) in a few statements: one insert each for FAQs and
    phrasings and one revision bump, whatever their number (an import of 5,000 rows would take over
    a minute FAQ by FAQ). The caller has checked that the categories exist and that the slugs
    given are free and unique; a FAQ without one gets its question's, numbered if taken."""
    org_id = org_of(principal)
    taken = set((await session.execute(sa.select(Faq.slug).where(Faq.org_id == org_id))).scalars())
    taken.update(body.slug for body, _ in rows if body.slug is not None)
    now = utcnow()
    made: list[tuple[Faq, list[str]]] = []
    for body, category_id in rows:
        slug = body.slug or first_free_slug(slugify(body.question), taken)
        taken.add(slug)
        status = FaqStatus(body.status)
        faq = Faq(
            id=new_id(), org_id=org_id, category_id=category_id, question=body.question, answer=body.answer,
            keywords=list(dict.fromkeys(body.keywords)), status=status, priority=body.priority,
            language=body.language, slug=slug, seo_title=body.seo_title, seo_description=body.seo_description,
            published_at=now if status == FaqStatus.published else None, created_by=principal.user_id,
            updated_by=principal.user_id,
        )  # fmt: skip
        await embed_faq(faq, embedder)
        session.add(faq)
        # As _set_phrasings keeps them: once each, not the question again (a new FAQ has no learned ones).
        made.append((faq, list(dict.fromkeys(t for t in body.phrasings if t.casefold() != faq.question.casefold()))))
    texts = [text for _, phrasings in made for text in phrasings]
    vectors = iter(await embedder.embed(texts, kind="query")) if texts else iter(())
    for faq, phrasings in made:
        for text in phrasings:
            session.add(
                FaqPhrasing(
                    faq_id=faq.id, org_id=org_id, text=text, source=PhrasingSource.manual,
                    vector=to_bytes(next(vectors)), embedding_model=embedder.name,
                )
            )  # fmt: skip
    await session.flush()
    await bump_revision(session, org_id)
    await session.flush()
    return [faq for faq, _ in made]


async def update_faq(
    session: AsyncSession, principal: Principal, faq_id: uuid.UUID, body: FaqUpdate, embedder: Embedder
) -> Faq:
    faq = await get_faq(session, principal, faq_id)
    fields = body.model_fields_set
    if "category_id" in fields:
        await _check_category(session, principal, body.category_id)
        faq.category_id = body.category_id
    if body.slug is not None and body.slug != faq.slug:
        await _faq_slug_free(session, faq.org_id, body.slug, faq.id)
        faq.slug = body.slug
    text_changed = (body.question is not None and body.question != faq.question) or (
        body.answer is not None and body.answer != faq.answer
    )
    for name in ("question", "answer", "priority", "language", "seo_title", "seo_description"):
        value = getattr(body, name)
        if value is not None:
            setattr(faq, name, value)
    if body.keywords is not None:
        faq.keywords = list(dict.fromkeys(body.keywords))
    if body.status is not None:
        status = FaqStatus(body.status)
        if status == FaqStatus.published and faq.status != FaqStatus.published:
            faq.published_at = utcnow()
        faq.status = status
    if text_changed or faq.embedding_model != embedder.name:
        await embed_faq(faq, embedder)
    if body.phrasings is not None:
        await _set_phrasings(session, faq, body.phrasings, embedder)
    faq.updated_by = principal.user_id
    faq.updated_at = utcnow()
    await bump_revision(session, faq.org_id)
    await session.flush()
    return faq


async def delete_faq(session: AsyncSession, principal: Principal, faq_id: uuid.UUID) -> None:
    faq = await get_faq(session, principal, faq_id)
    await session.execute(sa.delete(FaqPhrasing).where(FaqPhrasing.faq_id == faq.id))
    await session.execute(sa.delete(FaqFeedback).where(FaqFeedback.faq_id == faq.id))
    await session.delete(faq)
    await bump_revision(session, faq.org_id)
    await session.flush()


async def list_faqs(
    session: AsyncSession,
    principal: Principal,
    *,
    params: PageParams,
    status: str | None = None,
    category_id: uuid.UUID | None = None,
    language: str | None = None,
    text: str | None = None,
) -> tuple[Sequence[Faq], str | None]:
    """Newest first. Readers get published FAQs whatever `status` they ask for."""
    query = sa.select(Faq).where(Faq.org_id == org_of(principal))
    if not manages(principal):
        query = query.where(_published())
    elif status is not None:
        query = query.where(Faq.status == FaqStatus(status))
    if category_id is not None:
        query = query.where(Faq.category_id == category_id)
    if language is not None:
        query = query.where(Faq.language == language)
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(sa.or_(sa.func.lower(Faq.question).like(pattern), sa.func.lower(Faq.answer).like(pattern)))
    return await paginate(session, query, key=Faq.id, params=params)


@dataclass(frozen=True)
class PhrasingInfo:
    manual: list[str]
    learned: int


async def phrasings_of(session: AsyncSession, faq_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, PhrasingInfo]:
    result: dict[uuid.UUID, PhrasingInfo] = {i: PhrasingInfo([], 0) for i in faq_ids}
    if not faq_ids:
        return result
    query = (
        sa.select(FaqPhrasing.faq_id, FaqPhrasing.text, FaqPhrasing.source)
        .where(FaqPhrasing.faq_id.in_(faq_ids))
        .order_by(FaqPhrasing.created_at, FaqPhrasing.id)
    )
    learned: dict[uuid.UUID, int] = {}
    for faq_id, text, source in (await session.execute(query)).all():
        if source == PhrasingSource.manual:
            result[faq_id].manual.append(text)
        else:
            learned[faq_id] = learned.get(faq_id, 0) + 1
    return {i: PhrasingInfo(info.manual, learned.get(i, 0)) for i, info in result.items()}


def faq_read(faq: Faq, phrasings: PhrasingInfo, url_template: str | None) -> FaqRead:
    return FaqRead(
        id=faq.id,
        question=faq.question,
        answer=faq.answer,
        keywords=faq.keywords,
        category_id=faq.category_id,
        status=faq.status.value,
        priority=faq.priority,
        language=faq.language,
        slug=faq.slug,
        seo_title=faq.seo_title,
        seo_description=faq.seo_description,
        published_at=faq.published_at,
        phrasings=phrasings.manual,
        learned_phrasings=phrasings.learned,
        view_count=faq.view_count,
        helpful_count=faq.helpful_count,
        not_helpful_count=faq.not_helpful_count,
        url=faq_url(faq, url_template),
        created_at=faq.created_at,
        updated_at=faq.updated_at,
    )


async def read_faqs(session: AsyncSession, faqs: Sequence[Faq]) -> list[FaqRead]:
    if not faqs:
        return []
    template = (await settings_row(session, faqs[0].org_id)).faq_url_template
    phrasings = await phrasings_of(session, [f.id for f in faqs])
    return [faq_read(f, phrasings[f.id], template) for f in faqs]


async def count_view(session: AsyncSession, faq: Faq) -> None:
    """One more view, counted in the database (concurrent views all count)."""
    await session.execute(sa.update(Faq).where(Faq.id == faq.id).values(view_count=Faq.view_count + 1))
    await session.refresh(faq, ["view_count"])


async def add_feedback(
    session: AsyncSession,
    principal: Principal,
    faq_id: uuid.UUID,
    body: FaqFeedbackCreate,
    embedder: Embedder,
    settings: SupportModuleSettings,
    ai: AIClient | None = None,
) -> FaqFeedbackRead:
    """Count the vote; a helpful vote with the query that found the FAQ teaches it that wording,
    unless the wording holds personal data (checked with `ai`; unchecked wordings are not learned,
    so an AI outage never puts a user's details into the knowledge base)."""
    faq = await get_faq(session, principal, faq_id)
    session.add(
        FaqFeedback(
            faq_id=faq.id, org_id=faq.org_id, user_id=principal.user_id, helpful=body.helpful,
            query=body.query, comment=body.comment,
        )
    )  # fmt: skip
    column = Faq.helpful_count if body.helpful else Faq.not_helpful_count
    await session.execute(sa.update(Faq).where(Faq.id == faq.id).values({column.key: column + 1}))
    learned = False
    if body.helpful and body.query:
        learned = await learn_wording(session, faq, body.query, embedder, settings, ai)
    await session.flush()
    await session.refresh(faq, ["helpful_count", "not_helpful_count"])
    return FaqFeedbackRead(
        faq_id=faq.id, helpful_count=faq.helpful_count, not_helpful_count=faq.not_helpful_count, learned=learned
    )


async def learn_wording(
    session: AsyncSession,
    faq: Faq,
    text: str,
    embedder: Embedder,
    settings: SupportModuleSettings,
    ai: AIClient | None,
) -> bool:
    """Teach `faq` a wording users asked it by (a helpful vote's query, a hand-off an agent resolved
    with it), unless learning is off, the wording is too long, or it may hold personal data.
    Whether it was learned."""
    if not settings.learn_from_feedback or len(text) > MAX_PHRASING_CHARS or not await _impersonal(ai, text):
        return False
    return await _learn_phrasing(session, faq, text, embedder, settings.max_learned_phrasings)


async def _impersonal(ai: AIClient | None, text: str) -> bool:
    if ai is None:
        return True  # the caller vouches for the text (evaluations replaying public datasets)
    try:
        return not await ai.analyze_pii(text)
    except AppError as error:
        logger.warning("wording not learned: personal data could not be ruled out", error=error.message)
        return False


async def _learn_phrasing(session: AsyncSession, faq: Faq, query: str, embedder: Embedder, limit: int) -> bool:
    text = " ".join(query.split())
    if not text or text.casefold() == faq.question.casefold() or limit == 0:
        return False
    existing = (await session.execute(sa.select(FaqPhrasing.text).where(FaqPhrasing.faq_id == faq.id))).scalars()
    if text in set(existing):
        return False
    learned_ids = (
        (
            await session.execute(
                sa.select(FaqPhrasing.id)
                .where(FaqPhrasing.faq_id == faq.id, FaqPhrasing.source == PhrasingSource.feedback)
                .order_by(FaqPhrasing.created_at, FaqPhrasing.id)
            )
        )
        .scalars()
        .all()
    )
    if len(learned_ids) >= limit:  # the oldest learned wording makes room
        await session.execute(
            sa.delete(FaqPhrasing).where(FaqPhrasing.id.in_(learned_ids[: len(learned_ids) - limit + 1]))
        )
    vector = (await embedder.embed([text], kind="query"))[0]
    session.add(
        FaqPhrasing(
            faq_id=faq.id, org_id=faq.org_id, text=text, source=PhrasingSource.feedback,
            vector=to_bytes(vector), embedding_model=embedder.name,
        )
    )  # fmt: skip
    await bump_revision(session, faq.org_id)
    return True
