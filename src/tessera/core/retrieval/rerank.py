"""Rerankers: a second stage that scores (query, passage) pairs and reorders the top search hits.

A `Reranker` reads the query and each passage together, so it judges relevance better than the
first stage (BM25 and embeddings score query and passage apart) at a higher cost per passage:
search gives it only the top `candidates` hits (`rerank_hits`). Providers, picked by
`TESSERA_RETRIEVAL__RERANKER__PROVIDER`:

- `none` (default): no model of acceptable quality and provenance ships offline, so nothing is
  reranked; the provider itself keeps the order it is given.
- `cross-encoder`: a user-supplied ONNX cross-encoder (e.g. an export of
  `cross-encoder/ms-marco-MiniLM-L-6-v2`) and its Hugging Face `tokenizer.json`, on onnxruntime.
- `http`: a rerank service: Hugging Face TEI (`api=tei`) or the Cohere / Jina / vLLM shape
  (`api=cohere`).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.documents.models import Chunk, Document
from tessera.core.errors import InvalidInput, ProviderRejected, ProviderUnavailable
from tessera.core.observability.logging import get_logger
from tessera.core.retrieval.fusion import Fused
from tessera.core.retrieval.vectors import passage_text
from tessera.settings import RerankerSettings

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]
    from tokenizers import Tokenizer

logger = get_logger(__name__)

RerankerProviderName = Literal["none", "cross-encoder", "http"]


class RerankerNotConfigured(InvalidInput):
    """The request asks for a reranker this server does not have configured."""

    code = "reranker_not_configured"


class Reranker(Protocol):
    name: str
    """Identifies the model to clients and logs, e.g. `cross-encoder:ms-marco-onnx` or `http:rerank-v3.5`."""

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text, in the order of `texts`; higher is more relevant.

        Scores compare texts of one call, not across models. Never blocks the event loop: model
        work runs in a bounded thread pool, remote calls are async.

        Raises:
            ProviderUnavailable: the model cannot be loaded, or the service is unreachable, timed
                out or failed (5xx, 429).
            ProviderRejected: the service refused the request (other 4xx) or answered nonsense.
        """
        ...


class NoReranker:
    """Keeps the order it is given (scores n, n-1, …, 1)."""

    name = "none"

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        return [float(len(texts) - i) for i in range(len(texts))]


class CrossEncoderReranker:
    """A local ONNX cross-encoder, one (query, passage) pair per row, on CPU.

    Each pair is encoded as a pair (`tokenizer.encode(query, passage)`: `[CLS] query [SEP] passage
    [SEP]` for BERT-style tokenizers, with segment ids), cut to `max_tokens` (longest sequence
    first), and fed as `input_ids`, plus `attention_mask` and `token_type_ids` where the graph
    takes them. The first output gives the score: one column (or a vector) is taken as is (the
    relevance logit); two columns are a [not relevant, relevant] classifier, scored by the softmax
    probability of the last column.
    """

    def __init__(self, settings: RerankerSettings) -> None:
        if settings.model_path is None:
            raise ProviderUnavailable(
                "the cross-encoder reranker needs TESSERA_RETRIEVAL__RERANKER__MODEL_PATH (a model.onnx)"
            )
        self.model_path = settings.model_path
        self.tokenizer_path = settings.tokenizer_path or settings.model_path.with_name("tokenizer.json")
        for path, variable in ((self.model_path, "MODEL_PATH"), (self.tokenizer_path, "TOKENIZER_PATH")):
            if not path.is_file():
                raise ProviderUnavailable(
                    f"the cross-encoder reranker's file {path} does not exist (TESSERA_RETRIEVAL__RERANKER__{variable})"
                )
        self.name = f"cross-encoder:{self.model_path.parent.name or self.model_path.stem}"
        self.max_tokens = settings.max_tokens
        self.batch_size = settings.batch_size
        # One single-threaded model call per core, as the local embedder measured best.
        self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="tessera-rerank")
        self._load_lock = threading.Lock()
        self._model: tuple[onnxruntime.InferenceSession, Tokenizer, frozenset[str]] | None = None

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        loop = asyncio.get_running_loop()
        batches = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        scores = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._score, query, batch) for batch in batches)
        )
        return [score for batch in scores for score in batch]

    def load(self) -> None:
        """Load the tokenizer and the model now rather than on first use; idempotent, thread-safe."""
        self._loaded()

    def _loaded(self) -> tuple[onnxruntime.InferenceSession, Tokenizer, frozenset[str]]:
        model = self._model
        if model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
                    logger.info("reranker_model_loaded", model=self.name, path=str(self.model_path))
                model = self._model
        return model

    def _load(self) -> tuple[onnxruntime.InferenceSession, Tokenizer, frozenset[str]]:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as exc:  # the library raises plain Exception for unreadable files
            raise ProviderUnavailable(f"the reranker's tokenizer {self.tokenizer_path} is not readable: {exc}") from exc
        tokenizer.no_padding()  # padded per batch below
        tokenizer.enable_truncation(max_length=self.max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ProviderUnavailable(f"the reranker's model {self.model_path} cannot be loaded: {exc}") from exc
        inputs = frozenset(i.name for i in session.get_inputs())
        if "input_ids" not in inputs or not inputs <= {"input_ids", "attention_mask", "token_type_ids"}:
            raise ProviderUnavailable(
                f"the reranker's model takes {sorted(inputs)}; expected input_ids, attention_mask, token_type_ids"
            )
        return session, tokenizer, inputs

    def _score(self, query: str, passages: list[str]) -> list[float]:
        session, tokenizer, inputs = self._loaded()
        encodings = tokenizer.encode_batch([(query, passage) for passage in passages])
        width = max(len(e.ids) for e in encodings)
        feeds = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in inputs}
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            feeds["input_ids"][row, :size] = encoding.ids
            if "attention_mask" in feeds:
                feeds["attention_mask"][row, :size] = 1
            if "token_type_ids" in feeds:
                feeds["token_type_ids"][row, :size] = encoding.type_ids
        logits = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
        return [float(score) for score in relevance(logits, len(passages))]


def relevance(logits: npt.NDArray[np.float32], rows: int) -> npt.NDArray[np.float32]:
    """A cross-encoder's output as one score per row: a single logit as is; for two columns the
    softmax probability of the last (the relevant class).

    Raises:
        ProviderUnavailable: any other shape (the model is not a cross-encoder this can read).
    """
    if logits.ndim == 2 and logits.shape == (rows, 2):
        margin = logits[:, 1] - logits[:, 0]
        probability: npt.NDArray[np.float32] = 1.0 / (1.0 + np.exp(-margin))
        return probability
    if logits.shape in ((rows,), (rows, 1)):
        return logits.reshape(rows)
    raise ProviderUnavailable(f"the reranker's model returned shape {list(logits.shape)}; expected one or two columns")


class HttpReranker:
    """A rerank service over HTTP, `POST {base_url}/rerank`, in requests of `batch_size` texts.

    - `api=tei` (Hugging Face text-embeddings-inference): `{"query", "texts", "truncate": true}`
      → `[{"index", "score"}, …]`. `base_url` is the server root, e.g. `http://tei:8080`.
    - `api=cohere` (also Jina, vLLM): `{"model", "query", "documents", "top_n"}` →
      `{"results": [{"index", "relevance_score"}, …]}`. `base_url` carries the version, e.g.
      `https://api.cohere.com/v2`, `https://api.jina.ai/v1`, `http://vllm:8000/v1`.

    No retries: a search is waiting. Timeouts, connection errors, 429 and 5xx raise
    `ProviderUnavailable`; other 4xx and malformed answers raise `ProviderRejected`.
    """

    def __init__(self, settings: RerankerSettings) -> None:
        if not settings.base_url or (settings.api == "cohere" and not settings.model):
            raise ValueError(
                "the http reranker needs TESSERA_RETRIEVAL__RERANKER__BASE_URL "
                "(and TESSERA_RETRIEVAL__RERANKER__MODEL with api=cohere)"
            )
        self.base_url = settings.base_url.rstrip("/")
        self.api = settings.api
        self.model = settings.model
        self.name = f"http:{settings.model or settings.api}"  # not the URL: the name is shown to clients
        self.batch_size = settings.batch_size
        self.timeout_seconds = settings.timeout_seconds
        self._api_key = settings.api_key.get_secret_value() if settings.api_key else None

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # A client per call: it belongs to no event loop, so one reranker serves every loop
        # (workers, tests), and one connection per search costs little next to the model.
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_seconds)
        ) as client:
            parts = await asyncio.gather(
                *(
                    self._request(client, query, list(texts[i : i + self.batch_size]))
                    for i in range(0, len(texts), self.batch_size)
                ),
                return_exceptions=True,
            )
        scores: list[float] = []
        for part in parts:
            if isinstance(part, BaseException):
                raise part
            scores += part
        return scores

    async def _request(self, client: httpx.AsyncClient, query: str, texts: list[str]) -> list[float]:
        body: dict[str, Any] = (
            {"query": query, "texts": texts, "truncate": True}
            if self.api == "tei"
            else {"model": self.model, "query": query, "documents": texts, "top_n": len(texts)}
        )
        try:
            response = await client.post("/rerank", json=body)
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"{self.name}: no answer within {self.timeout_seconds:g} s") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"{self.name}: cannot reach the server ({type(exc).__name__})") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            reason = "rate limited" if status == 429 else "server error"
            raise ProviderUnavailable(f"{self.name}: {reason} (HTTP {status})")
        if not response.is_success:
            logger.warning("rerank_rejected", model=self.name, status=status, body=response.text[:500])
            raise ProviderRejected(f"{self.name}: the server refused the request (HTTP {status})")
        try:
            answer = response.json()
            items = answer if self.api == "tei" else answer["results"]
            key = "score" if self.api == "tei" else "relevance_score"
            scored = {int(item["index"]): float(item[key]) for item in items}
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderRejected(f"{self.name}: the server's answer is not a list of scores") from exc
        if sorted(scored) != list(range(len(texts))):
            raise ProviderRejected(f"{self.name}: the server scored {len(scored)} of {len(texts)} texts")
        return [scored[i] for i in range(len(texts))]


def _none(settings: RerankerSettings) -> Reranker:
    return NoReranker()


def _cross_encoder(settings: RerankerSettings) -> Reranker:
    return CrossEncoderReranker(settings)


def _http(settings: RerankerSettings) -> Reranker:
    return HttpReranker(settings)


RERANKER_PROVIDERS: dict[RerankerProviderName, Callable[[RerankerSettings], Reranker]] = {
    "none": _none,
    "cross-encoder": _cross_encoder,
    "http": _http,
}


def create_reranker(settings: RerankerSettings) -> Reranker:
    """A new reranker of the configured provider.

    Raises:
        ProviderUnavailable: a `cross-encoder` whose model or tokenizer file is missing.
        ValueError: the settings do not describe a usable reranker.
    """
    factory = RERANKER_PROVIDERS.get(settings.provider)
    if factory is None:
        raise ValueError(f"unknown reranker provider {settings.provider!r}: use one of {sorted(RERANKER_PROVIDERS)}")
    return factory(settings)


_lock = threading.Lock()
_rerankers: dict[str, Reranker] = {}


def select_reranker(settings: RerankerSettings, requested: str) -> Reranker | None:
    """The reranker a search asks for: None for `none`; the configured one (built once per process)
    for `configured` or its provider's name.

    Raises:
        RerankerNotConfigured: the request names a reranker that is not the configured one, or
            asks for one where none is configured.
        ProviderUnavailable: the configured cross-encoder's files are missing.
    """
    if requested == "none":
        return None
    if settings.provider == "none" or requested not in ("configured", settings.provider):
        message = (
            "No reranker is configured on this server: search with `rerank` set to `none`"
            if settings.provider == "none"
            else f"The {requested!r} reranker is not configured on this server; "
            f"it has {settings.provider!r} (or ask for `configured`)"
        )
        raise RerankerNotConfigured(message, details={"requested": requested, "configured": settings.provider})
    # The dump masks the API key: add it, so a changed key builds a new reranker.
    key = settings.model_dump_json() + (settings.api_key.get_secret_value() if settings.api_key else "")
    with _lock:
        reranker = _rerankers.get(key)
        if reranker is None:
            reranker = create_reranker(settings)
            _rerankers[key] = reranker
        return reranker


async def rerank_hits(
    session: AsyncSession, ranked: Sequence[Fused], query: str, reranker: Reranker, *, candidates: int
) -> list[Fused]:
    """`ranked` with its first `candidates` entries reordered by `reranker`, the rest as they were.

    Each reranked entry gains a `rerank` component (score, rank); its `score` stays the first
    stage's. The reranker reads what the embedder reads (`passage_text`) after the document title.
    Every page of a search reranks the same candidates, so pages stay consistent.
    """
    head = list(ranked[:candidates])
    if not head:
        return list(ranked)
    rows = await session.execute(
        sa.select(Chunk.id, Chunk.text, Chunk.heading_path, Document.title)
        .join(Document, Document.id == Chunk.document_id)
        .where(Chunk.id.in_([entry.chunk_id for entry in head]))
    )
    texts: dict[uuid.UUID, str] = {row.id: rerank_text(row.title, row.heading_path, row.text) for row in rows}
    present = [entry for entry in head if entry.chunk_id in texts]  # the rest was deleted meanwhile
    scores = await reranker.rerank(query, [texts[entry.chunk_id] for entry in present])
    if len(scores) != len(present) or not all(math.isfinite(score) for score in scores):
        raise ProviderRejected(f"{reranker.name}: {len(scores)} scores for {len(present)} texts, or not all finite")
    order = sorted(range(len(present)), key=lambda i: -scores[i])  # stable: ties keep the first stage's order
    reordered = []
    for rank, i in enumerate(order, start=1):
        entry = present[i]
        components = {**entry.components, "rerank": {"score": round(scores[i], 6), "rank": rank}}
        reordered.append(Fused(entry.chunk_id, entry.document_id, entry.score, components))
    missing = [entry for entry in head if entry.chunk_id not in texts]
    return reordered + missing + list(ranked[candidates:])


def rerank_text(title: str | None, heading_path: Sequence[str], text: str) -> str:
    """Document title, heading path and chunk text; the title only where the headings lack it."""
    headings = list(heading_path)
    if title and (not headings or headings[0] != title):
        headings.insert(0, title)
    return passage_text(headings, text)
