"""`/api/v1/ai/health` and `/api/v1/ai/models/status`: where AI work runs and what is loaded."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tessera.core.ai.client import AIHealth
from tessera.core.ai.dependencies import AIClientDep
from tessera.core.ai.status import ModelsStatus
from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal

router = APIRouter(prefix="/ai", tags=["ai"])
Reader = Annotated[Principal, require("ai:read")]


@router.get(
    "/health",
    summary="AI service health",
    description="Whether PII, entity and embedding requests can be served now, and where they run: "
    "`in_process`, or `remote` (a `tessera serve --role ai` at `ai.url`) with the state of the circuit "
    "breaker in front of it. 200 when available, 503 (same body) when not. No authentication, like `/health`.",
    response_model=AIHealth,
    responses={503: {"model": AIHealth, "description": "The AI service cannot serve requests now."}},
)
async def ai_health(ai: AIClientDep) -> JSONResponse:
    health = await ai.health()
    return JSONResponse(health.model_dump(mode="json"), status_code=200 if health.status == "ok" else 503)


@router.get(
    "/models/status",
    summary="Loaded AI models",
    description="Each capability's model (`pii`, `entities`, `embeddings`): state (`not_loaded`, `loading`, "
    "`ready`, `failed`), version, load time and the memory it took, and the resident memory of the process "
    "that runs them. Models load at start-up when `ai.warm_up` is on, else on first use. Needs `ai:read`.",
)
async def models_status(_: Reader, ai: AIClientDep) -> ModelsStatus:
    return await ai.models_status()
