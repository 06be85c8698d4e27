"""`/api/v1/ai/embeddings/*`: vectors of texts from the server's embedding model, through the AI client
(in process, or the AI service at `ai.url`). Stateless: nothing is stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tessera.core.ai.dependencies import AIClientDep
from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.embeddings.base import TextKind
from tessera.core.errors import InvalidInput, PayloadTooLarge, ProviderUnavailable
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.strings import Text

router = APIRouter(prefix="/ai/embeddings", tags=["ai"], dependencies=[rate_limit("default")])
# Any member may embed text they send: it reads nothing of the organization's.
Reader = Annotated[Principal, require("ai:read")]

MAX_BATCH = 256
MAX_TEXT_CHARS = 20_000

EmbedText = Annotated[Text, StringConstraints(min_length=1)]
KIND_DESCRIPTION = (
    "`passage` (a document or chunk: longer texts are embedded in overlapping windows, averaged) or "
    "`query` (a search query or a short phrase: cut at the model's window). Store and search with the same model."
)


class EmbeddingBatchTooLarge(PayloadTooLarge):
    """More texts than one batch takes (256)."""

    code = "embedding_batch_too_large"


class EmbeddingTextTooLong(PayloadTooLarge):
    """A text is longer than 20,000 characters."""

    code = "embedding_text_too_long"


class EmbeddingRequest(BaseModel):
    text: EmbedText | None = Field(None, description="The text (or `input`, OpenAI's name for it).")
    input: EmbedText | None = Field(None, description="Same as `text`; give one of the two.")
    kind: TextKind = Field("passage", description=KIND_DESCRIPTION)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "How do I reset my password?", "kind": "query"}]},
    )

    @model_validator(mode="after")
    def _one_text(self) -> EmbeddingRequest:
        if (self.text is None) == (self.input is None):
            raise ValueError("give `text` or `input`, one of the two")
        return self

    @property
    def value(self) -> str:
        return self.text if self.text is not None else self.input or ""


class EmbeddingBatchRequest(BaseModel):
    texts: list[EmbedText] = Field(
        min_length=1, description=f"Up to {MAX_BATCH} texts (413 above), each up to {MAX_TEXT_CHARS:,} characters."
    )
    kind: TextKind = Field("passage", description=KIND_DESCRIPTION)

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "texts": ["Grey herons wait motionless in shallow water.", "Oaks live for centuries."],
                    "kind": "passage",
                }
            ]
        },
    )


class EmbeddingRead(BaseModel):
    model: str = Field(description="The embedding model (the vector space), e.g. `local:all-MiniLM-L6-v2-int8`.")
    dimension: int
    embedding: list[float] = Field(description="L2-normalised: the dot product of two vectors is their cosine.")


class EmbeddingBatchRead(BaseModel):
    model: str
    dimension: int
    embeddings: list[list[float]] = Field(description="One L2-normalised vector per text, in the order given.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    413: EmbeddingTextTooLong.schema(),
    422: InvalidInput.schema(),
    503: ProviderUnavailable.schema(),
}


def _check_length(texts: list[str]) -> None:
    long = [index for index, text in enumerate(texts) if len(text) > MAX_TEXT_CHARS]
    if long:
        raise EmbeddingTextTooLong(
            f"Texts longer than {MAX_TEXT_CHARS:,} characters: split them", details={"indexes": long[:20]}
        )


@router.post(
    "/generate",
    response_model=EmbeddingRead,
    summary="Embed one text",
    description="The vector of `text` (or `input`) from the server's embedding model (`embeddings.provider`), "
    f"run where AI work runs (in process, or the AI service). Up to {MAX_TEXT_CHARS:,} characters (413 above); the "
    "model reads its first 256 tokens of a `query`. Nothing is stored. Needs `ai:read` (every member).",
    responses=_ERRORS,
)
async def generate_embedding(body: EmbeddingRequest, _: Reader, ai: AIClientDep) -> EmbeddingRead:
    _check_length([body.value])
    model, vectors = await ai.embed([body.value], kind=body.kind)
    return EmbeddingRead(model=model, dimension=int(vectors.shape[1]), embedding=vectors[0].tolist())


@router.post(
    "/batch",
    response_model=EmbeddingBatchRead,
    summary="Embed a batch of texts",
    description=f"The vectors of up to {MAX_BATCH} texts in one call (413 `embedding_batch_too_large` above, "
    f"`embedding_text_too_long` for a text over {MAX_TEXT_CHARS:,} characters), in the order given. Nothing is "
    "stored. Needs `ai:read` (every member).",
    responses={**_ERRORS, 413: EmbeddingBatchTooLarge.schema()},
)
async def embed_batch(body: EmbeddingBatchRequest, _: Reader, ai: AIClientDep) -> EmbeddingBatchRead:
    if len(body.texts) > MAX_BATCH:
        raise EmbeddingBatchTooLarge(
            f"{len(body.texts)} texts: at most {MAX_BATCH} in one batch",
            details={"texts": len(body.texts), "max": MAX_BATCH},
        )
    _check_length(body.texts)
    model, vectors = await ai.embed(body.texts, kind=body.kind)
    return EmbeddingBatchRead(model=model, dimension=int(vectors.shape[1]), embeddings=vectors.tolist())
