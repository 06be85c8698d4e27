"""Blob store fixtures: every behavioural test runs on the local store and on S3 (a moto server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tessera.core.documents.storage.base import BlobStore
from tessera.core.documents.storage.local import LocalBlobStore
from tessera.core.documents.storage.s3 import S3BlobStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_REGION = "us-east-1"
# Dummy credentials, passed explicitly so nothing depends on (or leaks into) the environment.
S3_CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3 API over HTTP; port 0 lets the OS pick a free port, so xdist workers never collide."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def raw_s3(moto_endpoint: str) -> S3Client:
    """A plain boto3 client, to set up buckets and look behind the store's back."""
    session = boto3.session.Session(
        aws_access_key_id=S3_CREDENTIALS["access_key_id"],
        aws_secret_access_key=S3_CREDENTIALS["secret_access_key"],
        region_name=S3_REGION,
    )
    return session.client("s3", endpoint_url=moto_endpoint)


@pytest.fixture
def s3_bucket(raw_s3: S3Client) -> str:
    """A bucket of its own for each test: tests share the server, never data."""
    bucket = f"tessera-test-{uuid.uuid4().hex[:16]}"
    raw_s3.create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_store(moto_endpoint: str, s3_bucket: str) -> S3BlobStore:
    return S3BlobStore(s3_bucket, prefix="blobs", endpoint_url=moto_endpoint, region=S3_REGION, **S3_CREDENTIALS)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def local_store(store_root: Path) -> LocalBlobStore:
    return LocalBlobStore(store_root)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> BlobStore:
    result: BlobStore = request.getfixturevalue(f"{request.param}_store")
    return result


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """Where callers stage uploads: outside the store root."""
    path = tmp_path / "staging"
    path.mkdir()
    return path
