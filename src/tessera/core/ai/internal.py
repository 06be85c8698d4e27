"""`/internal/ai/*`: what the API's `RemoteAIClient` calls on a `tessera serve --role ai` process.

Stateless compute, authenticated by the service token (not by a user): organization policies
travel in the request. Only the AI role mounts these routes.
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from tessera.core.ai.client import AIHealth
from tessera.core.ai.dependencies import AIClientDep
from tessera.core.ai.remote import INTERNAL_PREFIX, encode_vectors, service_token
from tessera.core.ai.status import ModelsStatus
from tessera.core.embeddings.base import TextKind
from tessera.core.entities.schemas import ClinicalContext, EntityExtraction
from tessera.core.errors import NotAuthenticated, PayloadTooLarge

MAX_BATCH = 2048


def require_service_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = service_token(request.app.state.settings)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise NotAuthenticated("The AI service needs the API's service token")


router = APIRouter(prefix=INTERNAL_PREFIX, tags=["ai-internal"], dependencies=[Depends(require_service_token)])


class AnalyzeCall(BaseModel):
    text: str
    language: str = "en"
    entities: list[str] | None = None
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    score_threshold: float | None = Field(None, ge=0, le=1)


class EmbedCall(BaseModel):
    texts: list[str] = Field(max_length=MAX_BATCH)
    kind: TextKind = "passage"


class EmbedResult(BaseModel):
    model: str
    dimension: int
    vectors: str = Field(description="Base64 of the little-endian float32 rows, one per text.")


def _check_length(text: str, limit: int) -> None:
    if len(text) > limit:
        raise PayloadTooLarge(f"The text has {len(text)} characters; the limit is {limit}", details={"limit": limit})


@router.post("/pii/analyze", summary="Detect PII (service call)")
async def analyze_pii(call: AnalyzeCall, request: Request, ai: AIClientDep) -> dict[str, Any]:
    _check_length(call.text, request.app.state.settings.privacy.max_text_chars)
    found = await ai.analyze_pii(
        call.text,
        language=call.language,
        entities=call.entities,
        allow=call.allow,
        deny=call.deny,
        score_threshold=call.score_threshold,
    )
    return {"entities": [asdict(entity) for entity in found]}


class TextCall(BaseModel):
    text: str
    language: str = "en"


@router.post("/ner/extract", summary="Extract entities (service call)")
async def extract_entities(call: TextCall, request: Request, ai: AIClientDep) -> EntityExtraction:
    _check_length(call.text, request.app.state.settings.entities.max_text_chars)
    return await ai.extract_entities(call.text, language=call.language)


@router.post("/ner/context", summary="Clinical context (service call)")
async def clinical_context(call: TextCall, request: Request, ai: AIClientDep) -> ClinicalContext:
    _check_length(call.text, request.app.state.settings.entities.max_text_chars)
    return await ai.clinical_context(call.text, language=call.language)


@router.post("/embeddings", summary="Embed texts (service call)")
async def embed(call: EmbedCall, ai: AIClientDep) -> EmbedResult:
    model, vectors = await ai.embed(call.texts, kind=call.kind)
    dimension = int(vectors.shape[1]) if vectors.ndim == 2 and len(call.texts) else 0
    return EmbedResult(model=model, dimension=dimension, vectors=encode_vectors(vectors))


@router.get("/health", summary="AI service health (service call)")
async def health(ai: AIClientDep) -> AIHealth:
    return await ai.health()


@router.get("/models/status", summary="Loaded models (service call)")
async def models_status(ai: AIClientDep) -> ModelsStatus:
    return await ai.models_status()
