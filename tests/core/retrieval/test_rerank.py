"""Rerankers: the `http` provider against a real TEI/Cohere-compatible server (Starlette on uvicorn,
127.0.0.1), the `cross-encoder` provider on a tiny real ONNX model and tokenizer built here, and
`POST /api/v1/search` with `rerank` on both database backends."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import httpx
import numpy as np
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.retrieval.rerank import (
    RERANKER_PROVIDERS,
    CrossEncoderReranker,
    HttpReranker,
    NoReranker,
    RerankerNotConfigured,
    RerankerProviderName,
    create_reranker,
    relevance,
    rerank_text,
    select_reranker,
)
from tessera.core.retrieval.schemas import RerankChoice, SearchRequest
from tessera.settings import RerankerSettings, Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, create_collection, error_code, ingest_document, register
from tests.servers import serve_in_thread

_WORD = re.compile(r"\w+")


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def overlap(query: str, text: str) -> float:
    """The test service's relevance: how many distinct query words the text holds."""
    return float(len(words(query) & words(text)))


# --- a TEI / Cohere-compatible rerank service ----------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    delay: float = 0.0


@dataclass
class RerankService:
    url: str = ""
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.script.clear()

    def texts_seen(self) -> list[str]:
        with self.lock:
            return [t for _, body, _ in self.requests for t in body.get("texts", body.get("documents", []))]

    async def _scripted(self, request: Request) -> tuple[dict[str, Any], Reply | None]:
        body = await request.json()
        with self.lock:
            self.requests.append((request.url.path, body, dict(request.headers)))
            reply = self.script.pop(0) if self.script else None
        if reply is not None:
            await asyncio.sleep(reply.delay)
        return body, reply

    async def tei(self, request: Request) -> JSONResponse:
        body, reply = await self._scripted(request)
        if reply is not None and (reply.status != 200 or reply.body is not None):
            return JSONResponse(reply.body or {"error": "scripted"}, status_code=reply.status)
        scored = [{"index": i, "score": overlap(body["query"], t)} for i, t in enumerate(body["texts"])]
        # TEI answers best first, not in the order of the texts.
        return JSONResponse(sorted(scored, key=lambda s: -s["score"]))

    async def cohere(self, request: Request) -> JSONResponse:
        body, reply = await self._scripted(request)
        if reply is not None and (reply.status != 200 or reply.body is not None):
            return JSONResponse(reply.body or {"message": "scripted"}, status_code=reply.status)
        scored = [
            {"index": i, "relevance_score": overlap(body["query"], t) / 10} for i, t in enumerate(body["documents"])
        ]
        results = sorted(scored, key=lambda s: -s["relevance_score"])[: body["top_n"]]
        return JSONResponse({"id": "r-1", "results": results, "meta": {}})


@pytest.fixture(scope="module")
def rerank_server() -> Iterator[RerankService]:
    service = RerankService()
    app = Starlette(
        routes=[Route("/rerank", service.tei, methods=["POST"]), Route("/v1/rerank", service.cohere, methods=["POST"])]
    )
    with serve_in_thread(app, "rerank") as url:
        service.url = url
        yield service


@pytest.fixture
def service(rerank_server: RerankService) -> RerankService:
    rerank_server.reset()
    return rerank_server


def tei(service: RerankService, **overrides: Any) -> HttpReranker:
    return HttpReranker(RerankerSettings(provider="http", base_url=service.url, **overrides))


def cohere(service: RerankService, **overrides: Any) -> HttpReranker:
    values: dict[str, Any] = {"api": "cohere", "model": "rerank-v3.5", **overrides}
    return HttpReranker(RerankerSettings(provider="http", base_url=f"{service.url}/v1", **values))


TEXTS = ["herons wait in shallow water", "oak trees grow slowly", "water herons fish", "steam engines"]
QUERY = "herons in water"


class TestHttpReranker:
    async def test_tei_scores_follow_the_texts_in_batches(self, service: RerankService) -> None:
        scores = await tei(service, batch_size=3).rerank(QUERY, TEXTS)

        assert scores == [overlap(QUERY, t) for t in TEXTS]  # the server answered best first
        paths = sorted((path, len(body["texts"])) for path, body, _ in service.requests)
        assert paths == [("/rerank", 1), ("/rerank", 3)]
        assert all(body["truncate"] is True and body["query"] == QUERY for _, body, _ in service.requests)

    async def test_cohere_shape_with_model_top_n_and_api_key(self, service: RerankService) -> None:
        scores = await cohere(service, api_key="s3cret").rerank(QUERY, TEXTS)

        assert scores == [overlap(QUERY, t) / 10 for t in TEXTS]
        [(path, body, headers)] = service.requests
        assert path == "/v1/rerank"
        assert body == {"model": "rerank-v3.5", "query": QUERY, "documents": TEXTS, "top_n": len(TEXTS)}
        assert headers["authorization"] == "Bearer s3cret"

    async def test_no_texts_make_no_request(self, service: RerankService) -> None:
        assert await tei(service).rerank(QUERY, []) == []
        assert service.requests == []

    @pytest.mark.parametrize("status", [500, 503, 429])
    async def test_server_errors_are_unavailable(self, service: RerankService, status: int) -> None:
        service.script.append(Reply(status))

        with pytest.raises(ProviderUnavailable, match=f"HTTP {status}"):
            await tei(service).rerank(QUERY, TEXTS)

    async def test_timeout_is_unavailable(self, service: RerankService) -> None:
        service.script.append(Reply(delay=1.0))

        with pytest.raises(ProviderUnavailable, match=r"no answer within 0\.2 s"):
            await tei(service, timeout_seconds=0.2).rerank(QUERY, TEXTS)

    async def test_unreachable_server_is_unavailable(self) -> None:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        reranker = HttpReranker(RerankerSettings(provider="http", base_url=f"http://127.0.0.1:{port}"))

        with pytest.raises(ProviderUnavailable, match="cannot reach"):
            await reranker.rerank(QUERY, TEXTS)

    async def test_refusal_is_rejected(self, service: RerankService) -> None:
        service.script.append(Reply(413))

        with pytest.raises(ProviderRejected, match="HTTP 413"):
            await cohere(service).rerank(QUERY, TEXTS)

    @pytest.mark.parametrize(
        "body", [{"not": "a list"}, [{"index": 0, "score": 1.0}], [{"index": i, "value": 1} for i in range(4)]]
    )
    async def test_malformed_answer_is_rejected(self, service: RerankService, body: Any) -> None:
        service.script.append(Reply(body=body))

        with pytest.raises(ProviderRejected):
            await tei(service).rerank(QUERY, TEXTS)


# --- a tiny real cross-encoder ------------------------------------------------------------------

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


_FLOAT, _INT64 = 1, 7


def _tensor(name: str, array: np.ndarray[Any, Any]) -> bytes:  # onnx.proto TensorProto
    dtype = _FLOAT if array.dtype == np.float32 else _INT64
    return b"".join(_int(1, d) for d in array.shape) + _int(2, dtype) + _bytes(8, name) + _bytes(9, array.tobytes())


def _node(op: str, inputs: list[str], outputs: list[str], *attributes: bytes) -> bytes:  # NodeProto
    parts = [_bytes(1, name) for name in inputs] + [_bytes(2, name) for name in outputs] + [_bytes(4, op)]
    return b"".join(parts + [_bytes(5, attribute) for attribute in attributes])


def _int_attribute(name: str, value: int) -> bytes:  # AttributeProto, type INT
    return _bytes(1, name) + _int(3, value) + _int(20, 2)


def _text_attribute(name: str, value: str) -> bytes:  # AttributeProto, type STRING
    return _bytes(1, name) + _bytes(4, value) + _int(20, 3)


def _value(name: str, element: int, dims: list[str | int]) -> bytes:  # ValueInfoProto with a tensor type
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, element) + _bytes(2, shape)))


def cross_encoder_model(vocabulary_size: int, *, columns: int = 1) -> bytes:
    """An ONNX cross-encoder whose logit counts the words query (segment 0) and passage (segment 1)
    share: one-hot embeddings (zero for special tokens), summed per segment, dot product."""
    table = np.eye(vocabulary_size, dtype=np.float32)
    table[: len(SPECIALS)] = 0
    nodes = [
        _node("Gather", ["table", "input_ids"], ["onehot"]),
        _node("Cast", ["attention_mask"], ["mask"], _int_attribute("to", _FLOAT)),
        _node("Cast", ["token_type_ids"], ["segment"], _int_attribute("to", _FLOAT)),
        _node("Mul", ["mask", "segment"], ["passage"]),
        _node("Sub", ["mask", "passage"], ["query"]),
        _node("Einsum", ["query", "onehot"], ["query_words"], _text_attribute("equation", "bt,btv->bv")),
        _node("Einsum", ["passage", "onehot"], ["passage_words"], _text_attribute("equation", "bt,btv->bv")),
        _node("Einsum", ["query_words", "passage_words"], ["shared"], _text_attribute("equation", "bv,bv->b")),
        _node("Unsqueeze", ["shared", "axes"], ["relevant" if columns == 2 else "logits"]),
    ]
    if columns == 2:  # a [not relevant, relevant] classifier
        nodes += [
            _node("Neg", ["relevant"], ["irrelevant"]),
            _node("Concat", ["irrelevant", "relevant"], ["logits"], _int_attribute("axis", 1)),
        ]
    graph = b"".join(_bytes(1, node) for node in nodes) + _bytes(2, "tiny-cross-encoder")
    graph += _bytes(5, _tensor("table", table)) + _bytes(5, _tensor("axes", np.array([1], dtype=np.int64)))
    graph += b"".join(
        _bytes(11, _value(name, _INT64, ["batch", "tokens"]))
        for name in ("input_ids", "attention_mask", "token_type_ids")
    )
    graph += _bytes(12, _value("logits", _FLOAT, ["batch", columns]))
    return _int(1, 8) + _bytes(7, graph) + _bytes(8, _bytes(1, "") + _int(2, 13))  # IR 8, opset 13


def write_cross_encoder(folder: Path, vocabulary: list[str], *, columns: int = 1) -> Path:
    """`model.onnx` and a BERT-style WordLevel `tokenizer.json` in `folder`; returns the model's path."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate([*SPECIALS, *sorted(set(vocabulary))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    model = folder / "model.onnx"
    model.write_bytes(cross_encoder_model(len(vocab), columns=columns))
    return model


VOCABULARY = sorted(words(" ".join([QUERY, *TEXTS])))


class TestCrossEncoder:
    @pytest.mark.parametrize("columns", [1, 2])
    async def test_pairs_sharing_words_score_higher(self, tmp_path: Path, columns: int) -> None:
        model = write_cross_encoder(tmp_path / "tiny", VOCABULARY, columns=columns)
        reranker = create_reranker(RerankerSettings(provider="cross-encoder", model_path=model, batch_size=3))

        scores = await reranker.rerank(QUERY, TEXTS)

        assert reranker.name == "cross-encoder:tiny"
        assert len(scores) == len(TEXTS)
        # "herons wait in shallow water" and "water herons fish" share words with the query.
        assert min(scores[0], scores[2]) > max(scores[1], scores[3])
        if columns == 1:
            assert scores == [3.0, 0.0, 2.0, 0.0]  # the logit: shared words
        else:
            assert all(0.0 < s < 1.0 for s in scores)  # the softmax probability of "relevant"

    async def test_pairs_are_cut_to_max_tokens(self, tmp_path: Path) -> None:
        model = write_cross_encoder(tmp_path, VOCABULARY)
        reranker = CrossEncoderReranker(RerankerSettings(provider="cross-encoder", model_path=model, max_tokens=16))

        [score] = await reranker.rerank("herons", ["oak " * 50 + "herons"])

        assert score == 0.0  # the passage's last word was cut off

    def test_missing_model_is_a_clear_error(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere" / "model.onnx"

        with pytest.raises(ProviderUnavailable, match=r"nowhere/model\.onnx does not exist.*MODEL_PATH"):
            create_reranker(RerankerSettings(provider="cross-encoder", model_path=missing))

    def test_missing_tokenizer_is_a_clear_error(self, tmp_path: Path) -> None:
        model = write_cross_encoder(tmp_path, VOCABULARY)
        (tmp_path / "tokenizer.json").unlink()

        with pytest.raises(ProviderUnavailable, match=r"tokenizer\.json does not exist.*TOKENIZER_PATH"):
            create_reranker(RerankerSettings(provider="cross-encoder", model_path=model))

    def test_other_output_shapes_are_refused(self) -> None:
        with pytest.raises(ProviderUnavailable, match="one or two columns"):
            relevance(np.zeros((2, 3), dtype=np.float32), 2)


# --- settings, registry, choosing ---------------------------------------------------------------


class TestChoosing:
    def test_registry_settings_and_request_agree_on_provider_names(self) -> None:
        providers = set(get_args(RerankerProviderName))
        assert providers == set(RERANKER_PROVIDERS)
        assert providers == set(get_args(RerankerSettings.model_fields["provider"].annotation))
        assert set(get_args(RerankChoice)) == providers | {"configured"}

    @pytest.mark.parametrize(
        ("values", "missing"),
        [
            ({"provider": "cross-encoder"}, "MODEL_PATH"),
            ({"provider": "http"}, "BASE_URL"),
            ({"provider": "http", "base_url": "http://x", "api": "cohere"}, "MODEL"),
        ],
    )
    def test_settings_name_what_a_provider_needs(self, values: dict[str, Any], missing: str) -> None:
        with pytest.raises(ValidationError, match=f"TESSERA_RETRIEVAL__RERANKER__{missing} is required"):
            RerankerSettings(**values)

    def test_candidates_are_bounded(self) -> None:
        assert RerankerSettings().candidates == 50
        with pytest.raises(ValidationError):
            RerankerSettings(candidates=201)

    async def test_none_keeps_the_order(self) -> None:
        assert await NoReranker().rerank("q", ["a", "b", "c"]) == [3.0, 2.0, 1.0]

    def test_none_asks_for_no_reranker(self) -> None:
        assert select_reranker(RerankerSettings(), "none") is None

    @pytest.mark.parametrize("requested", ["configured", "http", "cross-encoder"])
    def test_nothing_configured_refuses_every_reranker(self, requested: str) -> None:
        with pytest.raises(RerankerNotConfigured, match="No reranker is configured"):
            select_reranker(RerankerSettings(), requested)

    def test_configured_or_its_name_selects_it_once(self) -> None:
        settings = RerankerSettings(provider="http", base_url="http://127.0.0.1:9")

        chosen = select_reranker(settings, "configured")

        assert isinstance(chosen, HttpReranker)
        assert select_reranker(settings, "http") is chosen
        with pytest.raises(RerankerNotConfigured, match=r"'cross-encoder' reranker is not configured.*has 'http'"):
            select_reranker(settings, "cross-encoder")

    def test_rerank_text_is_title_headings_and_text(self) -> None:
        assert rerank_text("Birds", ["Birds", "Herons"], "Grey herons.") == "Birds / Herons\nGrey herons."
        assert rerank_text("Field guide", ["Herons"], "Grey herons.") == "Field guide / Herons\nGrey herons."
        assert rerank_text(None, [], "Grey herons.") == "Grey herons."

    def test_request_field_defaults_to_none(self) -> None:
        assert SearchRequest(query="q").rerank == "none"
        with pytest.raises(ValidationError):
            SearchRequest(query="q", rerank="bm42")  # type: ignore[arg-type]


# --- POST /api/v1/search with rerank ------------------------------------------------------------

DOCS = {
    "zebra.md": b"# Savanna\n\nA zebra grazes alone on the plain.\n",
    "pets.md": b"# Pets\n\nThe cat, the dog and the bird sleep by the fire.\n",
    "farm.md": b"# Farm\n\nA dog and a bird wait at the gate.\n",
    "sky.md": b"# Sky\n\nA bird flies high over the hills.\n",
}
SEARCH = "zebra cat dog bird"


async def search(client: httpx.AsyncClient, user: SignedIn, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/search", json={"query": SEARCH, "mode": "keyword", **body}, headers=user.headers)


@pytest.fixture
async def user(client: httpx.AsyncClient) -> SignedIn:
    user = await register(client)
    collection_id = await create_collection(client, user, "Animals")
    for name, content in DOCS.items():
        await ingest_document(client, user, collection_id, name, content)
    return user


def predicted(hits: list[dict[str, Any]], candidates: int) -> list[str]:
    """The order the overlap service should give: the top candidates by overlap (ties in first-stage
    order), then the rest unchanged."""
    head = sorted(
        hits[:candidates],
        key=lambda h: -overlap(SEARCH, rerank_text(h["document_title"], h["heading_path"], h["text"])),
    )
    return [h["chunk_id"] for h in head + hits[candidates:]]


async def test_rerank_without_a_configured_reranker_is_422(client: httpx.AsyncClient, user: SignedIn) -> None:
    response = await search(client, user, rerank="configured")

    assert response.status_code == 422, response.text
    assert error_code(response) == "reranker_not_configured"
    plain = await search(client, user, rerank="none")
    assert plain.status_code == 200
    assert plain.json()["reranker"] is None
    assert all("rerank" not in hit["components"] for hit in plain.json()["hits"])


class TestSearchWithHttpReranker:
    CANDIDATES = 3

    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path, rerank_server: RerankService) -> Settings:
        reranker = {"provider": "http", "base_url": rerank_server.url, "candidates": self.CANDIDATES, "batch_size": 2}
        return make_settings(database_url=database_url, data_dir=tmp_path / "data", retrieval={"reranker": reranker})

    async def test_order_follows_the_reranker(
        self, client: httpx.AsyncClient, user: SignedIn, service: RerankService
    ) -> None:
        first_stage = (await search(client, user)).json()["hits"]
        assert len(first_stage) == len(DOCS)

        response = await search(client, user, rerank="http")

        assert response.status_code == 200, response.text
        body = response.json()
        hits = body["hits"]
        assert body["reranker"] == "http:tei"
        assert [h["chunk_id"] for h in hits] == predicted(first_stage, self.CANDIDATES)
        assert [h["chunk_id"] for h in hits] != [h["chunk_id"] for h in first_stage]  # it did reorder
        assert [h["components"]["rerank"]["rank"] for h in hits[: self.CANDIDATES]] == [1, 2, 3]
        rerank_scores = [h["components"]["rerank"]["score"] for h in hits[: self.CANDIDATES]]
        assert rerank_scores == sorted(rerank_scores, reverse=True)
        assert "keyword" in hits[0]["components"]
        assert all("rerank" not in h["components"] for h in hits[self.CANDIDATES :])  # past the candidates
        # The service read title, headings and text of exactly the candidates, two per request.
        sent = service.texts_seen()
        expected = {rerank_text(h["document_title"], h["heading_path"], h["text"]) for h in first_stage[:3]}
        assert sorted(sent) == sorted(expected)
        assert [len(body["texts"]) for _, body, _ in service.requests] in ([2, 1], [1, 2])

    @pytest.mark.parametrize("mode", ["keyword", "hybrid"])
    async def test_pages_rerank_the_same_candidates(
        self, client: httpx.AsyncClient, user: SignedIn, service: RerankService, mode: str
    ) -> None:
        whole = (await search(client, user, mode=mode, rerank="configured", limit=10)).json()
        paged: list[str] = []
        cursor = None
        while True:
            page = (await search(client, user, mode=mode, rerank="configured", limit=1, cursor=cursor)).json()
            paged += [h["chunk_id"] for h in page["hits"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert paged == [h["chunk_id"] for h in whole["hits"]]
        assert len(paged) == len(set(paged))

    async def test_unavailable_service_is_503(
        self, client: httpx.AsyncClient, user: SignedIn, service: RerankService
    ) -> None:
        service.script += [Reply(502), Reply(502)]

        response = await search(client, user, rerank="configured")

        assert response.status_code == 503, response.text
        assert error_code(response) == "provider_unavailable"

    async def test_another_provider_is_422(self, client: httpx.AsyncClient, user: SignedIn) -> None:
        response = await search(client, user, rerank="cross-encoder")

        assert response.status_code == 422, response.text
        assert error_code(response) == "reranker_not_configured"
        assert response.json()["error"]["details"] == {"requested": "cross-encoder", "configured": "http"}


class TestSearchWithCrossEncoder:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        vocabulary = sorted(words(" ".join(content.decode() for content in DOCS.values())))
        model = write_cross_encoder(tmp_path / "ms-tiny", vocabulary)
        reranker = {"provider": "cross-encoder", "model_path": str(model)}
        return make_settings(database_url=database_url, data_dir=tmp_path / "data", retrieval={"reranker": reranker})

    async def test_local_model_reorders_the_hits(self, client: httpx.AsyncClient, user: SignedIn) -> None:
        first_stage = (await search(client, user)).json()["hits"]

        response = await search(client, user, rerank="cross-encoder")

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reranker"] == "cross-encoder:ms-tiny"
        assert [h["chunk_id"] for h in body["hits"]] == predicted(first_stage, 50)
        assert [h["components"]["rerank"]["score"] for h in body["hits"]] == [3.0, 2.0, 1.0, 1.0]
