from __future__ import annotations

from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from tessera.core.documents.parsing.base import CorruptDocument, ParseLimits
from tessera.core.documents.parsing.email import EmailParser, sanitize_filename
from tessera.core.documents.parsing.registry import parse

LIMITS = ParseLimits()


def make_message(subject: str = "Quarterly numbers") -> EmailMessage:
    message = EmailMessage(policy=default_policy)
    message["From"] = "Ada Lovelace <ada@example.com>"
    message["To"] = "Charles Babbage <charles@example.com>, team@example.com"
    message["Cc"] = "Grace <grace@example.com>"
    message["Date"] = "Tue, 05 Mar 2024 10:15:00 +0100"
    message["Subject"] = subject
    message["Message-ID"] = "<abc@example.com>"
    return message


def test_plain_mail_has_a_header_block_then_body_paragraphs_and_quotes() -> None:
    message = make_message()
    message.set_content("Hello Charles,\n\nthe numbers are in.\nSee below.\n\n> Did they grow?\n> Tell me.\n")
    parsed = parse("eml", message.as_bytes(), LIMITS)
    assert [(b.kind, b.text) for b in parsed.blocks] == [
        (
            "paragraph",
            "From: Ada Lovelace <ada@example.com>\n"
            "To: Charles Babbage <charles@example.com>, team@example.com\n"
            "Cc: Grace <grace@example.com>\n"
            "Date: Tue, 05 Mar 2024 10:15:00 +0100\n"
            "Subject: Quarterly numbers",
        ),
        ("paragraph", "Hello Charles,"),
        ("paragraph", "the numbers are in.\nSee below."),
        ("quote", "Did they grow?\nTell me."),
    ]
    assert parsed.title == "Quarterly numbers"
    assert parsed.metadata["from"] == "Ada Lovelace <ada@example.com>"
    assert parsed.metadata["date"] == "2024-03-05T10:15:00+01:00"
    assert parsed.metadata["message_id"] == "<abc@example.com>"
    assert parsed.attachments == []


def test_plain_text_is_preferred_over_html() -> None:
    message = make_message()
    message.set_content("plain version")
    message.add_alternative("<p>html version</p>", subtype="html")
    parsed = EmailParser().parse(message.as_bytes(), LIMITS)
    assert [b.text for b in parsed.blocks[1:]] == ["plain version"]
    assert parsed.attachments == []


def test_html_only_mail_is_converted_to_text_without_scripts() -> None:
    message = make_message()
    message.set_content(
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><h1>Report</h1><p>Sales <b>grew</b> by&nbsp;5%.</p><ul><li>North</li><li>South</li></ul></body></html>",
        subtype="html",
    )
    parsed = EmailParser().parse(message.as_bytes(), LIMITS)
    assert [(b.kind, b.text) for b in parsed.blocks[1:]] == [
        ("heading", "Report"),
        ("paragraph", "Sales grew by 5%."),
        ("list", "- North\n- South"),
    ]
    assert "alert" not in "".join(b.text for b in parsed.blocks)


def test_encoded_headers_and_a_latin1_body_are_decoded() -> None:
    raw = (
        b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.com>\r\n"
        b"Subject: =?iso-8859-1?q?Caf=E9_menu?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Cr\xe8me br\xfbl\xe9e\r\n"
    )
    parsed = EmailParser().parse(raw, LIMITS)
    assert parsed.title == "Café menu"
    assert parsed.metadata["from"] == "Renée <renee@example.com>"
    assert parsed.blocks[-1].text == "Crème brûlée"


def test_unknown_charset_falls_back_to_detection() -> None:
    raw = b"Subject: x\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\nplain ascii words\r\n"
    parsed = EmailParser().parse(raw, LIMITS)
    assert parsed.blocks[-1].text == "plain ascii words"


def test_attachments_become_child_documents_with_safe_names() -> None:
    message = make_message()
    message.set_content("See attached.")
    message.add_attachment(b"%PDF-1.7 fake", maintype="application", subtype="pdf", filename="report.pdf")
    message.add_attachment(b"root:x:0:0", maintype="text", subtype="plain", filename="../../etc/passwd")
    message.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="evil\x07\u202egpj.exe")
    message.add_attachment(b"nameless", maintype="application", subtype="octet-stream")
    inner = make_message("Forwarded")
    inner.set_content("inner body")
    message.add_attachment(inner)
    parsed = EmailParser().parse(message.as_bytes(), LIMITS)
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [
        ("report.pdf", "application/pdf"),
        ("passwd", "text/plain"),
        ("evilgpj.exe", "application/octet-stream"),
        ("attachment-4", "application/octet-stream"),
        ("attachment-5.eml", "message/rfc822"),
    ]
    assert parsed.attachments[0].data == b"%PDF-1.7 fake"
    assert parsed.attachments[1].data == b"root:x:0:0"
    assert b"inner body" in parsed.attachments[4].data
    assert [b.text for b in parsed.blocks[1:]] == ["See attached."]


def test_a_single_part_attachment_is_not_taken_for_the_body() -> None:
    raw = (
        b"Subject: scan\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        b"JVBERi0xLjc=\r\n"
    )
    parsed = EmailParser().parse(raw, LIMITS)
    assert [(b.kind, b.text) for b in parsed.blocks] == [("paragraph", "Subject: scan")]
    assert [(a.filename, a.data) for a in parsed.attachments] == [("scan.pdf", b"%PDF-1.7")]


def test_attachments_beyond_the_limit_are_dropped_with_a_warning() -> None:
    message = make_message()
    message.set_content("Many files.")
    for index in range(5):
        message.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"f{index}.bin")
    parsed = EmailParser().parse(message.as_bytes(), ParseLimits(max_attachments=2))
    assert [a.filename for a in parsed.attachments] == ["f0.bin", "f1.bin"]
    assert parsed.warnings == ["3 attachments beyond the limit of 2 were skipped"]


def test_empty_input_is_corrupt() -> None:
    with pytest.raises(CorruptDocument):
        EmailParser().parse(b"", LIMITS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\report.docx", "report.docx"),
        ("a\x00b\x1fc\r\n.txt", "abc.txt"),
        ("..", "attachment-7"),
        ("", "attachment-7"),
        (None, "attachment-7"),
        ("   ", "attachment-7"),
    ],
)
def test_sanitize_filename(name: str | None, expected: str) -> None:
    assert sanitize_filename(name, 7) == expected


def test_sanitize_filename_caps_length_keeping_the_extension() -> None:
    cleaned = sanitize_filename("é" * 300 + ".pdf", 1)
    assert len(cleaned.encode("utf-8")) <= 255
    assert cleaned.endswith(".pdf")
    assert cleaned.startswith("é")
