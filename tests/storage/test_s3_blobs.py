"""The S3 blob store against moto's in-process S3 (no network)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from donjon.core.artifacts import Digest
from donjon.errors import NotFound, StorageError
from donjon.storage.blobs import CorruptBlob, DigestMismatch
from donjon.storage.s3_blobs import PART_SIZE, S3BlobStore

BUCKET = "vault"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def keys(client: Any) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def test_multipart_round_trip(s3: Any) -> None:
    store = S3BlobStore(s3, BUCKET, "blobs")
    data = bytes(range(256)) * (PART_SIZE // 256 + 5000)  # two parts
    digest = store.put(io.BytesIO(data), expected=sha(data))
    assert keys(s3) == [f"blobs/sha256/{digest.hex}"]
    assert store.size(digest) == len(data)
    with store.open(digest) as stream:
        assert stream.read() == data
    assert store.put(io.BytesIO(data)) == digest
    assert store.put(io.BytesIO(b"")) == sha(b"")
    assert len(keys(s3)) == 2
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_wrong_digest_leaves_no_object(s3: Any) -> None:
    store = S3BlobStore(s3, BUCKET)
    with pytest.raises(DigestMismatch):
        store.put(io.BytesIO(b"abc"), expected=sha(b"abd"))
    assert keys(s3) == []


def test_a_broken_stream_aborts_the_upload(s3: Any) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise StorageError("peer went away")

    store = S3BlobStore(s3, BUCKET)
    with pytest.raises(StorageError):
        store.put(Broken())  # type: ignore[arg-type]
    assert keys(s3) == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_tampered_objects_and_missing_ones(s3: Any) -> None:
    store = S3BlobStore(s3, BUCKET)
    digest = store.put(io.BytesIO(b"weights"))
    s3.put_object(Bucket=BUCKET, Key=store.key(digest), Body=b"weightz")
    with store.open(digest) as stream, pytest.raises(CorruptBlob):
        stream.read()
    with pytest.raises(NotFound):
        store.open(sha(b"never"))
    assert not store.exists(sha(b"never"))


def test_the_vault_keeps_blobs_in_s3_when_configured(s3: Any) -> None:
    from donjon.app import build_vault
    from donjon.config import load_settings
    from donjon.core.bus import EventBus
    from donjon.registry import Kind
    from tests.registry.fakes import TableAuthorizer, TokenAuthenticator
    from tests.registry.harness import ALICE

    settings = load_settings(vault={"s3_bucket": BUCKET, "s3_prefix": "vault"})
    authorizer = TableAuthorizer()
    authorizer.allow("alice", "dataset.write", "datasets/fraud")
    authorizer.allow("alice", "dataset.read", "datasets/fraud")
    services = build_vault(settings, TokenAuthenticator({}), authorizer, EventBus())
    try:
        version = services.registry.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"rows"))
        assert keys(s3) == [f"vault/sha256/{version.digest.hex}"]
        _, stream = services.registry.open(ALICE, Kind.DATASET, "fraud/tx", 1)
        with stream:
            assert stream.read() == b"rows"
    finally:
        services.close()
