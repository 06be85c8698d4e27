"""`create_app()`: the lifespan builds the engine, limiter, metrics and job system, then mounts routers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import tessera
from tessera.core.ai.client import AIClient, InProcessAIClient
from tessera.core.ai.embeddings_router import router as embeddings_router
from tessera.core.ai.internal import router as ai_internal_router
from tessera.core.ai.remote import RemoteAIClient
from tessera.core.ai.router import router as ai_router
from tessera.core.api_keys.router import router as api_keys_router
from tessera.core.assistants.router import router as assistants_router
from tessera.core.audit.router import router as audit_router
from tessera.core.auth.principal import PrincipalCache
from tessera.core.auth.router import public_router as auth_public_router
from tessera.core.auth.router import router as auth_router
from tessera.core.chat.events import create_chat_events
from tessera.core.chat.policy import ChatPolicy
from tessera.core.chat.router import chat_router, conversations_router
from tessera.core.chat.websocket import socket_router
from tessera.core.db.session import WriteClock, create_engine, create_sessionmaker
from tessera.core.documents import pipeline as document_pipeline
from tessera.core.documents.router import collections_router, documents_router
from tessera.core.documents.runtime import PipelineContext, blob_store_from_settings
from tessera.core.entities.router import router as entities_router
from tessera.core.generation.compat import router as openai_compatible_router
from tessera.core.generation.router import router as answers_router
from tessera.core.generation.runtime import close_chat_models
from tessera.core.handlers import install_error_handlers
from tessera.core.intents.router import router as intents_router
from tessera.core.jobs import JobRuntime, worker_enabled
from tessera.core.moderation.router import router as moderation_router
from tessera.core.notifications.router import router as notifications_router
from tessera.core.observability.logging import configure_logging, get_logger
from tessera.core.observability.metrics import Metrics
from tessera.core.observability.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from tessera.core.observability.router import info_router
from tessera.core.observability.router import router as health_router
from tessera.core.orgs.router import router as orgs_router
from tessera.core.personal_data.router import router as personal_data_router
from tessera.core.privacy.router import router as privacy_router
from tessera.core.ratelimit.limiter import RateLimiter
from tessera.core.retrieval import jobs as evaluation_jobs
from tessera.core.retrieval import reindex as retrieval_reindex
from tessera.core.retrieval.router import evaluations_router
from tessera.core.retrieval.router import router as search_router
from tessera.core.usage.router import router as usage_router
from tessera.products import enabled_modules
from tessera.settings import Settings

API_PREFIX = "/api/v1"
AppRole = Literal["api", "ai"]
GC_YOUNG_THRESHOLD = 50_000
logger = get_logger("tessera.app")

DESCRIPTION = """
Tessera is an open-source AI backend for products that live on documents.

**Signing in.** Use the *Authorize* button with your e-mail and password (the OAuth2 password
flow at `/api/v1/auth/token`), or paste an API key into `X-API-Key`. Every error has the shape
`{"error": {"code", "message", "details"}}`. Lists are paged with `limit` and `cursor`.
"""


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX)
    api.include_router(auth_public_router)
    api.include_router(auth_router)
    api.include_router(orgs_router)
    api.include_router(personal_data_router)
    api.include_router(api_keys_router)
    api.include_router(audit_router)
    api.include_router(collections_router)
    api.include_router(documents_router)
    api.include_router(search_router)
    api.include_router(evaluations_router)
    api.include_router(answers_router)
    api.include_router(assistants_router)
    api.include_router(conversations_router)
    api.include_router(chat_router)
    api.include_router(socket_router)
    api.include_router(moderation_router)
    api.include_router(usage_router)
    api.include_router(notifications_router)
    api.include_router(info_router)
    api.include_router(_ai_router())
    return api


def _module_routers(settings: Settings) -> APIRouter:
    """The product modules the settings enable (`modules`), each under `/api/v1`."""
    modules = APIRouter(prefix=API_PREFIX)
    for module in enabled_modules(settings):
        modules.include_router(module.api_router())
    return modules


def _module_chat_policies(settings: Settings) -> list[ChatPolicy]:
    return [policy for module in enabled_modules(settings) for policy in module.chat_policies(settings)]


def _ai_router() -> APIRouter:
    """The AI routes (`/api/v1/ai/*`): all that `tessera serve --role ai` serves, besides health."""
    ai = APIRouter()
    ai.include_router(ai_router)
    ai.include_router(embeddings_router)
    ai.include_router(entities_router)
    ai.include_router(privacy_router)
    ai.include_router(intents_router)
    return ai


def _build_ai_client(settings: Settings, role: AppRole) -> AIClient:
    # The AI service itself always runs the models; the API delegates when `ai.url` is set.
    if role == "api" and settings.ai.url:
        return RemoteAIClient(settings)
    return InProcessAIClient(settings)


def create_ai_app() -> FastAPI:
    """The AI service (`tessera serve --role ai`): PII, entities, intents and embeddings only."""
    return create_app(role="ai")


def create_app(settings: Settings | None = None, *, start_jobs: bool | None = None, role: AppRole = "api") -> FastAPI:
    """Build the ASGI app. `start_jobs=False` leaves the job system off (tests that do not need it).
    `role="ai"` builds the AI service: its routes only, no job system."""
    settings = settings or Settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        if app.state.metrics is not None:
            app.state.metrics.watch_pool(engine)
        app.state.blob_store = blob_store_from_settings(settings)
        # Before the job system starts: the pipeline's queue and resources come from the settings.
        PipelineContext.configure(settings, app.state.blob_store)
        jobs_wanted = (settings.jobs.enabled if start_jobs is None else start_jobs) and role == "api"
        embedded_worker = worker_enabled(settings)
        app.state.jobs = await JobRuntime.start_async(settings, run_worker=embedded_worker) if jobs_wanted else None
        if app.state.jobs is not None:
            await document_pipeline.resume_queued(app.state.sessionmaker, app.state.jobs)
            await evaluation_jobs.resume_queued(app.state.sessionmaker, app.state.jobs)
            if settings.retrieval.reembed_on_model_change:
                await _reembed_on_model_change(app.state.sessionmaker, app.state.jobs, settings)
        app.state.chat_events = create_chat_events(settings.redis_url)
        app.state.ai = _build_ai_client(settings, role)
        # In the background: the server answers at once, requests wait for a model still loading.
        warm_up = asyncio.create_task(app.state.ai.warm_up()) if settings.ai.warm_up else None
        # Touch the key now so a fresh data dir gets its secret before the first request.
        _ = settings.signing_key
        # Everything built so far lives as long as the process. Freezing it takes it out of the
        # garbage collector's full passes, which otherwise walk every module, route and mapper and
        # stall all requests in flight (the long tail in docs/BENCHMARKS.md).
        gc.collect()
        gc.freeze()
        # A request allocates thousands of short-lived objects; collecting the young generation
        # every 700 allocations (the default) means several collections per request.
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        logger.info(
            "tessera started",
            version=tessera.__version__,
            database=engine.dialect.name,
            jobs="embedded worker"
            if app.state.jobs and embedded_worker
            else ("enqueue only" if app.state.jobs else "off"),
            rate_limit_storage="redis" if settings.redis_url else "memory",
            chat_events="redis" if settings.redis_url else "this process",
            role=role,
            ai=settings.ai.url if role == "api" and settings.ai.url else "in process",
        )
        try:
            yield
        finally:
            if app.state.jobs is not None:
                await app.state.jobs.shutdown_async(grace_seconds=10)
            await PipelineContext.dispose_current_loop()
            await close_chat_models()
            await app.state.chat_events.close()
            if warm_up is not None:
                warm_up.cancel()
            await app.state.ai.close()
            if app.state.limiter is not None:
                await app.state.limiter.close()
            await engine.dispose()

    app = FastAPI(
        title="Tessera",
        version=tessera.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url="/docs/oauth2-redirect",
    )
    app.state.settings = settings
    app.state.metrics = Metrics() if settings.metrics_enabled else None
    app.state.limiter = RateLimiter(settings.rate_limit, settings.redis_url) if settings.rate_limit.enabled else None
    app.state.modules = [] if role == "ai" else list(settings.modules)
    # Product modules' say in how chat messages are answered (core/chat/policy.py).
    app.state.chat_policies = _module_chat_policies(settings) if role == "api" else []
    app.state.jobs = None
    app.state.write_clock = WriteClock()
    app.state.principal_cache = PrincipalCache(settings.auth.principal_cache_seconds)
    install_error_handlers(app)
    app.include_router(health_router)
    if role == "ai":
        app.include_router(_ai_router(), prefix=API_PREFIX)
        app.include_router(ai_internal_router)
    else:
        app.include_router(_api_router())
        app.include_router(_module_routers(settings))
        app.include_router(openai_compatible_router)
    _mount_docs(app)

    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-Id", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.http.max_body_bytes,
        overrides={
            f"{API_PREFIX}/documents": settings.documents.max_upload_bytes,
            **{
                f"{API_PREFIX}{path}": limit
                for module in ([] if role == "ai" else enabled_modules(settings))
                for path, limit in module.body_limits.items()
            },
        },
    )
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics, hsts=settings.environment == "production")
    return app


async def _reembed_on_model_change(
    sessionmaker: async_sessionmaker[AsyncSession], jobs: JobRuntime, settings: Settings
) -> None:
    # A misconfigured embedder shows on the first search; it must not keep the server from starting.
    try:
        await retrieval_reindex.reembed_on_model_change(sessionmaker, jobs, settings)
    except Exception:
        logger.exception("checking for vectors of another embedding model failed")


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI served from the installed package, so the docs page works offline."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static-docs", StaticFiles(directory=str(swagger_ui_path)), name="static-docs")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="Tessera API",
            oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
            swagger_js_url="/static-docs/swagger-ui-bundle.js",
            swagger_css_url="/static-docs/swagger-ui.css",
            swagger_favicon_url="/static-docs/favicon-32x32.png",
            init_oauth={"usePkceWithAuthorizationCodeGrant": False},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
