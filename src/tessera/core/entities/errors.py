"""Errors of entity extraction."""

from __future__ import annotations

from tessera.core.errors import InvalidInput, PayloadTooLarge


class TextTooLong(PayloadTooLarge):
    """The text is longer than `entities.max_text_chars`."""

    code = "text_too_long"


class EmptyText(InvalidInput):
    """The text is empty or only whitespace."""

    code = "empty_text"


class UnknownEntityType(InvalidInput):
    """`types` names an entity type the extractor does not produce."""

    code = "unknown_entity_type"


class UnsupportedLanguage(InvalidInput):
    """The extractor has no model for this language."""

    code = "unsupported_language"
