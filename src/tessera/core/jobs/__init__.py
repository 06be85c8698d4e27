"""Durable jobs (DBOS): see `runtime` and docs/jobs.md."""

from tessera.core.jobs.runtime import (
    DEFAULT_QUEUE,
    PING_WORKFLOW,
    QUEUES,
    JobRuntime,
    QueueSpec,
    run_worker_forever,
    system_database_url,
    worker_enabled,
)

__all__ = [
    "DEFAULT_QUEUE",
    "PING_WORKFLOW",
    "QUEUES",
    "JobRuntime",
    "QueueSpec",
    "run_worker_forever",
    "system_database_url",
    "worker_enabled",
]
