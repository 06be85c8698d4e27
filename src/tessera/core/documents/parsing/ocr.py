"""OCR through the system Tesseract (Debian `tesseract-ocr`), driven by pytesseract.

Tesseract is a system package, not a Python dependency: where it is missing, parsers record the
pages as `needs_ocr_pages` with `OCR_UNAVAILABLE_REASON` instead of failing the document.
"""

from __future__ import annotations

import functools
import os
import re

from PIL import Image

from tessera.core.documents.parsing.base import Block

# Tesseract's OpenMP threads fight over the same cores as our worker threads; one thread per
# page measured fastest overall (STACK.md: 1.4 s a page). Set before pytesseract spawns anything,
# and only as a default so an operator can still override it.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import pytesseract  # type: ignore[import-untyped]  # after the env default above

OCR_UNAVAILABLE_REASON = "OCR is not available on this server (Tesseract is not installed)"


class OcrError(Exception):
    """OCR of one image failed (timeout, missing language data, Tesseract crash)."""


class OcrUnavailable(OcrError):
    def __init__(self, reason: str = OCR_UNAVAILABLE_REASON) -> None:
        super().__init__(reason)


@functools.cache
def tesseract_available() -> bool:
    try:
        pytesseract.get_tesseract_version()
    except (pytesseract.TesseractNotFoundError, OSError, RuntimeError, ValueError):
        return False
    return True


def ocr_image(image: Image.Image, languages: str, timeout: float) -> str:
    """Recognise the text of one page image.

    Args:
        image: the page; converted to 8-bit grey when it is in a mode Tesseract handles badly.
        languages: Tesseract language codes joined with "+", e.g. "eng+deu".
        timeout: seconds before the Tesseract process is killed.

    Raises:
        OcrUnavailable: Tesseract is not installed.
        OcrError: Tesseract failed or timed out.
    """
    if not tesseract_available():
        raise OcrUnavailable
    if image.mode not in ("L", "RGB"):
        image = image.convert("L")
    try:
        text: str = pytesseract.image_to_string(image, lang=languages, timeout=timeout)
    except (RuntimeError, OSError) as error:  # TesseractError and pytesseract's timeout are RuntimeErrors
        raise OcrError(f"OCR failed: {error}") from error
    return text


_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_HYPHEN_BREAK = re.compile(r"(?<=[^\W\d_])[-\u00ad]\n(?=[a-z])")


def ocr_text_to_blocks(text: str, page: int) -> list[Block]:
    """Tesseract separates paragraphs with blank lines and keeps the page's line breaks:
    rejoin wrapped lines (and words hyphenated across them) so paragraphs read as prose."""
    blocks: list[Block] = []
    for raw in _BLANK_LINES.split(text.replace("\f", "\n\n")):
        paragraph = _HYPHEN_BREAK.sub("", raw.strip())
        paragraph = " ".join(line.strip() for line in paragraph.split("\n") if line.strip())
        if paragraph:
            blocks.append(Block("paragraph", paragraph, page=page))
    return blocks
