"""Blobs in an S3 bucket (AWS or a compatible server: MinIO, R2, Ceph…) under an optional prefix.

boto3 is synchronous, so every call runs in a worker thread. Each store makes one client on first use
and shares it between threads, which boto3 clients allow (sessions do not, hence the lock).
botocore errors become `BlobNotFound`, `ProviderRejected` (the server refused: credentials, policy)
or `ProviderUnavailable` (it could not be reached or failed) here, so callers never see vendor types.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tessera.core.documents.storage.base import DEFAULT_STREAM_CHUNK, BlobNotFound, validate_key
from tessera.core.errors import ProviderRejected, ProviderUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import DeleteObjectsOutputTypeDef, DeleteTypeDef

DELETE_BATCH: Final = 1000
"""The most keys one DeleteObjects request accepts."""
_NOT_FOUND: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_T = TypeVar("_T")
# Sessions are not thread-safe, so clients are made under a lock. One session serves every store:
# it caches the parsed service model, which otherwise costs ~150 ms per client.
_SESSION_LOCK: Final = threading.Lock()


@functools.cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


class S3BlobStore:
    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 blob store needs a bucket name")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{validate_key(prefix)}/" if prefix else ""
        self._endpoint_url = endpoint_url
        self._region = region
        # Without explicit keys boto3 falls back to its usual chain (environment, profile, instance role).
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._client: S3Client | None = None

    def _object_key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _get_client(self) -> S3Client:
        with _SESSION_LOCK:
            if self._client is None:
                self._client = _shared_session().client(
                    "s3",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    # Calls run in the default thread pool; let each of its threads hold a connection.
                    config=Config(retries={"mode": "standard"}, max_pool_connections=32),
                )
            return self._client

    async def _run(self, call: Callable[[S3Client], _T], key: str | None = None) -> _T:
        def run() -> _T:
            return call(self._get_client())

        try:
            return await asyncio.to_thread(run)
        except ClientError as error:
            raise _translate(error, key) from error
        except S3UploadFailedError as error:  # upload_file wraps the ClientError in a message
            raise ProviderUnavailable(f"S3 upload of {key!r} failed: {error}") from error
        except BotoCoreError as error:
            raise ProviderUnavailable(f"S3 is unavailable: {error}") from error

    async def put_file(self, key: str, source: Path) -> None:
        object_key = self._object_key(key)
        # upload_file switches to a multipart upload for big files (8 MiB and up by default).
        await self._run(lambda client: client.upload_file(str(source), self.bucket, object_key), key)

    async def put_bytes(self, key: str, data: bytes) -> None:
        object_key = self._object_key(key)
        await self._run(lambda client: client.put_object(Bucket=self.bucket, Key=object_key, Body=data), key)

    async def get_bytes(self, key: str) -> bytes:
        object_key = self._object_key(key)

        def read(client: S3Client) -> bytes:
            body = client.get_object(Bucket=self.bucket, Key=object_key)["Body"]
            with body:
                return body.read()

        return await self._run(read, key)

    async def open_stream(self, key: str, chunk_size: int = DEFAULT_STREAM_CHUNK) -> AsyncIterator[bytes]:
        object_key = self._object_key(key)
        body = await self._run(lambda client: client.get_object(Bucket=self.bucket, Key=object_key)["Body"], key)
        pieces: Iterator[bytes] = body.iter_chunks(chunk_size)
        try:
            while True:
                try:
                    piece = await asyncio.to_thread(next, pieces, b"")
                except BotoCoreError as error:
                    raise ProviderUnavailable(f"S3 stream of {key!r} broke: {error}") from error
                if not piece:
                    break
                yield piece
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        object_key = self._object_key(key)
        try:
            await self._run(lambda client: client.head_object(Bucket=self.bucket, Key=object_key), key)
        except BlobNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        # DeleteObject succeeds for a missing key, which is the idempotence the protocol asks for.
        await self._run(lambda client: client.delete_object(Bucket=self.bucket, Key=object_key), key)

    async def delete_many(self, keys: Iterable[str]) -> None:
        object_keys = [self._object_key(key) for key in keys]  # validate all before removing any
        for start in range(0, len(object_keys), DELETE_BATCH):
            batch = object_keys[start : start + DELETE_BATCH]
            response = await self._run(functools.partial(_delete_objects, bucket=self.bucket, object_keys=batch))
            # DeleteObjects answers 200 even when some keys failed; they are listed in Errors.
            if errors := response.get("Errors"):
                first = errors[0]
                raise ProviderRejected(
                    f"S3 refused to delete {len(errors)} of {len(batch)} objects, "
                    f"e.g. {first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                )

    async def check(self) -> None:
        await self._run(lambda client: client.head_bucket(Bucket=self.bucket))


def _delete_objects(client: S3Client, *, bucket: str, object_keys: list[str]) -> DeleteObjectsOutputTypeDef:
    request: DeleteTypeDef = {"Objects": [{"Key": object_key} for object_key in object_keys], "Quiet": True}
    return client.delete_objects(Bucket=bucket, Delete=request)


def _translate(error: ClientError, key: str | None) -> Exception:
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if key is not None and code in _NOT_FOUND:
        return BlobNotFound(key)
    message = f"S3 {error.operation_name} failed: {code} {details.get('Message', '')}".strip()
    if 400 <= status < 500 and status not in (408, 429):
        return ProviderRejected(message)
    return ProviderUnavailable(message)
