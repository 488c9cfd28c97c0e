"""``donjon gateway verify-suspect``: the watermark test, signed as evidence.

The gateway's records of one model (:mod:`donjon.gateway.watermark`) are
replayed to a suspect model; :func:`~donjon.gateway.watermark.verdict.judge`
tests each principal; the verdict becomes an in-toto Statement in a DSSE
envelope signed with one of Donjon's keys (:mod:`donjon.provenance`), listing
the SHA-256 of every input queried with what was expected and answered. A
positive verdict is a DJ-GW-011 finding on the bus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.events import SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.errors import InputError

if TYPE_CHECKING:
    from donjon.gateway.settings import GatewaySettings, ModelSettings
    from donjon.gateway.watermark.suspect import Suspect
    from donjon.gateway.watermark.verdict import PrincipalVerdict
    from donjon.provenance.dsse import Envelope, Signer

PREDICATE_TYPE = "https://donjon.dev/attestations/watermark-verdict/v1"


@dataclass(frozen=True)
class SuspectReport:
    model: str
    suspect: str
    alpha: float
    verdicts: list[PrincipalVerdict]
    statement: bytes  # the in-toto Statement (signed into ``envelope`` when a key is given)
    envelope: Envelope | None

    @property
    def identified(self) -> list[str]:
        return [v.principal for v in self.verdicts if v.identified]

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "suspect": self.suspect,
            "alpha": self.alpha,
            "identified": self.identified,
            "principals": [_verdict_doc(v, with_inputs=False) for v in self.verdicts],
            "signed": self.envelope is not None,
        }


def watermarked_model(gateway: GatewaySettings, name: str) -> ModelSettings:
    for model in gateway.models:
        if model.name == name:
            if model.watermark is None:
                raise InputError(f"model {name!r} has no [models.watermark] section")
            return model
    raise InputError(f"no model {name!r} in the gateway config")


def verify_suspect(
    settings: Settings,
    gateway: GatewaySettings,
    model_name: str,
    suspect: Suspect,
    *,
    principals: Sequence[str] | None = None,
    alpha: float = 1e-6,
    null_rate: float | None = None,
    signer: Signer | None = None,
    bus: EventBus | None = None,
) -> SuspectReport:
    from donjon.gateway.watermark.build import mark_store
    from donjon.gateway.watermark.verdict import judge

    model = watermarked_model(gateway, model_name)
    assert model.watermark is not None  # noqa: S101 - checked by watermarked_model
    store = mark_store(model.watermark, gateway.state, settings.home)
    records = store.records(model_name, principals)
    if not records:
        who = f" for {', '.join(principals)}" if principals else ""
        raise InputError(f"no watermarked inputs recorded for model {model_name!r}{who}")
    answers = suspect.answers([r.row for r in records])
    by_address = {r.address: a for r, a in zip(records, answers, strict=True)}
    verdicts = judge(
        records, by_address, alpha=alpha, null_rate=null_rate, names=model.watermark.labels
    )
    statement = _statement(model_name, suspect.description, alpha, null_rate, verdicts)
    envelope = None
    if signer is not None:
        from donjon.provenance.dsse import Envelope

        envelope = Envelope.sign(signer, statement)
    if bus is not None:
        for verdict in verdicts:
            if verdict.identified:
                bus.publish(_finding(model_name, suspect.description, verdict))
    return SuspectReport(model_name, suspect.description, alpha, verdicts, statement, envelope)


def _statement(
    model: str,
    suspect: str,
    alpha: float,
    null_rate: float | None,
    verdicts: list[PrincipalVerdict],
) -> bytes:
    from donjon.provenance.dsse import statement_bytes

    principals = [_verdict_doc(v, with_inputs=True) for v in verdicts]
    answered = json.dumps(
        [[e.record.input_sha256, e.answered] for v in verdicts for e in v.evidence],
        separators=(",", ":"),
    ).encode()
    subject = {
        "name": f"suspect:{suspect}",
        # what the suspect answered to the recorded inputs, in the order listed below
        "digest": {"sha256": hashlib.sha256(answered).hexdigest()},
    }
    predicate = {
        "model": model,
        "suspect": suspect,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "alpha": alpha,
        "null_rate_floor": null_rate,
        "keys": sorted({e.record.key for v in verdicts for e in v.evidence}),
        "principals": principals,
    }
    return statement_bytes([subject], PREDICATE_TYPE, predicate)


def _verdict_doc(verdict: PrincipalVerdict, *, with_inputs: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "principal": verdict.principal,
        "identified": verdict.identified,
        "marks": verdict.marks,
        "reproduced": verdict.reproduced,
        "controls": verdict.controls,
        "control_hits": verdict.control_hits,
        "null_rate": verdict.null_rate,
        "p_binomial": verdict.p_binomial,
        "p_exact": verdict.p_exact,
        "ranked": verdict.ranked,
        "rank_sum": verdict.rank_sum,
        "p_rank": verdict.p_rank,
        "p_value": verdict.p_value,
        "carried": verdict.carried,
    }
    if with_inputs:
        doc["inputs"] = [
            {
                "sha256": e.record.input_sha256,
                "kind": e.record.kind,
                "keyed": e.record.keyed,
                "answered": e.answered,
                "hit": e.hit,
                "rank": e.rank,
                "family": e.record.family or None,
            }
            for e in verdict.evidence
        ]
    return doc


def _finding(model: str, suspect: str, verdict: PrincipalVerdict) -> SecurityEvent:
    from donjon.gateway.rules import STOLEN_MODEL

    finding = Finding(
        STOLEN_MODEL,
        Subject(model=model, principal=verdict.principal, endpoint=suspect),
        f"suspect {suspect} reproduces {verdict.reproduced} of {verdict.marks} watermarked "
        f"answers given to {verdict.principal} (p = {verdict.p_value:.2e})",
        evidence=_verdict_doc(verdict, with_inputs=False),
    )
    return SecurityEvent.of_finding(finding, "gateway")
