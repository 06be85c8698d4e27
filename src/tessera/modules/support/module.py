"""What the support product adds to the app (when `support` is among the `modules` setting): its
routers, and its say in how chat messages are answered."""

from __future__ import annotations

from fastapi import APIRouter

from tessera.core.chat.policy import ChatPolicy
from tessera.core.product import ProductModule
from tessera.modules.support import personal_data  # noqa: F401 - registers the module's personal data
from tessera.modules.support.analytics_router import analytics_router
from tessera.modules.support.chatbot import SupportChatPolicy
from tessera.modules.support.router import categories_router, faqs_router, support_router
from tessera.modules.support.transfer import MAX_IMPORT_BODY_BYTES
from tessera.modules.support.transfer_router import transfer_router
from tessera.settings import Settings


def api_router() -> APIRouter:
    """Every support route, to mount under `/api/v1`."""
    api = APIRouter()
    api.include_router(categories_router)
    api.include_router(transfer_router)  # before faqs_router, whose `/faqs/{faq_id}` would take `/faqs/export`
    api.include_router(faqs_router)
    api.include_router(support_router)
    api.include_router(analytics_router)
    return api


def chat_policies(settings: Settings) -> list[ChatPolicy]:
    """FAQ first, then the knowledge base, then a hand-off (`chatbot.py`)."""
    return [SupportChatPolicy(settings)]


MODULE = ProductModule(
    name="support",
    api_router=api_router,
    chat_policies=chat_policies,
    body_limits={"/faqs/import": MAX_IMPORT_BODY_BYTES},
)
