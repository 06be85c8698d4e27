"""`ProductModule`: what a product module (`tessera.modules.<name>`) adds to the app. Each module
describes itself with one in its `module.py`; `tessera.products` lists them, and `create_app`
mounts the ones the `modules` setting enables. Core defines the shape and never imports a module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fastapi import APIRouter

from tessera.core.chat.policy import ChatPolicy
from tessera.settings import Settings


def _no_policies(settings: Settings) -> list[ChatPolicy]:
    return []


@dataclass(frozen=True)
class ProductModule:
    name: str
    api_router: Callable[[], APIRouter]
    """Its routes, mounted under `/api/v1`."""
    chat_policies: Callable[[Settings], list[ChatPolicy]] = _no_policies
    """Its say in how chat messages are answered (core/chat/policy.py)."""
    body_limits: Mapping[str, int] = field(default_factory=dict)
    """Request body limits above the server's, by path under `/api/v1` (e.g. an import route)."""
