"""`AIClientDep`: the process's AI client (built by the lifespan, or on first use in process)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tessera.core.ai.client import AIClient, InProcessAIClient


async def get_ai_client(request: Request) -> AIClient:
    client: AIClient | None = getattr(request.app.state, "ai", None)
    if client is None:
        client = InProcessAIClient(request.app.state.settings)
        request.app.state.ai = client
    return client


AIClientDep = Annotated[AIClient, Depends(get_ai_client)]
