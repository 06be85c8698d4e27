"""Fetching a document from a URL without becoming an SSRF proxy.

Every hop (the URL and each redirect) is resolved first and refused when any address it resolves
to is private, loopback, link-local, multicast or reserved. The connection then goes to the
address that was checked, not to a second lookup, so a DNS answer that changes in between
(rebinding) cannot redirect it; the host name still travels as `Host` and as the TLS server name,
so virtual hosts and certificate checks work as usual.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from email.message import Message
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx

from tessera.core.documents.errors import FileTooLarge, UrlFetchFailed, UrlNotAllowed
from tessera.core.documents.service import StagedFile, clean_filename, stage_stream
from tessera.core.errors import InvalidInput

MAX_REDIRECTS = 5
USER_AGENT = "Tessera-ingest/1.0 (+https://github.com/tessera)"


def _allowed_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 carried inside IPv6 (mapped ::ffff:a.b.c.d, 6to4 2002:…) is judged as that IPv4.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            ip = embedded
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback)


async def _resolve(host: str, port: int, allow_private: bool) -> str:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UrlFetchFailed(f"Cannot resolve {host!r}: {error.strerror}") from error
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise UrlFetchFailed(f"Cannot resolve {host!r}")
    if not allow_private:
        refused = [a for a in addresses if not _allowed_address(a)]
        if refused:
            raise UrlNotAllowed(
                f"{host!r} resolves to a private, loopback or link-local address; fetching it is not allowed",
                details={"host": host, "addresses": refused[:5]},
            )
    return addresses[0]


def _check_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UrlNotAllowed("Only http and https URLs can be fetched")
    if not parts.hostname:
        raise UrlNotAllowed("The URL has no host")
    if parts.username or parts.password:
        raise UrlNotAllowed("URLs with credentials are not accepted")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, parts.hostname, port


def _filename_from(response: httpx.Response, url: str) -> str:
    disposition = response.headers.get("content-disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name:
            return PurePosixPath(name.replace("\\", "/")).name
    path_name = PurePosixPath(unquote(urlsplit(url).path)).name
    return path_name or urlsplit(url).hostname or "download"


async def fetch_to_staging(
    url: str,
    *,
    staging_dir: Path,
    max_bytes: int,
    timeout: float,
    allow_private: bool,
    filename: str | None = None,
) -> StagedFile:
    """Download `url` into a staged file (hashed, size-capped, type-sniffed)."""
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(url, staging_dir, max_bytes, allow_private, filename, timeout)
    except TimeoutError as error:
        raise UrlFetchFailed(f"Fetching the URL took longer than {timeout:g} seconds") from error


async def _fetch(
    url: str, staging_dir: Path, max_bytes: int, allow_private: bool, filename: str | None, timeout: float
) -> StagedFile:
    current = url
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            scheme, host, port = _check_url(current)
            address = await _resolve(host, port, allow_private)
            parts = urlsplit(current)
            literal = f"[{address}]" if ":" in address else address
            pinned = urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
            named = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets (RFC 9110)
            host_header = named if parts.port is None else f"{named}:{parts.port}"
            request = client.build_request(
                "GET",
                pinned,
                headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*"},
                extensions={"sni_hostname": host} if scheme == "https" else {},
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as error:
                raise UrlFetchFailed(f"Fetching the URL failed: {type(error).__name__}") from error
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise UrlFetchFailed("The server answered a redirect without a Location")
                    current = urljoin(current, location)
                    continue
                if response.status_code >= 400:
                    raise UrlFetchFailed(
                        f"The server answered {response.status_code}", details={"status": response.status_code}
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise FileTooLarge(
                        f"The document is larger than the limit of {max_bytes} bytes",
                        details={"max_bytes": max_bytes, "content_length": int(declared)},
                    )
                name = clean_filename(filename or _sanitize(_filename_from(response, current)), fallback="download")
                return await stage_stream(
                    _reader(response), filename=name, staging_dir=staging_dir, max_bytes=max_bytes, source_url=url
                )
            finally:
                await response.aclose()
    raise UrlFetchFailed(f"More than {MAX_REDIRECTS} redirects")


def _reader(response: httpx.Response) -> Callable[[], Awaitable[bytes]]:
    stream = response.aiter_bytes(1024 * 1024)

    async def next_block() -> bytes:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return b""
        except httpx.HTTPError as error:
            raise UrlFetchFailed(f"Reading the URL failed: {type(error).__name__}") from error

    return next_block


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def _sanitize(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip()[:200]
    if cleaned in ("", ".", ".."):
        raise InvalidInput("Cannot derive a file name from the URL; pass `filename`")
    return cleaned
