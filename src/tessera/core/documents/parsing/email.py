"""E-mail (.eml, RFC 5322/MIME) parser on the standard library's `email` package.

The first block is the header summary ("From: … / To: … / Date: … / Subject: …"), so a chunk
citing it says who wrote what when. The body is the text/plain part, else the text/html part
converted to blocks. Every other part with a file name, and every attached message, becomes an
`Attachment` that the pipeline turns into a child document.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

from tessera.core.documents.parsing.base import (
    Attachment,
    Block,
    CorruptDocument,
    ParsedDocument,
    ParseLimits,
)
from tessera.core.documents.parsing.epub import markup_blocks, parse_html

SUMMARY_HEADERS = ("From", "To", "Cc", "Date", "Subject")
MAX_FILENAME_BYTES = 255
_UNSAFE_FILENAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, bidi overrides, stray surrogates
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_QUOTE_MARK = re.compile(r"^>+ ?")


class EmailParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        message = BytesParser(policy=policy.default).parsebytes(data)
        headers = {name: value for name in SUMMARY_HEADERS if (value := _header(message, name))}
        metadata: dict[str, Any] = {name.lower(): value for name, value in headers.items()}
        if "Date" in headers:
            with contextlib.suppress(TypeError, ValueError):  # unparseable: keep the header as written
                metadata["date"] = parsedate_to_datetime(headers["Date"]).isoformat()
        message_id = _header(message, "Message-ID")
        if message_id:
            metadata["message_id"] = message_id

        blocks: list[Block] = []
        if headers:
            blocks.append(Block("paragraph", "\n".join(f"{name}: {value}" for name, value in headers.items())))
        warnings: list[str] = []
        body = message.get_body(preferencelist=("plain", "html"))
        if body is not None:
            text = _part_text(body)
            if len(text) > limits.max_text_chars:
                text = text[: limits.max_text_chars]
                warnings.append(f"body longer than {limits.max_text_chars} characters was cut")
            if body.get_content_subtype() == "html":
                root = parse_html(text.encode("utf-8"), encoding="utf-8")
                blocks.extend(markup_blocks(root) if root is not None else [])
            else:
                blocks.extend(_plain_blocks(text))

        parts: list[MIMEPart] = []
        _collect_attachments(message, body, parts, is_root=True)
        attachments: list[Attachment] = []
        for index, part in enumerate(parts[: limits.max_attachments], start=1):
            attachment = _attachment(part, index)
            if attachment is None:
                warnings.append(f"attachment {index} could not be read and was skipped")
            else:
                attachments.append(attachment)
        if len(parts) > limits.max_attachments:
            skipped = len(parts) - limits.max_attachments
            warnings.append(f"{skipped} attachments beyond the limit of {limits.max_attachments} were skipped")

        if not headers and not blocks and not attachments:
            raise CorruptDocument("no e-mail headers, body or attachments found")
        return ParsedDocument(
            blocks=blocks,
            title=headers.get("Subject"),
            metadata=metadata,
            attachments=attachments,
            warnings=warnings,
        )


def _header(message: EmailMessage, name: str) -> str | None:
    """A header's decoded value; malformed headers fall back to their raw text rather than failing the mail."""
    try:
        value = message[name]
        text = str(value) if value is not None else ""
    except Exception:  # the header registry raises assorted errors on malformed input
        raw = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
        try:
            text = str(make_header(decode_header(str(raw))))
        except Exception:
            text = str(raw)
    text = " ".join(text.split())
    return text or None


def _part_text(part: MIMEPart) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, ValueError, AssertionError):
        pass  # an unknown or lying charset: decode the bytes ourselves
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    from charset_normalizer import from_bytes

    best = from_bytes(payload).best()
    return str(best) if best is not None else payload.decode("utf-8", errors="replace")


def _plain_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [line.rstrip() for line in paragraph.strip("\n").split("\n")]
        if not any(line.strip() for line in lines):
            continue
        if all(line.startswith(">") for line in lines if line.strip()):
            blocks.append(Block("quote", "\n".join(_QUOTE_MARK.sub("", line) for line in lines)))
        else:
            blocks.append(Block("paragraph", "\n".join(lines)))
    return blocks


def _collect_attachments(
    part: MIMEPart, body: MIMEPart | None, found: list[MIMEPart], *, is_root: bool = False
) -> None:
    if part is body:
        return
    if part.get_content_type() == "message/rfc822" and not is_root:
        found.append(part)  # an attached e-mail is one child document, not a source of more attachments
        return
    if part.is_multipart():
        for child in part.iter_parts():
            _collect_attachments(child, body, found)
        return
    try:
        filename = part.get_filename()
    except Exception:  # a malformed RFC 2231 parameter
        filename = None
    if filename or part.get_content_disposition() == "attachment":
        found.append(part)


def _attachment(part: MIMEPart, index: int) -> Attachment | None:
    content_type = part.get_content_type()
    try:
        filename = part.get_filename()
    except Exception:
        filename = None
    try:
        if content_type == "message/rfc822":
            inner = part.get_content()
            data = inner.as_bytes() if isinstance(inner, MIMEPart) else b""
            filename = filename or f"attachment-{index}.eml"
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
    except Exception:  # undecodable transfer encoding or an unserialisable inner message
        return None
    return Attachment(filename=sanitize_filename(filename, index), data=data, content_type=content_type)


def sanitize_filename(name: str | None, index: int) -> str:
    """A file name safe to store and show: base name only, no control, bidi or replacement characters,
    at most 255 bytes of UTF-8; `attachment-<index>` when nothing is left."""
    cleaned = "".join(
        ch
        for ch in unicodedata.normalize("NFC", name or "")
        if unicodedata.category(ch) not in _UNSAFE_FILENAME_CATEGORIES and ch != "\ufffd"  # undecodable bytes
    )
    cleaned = cleaned.replace("\\", "/").rsplit("/", 1)[-1].strip(" .")
    if len(cleaned.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, extension = cleaned.rpartition(".")
        if not dot or len(extension) > 16:
            stem, extension = cleaned, ""
        suffix = f".{extension}" if extension else ""
        budget = MAX_FILENAME_BYTES - len(suffix.encode("utf-8"))
        cleaned = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip(" .") + suffix
    return cleaned or f"attachment-{index}"
