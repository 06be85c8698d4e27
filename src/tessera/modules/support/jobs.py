"""The support module's scheduled work: the retention purge (`retention.py`), hourly by default on
any worker; each run purges what is past every organization's retention."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from dbos import DBOS

from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.documents.runtime import PipelineContext
from tessera.core.jobs.runtime import SCHEDULES, ScheduleSpec
from tessera.core.observability.logging import get_logger
from tessera.modules.support.retention import purge_expired

RETENTION_WORKFLOW = "support.retention"
RETENTION_SCHEDULE = "0 * * * *"  # hourly: a message outlives its retention by an hour at most
logger = get_logger("tessera.support.jobs")


async def _purge_step() -> dict[str, int]:
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        purged = await purge_expired(session, utcnow())
    if purged.messages or purged.conversations or purged.handoffs:
        logger.info("retention purge", **asdict(purged))
    return asdict(purged)


@DBOS.workflow(name=RETENTION_WORKFLOW)
async def retention(scheduled_time: datetime, context: Any) -> dict[str, int]:
    return await DBOS.run_step_async({"name": "support.retention.purge"}, _purge_step)


SCHEDULES[RETENTION_WORKFLOW] = ScheduleSpec(RETENTION_WORKFLOW, retention, RETENTION_SCHEDULE)
