"""Server-sent events for answers: `delta` (verified text), `citations`, `done`, `error`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from tessera.core.errors import AppError
from tessera.core.observability.logging import get_logger

logger = get_logger("tessera.generation")
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n".encode()


def error_event(error: Exception) -> bytes:
    if isinstance(error, AppError):
        return event("error", {"error": {"code": error.code, "message": error.message, "details": error.details}})
    logger.exception("answer stream failed", exc_info=error)
    return event("error", {"error": {"code": "internal_error", "message": "The answer could not be completed"}})


def stream_response(events: AsyncIterator[bytes]) -> StreamingResponse:
    """An SSE response; an error after the stream started becomes an `error` event, not a broken stream."""

    async def guarded() -> AsyncIterator[bytes]:
        try:
            async for chunk in events:
                yield chunk
        except Exception as error:  # the status line is sent: report in-band
            yield error_event(error)

    return StreamingResponse(guarded(), media_type="text/event-stream", headers=HEADERS)
