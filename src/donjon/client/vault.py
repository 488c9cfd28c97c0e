"""``VaultClient``: push and pull datasets and models, checking digests at both ends.

Uploads hash the file first and announce the digest (``X-Donjon-Digest``),
so the server refuses bytes that changed on the way; downloads hash what
arrives, compare it with the digest the server announced and with the
version's record, and only then move the file into place (atomic rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from donjon.core.net import is_loopback
from donjon.errors import (
    AccessDenied,
    AuthenticationError,
    Conflict,
    DonjonError,
    InputError,
    NotFound,
    RegistryError,
    VerificationError,
)

CHUNK = 1 << 20
_COLLECTION = {"dataset": "datasets", "model": "models"}


def check_url(url: str, *, allow_insecure_http: bool = False) -> None:
    """Refuse a URL that is not http(s), and plain HTTP to a non-loopback host."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(f"not a vault URL: {url!r} (expected https://host[:port])")
    if parsed.scheme == "http" and not allow_insecure_http and not is_loopback(parsed.host):
        raise InputError(
            f"refusing plain HTTP to {parsed.host}: the token would cross the network in "
            "clear; use https://, or pass --insecure-http (vault.insecure_http) on purpose"
        )


def tls_context(
    ca_file: Path | None, client_cert: Path | None, client_key: Path | None
) -> ssl.SSLContext:
    """The system's trust store, or ``ca_file``; with a client certificate for mTLS."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if client_cert is not None:
            context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    except (OSError, ssl.SSLError) as e:
        raise InputError(f"cannot load the TLS files: {e}") from e
    return context


class VaultClient:
    """A session with one vault server, authenticated by one bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        """``token`` None: authenticate by ``client_cert`` alone (mTLS, a service account).

        Plain ``http://`` to a host other than this machine is refused unless
        ``allow_insecure_http``: the token would cross the network in clear.
        """
        check_url(base_url, allow_insecure_http=allow_insecure_http)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            verify=tls_context(ca_file, client_cert, client_key)
            if ca_file or client_cert
            else True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- calls -----------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return self._json("GET", "/v1/whoami")

    def names(self, kind: str, prefix: str = "") -> list[str]:
        found: list[str] = self._json("GET", f"/v1/{_c(kind)}", params={"prefix": prefix})["names"]
        return found

    def versions(self, kind: str, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json("GET", f"/v1/{_c(kind)}/{name}/versions")[
            "versions"
        ]
        return found

    def get(self, kind: str, name: str, version: int | None = None) -> dict[str, Any]:
        path = f"/v1/{_c(kind)}/{name}" + (f"/versions/{version}" if version else "")
        return self._json("GET", path)

    def gates(self, kind: str, name: str, version: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json(
            "GET", f"/v1/{_c(kind)}/{name}/versions/{version}/gates"
        )["gates"]
        return found

    def push(
        self,
        kind: str,
        name: str,
        path: Path,
        *,
        metadata: dict[str, Any] | None = None,
        lineage: Sequence[str] = (),
        media_type: str = "application/octet-stream",
        digest: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload ``path`` as the next version of ``name``; returns the version record.

        The file is hashed first unless ``digest`` (``sha256:<hex>``, e.g. from a
        signed manifest) is given; either way the server refuses bytes that do
        not match it.
        """
        announced = digest or f"sha256:{_sha256_file(path)}"
        headers = {
            "Content-Type": media_type,
            "Content-Length": str(path.stat().st_size),
            "X-Donjon-Digest": announced,
        }
        # a header carries ASCII only: other characters become "_", the extension stays,
        # so the push-time scan judges "modèle.py" as it judges "model.py" (and as the
        # local `donjon scan` does), never as a nameless file
        headers["X-Donjon-Filename"] = "".join(
            c if c.isascii() and c.isprintable() else "_" for c in path.name
        )
        if metadata:
            headers["X-Donjon-Metadata"] = json.dumps(metadata, separators=(",", ":"))
        if lineage:
            headers["X-Donjon-Lineage"] = ",".join(lineage)
        return self._json(
            "POST",
            f"/v1/{_c(kind)}/{name}/versions",
            content=_chunks(path, progress),
            headers=headers,
        )

    def pull(
        self,
        kind: str,
        name: str,
        dest: Path,
        version: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Download a version (the latest by default) to ``dest``; VerificationError on mismatch.

        ``progress`` is called with the size of each chunk received."""
        record = self.get(kind, name, version)
        number = record["version"]
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        hasher = hashlib.sha256()
        try:
            with self._http.stream("GET", f"/v1/{_c(kind)}/{name}/versions/{number}/blob") as r:
                if r.status_code != 200:
                    r.read()
                    _raise(r)
                announced = r.headers.get("X-Donjon-Digest", "")
                with open(tmp, "xb") as out:
                    for chunk in r.iter_bytes(CHUNK):
                        hasher.update(chunk)
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
            got = f"sha256:{hasher.hexdigest()}"
            if got != announced or got != record["digest"]:
                raise VerificationError(
                    f"downloaded bytes have digest {got}; the server announced {announced} "
                    f"and the record says {record['digest']}"
                )
            os.replace(tmp, dest)
        except httpx.HTTPError as e:
            raise RegistryError(f"download of {name}@{number} failed: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
        return record

    def promote(self, name: str, version: int, stage: str) -> dict[str, Any]:
        return self._json(
            "POST", f"/v1/models/{name}/versions/{version}/promote", json={"stage": stage}
        )

    def attach(
        self,
        name: str,
        version: int,
        kind: str,
        path: Path | None = None,
        *,
        data: bytes = b"",
        of: str = "model",
    ) -> dict[str, Any]:
        """Attach a document to a model version (``kind``: signature, provenance or
        fingerprint) or, with ``of="dataset"``, a dataset version (manifest or check):
        the file at ``path``, or ``data``."""
        if path is not None:
            data = Path(path).read_bytes()
        return self._json(
            "POST",
            f"/v1/{of}s/{name}/versions/{version}/attestations",
            params={"kind": kind},
            content=data,
            headers={"Content-Type": "application/json"},
        )

    def attachments(self, name: str, version: int, of: str = "model") -> list[dict[str, Any]]:
        """The documents attached to a model (or ``of`` dataset) version, oldest first."""
        found: list[dict[str, Any]] = self._json(
            "GET", f"/v1/{of}s/{name}/versions/{version}/attestations"
        )["attachments"]
        return found

    def attachment(self, name: str, version: int, digest: str) -> bytes:
        """One attached document's bytes; VerificationError if they do not match ``digest``."""
        path = f"/v1/models/{name}/versions/{version}/attestations/{digest}"
        try:
            response = self._http.get(path)
        except httpx.HTTPError as e:
            raise RegistryError(f"cannot reach the vault: {e}") from e
        if response.status_code >= 400:
            _raise(response)
        got = f"sha256:{hashlib.sha256(response.content).hexdigest()}"
        if got != digest:
            raise VerificationError(f"attachment has digest {got}, not {digest}")
        return response.content

    def quarantine(self, kind: str, name: str, version: int, reason: str) -> dict[str, Any]:
        path = f"/v1/{_c(kind)}/{name}/versions/{version}/quarantine"
        return self._json("POST", path, json={"reason": reason})

    def release(self, kind: str, name: str, version: int, reason: str) -> dict[str, Any]:
        path = f"/v1/{_c(kind)}/{name}/versions/{version}/release"
        return self._json("POST", path, json={"reason": reason})

    def delete(self, kind: str, name: str, version: int, reason: str) -> dict[str, Any]:
        path = f"/v1/{_c(kind)}/{name}/versions/{version}"
        return self._json("DELETE", path, params={"reason": reason})

    # -- plumbing --------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise RegistryError(f"cannot reach the vault: {e}") from e
        if response.status_code >= 400:
            _raise(response)
        body: dict[str, Any] = response.json()
        return body


def _c(kind: str) -> str:
    try:
        return _COLLECTION[kind]
    except KeyError:
        raise InputError(f"kind must be 'dataset' or 'model', not {kind!r}") from None


def _raise(response: httpx.Response) -> None:
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text[:500]
    message = f"{response.status_code}: {detail}"
    status = response.status_code
    error: type[DonjonError] = RegistryError
    if status == 401:
        error = AuthenticationError
    elif status == 403:
        error = AccessDenied
    elif status in (404, 410):
        error = NotFound
    elif status == 409:
        error = Conflict
    elif status in (400, 413, 422):
        error = InputError
    raise error(message)


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _chunks(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
            if progress is not None:
                progress(len(chunk))
