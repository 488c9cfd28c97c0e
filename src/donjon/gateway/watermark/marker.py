"""Keyed watermarks in a model's answers (DAWN, Szyller et al., ACM MM 2021).

For each input row, one HMAC-SHA256 under the watermark key of the scope (the
principal's id in ``principal`` mode, nothing in ``global`` mode), the model's
name and the canonical row (float64, little-endian, -0.0 as 0.0: the gateway's
validated form, so the same input gets the same answer whatever the request's
shape) gives ``u``: ``u < rate`` marks the row (its answer becomes the keyed
label, :mod:`.rewrite`); ``rate <= u < rate + control_rate`` records it as a
look-alike answered truthfully, whose keyed label is the null hypothesis' sample.
Without the key a caller cannot tell which inputs are marked or recorded; the
same input always gets the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal
from donjon.gateway.outputs import ModelOutput
from donjon.gateway.watermark.config import WatermarkSettings
from donjon.gateway.watermark.keys import fingerprint
from donjon.gateway.watermark.records import MarkRecord, MarkStore
from donjon.gateway.watermark.rewrite import rewrite_row

log = logging.getLogger("donjon.gateway")
_SPAN = 2**64
WATERMARK_ACTION = "gateway.watermark"


@dataclass
class Marking:
    changed: bool = False  # an answer was watermarked: the body must be re-serialised
    records: list[MarkRecord] = field(default_factory=list)  # to keep (:meth:`record`)
    events: list[SecurityEvent] = field(default_factory=list)  # one per new record


class Watermarker:
    def __init__(
        self, model: str, settings: WatermarkSettings, key: bytes, store: MarkStore
    ) -> None:
        self.model = model
        self.settings = settings
        self.store = store
        self._key = key
        self.fingerprint = fingerprint(key)
        self._mark_below = int(settings.rate * _SPAN)
        self._record_below = int((settings.rate + settings.control_rate) * _SPAN)
        self._model = model.encode() + b"\0"
        self._per_principal = settings.mode == "principal"
        self._unmarkable_said = False

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"Watermarker({self.model!r}, key {self.fingerprint})"

    def scope(self, principal_id: str) -> bytes:
        who = principal_id.encode() if self._per_principal else b""
        return b"%d:%s%s" % (len(who), who, self._model)

    def draw(self, scope: bytes, row: bytes) -> tuple[bool, bool, int]:
        """(recorded, marked, pick) of one canonical row."""
        digest = hmac.digest(self._key, scope + row, "sha256")
        u = int.from_bytes(digest[:8], "big")
        if u >= self._record_below:
            return False, False, 0
        return True, u < self._mark_below, int.from_bytes(digest[8:16], "big")

    def apply(
        self, principal: Principal, rows: npt.NDArray[np.float64], output: ModelOutput
    ) -> Marking:
        """Watermark ``output`` (in place) for the rows drawn; :meth:`record` keeps them."""
        marking = Marking()
        if len(output.labels) != len(rows):
            return marking
        canonical = np.ascontiguousarray(rows, dtype="<f8") + 0.0
        scope = self.scope(principal.id)
        for index in range(len(canonical)):
            data = canonical[index].tobytes()
            recorded, marked, pick = self.draw(scope, data)
            if not recorded:
                continue
            answer = rewrite_row(
                output,
                index,
                pick,
                apply=marked,
                classes=self.settings.classes,
                names=self.settings.labels,
            )
            if answer is None:
                self._unmarkable()
                continue
            marking.changed |= marked
            record = MarkRecord(
                model=self.model,
                principal=principal.id,
                kind="mark" if marked else "control",
                input_sha256=hashlib.sha256(data).hexdigest(),
                row=tuple(canonical[index].tolist()),
                truth=answer.truth,
                keyed=answer.keyed,
                classes=answer.classes,
                key=self.fingerprint,
                time=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            marking.records.append(record)
        return marking

    async def record(self, marking: Marking, principal: Principal) -> None:
        """Keep the marking's records: one event for each new one, once it is stored."""
        for record in marking.records:
            if await self.store.add(record):
                marking.events.append(_event(record, principal))

    def _unmarkable(self) -> None:
        if not self._unmarkable_said:
            self._unmarkable_said = True
            log.warning(
                "model %s: an answer could not be watermarked (labels only: set "
                "watermark.classes, and watermark.labels for string labels)",
                self.model,
            )


def _event(record: MarkRecord, principal: Principal) -> SecurityEvent:
    given = record.keyed if record.kind == "mark" else record.truth
    return SecurityEvent(
        kind=EventKind.ACTIVITY,
        source="gateway",
        action=WATERMARK_ACTION,
        message=f"model {record.model}: {record.kind} input recorded for {record.principal}",
        outcome=Outcome.SUCCESS,
        principal=principal,
        attributes={
            "model": record.model,
            "kind": record.kind,
            "record": record.address,
            "input_sha256": record.input_sha256,
            "answer": given,
            "key": record.key,
        },
    )
