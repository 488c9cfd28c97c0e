"""Watch wiring: the gateway's answer reader and signed fingerprints in the vault.

``donjon.watch`` reads model answers through its ``AnswerReader`` port; here it
is the gateway's :class:`~donjon.gateway.outputs.ResponseReader`, so the watch
and the firewall read every server's answers alike. A fingerprint is kept in
the vault as an attachment of its model version: a DSSE envelope (payload type
:data:`~donjon.watch.PAYLOAD_TYPE`) signed with a provenance key, checked
against trusted keys before any check uses it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from donjon.errors import InputError, VerificationError, WatchError
from donjon.watch import PAYLOAD_TYPE, Answers, Fingerprint

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.core.bus import EventBus
    from donjon.gateway.pipeline import Pipeline
    from donjon.provenance.dsse import Signer
    from donjon.watch.drift import DriftMonitor


class GatewayAnswerReader:
    """The watch's ``AnswerReader`` on the gateway's response reader."""

    def __init__(self, model: str, output: str | None = None) -> None:
        from donjon.gateway.outputs import ResponseReader

        self._reader = ResponseReader(model, output)

    def read(self, body: bytes) -> Answers:
        from donjon.gateway.outputs import BadUpstreamResponse

        try:
            found = self._reader.read(body)
        except BadUpstreamResponse as e:
            raise WatchError(str(e)) from e
        labels = tuple(self._reader.label_name(int(v)) for v in found.labels)
        part = found.parts[0]
        scores = None if part.scores is None else np.asarray(part.scores, dtype=np.float64)
        return Answers(labels, scores)


def seal(fingerprint: Fingerprint, signer: Signer) -> bytes:
    """The fingerprint as a signed DSSE envelope (JSON bytes), ready to attach."""
    from donjon.provenance.dsse import Envelope

    envelope = Envelope.sign(signer, fingerprint.to_json(), PAYLOAD_TYPE)
    return json.dumps(envelope.to_dict(), sort_keys=True).encode()


def unseal(data: bytes, keys: Sequence[ec.EllipticCurvePublicKey]) -> Fingerprint:
    """The fingerprint inside a DSSE envelope signed by one of ``keys``; else VerificationError."""
    envelope = _envelope(data)
    if not keys:
        raise VerificationError("no trusted key to verify the fingerprint with")
    if not any(envelope.verify(key) for key in keys):
        raise VerificationError("the fingerprint is not signed by a trusted key")
    return Fingerprint.from_json(envelope.payload)


def inspect_fingerprint(data: bytes) -> Mapping[str, Any]:
    """The vault's attach-time check of a fingerprint: well formed, no trust decided."""
    fingerprint = Fingerprint.from_json(_envelope(data).payload)
    return {
        "model": fingerprint.model,
        "version": fingerprint.version,
        "endpoint": fingerprint.endpoint,
        "points": fingerprint.size,
        "tolerance": fingerprint.tolerance,
    }


def _envelope(data: bytes) -> Any:
    from donjon.provenance.dsse import Envelope
    from donjon.provenance.errors import MalformedSignature

    try:
        envelope = Envelope.from_dict(json.loads(data))
    except (ValueError, MalformedSignature) as e:
        raise InputError(f"malformed fingerprint envelope: {e}") from None
    if envelope.payload_type != PAYLOAD_TYPE:
        raise InputError(f"not a fingerprint: payload type {envelope.payload_type!r}")
    return envelope


def watch_drift(
    pipeline: Pipeline, bucket_seconds: float, bus: EventBus
) -> dict[str, DriftMonitor]:
    """Feed the gateway's traffic to one drift monitor per model that has a reference profile."""
    from donjon.watch.drift import DriftMonitor

    monitors = {
        guard.name: DriftMonitor(
            guard.name,
            guard.profile.sample * guard.profile.scale,
            bus.publish,
            bucket_seconds=bucket_seconds,
        )
        for guard in pipeline.models
        if guard.profile is not None
    }

    def observe(model: str, rows: Any, labels: Any) -> None:
        monitor = monitors.get(model)
        if monitor is not None:
            monitor.observe(rows, labels)

    pipeline.observer = observe
    return monitors
