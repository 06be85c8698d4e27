"""FAQ import and export over HTTP: CSV and JSON, dry runs, row problems, upsert and create modes,
limits, unreadable files, permissions, a round trip between two organizations, isolation and the
CSV injection guard."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, add_member, error_code, register

MAX_ROWS = 25
HEADER = "question,answer,keywords,category,status,priority,language,slug,seo_title,seo_description,phrasings\r\n"
CARD_ROW = (
    '"When will my new card arrive?","Cards are posted within 2 working days.",delivery;card,Cards & PINs,'
    'published,10,en,card-delivery,Card delivery,,"Where is my card?|Card not here yet"\r\n'
)
PIN_ROW = '"How do I reset my PIN?","Open the app and choose Reset PIN.",pin,cards-pins,draft,,,,,,\r\n'
# The fields an import carries over: what a round trip must keep.
CARRIED = (
    "question", "answer", "keywords", "category", "category_name", "status", "priority", "language", "slug",
    "seo_title", "seo_description", "phrasings",
)  # fmt: skip


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        privacy={"detector": "fake"},
        support={"max_import_rows": MAX_ROWS},
    )


async def upload(
    client: httpx.AsyncClient,
    user: SignedIn,
    content: bytes | str,
    *,
    name: str = "faqs.csv",
    content_type: str | None = "text/csv",
    **params: Any,
) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    file = (name, data, content_type) if content_type else (name, data)
    return await client.post(
        "/api/v1/faqs/import", files={"file": file}, params={k: str(v).lower() for k, v in params.items()},
        headers=user.headers,
    )  # fmt: skip


async def import_ok(client: httpx.AsyncClient, user: SignedIn, content: bytes | str, **kwargs: Any) -> dict[str, Any]:
    response = await upload(client, user, content, **kwargs)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def faqs_of(client: httpx.AsyncClient, user: SignedIn) -> dict[str, dict[str, Any]]:
    """Every FAQ the user manages, by slug."""
    listed = await client.get("/api/v1/faqs", params={"limit": 100}, headers=user.headers)
    assert listed.status_code == 200, listed.text
    return {faq["slug"]: faq for faq in listed.json()["items"]}


async def categories_of(client: httpx.AsyncClient, user: SignedIn) -> dict[str, dict[str, Any]]:
    listed = await client.get("/api/v1/faq-categories", headers=user.headers)
    return {category["slug"]: category for category in listed.json()["items"]}


async def export(client: httpx.AsyncClient, user: SignedIn, **params: str) -> httpx.Response:
    response = await client.get("/api/v1/faqs/export", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return response


def csv_rows(response: httpx.Response) -> list[dict[str, str]]:
    assert response.content.startswith(b"\xef\xbb\xbf")  # the byte-order mark Excel needs
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


async def test_csv_import_creates_faqs_with_categories_and_phrasings(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    content = "\ufeff" + HEADER + CARD_ROW + PIN_ROW  # as Excel's "CSV UTF-8" saves it
    report = await import_ok(client, admin, content)
    assert report == {
        "dry_run": False, "rows": 2, "created": 2, "updated": 0, "unchanged": 0, "failed": 0, "problems": [],
        "categories_created": ["cards-pins"],
    }  # fmt: skip

    categories = await categories_of(client, admin)
    assert categories["cards-pins"]["name"] == "Cards & PINs"
    assert categories["cards-pins"]["faq_count"] == 2
    faqs = await faqs_of(client, admin)
    card = faqs["card-delivery"]
    assert card["question"] == "When will my new card arrive?"
    assert card["keywords"] == ["delivery", "card"]
    assert card["phrasings"] == ["Where is my card?", "Card not here yet"]
    assert card["status"] == "published"
    assert card["published_at"] is not None
    assert card["priority"] == 10
    assert card["seo_title"] == "Card delivery"
    assert card["seo_description"] is None
    assert card["category_id"] == categories["cards-pins"]["id"]
    pin = faqs["how-do-i-reset-my-pin"]  # no slug given: made from the question
    assert pin["status"] == "draft"
    assert pin["priority"] == 0
    assert pin["language"] == "en"
    assert pin["category_id"] == categories["cards-pins"]["id"]  # found by its slug

    # Imported FAQs are embedded and searchable at once, by their phrasings too.
    found = await client.get("/api/v1/faqs/search", params={"q": "Card not here yet"}, headers=admin.headers)
    assert found.json()["items"][0]["faq"]["id"] == card["id"]


async def test_json_import_and_semicolon_separated_csv(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    category = await client.post("/api/v1/faq-categories", json={"name": "Payments"}, headers=admin.headers)
    rows = [
        {
            "question": "Can I pay by bank transfer?", "answer": "Yes, with the IBAN shown in Payments.",
            "keywords": ["iban", "transfer"], "category": "Payments", "status": "published", "priority": 5,
            "language": "fr", "phrasings": ["bank transfer"], "id": "ignored", "view_count": 3,
        },
        {"question": "Is there a fee?", "answer": "No.", "category": None, "seo_title": "Fees"},
        # Names the slug the row above would have made: that one counts on instead.
        {"question": "Fees for cards?", "answer": "None either.", "slug": "is-there-a-fee"},
    ]  # fmt: skip
    report = await import_ok(client, admin, json.dumps(rows), name="faqs.json", content_type="application/json")
    assert (report["created"], report["failed"], report["categories_created"]) == (3, 0, [])
    faqs = await faqs_of(client, admin)
    transfer = faqs["can-i-pay-by-bank-transfer"]
    assert transfer["category_id"] == category.json()["id"]
    assert transfer["language"] == "fr"
    assert transfer["keywords"] == ["iban", "transfer"]
    assert transfer["phrasings"] == ["bank transfer"]
    assert transfer["view_count"] == 0  # export-only columns are skipped
    assert faqs["is-there-a-fee-2"]["category_id"] is None
    assert faqs["is-there-a-fee-2"]["seo_title"] == "Fees"
    assert faqs["is-there-a-fee"]["question"] == "Fees for cards?"

    # The type comes from the extension when the part has none; `;` separators (decimal-comma locales).
    semicolons = "question;answer;keywords\r\nWhat is the daily limit?;2000 EUR per day.;limit\r\n"
    report = await import_ok(client, admin, semicolons, content_type=None)
    assert report["created"] == 1
    assert (await faqs_of(client, admin))["what-is-the-daily-limit"]["keywords"] == ["limit"]


async def test_dry_run_checks_everything_and_writes_nothing(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    bad = '"No answer",,,,,,,,,,\r\n'
    report = await import_ok(client, admin, HEADER + CARD_ROW + PIN_ROW + bad, dry_run=True)
    assert report["dry_run"] is True
    assert (report["rows"], report["created"], report["failed"]) == (3, 2, 1)
    assert report["categories_created"] == ["cards-pins"]
    assert report["problems"] == [{"row": 3, "field": "answer", "message": "Field required"}]
    assert await faqs_of(client, admin) == {}
    assert await categories_of(client, admin) == {}


async def test_row_problems_are_reported_by_row_and_valid_rows_land(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    content = (
        HEADER
        + CARD_ROW  # 1
        + '"Too important?","Yes.",,,,101,,,,,\r\n'  # 2
        + '"Unknown status?","Yes.",,,secret,,,,,,\r\n'  # 3
        + "\r\n"  # 4: blank lines are skipped
        + '"Same slug again?","Yes.",,,,,,card-delivery,,,\r\n'  # 5
        + '"Bad slug?","Yes.",,,,,,Not A Slug,,,\r\n'  # 6
        + '"Too many cells?","Yes.",,,,,,,,,,surplus\r\n'  # 7
        + ',"No question.",,,,,english!,,,,\r\n'  # 8
        + '"Fine?","Yes.",,,,,,,,,\r\n'  # 9
    )
    report = await import_ok(client, admin, content)
    assert (report["rows"], report["created"], report["failed"]) == (8, 2, 6)
    problems = {(p["row"], p["field"]) for p in report["problems"]}
    assert problems == {
        (2, "priority"), (3, "status"), (5, "slug"), (6, "slug"), (7, None), (8, "question"), (8, "language"),
    }  # fmt: skip
    by_row = {(p["row"], p["field"]): p["message"] for p in report["problems"]}
    assert "Row 1" in by_row[(5, "slug")]
    assert "cells" in by_row[(7, None)]
    assert set(await faqs_of(client, admin)) == {"card-delivery", "fine"}


async def test_upsert_updates_by_slug_and_counts_unchanged_rows(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    await import_ok(client, admin, HEADER + CARD_ROW)
    before = (await faqs_of(client, admin))["card-delivery"]

    again = await import_ok(client, admin, HEADER + CARD_ROW)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 1)

    edited = (
        "question,answer,keywords,category,slug,seo_title,phrasings\r\n"
        '"When will my new card arrive?","Within a week.",,,card-delivery,,Card still missing\r\n'
        '"Lost card?","Freeze it in the app.",lost,Security,lost-card,,\r\n'
    )
    report = await import_ok(client, admin, edited)
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 1, 0)
    assert report["categories_created"] == ["security"]
    faqs = await faqs_of(client, admin)
    card = faqs["card-delivery"]
    assert card["id"] == before["id"]
    assert card["answer"] == "Within a week."
    # Empty cells clear keywords, category and SEO fields; columns the file lacks are kept.
    assert card["keywords"] == []
    assert card["category_id"] is None
    assert card["seo_title"] is None
    assert card["phrasings"] == ["Card still missing"]
    assert (card["status"], card["priority"], card["published_at"]) == ("published", 10, before["published_at"])
    found = await client.get("/api/v1/faqs/search", params={"q": "Card still missing"}, headers=admin.headers)
    assert found.json()["items"][0]["faq"]["id"] == card["id"]
    assert len(faqs) == 2


async def test_create_mode_reports_existing_slugs(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    await import_ok(client, admin, HEADER + CARD_ROW)
    changed = CARD_ROW.replace("posted within 2", "posted within 3")
    report = await import_ok(client, admin, HEADER + changed + PIN_ROW, mode="create")
    assert (report["created"], report["updated"], report["failed"]) == (1, 0, 1)
    [problem] = report["problems"]
    assert problem["row"] == 1
    assert problem["field"] == "slug"
    assert "mode=create" in problem["message"]
    assert "3 working" not in (await faqs_of(client, admin))["card-delivery"]["answer"]
    bad_mode = await upload(client, admin, HEADER + PIN_ROW, mode="replace")
    assert bad_mode.status_code == 422


async def test_size_limits(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    rows = "".join(f'"Question {n}?","Answer {n}.",,,,,,,,,\r\n' for n in range(MAX_ROWS + 1))
    too_many = await upload(client, admin, HEADER + rows)
    assert too_many.status_code == 413
    assert error_code(too_many) == "faq_import_too_large"
    assert str(MAX_ROWS) in too_many.json()["error"]["message"]
    assert await faqs_of(client, admin) == {}

    # Files above the server's 1 MB default body limit are read (up to 10 MB): here rows whose
    # answers are too long, reported one by one.
    long_answer = "a" * 100_000
    big = HEADER + "".join(f'"Q{n}?","{long_answer}",,,,,,,,,\r\n' for n in range(20))
    report = await import_ok(client, admin, big, dry_run=True)
    assert report["failed"] == 20
    assert {p["field"] for p in report["problems"]} == {"answer"}

    huge = await upload(client, admin, HEADER + "x" * (10 * 1024 * 1024))
    assert huge.status_code == 413
    assert error_code(huge) == "faq_import_too_large"


async def test_unsupported_file_types_are_415(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    for name, content_type in (("faqs.xml", "application/xml"), ("faqs.txt", "text/plain"), ("faqs", None)):
        response = await upload(client, admin, HEADER + PIN_ROW, name=name, content_type=content_type)
        assert response.status_code == 415, (name, response.text)
        assert error_code(response) == "unsupported_media_type"


UNREADABLE = [
    (b"", "faqs.csv", "empty"),
    (b"question,answer\r\n\xff\xfe broken", "faqs.csv", "UTF-8"),
    (HEADER.encode("utf-16"), "faqs.csv", "UTF-8"),
    (b"question,keywords\r\nWhy?,x\r\n", "faqs.csv", "Missing required columns: answer"),
    (b"question,answer,colour\r\nWhy?,Because.,red\r\n", "faqs.csv", "Unknown columns: colour"),
    (b"question,answer,answer\r\nWhy?,Because.,So.\r\n", "faqs.csv", "named twice"),
    (b'question,answer\r\n"Why?"x,Because.\r\n', "faqs.csv", "Not a readable CSV file (line 2)"),
    (b'{"question": "Why?", "answer": "Because."}', "faqs.json", "list of FAQ objects"),
    (b'["Why?", "Because."]', "faqs.json", "Item 1 of the JSON list is not an object"),
    (b'[{"question": "Why?",', "faqs.json", "Not valid JSON (line 1"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "faqs.json", "UTF-8"),
    (b"question,answer\r\nWhy?,Be\x00cause\r\n", "faqs.csv", "NUL"),
]


async def test_unreadable_files_are_422(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    for content, name, words in UNREADABLE:
        response = await upload(client, admin, content, name=name, content_type=None)
        assert response.status_code == 422, (content[:40], response.text)
        assert error_code(response) == "faq_import_invalid"
        assert words in response.json()["error"]["message"], (content[:40], response.text)
    assert await faqs_of(client, admin) == {}


async def test_json_rows_with_unknown_fields_or_wrong_types_are_problems(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    rows = [
        {"question": "Why?", "answer": "Because.", "colour": "red"},
        {"question": "How?", "answer": "Like so.", "keywords": "not-a-list", "category": 12},
        {"question": "When?", "answer": "Now."},
    ]
    report = await import_ok(client, admin, json.dumps(rows), name="faqs.json", content_type="application/json")
    assert (report["created"], report["failed"]) == (1, 2)
    assert {(p["row"], p["field"]) for p in report["problems"]} == {(1, "colour"), (2, "keywords")}


async def test_members_cannot_import_or_export(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    member = await add_member(client, admin, "member")
    refused = await upload(client, member, HEADER + PIN_ROW)
    assert refused.status_code == 403
    assert (await client.get("/api/v1/faqs/export", headers=member.headers)).status_code == 403
    agent = await add_member(client, admin, "agent")  # support:manage
    assert (await upload(client, agent, HEADER + PIN_ROW)).status_code == 200
    assert (await client.get("/api/v1/faqs/export", headers=agent.headers)).status_code == 200


@pytest.mark.parametrize("file_format", ["csv", "json"])
async def test_export_then_import_into_another_organization_round_trips(
    client: httpx.AsyncClient, file_format: str
) -> None:
    source = await register(client)
    target = await register(client)
    await import_ok(client, source, HEADER + CARD_ROW + PIN_ROW)
    extra = [
        {
            "question": "Is my money safe?", "answer": "-5% fees? No: deposits are insured up to 100000 EUR.",
            "keywords": ["@safety", "insurance"], "category": "Trust & safety", "status": "archived",
            "priority": 3, "language": "de", "seo_description": "=Deposit insurance",
            "phrasings": ["+ safe?", "is my money protected"],
        },
    ]  # fmt: skip
    await import_ok(client, source, json.dumps(extra), name="more.json", content_type="application/json")

    exported = await export(client, source, format=file_format)
    assert exported.headers["content-disposition"].startswith('attachment; filename="faqs-')
    assert exported.headers["content-disposition"].endswith(f'.{file_format}"')
    name = f"faqs.{file_format}"
    report = await import_ok(client, target, exported.content, name=name, content_type=None)
    assert (report["rows"], report["created"], report["failed"]) == (3, 3, 0), report
    assert sorted(report["categories_created"]) == ["cards-pins", "trust-safety"]

    def carried(response: httpx.Response) -> list[dict[str, Any]]:
        rows = json.loads(response.content)
        return sorted(({k: row[k] for k in CARRIED} for row in rows), key=lambda row: row["slug"])

    before = carried(await export(client, source, format="json"))
    after = carried(await export(client, target, format="json"))
    assert after == before
    assert {row["status"] for row in after} == {"published", "draft", "archived"}
    target_categories = await categories_of(client, target)
    assert target_categories["trust-safety"]["name"] == "Trust & safety"

    # The same file again changes nothing.
    again = await import_ok(client, target, exported.content, name=name, content_type=None)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)


async def test_exports_hold_only_the_callers_organization(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    stranger = await register(client)
    await import_ok(client, owner, HEADER + CARD_ROW + PIN_ROW)
    category_id = (await categories_of(client, owner))["cards-pins"]["id"]
    assert csv_rows(await export(client, stranger)) == []
    assert json.loads((await export(client, stranger, format="json")).content) == []
    hidden = await client.get("/api/v1/faqs/export", params={"category_id": category_id}, headers=stranger.headers)
    assert hidden.status_code == 404
    assert error_code(hidden) == "faq_category_not_found"
    # The stranger's import of the same slugs creates their own FAQs and leaves the owner's alone.
    report = await import_ok(client, stranger, HEADER + CARD_ROW.replace("2 working days", "a month"))
    assert report["created"] == 1
    assert "2 working days" in (await faqs_of(client, owner))["card-delivery"]["answer"]


async def test_export_filters(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    await import_ok(client, admin, HEADER + CARD_ROW + PIN_ROW + '"Wie geht das?","So.",,,published,,de,,,,\r\n')
    category_id = (await categories_of(client, admin))["cards-pins"]["id"]
    everything = csv_rows(await export(client, admin))
    assert [row["slug"] for row in everything] == ["card-delivery", "how-do-i-reset-my-pin", "wie-geht-das"]
    assert everything[0]["keywords"] == "delivery;card"
    assert everything[0]["phrasings"] == "Where is my card?|Card not here yet"
    assert everything[0]["category"] == "cards-pins"
    assert everything[0]["category_name"] == "Cards & PINs"
    assert set(everything[0]) >= {"id", "created_at", "updated_at", "view_count", "helpful_count"}
    published = csv_rows(await export(client, admin, status="published"))
    assert [row["slug"] for row in published] == ["card-delivery", "wie-geht-das"]
    in_category = csv_rows(await export(client, admin, category_id=category_id, status="draft"))
    assert [row["slug"] for row in in_category] == ["how-do-i-reset-my-pin"]
    german = json.loads((await export(client, admin, format="json", language="de")).content)
    assert [row["slug"] for row in german] == ["wie-geht-das"]
    bad = await client.get("/api/v1/faqs/export", params={"format": "xlsx"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_csv_export_guards_formulas_and_import_takes_the_guard_off(client: httpx.AsyncClient) -> None:
    source = await register(client)
    target = await register(client)
    risky = [
        {
            "question": "=HYPERLINK(\"http://evil.example\", \"Click\")", "answer": "+1 call us",
            "keywords": ["@admin", "plain"], "seo_title": "-minus", "slug": "risky",
            "phrasings": ["'=already quoted"],
        },
        {"question": "'Quoted' question?", "answer": "Plain answer.", "slug": "plain"},
    ]  # fmt: skip
    await import_ok(client, source, json.dumps(risky), name="faqs.json", content_type="application/json")
    exported = await export(client, source)
    by_slug = {row["slug"]: row for row in csv_rows(exported)}
    assert by_slug["risky"]["question"] == '\'=HYPERLINK("http://evil.example", "Click")'
    assert by_slug["risky"]["answer"] == "'+1 call us"
    assert by_slug["risky"]["keywords"] == "'@admin;plain"
    assert by_slug["risky"]["seo_title"] == "'-minus"
    assert by_slug["risky"]["phrasings"] == "''=already quoted"
    assert by_slug["plain"]["question"] == "'Quoted' question?"  # nothing to guard

    await import_ok(client, target, exported.content)
    faqs = await faqs_of(client, target)
    assert faqs["risky"]["question"] == risky[0]["question"]
    assert faqs["risky"]["answer"] == "+1 call us"
    assert faqs["risky"]["keywords"] == ["@admin", "plain"]
    assert faqs["risky"]["seo_title"] == "-minus"
    assert faqs["risky"]["phrasings"] == ["'=already quoted"]
    assert faqs["plain"]["question"] == "'Quoted' question?"
