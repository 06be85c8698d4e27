"""The whole document life cycle with `TESSERA_DOCUMENTS__STORAGE=s3`, against a moto S3 server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.core.documents.pipeline import process_inline
from tessera.main import create_app
from tests.conftest import test_settings as make_settings
from tests.core.documents.storage.conftest import S3_CREDENTIALS, S3_REGION
from tests.factories import register


@pytest.fixture
async def s3_client(database_url: str, tmp_path: Path, moto_endpoint: str, s3_bucket: str) -> AsyncIterator[Any]:
    settings = make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        documents={
            "storage": "s3",
            "s3_bucket": s3_bucket,
            "s3_prefix": "tessera/",
            "s3_endpoint_url": moto_endpoint,
            "s3_region": S3_REGION,
            "s3_access_key_id": S3_CREDENTIALS["access_key_id"],
            "s3_secret_access_key": S3_CREDENTIALS["secret_access_key"],
        },
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_upload_process_download_delete_on_s3(s3_client: httpx.AsyncClient, raw_s3: Any, s3_bucket: str) -> None:
    user = await register(s3_client)
    collection = await s3_client.post("/api/v1/collections", json={"name": "S3"}, headers=user.headers)
    content = b"# Stored in S3\n\nThe original lives in a bucket, the chunks in the database.\n"
    response = await s3_client.post(
        "/api/v1/documents",
        data={"collection_id": collection.json()["id"]},
        files={"files": ("s3.md", content)},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    document = response.json()["documents"][0]
    keys = [item["Key"] for item in raw_s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == [f"tessera/{user.org_id.replace('-', '')}/{document['sha256'][:2]}/{document['sha256']}"]

    assert await process_inline(uuid.UUID(document["id"]), 1) == "ready"
    download = await s3_client.get(f"/api/v1/documents/{document['id']}/file", headers=user.headers)
    assert download.content == content

    assert (await s3_client.delete(f"/api/v1/documents/{document['id']}", headers=user.headers)).status_code == 204
    assert raw_s3.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []
