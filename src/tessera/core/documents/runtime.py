"""What the ingestion pipeline needs outside a request: settings, a database session factory and
the blob store.

DBOS runs async workflows on its own event loop (a background thread), and database connections
belong to the loop that opened them, so each loop gets its own engine, made on first use.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tessera.core.db.session import create_engine, create_sessionmaker
from tessera.core.documents.parsing.base import ParseLimits
from tessera.core.documents.storage.base import BlobStore
from tessera.core.documents.storage.registry import create_blob_store
from tessera.core.jobs.runtime import QUEUES, QueueSpec
from tessera.settings import DocumentSettings, Settings

DOCUMENTS_QUEUE = "documents"


def blob_store_from_settings(settings: Settings) -> BlobStore:
    options = settings.documents
    if options.storage == "s3":
        return create_blob_store(
            "s3",
            bucket=options.s3_bucket,
            prefix=options.s3_prefix,
            endpoint_url=options.s3_endpoint_url,
            region=options.s3_region,
            access_key_id=options.s3_access_key_id,
            secret_access_key=options.s3_secret_access_key.get_secret_value() if options.s3_secret_access_key else None,
        )
    return create_blob_store("local", root=settings.blob_dir)


def parse_limits(settings: Settings) -> ParseLimits:
    options = settings.documents
    return ParseLimits(
        max_pages=options.max_pages,
        max_expanded_bytes=options.max_expanded_bytes,
        ocr=options.ocr,
        ocr_languages=options.ocr_languages,
    )


def declare_queue(options: DocumentSettings) -> None:
    """Partitioned by organization: each gets at most `org_concurrency` documents in flight."""
    QUEUES[DOCUMENTS_QUEUE] = QueueSpec(
        DOCUMENTS_QUEUE,
        worker_concurrency=options.worker_concurrency,
        partition_concurrency=options.org_concurrency,
        # Concurrency-limited queues start new work only when polled: the interval bounds throughput
        # (concurrency / interval documents a second), and one poll is a cheap indexed query.
        polling_seconds=0.1,
    )


# Declared with the defaults on import; `PipelineContext.configure` applies the settings.
declare_queue(DocumentSettings())


@dataclass
class _LoopResources:
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]


class PipelineContext:
    """Process-wide: configured once by the server or worker, read by the workflow steps."""

    _settings: Settings | None = None
    _store: BlobStore | None = None
    _pooled = False
    _per_loop: dict[int, _LoopResources] = {}  # noqa: RUF012 - class-level registry by design
    _lock = threading.Lock()

    @classmethod
    def configure(cls, settings: Settings, store: BlobStore | None = None, *, pooled: bool = False) -> None:
        """`pooled=True` keeps connections open between steps: only for callers that own their event
        loop and call `dispose_current_loop()` at the end (the CLI's local mode, the evaluation). A
        connection per session costs a thread and four PRAGMAs on SQLite, a new backend on PostgreSQL."""
        with cls._lock:
            cls._settings = settings
            cls._store = store or blob_store_from_settings(settings)
            cls._pooled = pooled
            stale, cls._per_loop = cls._per_loop, {}
        for resources in stale.values():
            # Engines of an earlier configuration (tests build many apps in one process).
            if resources.loop.is_running() and not resources.loop.is_closed():
                asyncio.run_coroutine_threadsafe(resources.engine.dispose(), resources.loop)
        declare_queue(settings.documents)

    @classmethod
    def settings(cls) -> Settings:
        if cls._settings is None:
            # A worker started without configure (e.g. a bare DBOS process): read the environment.
            cls.configure(Settings())
        assert cls._settings is not None
        return cls._settings

    @classmethod
    def store(cls) -> BlobStore:
        cls.settings()
        assert cls._store is not None
        return cls._store

    @classmethod
    def sessionmaker(cls) -> async_sessionmaker[AsyncSession]:
        loop = asyncio.get_running_loop()
        with cls._lock:
            resources = cls._per_loop.get(id(loop))
            if resources is None:
                engine = create_engine(cls.settings(), pooled=cls._pooled)
                resources = _LoopResources(loop, engine, create_sessionmaker(engine))
                cls._per_loop[id(loop)] = resources
        return resources.sessionmaker

    @classmethod
    async def dispose_current_loop(cls) -> None:
        loop = asyncio.get_running_loop()
        with cls._lock:
            resources = cls._per_loop.pop(id(loop), None)
        if resources is not None:
            await resources.engine.dispose()
