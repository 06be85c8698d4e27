"""FAQ search: an in-memory index per organization (`matching.FaqIndex`), rebuilt when the
organization's FAQ revision moves, so every API process answers from the same FAQs.

Vectors made by another embedding model than the server's are never compared: the index loader
re-embeds those FAQs (and phrasings) and stores the new vectors in its own transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from tessera.core.auth.principal import Principal
from tessera.core.db.session import unit_of_work
from tessera.core.embeddings.base import Embedder
from tessera.core.observability.logging import get_logger
from tessera.modules.support import faqs
from tessera.modules.support.errors import FaqCategoryNotFound
from tessera.modules.support.matching import Candidate, FaqEntry, FaqIndex, MatchWeights
from tessera.modules.support.models import Faq, FaqCategory, FaqPhrasing, FaqStatus, SupportSettings
from tessera.modules.support.schemas import FaqHit, FaqSearchResponse, MatchScores
from tessera.modules.support.settings import SupportModuleSettings

logger = get_logger("tessera.support.search")
CACHED_ORGS = 256
_indexes: OrderedDict[tuple[uuid.UUID, str], FaqIndex] = OrderedDict()
_locks: dict[tuple[uuid.UUID, str], asyncio.Lock] = {}


def weights_of(settings: SupportModuleSettings) -> MatchWeights:
    return MatchWeights(
        question=settings.question_weight,
        answer=settings.answer_weight,
        question_terms=settings.question_terms_weight,
        answer_terms=settings.answer_terms_weight,
    )


async def revision_of(session: AsyncSession, org_id: uuid.UUID) -> int:
    found = (
        await session.execute(sa.select(SupportSettings.faq_revision).where(SupportSettings.org_id == org_id))
    ).scalar_one_or_none()
    return int(found or 0)


def _matrix(blobs: Sequence[bytes | None], dimension: int) -> npt.NDArray[np.float32]:
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    joined = b"".join(b for b in blobs if b is not None)  # the loader checked that none is missing
    return np.frombuffer(joined, dtype=np.float32).reshape(len(blobs), dimension)


async def _reembed_stale(sessionmaker: async_sessionmaker[AsyncSession], org_id: uuid.UUID, embedder: Embedder) -> None:
    """Remake the vectors of another model (or missing ones) for this organization's FAQs."""
    async with unit_of_work(sessionmaker) as session:
        stale = (
            (
                await session.execute(
                    sa.select(Faq).where(
                        Faq.org_id == org_id,
                        sa.or_(Faq.embedding_model.is_(None), Faq.embedding_model != embedder.name),
                    )
                )
            )
            .scalars()
            .all()
        )
        for faq in stale:
            await faqs.embed_faq(faq, embedder)
        phrasings = (
            (
                await session.execute(
                    sa.select(FaqPhrasing).where(
                        FaqPhrasing.org_id == org_id,
                        sa.or_(FaqPhrasing.embedding_model.is_(None), FaqPhrasing.embedding_model != embedder.name),
                    )
                )
            )
            .scalars()
            .all()
        )
        if phrasings:
            vectors = await embedder.embed([p.text for p in phrasings], kind="query")
            for phrasing, vector in zip(phrasings, vectors, strict=True):
                phrasing.vector, phrasing.embedding_model = faqs.to_bytes(vector), embedder.name
        if stale or phrasings:
            logger.info("faq vectors remade for the current model", faqs=len(stale), phrasings=len(phrasings))
            await faqs.bump_revision(session, org_id)


async def _load(
    session: AsyncSession, org_id: uuid.UUID, revision: int, embedder: Embedder, *, embed_stale: bool = False
) -> FaqIndex | None:
    """The published FAQs as an index, or None when some vectors are of another model (unless
    `embed_stale`: those are then embedded for this index only, and not stored)."""
    rows = (
        (
            await session.execute(
                sa.select(Faq)
                .options(undefer(Faq.question_vector), undefer(Faq.answer_vector))
                .where(Faq.org_id == org_id, Faq.status == FaqStatus.published)
                .order_by(Faq.id)
            )
        )
        .scalars()
        .all()
    )
    stale = [r for r in rows if r.embedding_model != embedder.name or r.question_vector is None]
    if stale and not embed_stale:
        return None
    vectors: dict[uuid.UUID, tuple[bytes | None, bytes | None]] = {
        r.id: (r.question_vector, r.answer_vector) for r in rows
    }
    if stale:
        made = await embedder.embed([text for r in stale for text in (r.question, r.answer)], kind="passage")
        for number, row in enumerate(stale):
            vectors[row.id] = (faqs.to_bytes(made[2 * number]), faqs.to_bytes(made[2 * number + 1]))
    phrasing_rows = (
        await session.execute(
            sa.select(FaqPhrasing.faq_id, FaqPhrasing.text, FaqPhrasing.vector, FaqPhrasing.embedding_model)
            .join(Faq, Faq.id == FaqPhrasing.faq_id)
            .where(FaqPhrasing.org_id == org_id, Faq.status == FaqStatus.published)
            .order_by(FaqPhrasing.id)
        )
    ).all()
    stale_phrasings = [i for i, (_, _, v, model) in enumerate(phrasing_rows) if model != embedder.name or v is None]
    if stale_phrasings and not embed_stale:
        return None
    phrasing_vectors = [vector for _, _, vector, _ in phrasing_rows]
    if stale_phrasings:
        made = await embedder.embed([phrasing_rows[i][1] for i in stale_phrasings], kind="query")
        for number, index in enumerate(stale_phrasings):
            phrasing_vectors[index] = faqs.to_bytes(made[number])
    position = {row.id: i for i, row in enumerate(rows)}
    texts: dict[uuid.UUID, list[str]] = {}
    for faq_id, text, _, _ in phrasing_rows:
        texts.setdefault(faq_id, []).append(text)
    entries = [
        FaqEntry(
            id=r.id, question=r.question, answer=r.answer, keywords=tuple(r.keywords), language=r.language,
            category_id=r.category_id, priority=r.priority, phrasings=tuple(texts.get(r.id, ())),
        )
        for r in rows
    ]  # fmt: skip
    dimension = embedder.dimension
    return FaqIndex(
        revision=revision,
        model=embedder.name,
        entries=entries,
        question_vectors=_matrix([vectors[r.id][0] for r in rows], dimension),
        answer_vectors=_matrix([vectors[r.id][1] for r in rows], dimension),
        phrasing_vectors=_matrix(phrasing_vectors, dimension),
        phrasing_owners=np.array([position[f] for f, _, _, _ in phrasing_rows], dtype=np.int32),
    )


async def index_for(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    org_id: uuid.UUID,
    embedder: Embedder,
) -> FaqIndex:
    """The organization's current index: cached while its FAQ revision stays the same."""
    key = (org_id, embedder.name)
    revision = await revision_of(session, org_id)
    cached = _indexes.get(key)
    if cached is not None and cached.revision == revision:
        _indexes.move_to_end(key)
        return cached
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        cached = _indexes.get(key)
        if cached is not None and cached.revision == revision:
            return cached
        index = await _load(session, org_id, revision, embedder)
        if index is None and sessionmaker is None:
            # Inside a caller's transaction (a chat turn): embed what is stale for this index only, and
            # keep it out of the cache, so the next search (`GET /faqs/search`) stores new vectors.
            logger.warning("faq vectors of another model embedded in memory", org_id=str(org_id))
            provisional = await _load(session, org_id, revision, embedder, embed_stale=True)
            assert provisional is not None
            return provisional
        if index is None:
            assert sessionmaker is not None
            await _reembed_stale(sessionmaker, org_id, embedder)
            async with unit_of_work(sessionmaker, write=False) as fresh:
                revision = await revision_of(fresh, org_id)
                index = await _load(fresh, org_id, revision, embedder)
            assert index is not None
        _indexes[key] = index
        _indexes.move_to_end(key)
        while len(_indexes) > CACHED_ORGS:
            _indexes.popitem(last=False)
        return index


def effective_threshold(row: SupportSettings | None, settings: SupportModuleSettings) -> float:
    """The organization's own match threshold, or the server's calibrated default."""
    if row is not None and row.match_threshold is not None:
        return row.match_threshold
    return settings.match_threshold


async def threshold_of(session: AsyncSession, org_id: uuid.UUID, settings: SupportModuleSettings) -> float:
    return effective_threshold(await session.get(SupportSettings, org_id), settings)


async def category_by_reference(session: AsyncSession, principal: Principal, reference: str) -> uuid.UUID:
    """A category given by id or by slug."""
    try:
        return (await faqs.get_category(session, principal, uuid.UUID(reference))).id
    except ValueError:
        pass
    found = (
        await session.execute(
            sa.select(FaqCategory.id).where(FaqCategory.org_id == faqs.org_of(principal), FaqCategory.slug == reference)
        )
    ).scalar_one_or_none()
    if found is None:
        raise FaqCategoryNotFound("FAQ category not found")
    return found


async def rank(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    org_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    settings: SupportModuleSettings,
    *,
    limit: int,
    language: str | None = None,
    category_id: uuid.UUID | None = None,
) -> list[Candidate]:
    index = await index_for(session, sessionmaker, org_id, embedder)
    if not len(index):
        return []
    vector = (await embedder.embed([query], kind="query"))[0]
    return index.rank(
        query, vector, weights=weights_of(settings), limit=limit, language=language, category_id=category_id
    )


async def search(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    principal: Principal,
    query: str,
    embedder: Embedder,
    settings: SupportModuleSettings,
    *,
    limit: int = 5,
    language: str | None = None,
    category: str | None = None,
) -> FaqSearchResponse:
    org_id = faqs.org_of(principal)
    category_id = await category_by_reference(session, principal, category) if category else None
    candidates = await rank(
        session, sessionmaker, org_id, query, embedder, settings,
        limit=limit, language=language, category_id=category_id,
    )  # fmt: skip
    threshold = await threshold_of(session, org_id, settings)
    rows = {
        row.id: row
        for row in (await session.execute(sa.select(Faq).where(Faq.id.in_([c.entry.id for c in candidates])))).scalars()
    }
    present = [c for c in candidates if c.entry.id in rows]  # deleted since the index was built: left out
    reads = {r.id: r for r in await faqs.read_faqs(session, [rows[c.entry.id] for c in present])}
    hits = [
        FaqHit(
            faq=reads[c.entry.id],
            score=c.scores.score,
            scores=MatchScores(
                question=c.scores.question, answer=c.scores.answer,
                question_terms=c.scores.question_terms, answer_terms=c.scores.answer_terms,
            ),
            match=c.scores.score >= threshold,
        )
        for c in present
    ]  # fmt: skip
    return FaqSearchResponse(
        query=query, threshold=threshold, match=hits[0] if hits and hits[0].match else None, items=hits
    )
