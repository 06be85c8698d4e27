"""What the HTTP chat providers share: error mapping and server-sent event lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tessera.core.errors import ProviderRejected, ProviderUnavailable


def unavailable(name: str, error: Exception) -> ProviderUnavailable:
    return ProviderUnavailable(f"{name} did not answer: {type(error).__name__}", details={"provider": name})


def check(name: str, response: httpx.Response) -> None:
    """429 and 5xx are outages (retry may help); other 4xx are rejections of the request."""
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    details = {"provider": name, "status": response.status_code, "body": body}
    if response.status_code == 429 or response.status_code >= 500:
        headers = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers else None
        raise ProviderUnavailable(f"{name} answered {response.status_code}", details=details, headers=headers)
    raise ProviderRejected(f"{name} refused the request ({response.status_code})", details=details)


DONE: Any = object()
"""The last item of `sse_events` when the stream ended with `data: [DONE]`."""


def stream_error(name: str, error: Any) -> ProviderUnavailable | ProviderRejected:
    """An error a server reported inside a started stream (`{"error": {"code", "message"}}`)."""
    code = str(error.get("code") or error.get("type") or "") if isinstance(error, dict) else ""
    message = str(error.get("message") or code) if isinstance(error, dict) else str(error)
    details = {"provider": name, "error": error}
    if any(word in code for word in ("unavailable", "rate", "overloaded", "server", "timeout", "internal")):
        return ProviderUnavailable(f"{name} failed mid-answer: {message}"[:300], details=details)
    return ProviderRejected(f"{name} refused mid-answer: {message}"[:300], details=details)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event name, decoded JSON data) of a server-sent event stream; `data: [DONE]` ends it, as
    the item ("message", `DONE`)."""
    event = "message"
    async for line in response.aiter_lines():
        if not line:
            event = "message"
            continue
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                yield event, DONE
                return
            try:
                yield event, json.loads(data)
            except ValueError as error:
                raise ProviderRejected("The model's stream held data that is not JSON") from error


def json_object(name: str, text: str) -> Any:
    """The JSON a model was asked for, tolerating a fenced code block around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[stripped.find("\n") + 1 :] if "\n" in stripped else stripped
    start, end = stripped.find("{"), stripped.rfind("}")
    try:
        return json.loads(stripped[start : end + 1] if start >= 0 and end > start else stripped)
    except ValueError as error:
        raise ProviderRejected(f"{name} did not answer with JSON", details={"provider": name}) from error
