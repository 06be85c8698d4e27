from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tessera.core.documents.storage.registry import create_blob_store
from tessera.core.documents.storage.s3 import S3BlobStore
from tessera.core.errors import ProviderRejected, ProviderUnavailable

from .conftest import S3_CREDENTIALS, S3_REGION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def stored_keys(raw_s3: S3Client, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in raw_s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_registry_builds_an_s3_store() -> None:
    store = create_blob_store("s3", bucket="docs", prefix="/tenant/blobs/", region="eu-west-1")
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("docs", "tenant/blobs/")


@pytest.mark.parametrize("prefix", ["../up", "a//b", "sp ace"])
def test_an_unsafe_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="blob key"):
        S3BlobStore("docs", prefix=prefix)


def test_a_bucket_is_required() -> None:
    with pytest.raises(ValueError, match="bucket"):
        S3BlobStore("")


async def test_objects_live_under_the_prefix(s3_store: S3BlobStore, raw_s3: S3Client, s3_bucket: str) -> None:
    await s3_store.put_bytes("org/ab/one", b"1")
    assert stored_keys(raw_s3, s3_bucket) == ["blobs/org/ab/one"]
    await s3_store.delete("org/ab/one")
    assert stored_keys(raw_s3, s3_bucket) == []


async def test_a_big_file_is_uploaded_in_parts(
    s3_store: S3BlobStore, raw_s3: S3Client, s3_bucket: str, source_dir: Path
) -> None:
    data = os.urandom(9 * 1024 * 1024)  # over boto3's 8 MiB multipart threshold
    source = source_dir / "big.bin"
    source.write_bytes(data)
    await s3_store.put_file("big", source)
    # A multipart object's ETag is "<md5 of part md5s>-<part count>".
    assert raw_s3.head_object(Bucket=s3_bucket, Key="blobs/big")["ETag"].strip('"').endswith("-2")
    assert b"".join([piece async for piece in s3_store.open_stream("big")]) == data


async def test_delete_many_sends_at_most_1000_keys_per_request(
    s3_store: S3BlobStore, raw_s3: S3Client, s3_bucket: str
) -> None:
    keys = [f"k/{i:04d}" for i in range(2500)]
    present = [keys[0], keys[999], keys[1000], keys[2499]]
    for key in present:
        await s3_store.put_bytes(key, b"x")
    batch_sizes: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        batch_sizes.append(len(params["Delete"]["Objects"]))

    # Watching the requests the store's own client sends (a botocore event hook, not a mock).
    s3_store._get_client().meta.events.register("provide-client-params.s3.DeleteObjects", record)
    await s3_store.delete_many(keys)
    assert batch_sizes == [1000, 1000, 500]
    assert stored_keys(raw_s3, s3_bucket) == []


async def test_check_fails_for_a_missing_bucket(moto_endpoint: str) -> None:
    store = S3BlobStore("no-such-bucket-here", endpoint_url=moto_endpoint, region=S3_REGION, **S3_CREDENTIALS)
    with pytest.raises(ProviderRejected, match="HeadBucket"):
        await store.check()


async def test_an_unreachable_server_is_provider_unavailable() -> None:
    with socket.socket() as probe:  # a port that nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3BlobStore("docs", endpoint_url=f"http://127.0.0.1:{port}", region=S3_REGION, **S3_CREDENTIALS)
    with pytest.raises(ProviderUnavailable, match="Could not connect"):
        await store.check()
    with pytest.raises(ProviderUnavailable):
        await store.get_bytes("any")
