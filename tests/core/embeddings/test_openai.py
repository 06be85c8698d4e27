"""The OpenAI-compatible embedder against a real HTTP server on 127.0.0.1 that answers canned vectors."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from tessera.core.embeddings.openai import PROBE_TEXT, OpenAIEmbedder
from tessera.core.embeddings.registry import create_embedder
from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.settings import EmbeddingSettings

SERVER_DIMENSION = 12


def canned_vector(text: str, dimension: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [float(b) - 127.5 for b in digest[:dimension]]


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class EmbeddingsServer(ThreadingHTTPServer):
    """Answers `POST /v1/embeddings` in reverse order (with `index`), unless a scripted reply is queued."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.script: list[Reply] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def answer(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self.lock:
            self.requests.append(body)
            self.headers_seen.append(headers)
            if self.script:
                return self.script.pop(0)
        dimension = body.get("dimensions", SERVER_DIMENSION)
        data = [
            {"object": "embedding", "index": i, "embedding": canned_vector(text, dimension)}
            for i, text in enumerate(body["input"])
        ]
        return Reply(200, {"object": "list", "data": data[::-1], "model": body["model"]})


class _Handler(BaseHTTPRequestHandler):
    server: EmbeddingsServer

    def do_POST(self) -> None:
        if self.path != "/v1/embeddings":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        reply = self.server.answer(body, {k.lower(): v for k, v in self.headers.items()})
        time.sleep(reply.delay)
        payload = json.dumps(reply.body if reply.body is not None else {"error": {"message": "scripted"}}).encode()
        try:
            self.send_response(reply.status)
            for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[EmbeddingsServer]:
    httpd = EmbeddingsServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def settings_for(server: EmbeddingsServer, **overrides: Any) -> EmbeddingSettings:
    values: dict[str, Any] = {
        "provider": "openai",
        "base_url": server.base_url,
        "model": "text-embedding-test",
        "api_key": "sk-test-key",
        "batch_size": 2,
        "timeout_seconds": 5,
        "cache_entries": 0,
    } | overrides
    return EmbeddingSettings(**values)


def expected(texts: list[str], dimension: int) -> np.ndarray:
    matrix = np.array([canned_vector(t, dimension) for t in texts], dtype=np.float32)
    return np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True))


async def test_vectors_come_back_in_input_order_and_unit_length(server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(settings_for(server, dimension=16))
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]

    vectors = await embedder.embed(texts)
    await embedder.close()

    np.testing.assert_allclose(vectors, expected(texts, 16), rtol=1e-5, atol=1e-6)
    assert [r["input"] for r in server.requests] == [["alpha", "beta"], ["gamma", "delta"], ["epsilon"]]
    assert all(r["dimensions"] == 16 and r["model"] == "text-embedding-test" for r in server.requests)
    assert server.headers_seen[0]["authorization"] == "Bearer sk-test-key"
    assert embedder.name == "openai:text-embedding-test"


async def test_dimension_is_learnt_by_one_probe_before_the_first_batch(server: EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder(settings_for(server))
    with pytest.raises(RuntimeError, match="ensure_ready"):
        _ = embedder.dimension

    vectors = await embedder.embed(["one"])
    empty = await embedder.embed([])
    await embedder.close()

    assert embedder.dimension == SERVER_DIMENSION
    assert vectors.shape == (1, SERVER_DIMENSION)
    assert empty.shape == (0, SERVER_DIMENSION)
    assert [r["input"] for r in server.requests] == [[PROBE_TEXT], ["one"]]
    assert "dimensions" not in server.requests[0]


async def test_rate_limit_is_retried_after_the_time_the_server_asks(server: EmbeddingsServer) -> None:
    server.script = [Reply(429, headers={"Retry-After": "1"})]
    embedder = OpenAIEmbedder(settings_for(server, dimension=8), backoff_seconds=0.01)

    started = time.monotonic()
    vectors = await embedder.embed(["hello"])
    elapsed = time.monotonic() - started
    await embedder.close()

    assert vectors.shape == (1, 8)
    assert len(server.requests) == 2
    assert elapsed >= 0.95


async def test_server_errors_are_retried_then_reported_unavailable(server: EmbeddingsServer) -> None:
    server.script = [Reply(500), Reply(502), Reply(503)]
    embedder = OpenAIEmbedder(settings_for(server, dimension=8), backoff_seconds=0.01)

    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await embedder.embed(["hello"])
    await embedder.close()

    assert len(server.requests) == 3


async def test_one_server_error_then_success_is_invisible(server: EmbeddingsServer) -> None:
    server.script = [Reply(500)]
    embedder = OpenAIEmbedder(settings_for(server, dimension=8), backoff_seconds=0.01)

    vectors = await embedder.embed(["hello"])
    await embedder.close()

    np.testing.assert_allclose(vectors, expected(["hello"], 8), rtol=1e-5, atol=1e-6)


async def test_bad_request_is_rejected_without_retry(server: EmbeddingsServer) -> None:
    server.script = [Reply(400, {"error": {"message": "input too long"}})]
    embedder = OpenAIEmbedder(settings_for(server, dimension=8), backoff_seconds=0.01)

    with pytest.raises(ProviderRejected, match="HTTP 400"):
        await embedder.embed(["hello"])
    await embedder.close()

    assert len(server.requests) == 1


async def test_answer_with_missing_rows_is_rejected(server: EmbeddingsServer) -> None:
    server.script = [Reply(200, {"data": [{"index": 0, "embedding": [1.0] * 8}]})]
    embedder = OpenAIEmbedder(settings_for(server, dimension=8))

    with pytest.raises(ProviderRejected):
        await embedder.embed(["one", "two"])
    await embedder.close()


async def test_slow_server_times_out_as_unavailable(server: EmbeddingsServer) -> None:
    server.script = [Reply(200, delay=1.0)] * 3
    embedder = OpenAIEmbedder(settings_for(server, dimension=8, timeout_seconds=0.2), backoff_seconds=0.01)

    with pytest.raises(ProviderUnavailable, match="no answer"):
        await embedder.embed(["hello"])
    await embedder.close()

    assert len(server.requests) == 3


async def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there
    settings = EmbeddingSettings(provider="openai", base_url=f"http://127.0.0.1:{port}/v1", model="m", dimension=8)
    embedder = OpenAIEmbedder(settings, backoff_seconds=0.01)

    with pytest.raises(ProviderUnavailable, match="cannot reach"):
        await embedder.embed(["hello"])
    await embedder.close()


def test_openai_without_base_url_or_model_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="BASE_URL"):
        create_embedder(EmbeddingSettings(provider="openai", model="m"))
    with pytest.raises(ValueError, match="MODEL"):
        create_embedder(EmbeddingSettings(provider="openai", base_url="http://127.0.0.1:1/v1"))


async def test_cached_openai_embedder_probes_through_the_cache(server: EmbeddingsServer) -> None:
    embedder = create_embedder(settings_for(server, cache_entries=100))

    first = await embedder.embed(["hello", "world"])
    again = await embedder.embed(["world", "hello"])
    await embedder.close()

    assert embedder.dimension == SERVER_DIMENSION
    np.testing.assert_array_equal(again, first[::-1])
    assert [r["input"] for r in server.requests] == [[PROBE_TEXT], ["hello", "world"]]
