"""Blob stores by kind; settings pick one (see `documents.runtime.blob_store_from_settings`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

from tessera.core.documents.storage.base import BlobStore

BlobStoreKind = Literal["local", "s3"]


def _local(**options: Any) -> BlobStore:
    from tessera.core.documents.storage.local import LocalBlobStore

    return LocalBlobStore(root=Path(options.pop("root")), **options)


def _s3(**options: Any) -> BlobStore:
    # boto3 takes a noticeable time to import: only pay for it when S3 is chosen.
    from tessera.core.documents.storage.s3 import S3BlobStore

    return S3BlobStore(**options)


BLOB_STORES: dict[BlobStoreKind, Callable[..., BlobStore]] = {"local": _local, "s3": _s3}


def create_blob_store(kind: str, **options: Any) -> BlobStore:
    """The store of `kind` built from its constructor options (`root` for local; `bucket`, … for s3)."""
    if kind not in BLOB_STORES:
        known = ", ".join(repr(name) for name in get_args(BlobStoreKind))
        raise ValueError(f"unknown blob store kind {kind!r}; expected one of {known}")
    return BLOB_STORES[kind](**options)
