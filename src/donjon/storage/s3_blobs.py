"""The BlobStore port on an S3-compatible object store (AWS S3, MinIO, Ceph...).

Keys: ``<prefix>sha256/<64 hex>``. An upload streams into a multipart upload
under ``<prefix>tmp/<uuid>`` (one part in memory at a time) while it is
hashed; a digest mismatch or any error aborts or deletes it, and only a
verified upload is copied server-side to its content key. Reads hash what
they serve and fail at the end if the object changed.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, BinaryIO

from donjon.core.artifacts import Digest
from donjon.errors import InputError, NotFound, StorageError
from donjon.storage.blobs import ALGORITHM, DigestMismatch, VerifyingReader

PART_SIZE = 8 << 20  # S3's minimum part is 5 MiB


class S3BlobStore:
    """Content-addressed blobs in one bucket; ``client`` is a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, digest: Digest) -> str:
        if digest.algorithm != ALGORITHM:
            raise InputError(f"this store keeps {ALGORITHM} blobs, not {digest.algorithm}")
        return f"{self.prefix}{ALGORITHM}/{digest.hex}"

    def put(self, stream: BinaryIO, expected: Digest | None = None) -> Digest:
        from botocore.exceptions import BotoCoreError, ClientError

        if expected is not None and expected.algorithm != ALGORITHM:
            raise InputError(f"this store checks {ALGORITHM} digests, not {expected.algorithm}")
        tmp = f"{self.prefix}tmp/{uuid.uuid4().hex}"
        hasher = hashlib.sha256()
        try:
            upload_id = self._s3.create_multipart_upload(Bucket=self.bucket, Key=tmp)["UploadId"]
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"cannot start an upload to {self.bucket}: {e}") from e
        completed = False
        try:
            parts = []
            number = 1
            while True:
                part = _read_part(stream, PART_SIZE)
                if not part and number > 1:
                    break
                hasher.update(part)
                etag = self._s3.upload_part(
                    Bucket=self.bucket, Key=tmp, UploadId=upload_id, PartNumber=number, Body=part
                )["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
                number += 1
                if len(part) < PART_SIZE:
                    break
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=tmp, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            completed = True
            digest = Digest(ALGORITHM, hasher.hexdigest())
            if expected is not None and digest != expected:
                raise DigestMismatch(f"upload has digest {digest}, not the announced {expected}")
            if not self.exists(digest):
                self._s3.copy({"Bucket": self.bucket, "Key": tmp}, self.bucket, self.key(digest))
            return digest
        except (BotoCoreError, ClientError) as e:
            raise StorageError(f"cannot store blob in {self.bucket}: {e}") from e
        finally:
            try:
                if completed:
                    self._s3.delete_object(Bucket=self.bucket, Key=tmp)
                else:
                    self._s3.abort_multipart_upload(Bucket=self.bucket, Key=tmp, UploadId=upload_id)
            except (BotoCoreError, ClientError):  # a leftover tmp object is never served
                pass

    def open(self, digest: Digest) -> BinaryIO:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
        except ClientError as e:
            if _missing(e):
                raise NotFound(f"no blob {digest}") from e
            raise StorageError(f"cannot read blob {digest}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"cannot read blob {digest}: {e}") from e
        return VerifyingReader(body, digest)  # type: ignore[return-value]

    def exists(self, digest: Digest) -> bool:
        return self._head(digest) is not None

    def size(self, digest: Digest) -> int:
        head = self._head(digest)
        if head is None:
            raise NotFound(f"no blob {digest}")
        return int(head["ContentLength"])

    def _head(self, digest: Digest) -> dict[str, Any] | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as e:
            if _missing(e):
                return None
            raise StorageError(f"cannot look up blob {digest}: {e}") from e
        except BotoCoreError as e:
            raise StorageError(f"cannot look up blob {digest}: {e}") from e
        return head


def _read_part(stream: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = stream.read(min(1 << 20, size - got))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _missing(error: Any) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")
