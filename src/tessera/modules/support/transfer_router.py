"""FAQ import and export over HTTP (`/faqs/import`, `/faqs/export`). Mounted before the FAQ
router, whose `/faqs/{faq_id}` would otherwise take `/faqs/export`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Response, UploadFile

from tessera.core.db.base import utcnow
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput, UnsupportedMediaType
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.modules.support import transfer
from tessera.modules.support.dependencies import EmbedderDep, SupportManager, SupportSettingsDep
from tessera.modules.support.errors import FaqCategoryNotFound, FaqSlugTaken, ImportInvalid, ImportTooLarge
from tessera.modules.support.schemas import (
    LANGUAGE_PATTERN,
    ExportFormat,
    FaqStatusName,
    FaqTransferRow,
    ImportMode,
    ImportReport,
)

transfer_router = APIRouter(prefix="/faqs", tags=["support: FAQs"], dependencies=[rate_limit("default")])

_READ_CHUNK = 1024 * 1024
_CSV_EXAMPLE = (
    "question,answer,keywords,category,category_name,status,priority,language,slug,seo_title,seo_description,"
    "phrasings\r\n"
    '"How do I reset my PIN?","Open the app, go to Card > Settings > Reset PIN.",pin;card,cards,Cards,published,'
    '10,en,how-do-i-reset-my-pin,,,"I forgot my PIN|PIN reset"\r\n'
)
_EXPORT_CSV_EXAMPLE = (
    "\ufeff" + ",".join(transfer.EXPORT_COLUMNS) + "\r\n"
    '0190a5c8-0000-7000-8000-000000000001,"How do I reset my PIN?","Open the app, go to Card > Settings > Reset '
    'PIN.",pin;card,cards,Cards,published,10,en,how-do-i-reset-my-pin,,,"I forgot my PIN|PIN reset",'
    "2024-05-01T09:30:00Z,120,14,1,3,2024-05-01T09:30:00Z,2024-05-02T16:00:00Z\r\n"
)
_REPORT_EXAMPLE = {
    "dry_run": False,
    "rows": 3,
    "created": 1,
    "updated": 1,
    "unchanged": 0,
    "failed": 1,
    "problems": [{"row": 3, "field": "priority", "message": "Input should be less than or equal to 100"}],
    "categories_created": ["cards"],
}
_IMPORT_BODY = {
    "multipart/form-data": {
        "encoding": {"file": {"contentType": "text/csv, application/json"}},
        "example": {"file": _CSV_EXAMPLE},
    }
}


async def _read_upload(upload: UploadFile) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(_READ_CHUNK):
        size += len(chunk)
        if size > transfer.MAX_IMPORT_BYTES:
            raise ImportTooLarge(f"The file is larger than {transfer.MAX_IMPORT_BYTES // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


@transfer_router.post(
    "/import",
    response_model=ImportReport,
    summary="Import FAQs from a CSV or JSON file",
    description="Multipart form with one `file`: CSV (`text/csv` or `.csv`; UTF-8, with or without Excel's "
    "byte-order mark; `,`, `;` or tab separated, the first line naming the columns) or JSON (`application/json` "
    "or `.json`: a list of objects). Columns: `question` and `answer` (required), `keywords` (CSV: separated by "
    "`;`), `category` (a category's slug or name; made when missing, named `category_name` if given), `status`, "
    "`priority`, `language`, `slug`, `seo_title`, `seo_description`, `phrasings` (CSV: separated by `|`). The "
    "columns `GET /faqs/export` adds (`id`, counts, timestamps) are skipped, so an export imports as it is.\n\n"
    "Each row is checked like `POST /faqs`. A row that breaks a rule is skipped and reported with its number "
    "(CSV: counted after the header line; JSON: position in the list), field and message; the other rows are "
    "written. `mode=upsert` (default) updates the FAQ that has the row's `slug` (only the columns the file has; "
    "an empty cell clears keywords, phrasings, category and SEO fields and leaves the others), `mode=create` "
    "reports such a row instead. Rows without a slug are created with one made from the question. A slug twice "
    "in the file is a problem on its second row. `dry_run=true` checks everything and writes nothing (not even "
    "categories). At most `support.max_import_rows` rows and 10 MB. Needs `support:manage`.",
    responses={
        200: {
            "description": "What was (or, on a dry run, would be) created, updated and skipped.",
            "content": {"application/json": {"example": _REPORT_EXAMPLE}},
        },
        413: {
            **ImportTooLarge.schema(),
            "description": "More rows than `support.max_import_rows`, or a file over 10 MB.",
        },
        415: {
            **UnsupportedMediaType.schema(),
            "description": "Neither a CSV nor a JSON file (by content type or extension).",
        },
        409: {
            **FaqSlugTaken.schema(),
            "description": "Another request took a slug or category slug this import was writing at the same "
            "moment; nothing was written: send the file again.",
        },
        422: {
            **ImportInvalid.schema(),
            "description": "`faq_import_invalid`: the file cannot be read (not UTF-8, broken CSV or JSON, JSON "
            "not a list of objects, unknown or missing columns); `validation_error`: no `file`, bad `mode`.",
        },
    },
    openapi_extra={"requestBody": {"content": _IMPORT_BODY}},
)
async def import_faqs(
    principal: SupportManager,
    session: DbSession,
    embedder: EmbedderDep,
    settings: SupportSettingsDep,
    file: Annotated[UploadFile, File(description="The CSV or JSON file.")],
    dry_run: Annotated[bool, Query(description="Check every row and report, writing nothing.")] = False,
    mode: Annotated[
        ImportMode, Query(description="`upsert`: a row whose slug exists updates that FAQ; `create`: it is a problem.")
    ] = "upsert",
) -> ImportReport:
    kind = transfer.file_kind(file.content_type, file.filename)
    data = await _read_upload(file)
    return await transfer.import_faqs(
        session, principal, data, kind=kind, embedder=embedder, max_rows=settings.max_import_rows,
        mode=mode, dry_run=dry_run,
    )  # fmt: skip


_EXPORT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, as an attachment `faqs-<date>.csv` or `faqs-<date>.json`.",
        "model": list[FaqTransferRow],
        "content": {"text/csv": {"schema": {"type": "string"}, "example": _EXPORT_CSV_EXAMPLE}},
    },
    404: {**FaqCategoryNotFound.schema(), "description": "`category_id` is not a category of this organization."},
    422: InvalidInput.schema(),
}


@transfer_router.get(
    "/export",
    response_class=Response,
    summary="Export FAQs as CSV or JSON",
    description="Every FAQ of the organization, oldest first, in every status unless filtered (`status`, "
    "`category_id`, `language`), as a download. The columns are those `POST /faqs/import` reads (`category` is "
    "the category's slug, with `category_name`; CSV joins `keywords` with `;` and `phrasings` with `|`) plus "
    "`id`, `published_at`, the view and feedback counts, the number of learned phrasings and the timestamps, "
    "which import skips: importing the file into another organization recreates the FAQs and their categories. "
    "CSV is UTF-8 with a byte-order mark (Excel opens it as UTF-8); a cell that a spreadsheet would run as a "
    "formula (starting with `=`, `+`, `-`, `@`) is written with a `'` in front, which import takes off. "
    "Learned phrasings are not exported (they are users' wordings). Needs `support:manage`.",
    responses=_EXPORT_RESPONSE,
)
async def export_faqs(
    principal: SupportManager,
    session: DbSession,
    file_format: Annotated[ExportFormat, Query(alias="format", description="`csv` or `json`.")] = "csv",
    status_filter: Annotated[FaqStatusName | None, Query(alias="status")] = None,
    category_id: uuid.UUID | None = None,
    language: Annotated[str | None, Query(pattern=LANGUAGE_PATTERN, max_length=16)] = None,
) -> Response:
    rows = await transfer.export_rows(
        session, principal, status=status_filter, category_id=category_id, language=language
    )
    day = utcnow().date().isoformat()
    media_type = "application/json" if file_format == "json" else "text/csv; charset=utf-8"
    return Response(
        content=transfer.render(rows, file_format),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="faqs-{day}.{file_format}"'},
    )
