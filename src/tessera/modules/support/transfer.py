"""Bulk FAQ import (CSV or JSON) and export, in one format both ways, so a knowledge base moves
between organizations or servers: export from one, import into the other.

Import validates every row with `FaqCreate`'s rules, reports the rows it skips (row number, field,
message) and writes the others through `faqs.create_faq` / `faqs.update_faq`, so imported FAQs are
embedded, searchable and counted in the FAQ revision like FAQs made one by one. The whole import
is one transaction: a failure that is not a row's (the embedder is down) writes nothing.

CSV cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return
first) are written with a `'` in front and read back without it (OWASP "CSV injection")."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.embeddings.base import Embedder, TextKind, Vectors
from tessera.core.errors import UnsupportedMediaType
from tessera.modules.support import faqs
from tessera.modules.support.errors import ImportInvalid, ImportTooLarge
from tessera.modules.support.models import Faq, FaqCategory, FaqPhrasing, FaqStatus, PhrasingSource
from tessera.modules.support.schemas import (
    SLUG_PATTERN,
    CategoryCreate,
    ExportFormat,
    FaqCreate,
    FaqTransferRow,
    FaqUpdate,
    ImportMode,
    ImportProblem,
    ImportReport,
    slugify,
)

FileKind = Literal["csv", "json"]

MAX_IMPORT_BYTES = 10 * 1024 * 1024
# The request around the file (multipart boundaries, headers) gets some room on top.
MAX_IMPORT_BODY_BYTES = MAX_IMPORT_BYTES + 64 * 1024
KEYWORD_SEPARATOR = ";"
PHRASING_SEPARATOR = "|"

# What import reads; `question` and `answer` are required.
IMPORT_COLUMNS = (
    "question", "answer", "keywords", "category", "category_name", "status", "priority", "language", "slug",
    "seo_title", "seo_description", "phrasings",
)  # fmt: skip
REQUIRED_COLUMNS = ("question", "answer")
# What export adds and import skips: they belong to the FAQ where it was exported from.
EXPORT_ONLY_COLUMNS = (
    "id", "published_at", "view_count", "helpful_count", "not_helpful_count", "learned_phrasings",
    "created_at", "updated_at",
)  # fmt: skip
EXPORT_COLUMNS = ("id", *IMPORT_COLUMNS, *EXPORT_ONLY_COLUMNS[1:])
# Empty means "none" for these (an update clears them); for the others it means "not given".
_CLEARED: dict[str, Any] = {"keywords": [], "phrasings": [], "seo_title": None, "seo_description": None}
_CATEGORY_COLUMNS = ("category", "category_name")

_CSV_TYPES = frozenset({"text/csv", "application/csv", "text/comma-separated-values", "application/vnd.ms-excel"})
_JSON_TYPES = frozenset({"application/json", "text/json"})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_EMBED_BATCH = 256
_IN_CHUNK = 500  # ids per IN (...) list: SQLite's bound-parameter limit is 999 on old builds


# File types


def file_kind(content_type: str | None, filename: str | None) -> FileKind:
    """CSV or JSON, from the part's content type or else the file name's extension."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _CSV_TYPES:
        return "csv"
    if media in _JSON_TYPES:
        return "json"
    suffix = PurePath(filename or "").suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".json":
        return "json"
    raise UnsupportedMediaType(
        f"Send a CSV (text/csv, .csv) or JSON (application/json, .json) file, not {media or 'an untyped file'}"
        + (f" named {PurePath(filename).name!r}" if filename else "")
    )


# CSV injection guard


def _formula_like(text: str) -> bool:
    return text.startswith(_FORMULA_START) or (text.startswith("'") and _formula_like(text[1:]))


def guard_cell(text: str) -> str:
    """`=SUM(A1)` -> `'=SUM(A1)`; a text that already starts with `'` before one gets another, so
    `unguard_cell` gives every text back as it was."""
    return f"'{text}" if _formula_like(text) else text


def unguard_cell(text: str) -> str:
    return text[1:] if text.startswith("'") and _formula_like(text[1:]) else text


# Reading files


@dataclass
class RawRow:
    number: int  # 1-based: records after the CSV header, or position in the JSON list
    values: dict[str, Any]  # import columns given for this row (CSV cells unguarded)
    problems: list[ImportProblem] = field(default_factory=list)


def _decode(data: bytes) -> str:
    if not data.strip():
        raise ImportInvalid("The file is empty")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is dropped
    except UnicodeDecodeError as error:
        raise ImportInvalid(
            f"The file is not UTF-8 text (invalid byte at offset {error.start}); save it as CSV UTF-8 or JSON"
        ) from error
    if "\x00" in text:
        raise ImportInvalid("The file holds NUL characters: it is not a text file")
    return text


def _column_name(header: str) -> str:
    return re.sub(r"[\s-]+", "_", header.strip().lower())


def read_csv(text: str) -> list[RawRow]:
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    # Spreadsheets in locales with a decimal comma write `;`-separated files.
    delimiter = max((",", ";", "\t"), key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next((cells for cells in reader if cells), None)
        if header is None:
            raise ImportInvalid("The file is empty")
        columns = [_column_name(h) for h in header]
        _check_header(columns)
        rows: list[RawRow] = []
        for number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue
            row = RawRow(number, {})
            extra = cells[len(columns) :]
            if any(cell.strip() for cell in extra):
                row.problems.append(
                    ImportProblem(
                        row=number, field=None,
                        message=f"{len(cells)} cells, but the header names {len(columns)} columns",
                    )
                )  # fmt: skip
            padded = list(cells[: len(columns)]) + [""] * (len(columns) - len(cells))
            for name, cell in zip(columns, padded, strict=True):
                if name in IMPORT_COLUMNS:
                    row.values[name] = _csv_value(name, unguard_cell(cell))
            rows.append(row)
    except csv.Error as error:
        raise ImportInvalid(f"Not a readable CSV file (line {reader.line_num}): {error}") from error
    return rows


def _check_header(columns: Sequence[str]) -> None:
    named = [c for c in columns if c]
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise ImportInvalid(f"Columns named twice in the header: {', '.join(twice)}")
    unknown = [c for c in named if c not in IMPORT_COLUMNS and c not in EXPORT_ONLY_COLUMNS]
    if unknown:
        raise ImportInvalid(
            f"Unknown columns: {', '.join(unknown)} (known: {', '.join(IMPORT_COLUMNS)}; export's "
            f"{', '.join(EXPORT_ONLY_COLUMNS)} are skipped)"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in named]
    if missing:
        raise ImportInvalid(
            f"Missing required columns: {', '.join(missing)} (the first line must name the columns, "
            "at least question and answer)"
        )


def _csv_value(name: str, cell: str) -> Any:
    if name == "keywords":
        return _split(cell, KEYWORD_SEPARATOR)
    if name == "phrasings":
        return _split(cell, PHRASING_SEPARATOR)
    return cell


def _split(cell: str, separator: str) -> list[str]:
    return [part.strip() for part in cell.split(separator) if part.strip()]


def read_json(text: str) -> list[RawRow]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportInvalid(f"Not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}") from error
    except (ValueError, RecursionError) as error:  # huge integers, absurd nesting
        raise ImportInvalid(f"Not readable JSON: {error}") from error
    if not isinstance(parsed, list):
        raise ImportInvalid('The JSON file must hold a list of FAQ objects: [{"question": …, "answer": …}, …]')
    rows: list[RawRow] = []
    for number, item in enumerate(parsed, start=1):
        if not isinstance(item, dict):
            raise ImportInvalid(f"Item {number} of the JSON list is not an object")
        row = RawRow(number, {})
        for key, value in item.items():
            if key in IMPORT_COLUMNS:
                row.values[key] = value
            elif key not in EXPORT_ONLY_COLUMNS:
                row.problems.append(ImportProblem(row=number, field=str(key)[:100], message="Unknown field"))
        rows.append(row)
    return rows


def read_rows(data: bytes, kind: FileKind, *, max_rows: int) -> list[RawRow]:
    """The file's rows, or `ImportInvalid` for a file that cannot be read and `ImportTooLarge`
    for one with more than `max_rows` rows."""
    text = _decode(data)
    rows = read_csv(text) if kind == "csv" else read_json(text)
    if len(rows) > max_rows:
        raise ImportTooLarge(f"The file has {len(rows)} rows; one import takes at most {max_rows}")
    return rows


# Import


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _faq_values(row: RawRow) -> dict[str, Any]:
    """`FaqCreate` input: empty values are left out, or cleared for the fields where empty is a value."""
    values: dict[str, Any] = {}
    for name, value in row.values.items():
        if name in _CATEGORY_COLUMNS:
            continue
        if _empty(value):
            if name in _CLEARED:
                values[name] = _CLEARED[name]
            continue
        values[name] = value
    return values


def _field_of(location: tuple[int | str, ...]) -> str | None:
    return ".".join(str(part) for part in location) or None


@dataclass
class _NewCategory:
    name: str
    slug: str


class _Categories:
    """The organization's categories, by slug and by name, plus those the import will make."""

    def __init__(self, existing: Iterable[FaqCategory]) -> None:
        self.ids: dict[str, uuid.UUID] = {}
        for category in existing:
            self.ids[category.slug] = category.id
            self.ids.setdefault(f"name:{category.name.casefold()}", category.id)
        self.planned: dict[str, _NewCategory] = {}  # slug -> category to make

    def resolve(self, value: str, name: str | None) -> uuid.UUID | _NewCategory:
        """The category that `value` (a slug or a name) names; a new one when none does (may raise
        `ValidationError` for a name no category may have)."""
        slug = value if re.fullmatch(SLUG_PATTERN, value) and len(value) <= 120 else slugify(value, max_length=120)
        for key in (value, f"name:{value.casefold()}", slug):
            if key in self.ids:
                return self.ids[key]
        for planned in self.planned.values():
            if value in (planned.slug, planned.name) or value.casefold() == planned.name.casefold():
                return planned
        if slug in self.planned:
            return self.planned[slug]
        body = CategoryCreate(name=name or value, slug=slug)
        return _NewCategory(name=body.name, slug=slug)

    def plan(self, category: _NewCategory) -> None:
        self.planned.setdefault(category.slug, category)


CategoryRef = uuid.UUID | _NewCategory | None


@dataclass
class _Write:
    number: int
    body: FaqCreate
    category_given: bool
    category: CategoryRef
    existing: Faq | None  # None: create


async def _existing_faqs(session: AsyncSession, org_id: uuid.UUID, slugs: Sequence[str]) -> dict[str, Faq]:
    found: dict[str, Faq] = {}
    for start in range(0, len(slugs), _IN_CHUNK):
        chunk = slugs[start : start + _IN_CHUNK]
        query = sa.select(Faq).where(Faq.org_id == org_id, Faq.slug.in_(chunk))
        found.update((faq.slug, faq) for faq in (await session.execute(query)).scalars())
    return found


async def _phrasing_texts(
    session: AsyncSession, faq_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[PhrasingSource, set[str]]]:
    texts: dict[uuid.UUID, dict[PhrasingSource, set[str]]] = {
        i: {PhrasingSource.manual: set(), PhrasingSource.feedback: set()} for i in faq_ids
    }
    for start in range(0, len(faq_ids), _IN_CHUNK):
        query = sa.select(FaqPhrasing.faq_id, FaqPhrasing.text, FaqPhrasing.source).where(
            FaqPhrasing.faq_id.in_(faq_ids[start : start + _IN_CHUNK])
        )
        for faq_id, text, source in (await session.execute(query)).all():
            texts[faq_id][source].add(text)
    return texts


def _changes(
    write: _Write, faq: Faq, phrasings: dict[PhrasingSource, set[str]], embedder_name: str
) -> tuple[bool, bool]:
    """(whether the row changes the FAQ, whether its question or answer must be embedded again)."""
    body, given = write.body, write.body.model_fields_set
    changed = False
    for name in ("question", "answer", "priority", "language", "seo_title", "seo_description"):
        if name in given and getattr(body, name) != getattr(faq, name):
            changed = True
    if "status" in given and body.status != faq.status.value:
        changed = True
    if "keywords" in given and list(dict.fromkeys(body.keywords)) != list(faq.keywords):
        changed = True
    if "phrasings" in given:
        # As faqs._set_phrasings stores them: not the question again, not a learned wording.
        wanted = {t for t in body.phrasings if t.casefold() != body.question.casefold()}
        if wanted - phrasings[PhrasingSource.feedback] != phrasings[PhrasingSource.manual]:
            changed = True
    if write.category_given and (isinstance(write.category, _NewCategory) or write.category != faq.category_id):
        changed = True
    text_changed = body.question != faq.question or body.answer != faq.answer
    return changed, text_changed or faq.embedding_model != embedder_name


async def import_faqs(
    session: AsyncSession,
    principal: Principal,
    data: bytes,
    *,
    kind: FileKind,
    embedder: Embedder,
    max_rows: int,
    mode: ImportMode = "upsert",
    dry_run: bool = False,
) -> ImportReport:
    """Import FAQs from a CSV or JSON file.

    Rows that break a rule are reported and skipped; the others are written (nothing on a dry run).
    `upsert` updates the FAQ whose slug a row gives, `create` reports such a row instead. A category
    named (by slug or name) that does not exist is made, unless `dry_run`.

    Raises:
        ImportInvalid: the file cannot be read (encoding, syntax, shape, columns).
        ImportTooLarge: more than `max_rows` rows.
    """
    org_id = faqs.org_of(principal)
    rows = read_rows(data, kind, max_rows=max_rows)
    categories = _Categories(
        (await session.execute(sa.select(FaqCategory).where(FaqCategory.org_id == org_id))).scalars()
    )
    slugs = sorted(
        {s for row in rows if isinstance(s := row.values.get("slug"), str) and re.fullmatch(SLUG_PATTERN, s)}
    )
    existing = await _existing_faqs(session, org_id, slugs)

    problems: list[ImportProblem] = []
    failed = 0
    writes: list[_Write] = []
    slug_rows: dict[str, int] = {}
    for row in rows:
        write = _validate_row(row, categories, existing, slug_rows, mode)
        if row.problems:
            problems.extend(row.problems)
            failed += 1
        elif write is not None:
            if isinstance(write.category, _NewCategory):
                categories.plan(write.category)
            writes.append(write)

    phrasings = await _phrasing_texts(session, [w.existing.id for w in writes if w.existing is not None])
    created = updated = unchanged = 0
    to_write: list[tuple[_Write, bool]] = []
    for write in writes:
        if write.existing is None:
            created += 1
            to_write.append((write, True))
            continue
        changed, reembed = _changes(write, write.existing, phrasings[write.existing.id], embedder.name)
        if changed:
            updated += 1
            to_write.append((write, reembed))
        else:
            unchanged += 1
    report = ImportReport(
        dry_run=dry_run, rows=len(rows), created=created, updated=updated, unchanged=unchanged, failed=failed,
        problems=problems, categories_created=list(categories.planned),
    )  # fmt: skip
    if not dry_run and to_write:
        await _write(session, principal, to_write, categories, embedder)
    return report


def _validate_row(
    row: RawRow,
    categories: _Categories,
    existing: dict[str, Faq],
    slug_rows: dict[str, int],
    mode: ImportMode,
) -> _Write | None:
    try:
        body = FaqCreate.model_validate(_faq_values(row))
    except ValidationError as error:
        row.problems.extend(
            ImportProblem(row=row.number, field=_field_of(e["loc"]), message=e["msg"]) for e in error.errors()
        )
        return None
    category_given = any(name in row.values for name in _CATEGORY_COLUMNS)
    category: CategoryRef = None
    value = row.values.get("category")
    value = value if not _empty(value) else row.values.get("category_name")
    if not _empty(value):
        name = row.values.get("category_name")
        if not isinstance(value, str) or not (name is None or isinstance(name, str)):
            row.problems.append(ImportProblem(row=row.number, field="category", message="Input should be a string"))
            return None
        try:
            category = categories.resolve(value.strip(), name.strip() if name and name.strip() else None)
        except ValidationError as error:
            message = error.errors()[0]["msg"]
            row.problems.append(ImportProblem(row=row.number, field="category", message=f"Category name: {message}"))
            return None
    found: Faq | None = None
    if body.slug is not None:
        first = slug_rows.setdefault(body.slug, row.number)
        if first != row.number:
            row.problems.append(
                ImportProblem(row=row.number, field="slug", message=f"Row {first} has the same slug {body.slug!r}")
            )
            return None
        found = existing.get(body.slug)
        if found is not None and mode == "create":
            row.problems.append(
                ImportProblem(
                    row=row.number, field="slug",
                    message=f"An FAQ with the slug {body.slug!r} exists (mode=create only adds FAQs; "
                    "use mode=upsert to update it)",
                )
            )  # fmt: skip
            return None
    return _Write(row.number, body, category_given, category, found)


async def _write(
    session: AsyncSession,
    principal: Principal,
    writes: Sequence[tuple[_Write, bool]],
    categories: _Categories,
    embedder: Embedder,
) -> None:
    made: dict[str, uuid.UUID] = {}
    for planned in categories.planned.values():
        category = await faqs.create_category(session, principal, CategoryCreate(name=planned.name, slug=planned.slug))
        made[planned.slug] = category.id
    batched = PrecomputedEmbedder(embedder)
    await batched.prepare([t for w, reembed in writes if reembed for t in (w.body.question, w.body.answer)], "passage")
    await batched.prepare([t for w, _ in writes for t in w.body.phrasings], "query")
    new: list[tuple[FaqCreate, uuid.UUID | None]] = []
    for write, _ in writes:
        category_id = made[write.category.slug] if isinstance(write.category, _NewCategory) else write.category
        if write.existing is None:
            new.append((write.body, category_id))
        else:
            await _update(session, principal, write, write.existing, category_id, batched)
    if new:
        await faqs.create_faqs(session, principal, new, batched)


async def _update(
    session: AsyncSession,
    principal: Principal,
    write: _Write,
    faq: Faq,
    category_id: uuid.UUID | None,
    embedder: Embedder,
) -> None:
    body, given = write.body, write.body.model_fields_set
    changes: dict[str, Any] = {name: getattr(body, name) for name in given if name != "slug"}
    if write.category_given:
        changes["category_id"] = category_id
    faq = await faqs.update_faq(session, principal, faq.id, FaqUpdate.model_validate(changes), embedder)
    # FaqUpdate reads None as "unchanged"; an empty cell in the file clears these.
    for name in ("seo_title", "seo_description"):
        if name in given and getattr(body, name) is None:
            setattr(faq, name, None)
    await session.flush()


class PrecomputedEmbedder:
    """Serves the vectors of texts embedded beforehand in large batches, so the per-FAQ calls of
    `faqs.create_faq` and `faqs.update_faq` cost no model call each; other texts go to `inner`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self._vectors: dict[tuple[TextKind, str], Vectors] = {}

    async def prepare(self, texts: Iterable[str], kind: TextKind) -> None:
        todo = list(dict.fromkeys(t for t in texts if (kind, t) not in self._vectors))
        for start in range(0, len(todo), _EMBED_BATCH):
            chunk = todo[start : start + _EMBED_BATCH]
            vectors = await self.inner.embed(chunk, kind=kind)
            for text, vector in zip(chunk, vectors, strict=True):
                self._vectors[(kind, text)] = vector

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        if contexts is None and texts and all((kind, t) in self._vectors for t in texts):
            return np.stack([self._vectors[(kind, t)] for t in texts]).astype(np.float32, copy=False)
        return await self.inner.embed(texts, kind=kind, contexts=contexts)

    async def close(self) -> None:
        """The inner embedder is the app's: not closed here."""


# Export


async def export_rows(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None = None,
    category_id: uuid.UUID | None = None,
    language: str | None = None,
) -> list[FaqTransferRow]:
    """Every FAQ of the organization (oldest first) that passes the filters, as import reads them."""
    org_id = faqs.org_of(principal)
    if category_id is not None:
        await faqs.get_category(session, principal, category_id)
    query = sa.select(Faq).where(Faq.org_id == org_id).order_by(Faq.created_at, Faq.id)
    if status is not None:
        query = query.where(Faq.status == FaqStatus(status))
    if category_id is not None:
        query = query.where(Faq.category_id == category_id)
    if language is not None:
        query = query.where(Faq.language == language)
    rows = (await session.execute(query)).scalars().all()
    categories = {
        c.id: c for c in (await session.execute(sa.select(FaqCategory).where(FaqCategory.org_id == org_id))).scalars()
    }
    phrasings: dict[uuid.UUID, faqs.PhrasingInfo] = {}
    for start in range(0, len(rows), _IN_CHUNK):
        phrasings.update(await faqs.phrasings_of(session, [f.id for f in rows[start : start + _IN_CHUNK]]))
    result: list[FaqTransferRow] = []
    for faq in rows:
        category = categories.get(faq.category_id) if faq.category_id else None
        info = phrasings[faq.id]
        result.append(
            FaqTransferRow(
                id=faq.id, question=faq.question, answer=faq.answer, keywords=list(faq.keywords),
                category=category.slug if category else None, category_name=category.name if category else None,
                status=faq.status.value, priority=faq.priority, language=faq.language, slug=faq.slug,
                seo_title=faq.seo_title, seo_description=faq.seo_description, phrasings=info.manual,
                published_at=faq.published_at, view_count=faq.view_count, helpful_count=faq.helpful_count,
                not_helpful_count=faq.not_helpful_count, learned_phrasings=info.learned,
                created_at=faq.created_at, updated_at=faq.updated_at,
            )
        )  # fmt: skip
    return result


_ROWS = TypeAdapter(list[FaqTransferRow])


def render(rows: Sequence[FaqTransferRow], file_format: ExportFormat) -> bytes:
    if file_format == "json":
        return _ROWS.dump_json(list(rows), indent=2)
    return render_csv(rows)


def render_csv(rows: Sequence[FaqTransferRow]) -> bytes:
    """UTF-8 with a byte-order mark (so Excel reads it as UTF-8), RFC 4180 line ends."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        values = row.model_dump(mode="json")
        values["keywords"] = KEYWORD_SEPARATOR.join(row.keywords)
        values["phrasings"] = PHRASING_SEPARATOR.join(row.phrasings)
        writer.writerow([_csv_cell(values[name]) for name in EXPORT_COLUMNS])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    return guard_cell(value) if isinstance(value, str) else str(value)
