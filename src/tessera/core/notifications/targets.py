"""Where webhooks may go: http(s) URLs only and, unless `notifications.allow_private_targets`, only
public addresses (SSRF protection: a tenant must not make the server call its own network).

A URL is checked when it is saved (scheme, credentials, literal addresses, `localhost`) and again at
every connection: the transport resolves the host name itself and connects only to an address it
has checked, so a name that resolves elsewhere later (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from tessera.core.notifications.errors import InvalidWebhookUrl
from tessera.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateTargetRefused(Exception):
    """A webhook host resolved to an address that is not public."""


def private_targets_allowed(settings: Settings) -> bool:
    configured = settings.notifications.allow_private_targets
    return configured if configured is not None else settings.environment != "production"


def is_public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # `is_global` leaves out private, loopback, link-local, shared (CGNAT), reserved and unspecified
    # ranges, but counts some multicast as global.
    return address.is_global and not address.is_multicast


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL as given when a webhook may be sent to it; raises `InvalidWebhookUrl` otherwise."""
    if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
        raise InvalidWebhookUrl("The URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidWebhookUrl(f"Not a valid URL: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhookUrl("Webhook URLs must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise InvalidWebhookUrl("The URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("The URL must not carry credentials: verify the signature instead")
    if parts.fragment:
        raise InvalidWebhookUrl("The URL must not have a #fragment")
    if port == 0:
        raise InvalidWebhookUrl("The URL's port must be between 1 and 65535")
    if allow_private:
        return url
    host = host.rstrip(".")  # `localhost.` is `localhost`
    if host == "localhost" or host.endswith(".localhost"):
        raise InvalidWebhookUrl("Webhooks to localhost are not allowed on this server")
    try:
        literal: IpAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not is_public(literal):
        raise InvalidWebhookUrl("Webhooks to private, loopback or reserved addresses are not allowed on this server")
    return url


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses: the host is resolved here and the connection made to the
    checked address (TLS still verifies the certificate against the host name)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await _resolve(host, port)
        except (OSError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        # All of them: a name that also resolves to an internal address is refused outright.
        if not addresses or not all(is_public(ipaddress.ip_address(address.split("%")[0])) for address in addresses):
            raise PrivateTargetRefused(f"{host} resolves to a private, loopback or reserved address")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise PrivateTargetRefused("webhooks are not sent to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def webhook_transport(*, allow_private: bool) -> httpx.AsyncHTTPTransport:
    """No proxies from the environment (the checks apply to the real target), and the guard above
    unless private targets are allowed."""
    transport = httpx.AsyncHTTPTransport(trust_env=False, retries=0)
    if not allow_private:
        # httpx takes no network backend of its own: give it a pool built with the guard.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=_PublicOnlyBackend()
        )
    return transport
