"""Durable jobs on DBOS: process roles, queues, enqueueing, readiness and queue depth.

Two roles, chosen by `run_worker`:

* worker (`tessera worker`, or `tessera serve` in embedded mode): DBOS is launched in this
  process; it dequeues and runs workflows, fires schedules and recovers its own unfinished work.
* client (`tessera serve` next to separate workers): only a `DBOSClient`. It enqueues, reads
  status and results, and never executes anything. `DBOS.listen_queues([])` is not enough for
  this role: a launched DBOS always polls its internal queue, which carries recovered and
  scheduled workflows, so the API process would still run jobs.

Workflows are addressed by their registered name (`@DBOS.workflow(name="jobs.ping")`), which is
what a client needs, so enqueueing looks the same in both roles. Every module that declares
workflows must be imported before `JobRuntime.start`: DBOS derives the application version from
the workflows registered at launch. A worker dequeues work stamped with its own version, and
work enqueued without one (as both roles here enqueue) only while it runs the latest version.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
import structlog
from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions

from tessera.settings import Settings

APP_NAME = "tessera"
DEFAULT_QUEUE = "default"
PING_WORKFLOW = "jobs.ping"

TERMINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})
# Only these two count as depth: DELAYED work is not due yet and the rest has finished.
_DEPTH_STATUSES = ("ENQUEUED", "PENDING")
_PROBE_TIMEOUT_SECONDS = 5.0
_RESULT_POLL_SECONDS = 0.2

logger = structlog.get_logger(__name__)
T = TypeVar("T")
Role = Literal["worker", "client"]


@dataclass(frozen=True)
class QueueSpec:
    name: str
    concurrency: int | None = None
    """Most workflows of this queue running at once across all workers (None: no limit)."""
    worker_concurrency: int | None = None
    """Most workflows of this queue running at once in one worker process (None: no limit)."""
    partition_concurrency: int | None = None
    """Set for a partitioned queue: most workflows of one partition (e.g. one organization) running
    at once across all workers, so one tenant's big batch cannot take every slot. Every enqueue on
    such a queue must give a `partition_key`."""
    polling_seconds: float = 1.0
    """How often a worker looks for new work on this queue."""


# Modules that declare workflows (and their queues). Every process imports all of them before
# DBOS launches, so API, embedded worker and `tessera worker` derive the same application version.
WORKFLOW_MODULES: tuple[str, ...] = (
    "tessera.core.documents.pipeline",
    "tessera.core.retrieval.reindex",
    "tessera.core.retrieval.jobs",
    "tessera.core.notifications.jobs",
)


# A product module's workflows live in its `jobs.py`, imported when the module is enabled: core
# never imports product modules by name, it follows this convention.
PRODUCT_JOBS_MODULE = "tessera.modules.{name}.jobs"


def product_workflow_modules(settings: Settings) -> list[str]:
    return [name for name in (PRODUCT_JOBS_MODULE.format(name=n) for n in settings.modules) if _exists(name)]


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the product module itself is not built (yet)
        return False


def import_workflow_modules(settings: Settings | None = None) -> None:
    for name in (*WORKFLOW_MODULES, *(product_workflow_modules(settings) if settings is not None else ())):
        importlib.import_module(name)


@dataclass(frozen=True)
class ScheduleSpec:
    """A workflow run on a cron schedule by exactly one worker (`DBOS.apply_schedules`)."""

    name: str
    workflow: Callable[..., Any]
    """A registered workflow taking `(scheduled_time: datetime, context: Any)`."""
    cron: str
    """Crontab, optionally with seconds first (`*/30 * * * * *`)."""


# Schedules are plain data too: an area adds its own, and a launched worker applies all of them.
SCHEDULES: dict[str, ScheduleSpec] = {}


# Queues are plain data: an area adds its queue here, and `start` registers all of them.
QUEUES: dict[str, QueueSpec] = {
    DEFAULT_QUEUE: QueueSpec(DEFAULT_QUEUE, concurrency=None, worker_concurrency=8),
}


@DBOS.step(name="jobs.ping.echo")
async def _echo(payload: str) -> str:
    return payload


@DBOS.workflow(name=PING_WORKFLOW)
async def ping(payload: str) -> str:
    """Return `payload` through one checkpointed step: proves enqueue → dequeue → run → result."""
    return await _echo(payload)


def system_database_url(settings: Settings) -> str:
    """The DBOS system database as DBOS wants it (`sqlite:///…` or `postgresql://…`)."""
    configured = settings.jobs.system_database_url
    if configured is None:
        if settings.is_sqlite:
            return f"sqlite:///{(settings.data_dir / 'dbos.sqlite').resolve()}"
        configured = settings.resolved_database_url
    return _dbos_url(configured)


def worker_enabled(settings: Settings) -> bool:
    """Whether `tessera serve` runs queued jobs itself (`jobs.embedded_worker`, defaulted by backend)."""
    if settings.jobs.embedded_worker is not None:
        return settings.jobs.embedded_worker
    return settings.is_sqlite


def _dbos_url(url: str) -> str:
    parsed = sa.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    if parsed.drivername.startswith("postgres"):
        # DBOS connects with psycopg, which spells asyncpg's `ssl=` as libpq's `sslmode=`.
        query = dict(parsed.query)
        ssl = query.pop("ssl", None)
        if ssl is not None and "sslmode" not in query:
            query["sslmode"] = ssl
        return parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
    raise ValueError(f"unsupported DBOS system database URL scheme: {parsed.drivername}")


def _executor_id(url: str) -> str:
    # A worker recovers, at launch, the unfinished workflows recorded under its own executor id.
    # One process owns a SQLite file, so a fixed id always finds its work again. On PostgreSQL
    # several workers share the database: each needs its own id, stable across restarts, or a
    # restarting worker would re-run workflows still running elsewhere. DBOS__VMID (DBOS's own
    # variable) overrides the host name when one host runs several workers.
    if url.startswith("sqlite"):
        return "local"
    return os.environ.get("DBOS__VMID") or socket.gethostname()


def _quiet_dbos_logging(level: str) -> None:
    # DBOS logs several INFO lines per launch through a console handler of its own, which it
    # adds only when its logger has none. Once the app has configured logging, DBOS's records go
    # to the root logger instead, so they share the app's format; before that, DBOS keeps its
    # handler so its warnings are not lost.
    dbos_logger = logging.getLogger("dbos")
    if not dbos_logger.handlers and logging.getLogger().handlers:
        dbos_logger.addHandler(logging.NullHandler())
        dbos_logger.propagate = True
    dbos_logger.setLevel(level)


def _prepare_sqlite(url: str) -> None:
    database = sa.make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL is a property of the file and DBOS does not set it: readers (health, metrics) then
    # never wait behind the worker's writes.
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def _probe_engine(url: str) -> sa.Engine:
    # A separate one-connection engine for health and metrics, so probes neither queue behind
    # DBOS's pool nor depend on its private attributes.
    if url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=1, max_overflow=0, connect_args={"timeout": _PROBE_TIMEOUT_SECONDS})
    return sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"),
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": int(_PROBE_TIMEOUT_SECONDS),
            "options": f"-c statement_timeout={int(_PROBE_TIMEOUT_SECONDS * 1000)}",
            "application_name": "tessera_jobs_probe",
        },
    )


class JobRuntime:
    """The process's handle on the job system. Build it with `start`; one per process."""

    # DBOS is a process-global singleton (one `DBOS` instance, global registries and
    # parameters), so the runtime is one too: `start` hands back the running runtime when
    # asked for the same thing again and refuses a different one until `shutdown`.
    _current: JobRuntime | None = None
    _lock = threading.Lock()

    def __init__(self, *, url: str, role: Role, client: DBOSClient | None) -> None:
        self.url = url
        self.role: Role = role
        self._client = client
        self._probe = _probe_engine(url)
        self._workflow_status = sa.table(
            "workflow_status",
            sa.column("queue_name"),
            sa.column("status"),
            schema=None if url.startswith("sqlite") else "dbos",
        )
        self._stopped = False

    @classmethod
    def start(cls, settings: Settings, *, run_worker: bool) -> JobRuntime:
        """Launch DBOS (worker) or connect a client, create the schema and register `QUEUES`.

        Blocking (migrations, connections): from async code use `start_async`.
        """
        import_workflow_modules(settings)
        url = system_database_url(settings)
        role: Role = "worker" if run_worker else "client"
        with cls._lock:
            current = cls._current
            if current is not None:
                if current.url == url and current.role == role:
                    return current
                # The URLs stay out of the message: they may carry a password.
                raise RuntimeError(
                    f"the job runtime already runs as {current.role}; call shutdown() before starting it "
                    f"as {role} or on another system database"
                )
            log_level = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
            _quiet_dbos_logging(log_level)
            if url.startswith("sqlite"):
                _prepare_sqlite(url)
            runtime = cls._launch_worker(url, log_level) if run_worker else cls._connect_client(url)
            cls._current = runtime
            return runtime

    @classmethod
    async def start_async(cls, settings: Settings, *, run_worker: bool) -> JobRuntime:
        # DBOS refuses some synchronous calls on a thread with a running event loop.
        return await asyncio.to_thread(cls.start, settings, run_worker=run_worker)

    @classmethod
    def current(cls) -> JobRuntime | None:
        return cls._current

    @classmethod
    def _launch_worker(cls, url: str, log_level: str) -> JobRuntime:
        config: DBOSConfig = {
            "name": APP_NAME,
            "system_database_url": url,
            "executor_id": _executor_id(url),
            # DBOS sets its logger to INFO unless told otherwise.
            "log_level": log_level,
            "enable_otlp": False,
        }
        DBOS(config=config)
        try:
            DBOS.launch()
            for spec in QUEUES.values():
                DBOS.register_queue(
                    spec.name,
                    global_concurrency=spec.concurrency,
                    worker_concurrency=spec.worker_concurrency,
                    partition_concurrency=spec.partition_concurrency,
                    polling_interval_sec=spec.polling_seconds,
                )
            if SCHEDULES:
                DBOS.apply_schedules(
                    [
                        {"schedule_name": spec.name, "workflow_fn": spec.workflow, "schedule": spec.cron}
                        for spec in SCHEDULES.values()
                    ]
                )
        except BaseException:
            DBOS.destroy()
            raise
        return cls(url=url, role="worker", client=None)

    @classmethod
    def _connect_client(cls, url: str) -> JobRuntime:
        # A client never migrates, and the API may start before any worker has.
        DBOS.migrate(url)
        client = DBOSClient(system_database_url=url, application_name=APP_NAME)
        try:
            for spec in QUEUES.values():
                # Workers own queue settings; the API only makes sure the queue exists, so an
                # older API in a rolling deploy never overwrites a newer worker's limits.
                client.register_queue(
                    spec.name,
                    global_concurrency=spec.concurrency,
                    worker_concurrency=spec.worker_concurrency,
                    partition_concurrency=spec.partition_concurrency,
                    on_conflict="never_update",
                )
        except BaseException:
            client.destroy()
            raise
        return cls(url=url, role="client", client=client)

    def shutdown(self, *, grace_seconds: int = 0) -> None:
        """Stop DBOS or the client. A worker waits up to `grace_seconds` for running workflows;
        whatever is cut short is recovered when a worker with the same executor id starts."""
        with JobRuntime._lock:
            if self._stopped:
                return
            self._stopped = True
            try:
                if self._client is not None:
                    self._client.destroy()
                else:
                    DBOS.destroy(workflow_completion_timeout_sec=grace_seconds)
            finally:
                self._probe.dispose()
                if JobRuntime._current is self:
                    JobRuntime._current = None

    async def shutdown_async(self, *, grace_seconds: int = 0) -> None:
        await asyncio.to_thread(self.shutdown, grace_seconds=grace_seconds)

    async def enqueue(
        self,
        workflow: str,
        *args: Any,
        queue: str = DEFAULT_QUEUE,
        workflow_id: str | None = None,
        partition_key: str | None = None,
        delay_seconds: float | None = None,
        **kwargs: Any,
    ) -> str:
        """Enqueue the workflow registered as `workflow` on `queue`; returns its workflow id.

        Passing `workflow_id` makes the call idempotent: enqueueing the same id again returns
        the existing workflow instead of starting a second one. `delay_seconds` keeps it out of
        the queue (status `DELAYED`) until then.
        """
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}; declare it in tessera.core.jobs.runtime.QUEUES")
        options: EnqueueOptions = {"workflow_name": workflow, "queue_name": queue}
        if workflow_id is not None:
            options["workflow_id"] = workflow_id
        if QUEUES[queue].partition_concurrency is not None:
            if partition_key is None:
                raise ValueError(f"queue {queue!r} is partitioned: pass partition_key")
            options["queue_partition_key"] = partition_key
        if delay_seconds is not None:
            options["delay_seconds"] = delay_seconds
        client = self._client

        def enqueue() -> str:
            if client is not None:
                return client.enqueue(options, *args, **kwargs).get_workflow_id()
            return DBOS.enqueue_workflow_with_options(options, *args, **kwargs).get_workflow_id()

        return await self._run(enqueue)

    async def status(self, workflow_id: str) -> str | None:
        """The workflow's DBOS status (`ENQUEUED`, `PENDING`, `SUCCESS`, `ERROR`, …), None if unknown."""
        client = self._client

        def status() -> str | None:
            if client is not None:
                rows = client.list_workflows(workflow_ids=[workflow_id], load_input=False, load_output=False)
                return rows[0].status if rows else None
            found = DBOS.get_workflow_status(workflow_id)
            return found.status if found is not None else None

        return await self._run(status)

    async def find_workflows(
        self, *, prefix: str, statuses: list[str] | None = None, limit: int | None = None
    ) -> list[tuple[str, str]]:
        """`(workflow_id, status)` of the workflows whose id starts with `prefix`, newest first
        (optionally only those in `statuses`): how an area finds the runs of one of its objects."""
        client = self._client

        def find() -> list[tuple[str, str]]:
            options: dict[str, Any] = {
                "workflow_id_prefix": prefix,
                "status": statuses,
                "limit": limit,
                "sort_desc": True,
                "load_input": False,
                "load_output": False,
            }
            rows = client.list_workflows(**options) if client is not None else DBOS.list_workflows(**options)
            return [(row.workflow_id, row.status) for row in rows]

        return await self._run(find)

    async def result(self, workflow_id: str, *, timeout: float | None = None) -> Any:
        """Wait for the workflow to finish and return its result (re-raises its error).

        Polls the status rather than blocking in DBOS, so cancelling or timing out the wait
        leaves no thread behind.
        """
        async with asyncio.timeout(timeout):
            while (await self.status(workflow_id)) not in TERMINAL_STATUSES:
                await asyncio.sleep(_RESULT_POLL_SECONDS)
        client = self._client

        def result() -> Any:
            if client is not None:
                return client.retrieve_workflow(workflow_id).get_result()
            return DBOS.retrieve_workflow(workflow_id).get_result()

        return await self._run(result)

    async def queue_depth(self) -> dict[str, int]:
        """Workflows waiting (ENQUEUED) or running (PENDING) on each declared queue.

        One indexed count (DBOS's partial index on queue and status covers it); runs off the
        event loop with a bounded wait. Raises `TimeoutError` or the database error, so a metrics
        exporter can tell "unknown" from zero.
        """
        names = list(QUEUES)
        ws = self._workflow_status
        query = (
            sa.select(ws.c.queue_name, sa.func.count())
            .where(ws.c.status.in_(_DEPTH_STATUSES), ws.c.queue_name.in_(names))
            .group_by(ws.c.queue_name)
        )

        def count() -> dict[str, int]:
            with self._probe.connect() as connection:
                rows = connection.execute(query).all()
            depth = dict.fromkeys(names, 0)
            depth.update({str(name): int(n) for name, n in rows})
            return depth

        return await asyncio.wait_for(asyncio.to_thread(count), _PROBE_TIMEOUT_SECONDS)

    async def check(self) -> tuple[bool, str]:
        """Readiness: whether the system database answers. Never raises."""

        def probe() -> None:
            with self._probe.connect() as connection:
                connection.execute(sa.text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(probe), _PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            return False, "job system database did not answer in time"
        except Exception as error:
            return False, f"job system database unreachable: {type(error).__name__}"
        return True, f"ok ({self.role})"

    async def _run(self, fn: Callable[[], T]) -> T:
        # DBOS's own *_async methods install DBOS's thread pool as the event loop's default
        # executor, which DBOS shuts down on destroy; everything after that on the loop would
        # fail. Its synchronous API on our own worker thread avoids that.
        if self._stopped:
            raise RuntimeError("the job runtime has been shut down")
        return await asyncio.to_thread(fn)


def run_worker_forever(settings: Settings, *, grace_seconds: int = 30) -> None:
    """`tessera worker`: run queued workflows until SIGINT or SIGTERM, then stop cleanly."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("worker stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        runtime = JobRuntime.start(settings, run_worker=True)
        try:
            logger.info(
                f"worker started, queues: {', '.join(QUEUES)}",
                executor_id=DBOS.executor_id,
                application_version=DBOS.application_version,
            )
            stop.wait()
            logger.info("worker draining", grace_seconds=grace_seconds)
        finally:
            runtime.shutdown(grace_seconds=grace_seconds)
        logger.info("worker stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
