"""Service behaviour that HTTP cannot provoke on demand: a transaction that rolls back after the
file was stored leaves no file behind."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tessera.core.audit.service import RequestMeta
from tessera.core.db.session import unit_of_work
from tessera.core.documents import service
from tessera.core.documents.ingest_cli import _acting_principal
from tessera.core.documents.pipeline import blob_key
from tests.factories import register


class Boom(Exception):
    pass


async def test_rolled_back_upload_leaves_no_file(client: httpx.AsyncClient, app: FastAPI, tmp_path: Path) -> None:
    user = await register(client)
    collection = await client.post("/api/v1/collections", json={"name": "C"}, headers=user.headers)
    content = b"a file whose upload is rolled back"
    source = tmp_path / "upload.txt"
    source.write_bytes(content)

    async def chunks() -> bytes:
        data, source_bytes[0] = source_bytes[0], b""
        return data

    source_bytes = [content]
    staged = await service.stage_stream(
        chunks, filename="upload.txt", staging_dir=tmp_path / "staging", max_bytes=1_000_000
    )
    store = app.state.blob_store
    keys: list[str] = []

    async def upload_then_fail() -> None:
        async with unit_of_work(app.state.sessionmaker) as session:
            principal = await _acting_principal(session, None, user.email)
            added = await service.add_documents(
                session, principal, collection_id=uuid.UUID(collection.json()["id"]), staged=[staged], metadata={},
                store=store, jobs=None, meta=RequestMeta(ip=None, user_agent=None, request_id=None),
            )  # fmt: skip
            keys.append(blob_key(added[0].document.org_id, staged.sha256))
            assert await store.exists(keys[0])
            raise Boom

    with pytest.raises(Boom):
        await upload_then_fail()

    assert not await store.exists(keys[0])
    listed = await client.get("/api/v1/documents", headers=user.headers)
    assert listed.json()["items"] == []
