"""PNG, JPEG and TIFF: the text of an image is whatever OCR finds; each TIFF frame is a page."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

from PIL import Image, UnidentifiedImageError

from tessera.core.documents.parsing import ocr
from tessera.core.documents.parsing.base import (
    Block,
    CorruptDocument,
    ParsedDocument,
    ParseLimits,
    UnsafeDocument,
)

# What Pillow raises for a damaged file varies by codec.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


class ImageParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        """Pillow's own bomb check (`Image.MAX_IMAGE_PIXELS`, process-wide) runs with its warning
        turned into an error; `limits.max_image_pixels` is then checked on every frame, which
        Pillow does not do for the frames after the first. The stricter of the two applies."""
        with warnings.catch_warnings():
            # catch_warnings is process-wide, not per thread: at worst a concurrent parse leaves this
            # one filter in place, which only makes the bomb warning an error elsewhere too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                return self._parse(data, limits)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
                raise UnsafeDocument(f"the image is too large to process safely: {error}") from error

    def _parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        try:
            with Image.open(io.BytesIO(data)) as probe:
                probe.verify()  # checks structure and checksums without decoding pixels
        except UnidentifiedImageError as error:
            raise CorruptDocument("the file is not a readable image") from error
        except _DECODE_ERRORS as error:
            raise CorruptDocument(f"the image is damaged: {error}") from error

        can_ocr = limits.ocr and ocr.tesseract_available()
        blocks: list[Block] = []
        needs_ocr: list[int] = []
        ocr_pages: list[int] = []
        notes: list[str] = []
        try:
            with Image.open(io.BytesIO(data)) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > limits.max_pages:
                    raise UnsafeDocument(f"the image has {frames:,} frames; the limit is {limits.max_pages:,}")
                metadata = {"format": image.format, "width": image.width, "height": image.height, "frames": frames}
                for index in range(frames):
                    image.seek(index)
                    pixels = image.width * image.height
                    if pixels > limits.max_image_pixels:
                        raise UnsafeDocument(
                            f"frame {index + 1} has {pixels:,} pixels; the limit is {limits.max_image_pixels:,}"
                        )
                    page = index + 1
                    if not can_ocr:
                        needs_ocr.append(page)
                        continue
                    image.load()  # decode now, so a truncated file fails here as corrupt
                    try:
                        text = ocr.ocr_image(image.copy(), limits.ocr_languages, limits.ocr_timeout_seconds)
                    except ocr.OcrError as error:
                        notes.append(f"page {page}: {error}")
                        needs_ocr.append(page)
                        continue
                    blocks.extend(ocr.ocr_text_to_blocks(text, page))
                    ocr_pages.append(page)
        except _DECODE_ERRORS as error:
            raise CorruptDocument(f"the image is damaged: {error}") from error
        if needs_ocr and not can_ocr:
            notes.append(ocr.OCR_UNAVAILABLE_REASON if limits.ocr else "OCR is disabled")
        return ParsedDocument(
            blocks=blocks,
            page_count=frames,
            metadata=metadata,
            needs_ocr_pages=needs_ocr,
            ocr_pages=ocr_pages,
            warnings=notes,
        )
