"""String field types for request bodies. PostgreSQL refuses NUL in text outright (a 500 if it
got that far), and control characters have no place in a title or a tag."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _printable(value: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""Free text (messages, comments): any character but NUL."""
Label = Annotated[str, AfterValidator(_printable)]
"""A title, a tag: no control characters."""
