"""The stand-alone API-key file: keys ``djk_<id>_<secret>``, only their hashes stored.

The file is JSON, ``{"keys": [{"id", "principal", "kind", "groups", "sha256"}]}``.
A presented key is looked up by its id and its hash compared in constant time;
an unknown id is compared against a dummy hash, so timing does not tell ids apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.core.identity import Principal, PrincipalKind
from donjon.core.textfile import read_text
from donjon.credentials.secrets import hash_secret, new_secret, secrets_match
from donjon.errors import AuthenticationError, ConfigError, InputError

KEY_PREFIX = "djk_"
_KEY = re.compile(r"^djk_([A-Za-z0-9-]{1,64})_([A-Za-z0-9_-]{16,128})$")
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    principal: Principal
    sha256: str


class KeyFile:
    """API keys of a local key file."""

    def __init__(self, entries: Sequence[KeyEntry]) -> None:
        self._entries = {e.key_id: e for e in entries}

    @classmethod
    def load(cls, path: Path) -> KeyFile:
        try:
            doc = json.loads(read_text(path, "API key file"))  # a byte-order mark too
            entries = [
                KeyEntry(
                    key_id=str(item["id"]),
                    principal=Principal(
                        str(item["principal"]),
                        PrincipalKind(item.get("kind", "user")),
                        groups=tuple(item.get("groups", ())),
                    ),
                    sha256=str(item["sha256"]).lower(),
                )
                for item in doc["keys"]
            ]
        except (InputError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot read API key file {path}: {e}") from e
        bad = [e.key_id for e in entries if not _HASH.match(e.sha256)]
        if bad:
            raise ConfigError(f"API key file {path}: 'sha256' of {bad[0]!r} is not a hex SHA-256")
        return cls(entries)

    def verify(self, token: str) -> Principal:
        match = _KEY.match(token)
        entry = self._entries.get(match.group(1)) if match else None
        expected = entry.sha256 if entry else "0" * 64
        if not secrets_match(expected, hash_secret(token)) or entry is None:
            raise AuthenticationError("invalid API key")
        return entry.principal


def new_api_key(
    key_id: str, principal: str, *, groups: Sequence[str] = (), kind: str = "user"
) -> tuple[str, dict[str, Any]]:
    """A fresh key (shown once) and the entry to store in the key file."""
    if not _ID.match(key_id):
        raise ValueError("key id must be 1-64 letters, digits or dashes")
    token = new_secret(f"{KEY_PREFIX}{key_id}_")
    entry = {
        "id": key_id,
        "principal": principal,
        "kind": PrincipalKind(kind).value,
        "groups": list(groups),
        "sha256": hash_secret(token),
    }
    return token, entry
