"""Imports every ORM module so `Base.metadata` knows all tables (Alembic, create_all, tests)."""

from tessera.core.assistants import models as assistant_models
from tessera.core.audit import models as audit_models
from tessera.core.auth import models as auth_models
from tessera.core.chat import models as chat_models
from tessera.core.db.base import Base
from tessera.core.documents import models as document_models
from tessera.core.intents import models as intent_models
from tessera.core.moderation import models as moderation_models
from tessera.core.notifications import models as notification_models
from tessera.core.privacy import models as privacy_models
from tessera.core.retrieval import models as retrieval_models
from tessera.core.usage import models as usage_models

__all__ = [
    "Base",
    "assistant_models",
    "audit_models",
    "auth_models",
    "chat_models",
    "document_models",
    "intent_models",
    "moderation_models",
    "notification_models",
    "privacy_models",
    "retrieval_models",
    "usage_models",
]
