"""The hash chain: canonical JSON, entry hashes, signed checkpoints.

Canonical JSON (what is hashed and signed) is ``json.dumps`` with keys sorted
at every level, no insignificant whitespace (``","`` and ``":"``), non-ASCII
characters kept as UTF-8 (``ensure_ascii=False``), NaN and infinities refused,
and values JSON cannot express (datetimes in attributes) written as their
``str()``. The text is encoded as UTF-8.

Entry ``n`` is the canonical JSON of ``{"event": <SecurityEvent.to_dict()>,
"seq": n}``; because keys are sorted, its text always ends with
``,"seq":n}``. Its hash is::

    hash(n) = SHA-256( hash(n-1) as 64 lowercase hex characters || body(n) )

with ``hash(0)`` = 64 zeros. A checkpoint signs the canonical JSON of
``{"hash": hash(n), "ledger": <name>, "seq": n, "time": <ISO 8601>}`` with
ECDSA P-256 / SHA-256 (DER signature, base64 in storage and files).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from donjon.core.events import SecurityEvent
from donjon.errors import AuditError, VerificationError

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    try:
        return json.dumps(
            value,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=str,
        )
    except ValueError as e:
        raise AuditError(f"value cannot be written as canonical JSON: {e}") from e


def entry_body(seq: int, event: SecurityEvent) -> str:
    return canonical_json({"event": event.to_dict(), "seq": seq})


def entry_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def body_seq_suffix(seq: int) -> str:
    return f',"seq":{seq}}}'


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: "entry ``seq`` of ledger ``ledger`` has hash ``hash``"."""

    seq: int
    hash: str
    time: datetime
    key_id: str
    signature: str  # base64 DER
    ledger: str = "donjon"

    def payload(self) -> bytes:
        return signed_payload(self.ledger, self.seq, self.hash, self.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time.isoformat(),
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            return cls(
                seq=int(data["seq"]),
                hash=str(data["hash"]),
                time=datetime.fromisoformat(str(data["time"])),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
                ledger=str(data.get("ledger", "donjon")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise VerificationError(f"malformed checkpoint or head file: {e!r}") from e

    def verify(self, public_key_pem: bytes) -> None:
        """Raise VerificationError unless the signature is the key's over the payload."""
        # Imported here: the rule catalogue imports this package in a core install.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            key = serialization.load_pem_public_key(public_key_pem)
        except ValueError as e:
            raise VerificationError(f"unusable public key: {e}") from e
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise VerificationError("checkpoint keys are ECDSA P-256 public keys")
        try:
            key.verify(base64.b64decode(self.signature), self.payload(), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError) as e:
            raise VerificationError(f"checkpoint at entry {self.seq} has a bad signature") from e


def signed_payload(ledger: str, seq: int, hash_: str, time: datetime) -> bytes:
    data = {"hash": hash_, "ledger": ledger, "seq": seq, "time": time.isoformat()}
    return canonical_json(data).encode("utf-8")
