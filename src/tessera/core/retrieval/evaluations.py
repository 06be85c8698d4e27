"""Evaluations of a collection on the caller's own judged queries: start one, list, read, delete.

An evaluation belongs to a collection and is seen by whoever sees the collection: another
organization's, or one of a collection the caller cannot see, is a 404 like the collection. The
run itself happens after the request commits (`jobs.py`): on the job system, or inline when it is off.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id
from tessera.core.db.session import run_after_commit
from tessera.core.documents import service as documents
from tessera.core.documents.models import Document
from tessera.core.jobs.runtime import JobRuntime
from tessera.core.pagination import PageParams, paginate
from tessera.core.retrieval.errors import EvaluationNotFound, UnknownJudgedDocuments
from tessera.core.retrieval.evaluation import collection_counts
from tessera.core.retrieval.jobs import enqueue_evaluation, run_inline
from tessera.core.retrieval.models import EvaluationStatus, JudgedQuery, RetrievalEvaluation
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.schemas import EvaluationCreate
from tessera.settings import Settings

ID_BATCH = 500
UNKNOWN_SHOWN = 100


def _canonical(raw: str) -> str | None:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


async def _resolve_documents(
    session: AsyncSession, collection_id: uuid.UUID, judged: Sequence[dict[str, int]]
) -> list[dict[str, int]]:
    """Each query's grades keyed by canonical document id (the form search returns); raises
    `UnknownJudgedDocuments` naming every id that is not a document of the collection."""
    canonical = {raw: _canonical(raw) for grades in judged for raw in grades}
    wanted = sorted({uuid.UUID(c) for c in canonical.values() if c is not None})
    found: set[str] = set()
    for start in range(0, len(wanted), ID_BATCH):
        rows = await session.execute(
            select(Document.id).where(
                Document.collection_id == collection_id, Document.id.in_(wanted[start : start + ID_BATCH])
            )
        )
        found.update(str(document_id) for document_id in rows.scalars())
    unknown = sorted(raw for raw, c in canonical.items() if c is None or c not in found)
    if unknown:
        raise UnknownJudgedDocuments(
            f"{len(unknown)} judged document ids are not documents of this collection",
            details={"unknown_document_ids": unknown[:UNKNOWN_SHOWN], "count": len(unknown)},
        )
    resolved: list[dict[str, int]] = []
    for grades in judged:
        merged: dict[str, int] = {}
        for raw, grade in grades.items():
            key = canonical[raw]
            assert key is not None
            merged[key] = max(grade, merged.get(key, 0))
        resolved.append(merged)
    return resolved


async def start_evaluation(
    session: AsyncSession,
    principal: Principal,
    collection_id: uuid.UUID,
    body: EvaluationCreate,
    *,
    settings: Settings,
    jobs: JobRuntime | None,
    meta: RequestMeta,
) -> RetrievalEvaluation:
    """Store the judged queries and queue the run; it starts once this transaction commits."""
    collection = await documents.get_collection(session, principal, collection_id)
    judged = await _resolve_documents(session, collection.id, [query.grades() for query in body.queries])
    document_count, chunk_count = await collection_counts(session, collection.id)
    semantic = any(mode != "keyword" for mode in body.modes)
    evaluation = RetrievalEvaluation(
        id=new_id(),
        org_id=collection.org_id,
        collection_id=collection.id,
        created_by=principal.user_id,
        name=body.name,
        status=EvaluationStatus.queued,
        modes=list(body.modes),
        fusion=body.fusion,
        semantic_weight=body.semantic_weight,
        # The worker notes the model it really searched with when the run starts.
        embedding_model=get_embedder(settings.embeddings).name if semantic else None,
        document_count=document_count,
        chunk_count=chunk_count,
        query_count=len(body.queries),
        metrics={},
    )
    session.add(evaluation)
    await session.flush()
    await session.execute(
        insert(JudgedQuery),
        [
            {
                "id": new_id(),
                "evaluation_id": evaluation.id,
                "org_id": evaluation.org_id,
                "ordinal": ordinal,
                "query_key": query.id,
                "text": query.query,
                "relevant": grades,
                "results": {},
            }
            for ordinal, (query, grades) in enumerate(zip(body.queries, judged, strict=True), start=1)
        ],
    )
    await record_event(
        session, action="evaluation.created", org_id=evaluation.org_id, actor=principal.actor, meta=meta,
        target_type="evaluation", target_id=evaluation.id,
        details={"collection_id": str(collection.id), "name": evaluation.name, "queries": evaluation.query_count,
                 "modes": evaluation.modes},
    )  # fmt: skip
    _schedule(session, jobs, evaluation)
    return evaluation


def _schedule(session: AsyncSession, jobs: JobRuntime | None, evaluation: RetrievalEvaluation) -> None:
    evaluation_id, org_id = evaluation.id, evaluation.org_id

    async def start() -> None:
        if jobs is not None:
            await enqueue_evaluation(jobs, evaluation_id, org_id)
        else:
            await run_inline(evaluation_id)

    run_after_commit(session, start)


async def list_evaluations(
    session: AsyncSession, principal: Principal, collection_id: uuid.UUID, *, params: PageParams
) -> tuple[Sequence[RetrievalEvaluation], str | None]:
    """Newest first."""
    collection = await documents.get_collection(session, principal, collection_id)
    query = select(RetrievalEvaluation).where(RetrievalEvaluation.collection_id == collection.id)
    return await paginate(session, query, key=RetrievalEvaluation.id, params=params)


async def get_evaluation(
    session: AsyncSession, principal: Principal, collection_id: uuid.UUID, evaluation_id: uuid.UUID
) -> RetrievalEvaluation:
    collection = await documents.get_collection(session, principal, collection_id)
    evaluation = await session.get(RetrievalEvaluation, evaluation_id)
    if evaluation is None or evaluation.collection_id != collection.id:
        raise EvaluationNotFound("Evaluation not found")
    return evaluation


async def judged_queries(session: AsyncSession, evaluation: RetrievalEvaluation) -> Sequence[JudgedQuery]:
    query = select(JudgedQuery).where(JudgedQuery.evaluation_id == evaluation.id).order_by(JudgedQuery.ordinal)
    return (await session.execute(query)).scalars().all()


async def delete_evaluation(
    session: AsyncSession,
    principal: Principal,
    collection_id: uuid.UUID,
    evaluation_id: uuid.UUID,
    *,
    meta: RequestMeta,
) -> None:
    """A run in progress stops at its next step."""
    evaluation = await get_evaluation(session, principal, collection_id, evaluation_id)
    await session.execute(delete(JudgedQuery).where(JudgedQuery.evaluation_id == evaluation.id))
    await session.delete(evaluation)
    await record_event(
        session, action="evaluation.deleted", org_id=evaluation.org_id, actor=principal.actor, meta=meta,
        target_type="evaluation", target_id=evaluation.id,
        details={"collection_id": str(evaluation.collection_id), "name": evaluation.name},
    )  # fmt: skip
