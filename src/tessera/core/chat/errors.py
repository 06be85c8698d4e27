from __future__ import annotations

from tessera.core.errors import NotFound


class ConversationNotFound(NotFound):
    """The conversation does not exist, or is not yours."""

    code = "conversation_not_found"


class MessageNotFound(NotFound):
    """The message does not exist in this conversation."""

    code = "message_not_found"
