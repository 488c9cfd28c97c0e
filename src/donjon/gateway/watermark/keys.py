"""The watermark's secret: an HMAC key that lives with Donjon's other keys.

A reference is ``keys:ID`` (``$DONJON_HOME/keys/ID.hmac``: 32 random bytes in
hex, mode 0600, created on first use like the ledger's key), ``env:VAR`` (hex or
text of at least 32 bytes in the environment) or ``file:PATH``. The key is never
logged or recorded; records carry its fingerprint (the first 16 hex digits of
SHA-256 over ``donjon-watermark-key`` and the key), so a rotated key's records
stay attributable to the key that made them.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from donjon.errors import ConfigError

MIN_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"donjon-watermark-key\0" + key).hexdigest()[:16]


def resolve_key(
    reference: str,
    keys_dir: Path,
    *,
    base: Path | None = None,
    create: bool = True,
    environ: Mapping[str, str] | None = None,
) -> bytes:
    """The key bytes a reference names; ConfigError when it cannot be read."""
    scheme, _, name = reference.partition(":")
    if scheme == "env":
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise ConfigError(f"watermark key: ${name} is not set")
        return _decode(value.strip(), f"${name}")
    if scheme == "file":
        path = Path(name)
        if base is not None and not path.is_absolute():
            path = base / path
        return _read(path)
    if scheme == "keys":
        if not _KEY_ID.match(name):
            raise ConfigError(f"watermark key: bad key id {name!r}")
        path = keys_dir / f"{name}.hmac"
        if not path.exists():
            if not create:
                raise ConfigError(f"watermark key: no key {name!r} in the key store")
            _create(path)
        return _read(path)
    raise ConfigError(f"watermark key {reference!r}: use keys:ID, env:VAR or file:PATH")


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"watermark key {path} is readable by others: chmod 600 it")
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read watermark key {path}: {e.strerror}") from e
    return _decode(text, str(path))


def _decode(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < MIN_BYTES:
        raise ConfigError(f"watermark key in {where} is shorter than {MIN_BYTES} bytes")
    return key


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_hex(MIN_BYTES) + "\n")
    try:
        os.link(partial, path)  # never replaces a key another process created meanwhile
    except FileExistsError:
        pass
    finally:
        partial.unlink()
