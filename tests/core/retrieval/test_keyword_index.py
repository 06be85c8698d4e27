"""SQLite's in-memory keyword index: it ranks exactly as Okapi BM25 computed here from the
`document_chunk` table, follows every write through the change log (additions, replacements,
deletions), loads large organizations in the background while FTS5 answers, survives a restart
and a pruned log, keeps every scope, and keeps organizations apart (statistics included)."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tessera.core.documents.pipeline import process_inline
from tessera.core.retrieval import postings
from tessera.core.retrieval.analysis import analyze, query_stems
from tessera.core.retrieval.filters import allowed_documents
from tessera.core.retrieval.keyword import search_keyword
from tessera.core.retrieval.postings import KeywordIndexStatus, keyword_index_status
from tests.factories import SignedIn, create_collection, ingest_document, register

pytestmark = pytest.mark.sqlite

LIMIT = 5
WORDS = [f"{a}{b}" for a in ("tal", "mor", "ven", "sil", "dra", "pek", "lun", "qua", "bri", "zof") for b in "aeiou"]


@pytest.fixture
def backend() -> str:
    """The index is SQLite's own (PostgreSQL ranks in SQL)."""
    return "sqlite"


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Every test starts as a new process would, and leaves no background load behind."""
    postings.wait_for_keyword_indexes()
    postings.forget_keyword_indexes()
    yield
    assert postings.wait_for_keyword_indexes(timeout=60)
    postings.forget_keyword_indexes()


def paper(number: int, paragraphs: int = 3) -> bytes:
    rng = random.Random(number)
    lines = [f"# Paper {number} {rng.choice(WORDS)}"]
    for part in range(paragraphs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(8)).capitalize() + "." for _ in range(3)]
        lines += ["", f"## Part {part}", "", " ".join(sentences) + f" Marker{number}z."]
    return "\n".join(lines).encode()


def query_of(number: int, words: int = 3) -> str:
    """Words of the paper, with the one word no other paper has."""
    rng = random.Random(number * 7 + 1)
    text = paper(number).decode().split()
    common = rng.sample([w.strip(".") for w in text if w.strip(".").isalpha() and len(w) > 3], words)
    return " ".join([*common, f"marker{number}z"])


class Library:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, user: SignedIn) -> None:
        self.app = app
        self.client = client
        self.user = user
        self.org_id = uuid.UUID(user.org_id)
        self.documents: dict[int, str] = {}

    async def add(self, collection_id: str, numbers: range | list[int], metadata: str = "{}") -> None:
        for number in numbers:
            self.documents[number] = await ingest_document(
                self.client, self.user, collection_id, f"paper-{number}.md", paper(number), metadata
            )

    async def delete(self, number: int) -> None:
        response = await self.client.delete(
            f"/api/v1/documents/{self.documents.pop(number)}", headers=self.user.headers
        )
        assert response.status_code == 204, response.text

    async def search(
        self, text: str, collections: list[str], *, filters: dict[str, Any] | None = None, limit: int = LIMIT
    ) -> list[tuple[str, float]]:
        collection_ids = [uuid.UUID(c) for c in collections]
        allowed = allowed_documents(self.org_id, collection_ids, filters)
        async with self.app.state.sessionmaker() as session:
            hits = await search_keyword(
                session, text, org_id=self.org_id, allowed_documents=allowed, limit=limit,
                collections=None if filters else collection_ids,
            )  # fmt: skip
        return [(hit.chunk_id.hex, hit.score) for hit in hits]

    async def exact(
        self, text: str, collections: list[str], *, filters: dict[str, Any] | None = None, limit: int = LIMIT
    ) -> list[tuple[str, float]]:
        """Okapi BM25 over the organization's ready chunks, statistics over all of them."""
        allowed = allowed_documents(self.org_id, [uuid.UUID(c) for c in collections], filters)
        async with self.app.state.sessionmaker() as session:
            allowed_ids = {row[0] for row in await session.execute(allowed)}
            rows = (
                await session.execute(
                    sa.text(
                        "SELECT c.id, c.document_id, c.text, c.heading_path FROM document_chunk c "
                        "JOIN document d ON d.id = c.document_id WHERE d.org_id = :org AND d.status = 'ready'"
                    ),
                    {"org": self.org_id.hex},
                )
            ).all()
        chunks = []
        for chunk_id, document_id, body, heading_path in rows:
            counts = Counter(analyze(body))
            heading = Counter(analyze(" / ".join(json.loads(heading_path))))
            length = sum(counts.values()) + sum(heading.values())
            tf: dict[str, float] = dict(counts)
            for stem, n in heading.items():
                tf[stem] = tf.get(stem, 0.0) + 0.5 * n
            chunks.append((uuid.UUID(chunk_id).hex, uuid.UUID(document_id), tf, length))
        total = len(chunks)
        average = max(sum(c[3] for c in chunks) / max(total, 1), 1.0)
        stems = query_stems(text)
        df = {s: sum(1 for c in chunks if s in c[2]) for s in stems}
        scored = []
        for chunk_id, document_id, tf, length in chunks:
            if document_id not in allowed_ids:
                continue
            score = 0.0
            for stem in stems:
                if stem in tf:
                    idf = math.log(1 + (total - df[stem] + 0.5) / (df[stem] + 0.5))
                    score += idf * tf[stem] * 2.2 / (tf[stem] + 1.2 * (0.25 + 0.75 * length / average))
            if score > 0:
                scored.append((chunk_id, score))
        scored.sort(key=lambda pair: -pair[1])
        return scored[:limit]

    async def check(self, text: str, collections: list[str], **options: Any) -> list[str]:
        found = await self.search(text, collections, **options)
        exact = await self.exact(text, collections, **options)
        assert found, text
        assert [round(score, 4) for _, score in found] == [round(score, 4) for _, score in exact]
        # Equal scores may come in either order; the chunks with distinct scores may not.
        assert {c for c, s in found if s > exact[-1][1] + 1e-6} == {c for c, s in exact if s > exact[-1][1] + 1e-6}
        return [chunk for chunk, _ in found]

    def status(self) -> KeywordIndexStatus:
        status = keyword_index_status(self.app.state.sessionmaker(), self.org_id)
        assert status is not None
        return status

    async def chunks_of(self, number: int) -> set[str]:
        async with self.app.state.sessionmaker() as session:
            rows = await session.execute(
                sa.text("SELECT id FROM document_chunk WHERE document_id = :d"),
                {"d": uuid.UUID(self.documents[number]).hex},
            )
            return {uuid.UUID(row[0]).hex for row in rows}


@pytest.fixture
async def library(app: FastAPI, client: httpx.AsyncClient) -> Library:
    return Library(app, client, await register(client))


async def test_ranks_as_bm25_and_follows_additions_at_once(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(6))
    for number in range(6):
        await library.check(query_of(number), [collection])
    status = library.status()
    assert (status.loads, status.live_rows) == (1, status.rows)
    assert status.rows > 6

    await library.add(collection, [6, 7])
    found = await library.check(query_of(7), [collection])
    assert set(found) & await library.chunks_of(7)
    status = library.status()
    assert status.loads == 1  # caught up from the change log, not reloaded
    assert status.segments >= 2


async def test_deleted_and_replaced_documents_never_come_back(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(8))
    await library.check(query_of(2), [collection])

    gone = await library.chunks_of(2)
    await library.delete(2)
    # Removed rows are masked at once; they still count in the statistics until a reload (as in
    # Lucene), so scores may differ a little from the exact ones meanwhile.
    assert not {chunk for chunk, _ in await library.search(query_of(2), [collection], limit=50)} & gone
    assert library.status().live_rows < library.status().rows  # masked, still counted until a reload

    # Reprocessing replaces every chunk of a document.
    before = await library.chunks_of(3)
    response = await library.client.post(
        f"/api/v1/documents/{library.documents[3]}/reprocess", headers=library.user.headers
    )
    assert response.status_code in (200, 202), response.text
    assert await process_inline(uuid.UUID(library.documents[3]), 2) == "ready"
    after = await library.chunks_of(3)
    found = {chunk for chunk, _ in await library.search(query_of(3), [collection], limit=50)}
    assert not found & (before - after)
    assert found & after

    # Enough removed rows make the next catch-up a reload, whose statistics forget them.
    for number in (4, 5, 6):
        await library.delete(number)
    await library.search(query_of(7), [collection])
    for number in (0, 1, 7):
        await library.check(query_of(number), [collection])
    status = library.status()
    assert status.loads == 2
    assert status.live_rows == status.rows


async def test_scopes_filters_and_other_organizations(library: Library, client: httpx.AsyncClient) -> None:
    first = await create_collection(library.client, library.user, "First")
    second = await create_collection(library.client, library.user, "Second")
    await library.add(first, range(4), metadata='{"year": 2020}')
    await library.add(second, range(4, 8), metadata='{"year": 2024}')
    for number in range(8):
        for collections in ([first], [second], [first, second]):
            found = await library.check(query_of(number), collections)
            owners = set().union(
                *[await library.chunks_of(n) for n in (range(4) if collections == [first] else range(4, 8))]
            )
            if len(collections) == 1:
                assert set(found) <= owners
        await library.check(query_of(number), [first, second], filters={"year": {"gte": 2024}})

    # Another organization holding the same papers: its rows neither appear nor change the scores.
    other = Library(library.app, client, await register(client))
    theirs = await create_collection(other.client, other.user, "Theirs")
    await other.add(theirs, range(8, 16))
    for number in range(4):
        await library.check(query_of(number), [first, second])
    mine = set().union(*[await library.chunks_of(n) for n in range(8)])
    assert set(await library.search(query_of(9), [first, second])) & {(c, 0.0) for c in mine} == set()
    for chunk, _ in await library.search(query_of(9), [first, second], limit=50):
        assert chunk in mine


async def test_large_organizations_load_in_the_background_while_fts5_answers(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(6))
    monkeypatch.setattr(postings, "INLINE_CHUNKS", 0)

    first = await library.search(query_of(1), [collection])  # FTS5: the index is not loaded yet
    assert first
    assert first[0][0] in await library.chunks_of(1)
    assert postings.wait_for_keyword_indexes(timeout=60)
    assert library.status().loads == 1
    await library.check(query_of(1), [collection])

    # Many changes at once are applied in the background too; searches never see half of them.
    monkeypatch.setattr(postings, "INLINE_CHANGES", 0)
    await library.add(collection, [6, 7])
    await library.search(query_of(7), [collection])
    assert postings.wait_for_keyword_indexes(timeout=60)
    found = await library.check(query_of(7), [collection])
    assert set(found) & await library.chunks_of(7)


async def test_restart_and_pruned_log_reload_from_the_database(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(5))
    expected = await library.search(query_of(0), [collection])

    postings.forget_keyword_indexes()  # a restart
    assert await library.search(query_of(0), [collection]) == expected
    assert library.status().loads == 1

    # The log is pruned past this process's position: a catch-up cannot be trusted, so it reloads.
    await library.add(collection, [5])
    async with library.app.state.sessionmaker() as session:
        await session.execute(sa.text("DELETE FROM chunk_fts_log"))
        await session.commit()
    await library.add(collection, [6])
    found = await library.check(query_of(5), [collection])
    assert set(found) & await library.chunks_of(5)
    assert library.status().loads == 2


async def test_fts5_setting_and_memory_agree_on_the_best_match(library: Library, app: FastAPI) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(6))
    memory = [await library.search(query_of(n), [collection], limit=1) for n in range(6)]
    app.state.settings.retrieval.keyword_index = "fts5"
    try:
        from tessera.core.documents.runtime import PipelineContext

        assert PipelineContext.settings().retrieval.keyword_index == "fts5"
        fts5 = [await library.search(query_of(n), [collection], limit=1) for n in range(6)]
    finally:
        app.state.settings.retrieval.keyword_index = "memory"
    assert [m[0][0] for m in memory] == [f[0][0] for f in fts5]
