"""DSSE envelopes (secure-systems-lab/dsse v1) around in-toto Statements.

``sig = Sign(PAE(payloadType, payload))`` with
``PAE = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``. The ``keyid`` is
not authenticated and is never used to decide anything.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.provenance.errors import MalformedSignature
from donjon.provenance.keys import curve_hash

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class Signer(Protocol):
    """Anything that signs bytes with an ECDSA key and shows its public half."""

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedSignature(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedSignature(f"{what} is not valid base64") from e


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True, slots=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]

    @classmethod
    def sign(
        cls, signer: Signer, payload: bytes, payload_type: str = IN_TOTO_PAYLOAD_TYPE
    ) -> Envelope:
        return cls(payload, payload_type, (signer.sign(pae(payload_type, payload)),))

    def verify(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        """True when any signature verifies with ``public_key`` over the PAE."""
        message = pae(self.payload_type, self.payload)
        algorithm = ec.ECDSA(curve_hash(public_key))
        for signature in self.signatures:
            try:
                public_key.verify(signature, message, algorithm)
            except InvalidSignature:
                continue
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": b64(self.payload),
            "payloadType": self.payload_type,
            "signatures": [{"sig": b64(s), "keyid": ""} for s in self.signatures],
        }

    @classmethod
    def from_dict(cls, data: object) -> Envelope:
        if not isinstance(data, Mapping):
            raise MalformedSignature("the DSSE envelope is not a JSON object")
        payload = b64decode(data.get("payload"), "DSSE payload")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str):
            raise MalformedSignature("the DSSE envelope has no payloadType")
        raw = data.get("signatures")
        if not isinstance(raw, list) or not raw:
            raise MalformedSignature("the DSSE envelope has no signatures")
        sigs = []
        for entry in raw:
            if not isinstance(entry, Mapping):
                raise MalformedSignature("a DSSE signature entry is not an object")
            sigs.append(b64decode(entry.get("sig"), "DSSE signature"))
        return cls(payload, payload_type, tuple(sigs))

    def statement(self) -> dict[str, Any]:
        """The in-toto Statement v1 inside (not verified: call :meth:`verify` first)."""
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise MalformedSignature(
                f"payload type is {self.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE}"
            )
        try:
            statement = json.loads(self.payload)
        except ValueError as e:
            raise MalformedSignature("the DSSE payload is not JSON") from e
        if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
            raise MalformedSignature(f"the DSSE payload is not an in-toto {STATEMENT_TYPE}")
        subjects = statement.get("subject")
        if not isinstance(subjects, list) or not subjects:
            raise MalformedSignature("the in-toto statement has no subject")
        for subject in subjects:
            if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict):
                raise MalformedSignature("an in-toto subject has no digest")
        return statement


def statement_bytes(
    subjects: list[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]
) -> bytes:
    """Serialise an in-toto Statement v1 (compact, sorted keys: stable bytes)."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
