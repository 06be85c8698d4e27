"""Liveness, readiness, metrics and service info."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import tessera
from tessera.core.errors import NotFound
from tessera.core.observability.metrics import Metrics
from tessera.settings import Settings

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 3.0


class Check(BaseModel):
    status: Literal["ok", "fail", "skipped"]
    required: bool
    latency_ms: float | None = None
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ok", "fail"]
    checks: dict[str, Check]
    queue_depth: dict[str, int] | None = Field(None, description="Jobs waiting or running, per queue.")


class Info(BaseModel):
    name: str = "tessera"
    version: str
    environment: str
    database: Literal["sqlite", "postgresql"]
    modules: list[str]
    redis: bool
    jobs: bool


async def _timed(name: str, required: bool, probe: Any) -> tuple[str, Check]:
    started = time.perf_counter()
    try:
        ok, detail = await asyncio.wait_for(probe(), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        ok, detail = False, f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"
    except Exception as error:  # a readiness probe reports failures, it never raises them
        ok, detail = False, f"{type(error).__name__}: {error}"[:300]
    latency = round((time.perf_counter() - started) * 1000, 2)
    return name, Check(status="ok" if ok else "fail", required=required, latency_ms=latency, detail=detail)


@router.get("/health", summary="Liveness", description="200 while the process serves HTTP. Checks nothing else.")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness",
    description="Checks the database, Redis (when configured), document storage and the job system; 503 when a "
    "required one fails.",
    responses={503: {"model": Readiness, "description": "A required dependency is down."}},
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    engine: AsyncEngine = state.engine

    async def database() -> tuple[bool, str | None]:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return True, engine.dialect.name

    probes = [_timed("database", True, database)]
    if state.limiter is not None and state.settings.redis_url:

        async def redis() -> tuple[bool, str | None]:
            return await state.limiter.check_storage(), None

        probes.append(_timed("redis", True, redis))
    store = getattr(state, "blob_store", None)
    if store is not None:

        async def storage() -> tuple[bool, str | None]:
            await store.check()
            return True, store.name

        probes.append(_timed("storage", True, storage))
    jobs = state.jobs
    if jobs is not None:
        probes.append(_timed("jobs", True, jobs.check))
    results = dict(await asyncio.gather(*probes))
    if jobs is None:
        results["jobs"] = Check(status="skipped", required=False, detail="jobs are disabled")
    depth = None
    if jobs is not None and results["jobs"].status == "ok":
        try:
            depth = await asyncio.wait_for(jobs.queue_depth(), timeout=CHECK_TIMEOUT_SECONDS)
        except Exception:
            depth = None
    healthy = all(check.status != "fail" for check in results.values() if check.required)
    body = Readiness(status="ok" if healthy else "fail", checks=results, queue_depth=depth)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Request counts and latency by route and status, connection pool, job queue depth.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(request: Request) -> Response:
    collected: Metrics | None = request.app.state.metrics
    if collected is None:
        raise NotFound("Metrics are turned off (TESSERA_METRICS_ENABLED=false)")
    jobs = request.app.state.jobs
    if jobs is not None:
        try:
            depth = await asyncio.wait_for(jobs.queue_depth(), timeout=CHECK_TIMEOUT_SECONDS)
        except Exception:
            depth = {}
        for queue, count in depth.items():
            collected.queue_depth.labels(queue).set(count)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)


info_router = APIRouter(tags=["health"])


@info_router.get("/info", response_model=Info, summary="Version and enabled modules")
async def info(request: Request) -> Info:
    settings: Settings = request.app.state.settings
    return Info(
        version=tessera.__version__,
        environment=settings.environment,
        database="sqlite" if settings.is_sqlite else "postgresql",
        modules=list(request.app.state.modules),
        redis=bool(settings.redis_url),
        jobs=request.app.state.jobs is not None,
    )
