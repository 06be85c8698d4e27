"""`POST /documents/from-url` against a real HTTP server on 127.0.0.1, and the SSRF address check.

Loopback is exactly what the default settings refuse, so the fetching tests turn on
`documents.allow_private_urls`; the refusal tests check the server never saw a request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.core.documents.fetch import _allowed_address
from tessera.core.documents.pipeline import process_inline
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, error_code, register

NOTES = (
    "Field notes on the analytical engine.\n\n"
    "The mill performs the arithmetic while the store holds the numbers waiting to be used. "
    "Cards punched with operations drive the mill, and cards punched with variables say where "
    "each number comes from and where each result goes.\n\n"
    "Ada Lovelace described how the engine could compute Bernoulli numbers, step by step.\n"
)
REPORT = "# Quarterly report\n\nRevenue grew in every region except the north, where it held steady.\n"
LIMIT = 4096  # documents.max_file_bytes while the server is reachable


@dataclass
class Origin:
    """The test server: its base URL and the paths it was asked for."""

    base: str
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        with contextlib.suppress(OSError):  # the client gave up (a timeout test): nothing to answer
            self._route(base)

    def _route(self, base: str) -> None:
        path = self.path
        if path == "/files/notes.txt":
            self._send(200, NOTES.encode(), Content_Type="text/plain; charset=utf-8")
        elif path.startswith("/hop/"):
            left = int(path.removeprefix("/hop/"))
            target = f"/hop/{left - 1}" if left > 1 else f"{base}/final/report.md"
            self._send(302 if left % 2 else 301, Location=target)
        elif path == "/final/report.md":
            self._send(200, REPORT.encode(), Content_Type="text/markdown")
        elif path == "/loop":
            self._send(302, Location="/loop")
        elif path == "/to-file":
            self._send(302, Location="file:///etc/passwd")
        elif path == "/to-credentials":
            self._send(307, Location=f"http://user:secret@127.0.0.1:{self.server.server_address[1]}/files/notes.txt")
        elif path == "/no-location":
            self._send(302)
        elif path == "/huge":
            self._send(200, Content_Type="text/plain", Content_Length=str(50 * 1024**3))
        elif path == "/unannounced-big":
            # No Content-Length: the size is only known while reading, and the limit must still hold.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(4):
                self.wfile.write(b"x" * 1024 + b"\n")
        elif path == "/named":
            self._send(
                200,
                NOTES.encode(),
                Content_Type="text/plain",
                Content_Disposition='attachment; filename="../../etc/Engine notes.txt"',
            )
        elif path == "/echo-host":
            self._send(200, f"Host header: {self.headers['Host']}\n".encode(), Content_Type="text/plain")
        elif path == "/empty":
            self._send(200, Content_Type="text/plain")
        elif path == "/binary":
            self._send(200, bytes(range(256)) * 4, Content_Type="application/octet-stream")
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(NOTES)))
            self.end_headers()
            self.wfile.write(NOTES[:10].encode())
            self.wfile.flush()
            self.server.stopping.wait(10)
            self.wfile.write(NOTES[10:].encode())
        else:
            self._send(404, b"not here", Content_Type="text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []
        self.stopping = threading.Event()


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.server_address = ("::1", 0)
        super().server_bind()


@contextlib.contextmanager
def serving(server: _Server, base: str) -> Iterator[Origin]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    found = Origin(base)
    found.hits = server.hits
    try:
        yield found
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = _Server()
    with serving(server, f"http://127.0.0.1:{server.server_address[1]}") as found:
        yield found


def reaching_private(database_url: str, tmp_path: Path, **documents: Any) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        documents={"allow_private_urls": True, "max_file_bytes": LIMIT, **documents},
    )


async def new_collection(client: httpx.AsyncClient, user: SignedIn, name: str = "Web") -> str:
    response = await client.post("/api/v1/collections", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    collection_id: str = response.json()["id"]
    return collection_id


async def from_url(client: httpx.AsyncClient, user: SignedIn, collection_id: str, url: str, **extra: Any) -> Any:
    return await client.post(
        "/api/v1/documents/from-url", json={"url": url, "collection_id": collection_id, **extra}, headers=user.headers
    )


def staged_leftovers(settings: Settings) -> list[Path]:
    staging = settings.data_dir / "tmp"
    return sorted(staging.iterdir()) if staging.exists() else []


class TestDefaultSettingsRefusePrivateTargets:
    @pytest.mark.parametrize(
        "target",
        [
            "http://127.0.0.1:{port}/files/notes.txt",
            "http://localhost:{port}/files/notes.txt",
            "http://10.0.0.1/files/notes.txt",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:{port}/files/notes.txt",
            "http://user:secret@127.0.0.1:{port}/files/notes.txt",
        ],
    )
    async def test_refused_without_a_request_leaving(
        self, client: httpx.AsyncClient, origin: Origin, target: str
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)
        port = origin.base.rsplit(":", 1)[1]

        response = await from_url(client, user, collection_id, target.format(port=port))

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_not_allowed"
        assert origin.hits == []
        listed = await client.get("/api/v1/documents", headers=user.headers)
        assert listed.json()["items"] == []

    async def test_refusal_names_the_host_and_the_addresses(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/files/notes.txt"))

        error = response.json()["error"]
        assert error["details"] == {"host": "127.0.0.1", "addresses": ["127.0.0.1"]}
        assert "private, loopback or link-local" in error["message"]

    @pytest.mark.parametrize("target", ["ftp://127.0.0.1/notes.txt", "file:///etc/passwd"])
    async def test_other_schemes_are_refused(self, client: httpx.AsyncClient, target: str) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, target)

        # The request model (HttpUrl) already turns these away, before the fetcher's own scheme check.
        assert response.status_code == 422, response.text
        assert error_code(response) == "validation_error"
        assert response.json()["error"]["message"].startswith("url:")


class TestFetching:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return reaching_private(database_url, tmp_path)

    async def test_unknown_collection_is_404_before_any_fetch(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)

        response = await from_url(client, user, str(uuid.uuid4()), origin.url("/files/notes.txt"))

        assert response.status_code == 404, response.text
        assert error_code(response) == "collection_not_found"
        assert origin.hits == []

    async def test_invalid_metadata_is_refused_before_any_fetch(
        self, client: httpx.AsyncClient, origin: Origin
    ) -> None:
        user = await register(client)
        created = await client.post(
            "/api/v1/collections",
            json={"name": "Typed", "metadata_schema": {"year": {"type": "integer", "required": True}}},
            headers=user.headers,
        )
        assert created.status_code == 201, created.text

        response = await from_url(
            client, user, created.json()["id"], origin.url("/files/notes.txt"), metadata={"year": "soon"}
        )

        assert response.status_code == 422, response.text
        assert error_code(response) == "invalid_metadata"
        assert origin.hits == []

    async def test_text_file_is_stored_and_processed(
        self, client: httpx.AsyncClient, origin: Origin, settings: Settings
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)
        url = origin.url("/files/notes.txt")

        response = await from_url(client, user, collection_id, url, metadata={"source": "web"})

        assert response.status_code == 202, response.text
        [item] = response.json()["documents"]
        assert response.headers["location"] == item["status_url"] == f"/api/v1/documents/{item['id']}"
        assert item["source_url"] == url
        assert item["filename"] == "notes.txt"
        assert item["doc_type"] == "text"
        assert item["size_bytes"] == len(NOTES.encode())
        assert item["status"] == "queued"
        assert item["duplicate"] is False
        assert item["metadata"] == {"source": "web"}
        assert origin.hits == ["/files/notes.txt"]
        assert staged_leftovers(settings) == []

        assert await process_inline(uuid.UUID(item["id"]), 1) == "ready"

        document = (await client.get(f"/api/v1/documents/{item['id']}", headers=user.headers)).json()
        assert document["status"] == "ready"
        assert document["source_url"] == url
        assert document["chunk_count"] >= 1
        text = await client.get(f"/api/v1/documents/{item['id']}/text", headers=user.headers)
        assert "Bernoulli numbers" in text.text
        original = await client.get(f"/api/v1/documents/{item['id']}/file", headers=user.headers)
        assert original.content == NOTES.encode()

    async def test_same_content_again_is_the_existing_document(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)
        first = await from_url(client, user, collection_id, origin.url("/files/notes.txt"))

        again = await from_url(client, user, collection_id, origin.url("/named"))

        assert again.status_code == 202, again.text
        [item] = again.json()["documents"]
        assert item["duplicate"] is True
        assert item["id"] == first.json()["documents"][0]["id"]

    async def test_redirects_are_followed_and_the_name_comes_from_the_last_hop(
        self, client: httpx.AsyncClient, origin: Origin
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)
        url = origin.url("/hop/3")

        response = await from_url(client, user, collection_id, url)

        assert response.status_code == 202, response.text
        [item] = response.json()["documents"]
        assert origin.hits == ["/hop/3", "/hop/2", "/hop/1", "/final/report.md"]
        assert item["filename"] == "report.md"
        assert item["doc_type"] == "markdown"
        assert item["source_url"] == url
        assert await process_inline(uuid.UUID(item["id"]), 1) == "ready"
        text = await client.get(f"/api/v1/documents/{item['id']}/text", headers=user.headers)
        assert "Revenue grew in every region" in text.text

    async def test_content_disposition_names_the_file_without_its_path(
        self, client: httpx.AsyncClient, origin: Origin
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/named"))

        assert response.status_code == 202, response.text
        assert response.json()["documents"][0]["filename"] == "Engine notes.txt"

    async def test_explicit_filename_wins(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/named"), filename="engine.md")

        assert response.status_code == 202, response.text
        assert response.json()["documents"][0]["filename"] == "engine.md"

    async def test_too_many_redirects_fail(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/loop"))

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_fetch_failed"
        assert "redirects" in response.json()["error"]["message"]
        assert len(origin.hits) == 6  # the URL and five redirects, then it gives up

    @pytest.mark.parametrize("path", ["/to-file", "/to-credentials"])
    async def test_each_redirect_is_checked_again(self, client: httpx.AsyncClient, origin: Origin, path: str) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url(path))

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_not_allowed"
        assert origin.hits == [path]

    async def test_redirect_without_location_fails(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/no-location"))

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_fetch_failed"

    async def test_declared_size_over_the_limit_is_413(
        self, client: httpx.AsyncClient, origin: Origin, settings: Settings
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/huge"))

        assert response.status_code == 413, response.text
        assert error_code(response) == "file_too_large"
        assert response.json()["error"]["details"] == {"max_bytes": LIMIT, "content_length": 50 * 1024**3}
        assert staged_leftovers(settings) == []

    async def test_undeclared_size_over_the_limit_is_413(
        self, client: httpx.AsyncClient, origin: Origin, settings: Settings
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/unannounced-big"))

        assert response.status_code == 413, response.text
        assert error_code(response) == "file_too_large"
        assert staged_leftovers(settings) == []
        listed = await client.get("/api/v1/documents", headers=user.headers)
        assert listed.json()["items"] == []

    async def test_upstream_404_fails_the_fetch(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/gone.txt"))

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_fetch_failed"
        assert response.json()["error"]["details"] == {"status": 404}

    async def test_closed_port_fails_the_fetch(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)
        closed = _Server()  # bound, then closed: nothing listens on its port any more
        port = closed.server_address[1]
        closed.server_close()

        response = await from_url(client, user, collection_id, f"http://127.0.0.1:{port}/notes.txt")

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_fetch_failed"

    @pytest.mark.parametrize(("path", "status", "code"), [("/empty", 422, "empty_file"), ("/binary", 415, None)])
    async def test_unusable_content_is_refused_like_an_upload(
        self, client: httpx.AsyncClient, origin: Origin, path: str, status: int, code: str | None
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url(path))

        assert response.status_code == status, response.text
        assert error_code(response) == (code or "unsupported_document_type")

    async def test_host_header_names_the_host_of_the_url(self, client: httpx.AsyncClient, origin: Origin) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        response = await from_url(client, user, collection_id, origin.url("/echo-host"))

        assert response.status_code == 202, response.text
        fetched = await client.get(
            f"/api/v1/documents/{response.json()['documents'][0]['id']}/file", headers=user.headers
        )
        assert fetched.text == f"Host header: {origin.base.removeprefix('http://')}\n"

    async def test_ipv6_literal_keeps_its_brackets_in_the_host_header(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)
        try:
            server = _Server6()
        except OSError:  # pragma: no cover - depends on the machine
            pytest.skip("no IPv6 loopback here")
        with serving(server, f"http://[::1]:{server.server_address[1]}") as origin6:
            response = await from_url(client, user, collection_id, origin6.url("/echo-host"))

        assert response.status_code == 202, response.text
        fetched = await client.get(
            f"/api/v1/documents/{response.json()['documents'][0]['id']}/file", headers=user.headers
        )
        assert fetched.text == f"Host header: {origin6.base.removeprefix('http://')}\n"


class TestTimeout:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return reaching_private(database_url, tmp_path, url_timeout_seconds=0.5)

    async def test_slow_server_fails_within_the_timeout(
        self, client: httpx.AsyncClient, origin: Origin, settings: Settings
    ) -> None:
        user = await register(client)
        collection_id = await new_collection(client, user)

        started = time.monotonic()
        response = await from_url(client, user, collection_id, origin.url("/slow"))
        elapsed = time.monotonic() - started

        assert response.status_code == 422, response.text
        assert error_code(response) == "url_fetch_failed"
        assert "0.5 seconds" in response.json()["error"]["message"]
        assert elapsed < 3
        assert staged_leftovers(settings) == []


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # cloud metadata
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("192.0.2.10", False),  # documentation range
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("::ffff:8.8.8.8", True),
        ("::ffff:0:7f00:1", False),  # IPv4-translated 127.0.0.1
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated) 127.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ],
)
def test_allowed_address(address: str, allowed: bool) -> None:
    assert _allowed_address(address) is allowed
