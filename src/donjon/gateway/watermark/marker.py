"""Keyed watermarks in a model's answers (DAWN, Szyller et al., ACM MM 2021).

For each input row, one HMAC-SHA256 under the watermark key of the scope (the
principal's id in ``principal`` mode, nothing in ``global`` mode), the model's
name and the canonical row (float64, little-endian, -0.0 as 0.0: the gateway's
validated form, so the same input gets the same answer whatever the request's
shape) gives ``u``: ``u < rate`` marks the row (its answer becomes the keyed
label, :mod:`.rewrite`); ``top <= u < top + control_rate`` records it as a
look-alike answered truthfully, whose keyed label is the null hypothesis' sample
(``top``: the highest rate, below).

A principal the detectors flag (``suspected``, see
:meth:`~donjon.gateway.guard.ModelGuard.inspect`) is marked at ``suspect_rate``
instead, and its look-alikes are recorded at the same multiple of
``control_rate``, so that marks and look-alikes stay the same kind of input
whatever the principal's status (the label tests compare them). The bands are
nested: a row marked at ``rate`` is marked at ``suspect_rate`` too.
Without the key a caller cannot tell which inputs are marked or recorded; the
same input always gets the same answer from the same principal and status.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal
from donjon.gateway.outputs import ModelOutput
from donjon.gateway.watermark.config import WatermarkSettings
from donjon.gateway.watermark.families import Carrier, FamilyMemory, Recalled
from donjon.gateway.watermark.keys import fingerprint
from donjon.gateway.watermark.records import MarkRecord, MarkStore
from donjon.gateway.watermark.rewrite import rewrite_row

log = logging.getLogger("donjon.gateway")
_SPAN = 2**64
_SAME = 1e-4  # scaled distance under which a row is a remembered mark itself
Scale = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
WATERMARK_ACTION = "gateway.watermark"


@dataclass(frozen=True)
class _Bands:
    """Of the HMAC's first 64 bits ``u``: marked below ``mark``, a look-alike within
    ``control <= u < record``."""

    mark: int
    control: int
    record: int


@dataclass
class Marking:
    changed: bool = False  # an answer was watermarked: the body must be re-serialised
    records: list[MarkRecord] = field(default_factory=list)  # to keep (:meth:`record`)
    events: list[SecurityEvent] = field(default_factory=list)  # one per new record
    carriers: list[Carrier] = field(default_factory=list)  # new marks, for near-copies


class Watermarker:
    def __init__(
        self,
        model: str,
        settings: WatermarkSettings,
        key: bytes,
        store: MarkStore,
        *,
        families: FamilyMemory | None = None,
        scale: Scale | None = None,
        radius: float = 0.0,
    ) -> None:
        """``families``, ``scale`` (the profile's) and ``radius``: marks carried to the
        principal's near-copies (:mod:`.families`); without them, none are."""
        self.model = model
        self.settings = settings
        self.store = store
        self.families = families if scale is not None and radius > 0 else None
        self._scale = scale
        self.radius = radius
        self._key = key
        self.fingerprint = fingerprint(key)
        top, base = settings.top_rate, settings.rate
        self._bands = {
            suspected: _Bands(
                int(rate * _SPAN),
                int(top * _SPAN),
                int((top + settings.control_rate * rate / base) * _SPAN),
            )
            for suspected, rate in ((False, base), (True, top))
        }
        self._model = model.encode() + b"\0"
        self._per_principal = settings.mode == "principal"
        self._unmarkable_said = False

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"Watermarker({self.model!r}, key {self.fingerprint})"

    def scope(self, principal_id: str) -> bytes:
        who = principal_id.encode() if self._per_principal else b""
        return b"%d:%s%s" % (len(who), who, self._model)

    def draw(self, scope: bytes, row: bytes, suspected: bool = False) -> tuple[bool, bool, int]:
        """(recorded, marked, pick) of one canonical row."""
        digest = hmac.digest(self._key, scope + row, "sha256")
        u = int.from_bytes(digest[:8], "big")
        bands = self._bands[suspected]
        marked = u < bands.mark
        if not marked and not bands.control <= u < bands.record:
            return False, False, 0
        return True, marked, int.from_bytes(digest[8:16], "big")

    async def mark(
        self,
        principal: Principal,
        rows: npt.NDArray[np.float64],
        output: ModelOutput,
        *,
        suspected: bool = False,
        slots: Sequence[int] = (),
    ) -> Marking:
        """Watermark ``output`` (in place) and keep the records (the pipeline's hook).

        ``slots``: the detector window's slot of each row, negative for an exact repeat."""
        recalled = None
        if self.families is not None and suspected:  # ordinary users: no carried marks
            recalled = await self.families.recall(principal.id)
        marking = self.apply(
            principal, rows, output, suspected=suspected, recalled=recalled, slots=slots
        )
        await self.record(marking, principal)
        return marking

    def apply(
        self,
        principal: Principal,
        rows: npt.NDArray[np.float64],
        output: ModelOutput,
        *,
        suspected: bool = False,
        recalled: Recalled | None = None,
        slots: Sequence[int] = (),
    ) -> Marking:
        """Watermark ``output`` (in place) for the rows drawn; :meth:`record` keeps them.

        ``suspected``: the detectors flag the principal (marked at ``suspect_rate``);
        ``recalled``: its remembered marks, carried to near-copies but never to an exact
        repeat of an earlier query (a negative slot, or no slot)."""
        marking = Marking()
        if len(output.labels) != len(rows):
            return marking
        canonical = np.ascontiguousarray(rows, dtype="<f8") + 0.0
        scope = self.scope(principal.id)
        scaled = None
        if recalled is not None and self._scale is not None:
            scaled = self._scale(rows)
        for index in range(len(canonical)):
            data = canonical[index].tobytes()
            recorded, marked, pick = self.draw(scope, data, suspected)
            family: tuple[str, int] | None = None  # carried: (root, keyed class)
            if not marked and scaled is not None and recalled is not None:
                repeat = index >= len(slots) or slots[index] < 0
                family = self._family(recalled, scaled[index], repeat)
            if not recorded and family is None:
                continue
            answer = rewrite_row(
                output,
                index,
                pick,
                apply=marked or family is not None,
                classes=self.settings.classes,
                names=self.settings.labels,
                keyed_index=None if family is None else family[1],
            )
            if answer is None:
                self._unmarkable()
                continue
            truth, keyed = answer.indices
            if family is not None and truth == keyed:
                if not recorded:  # the model answers the family's class itself
                    continue
                family = None
            carried = family is not None
            marking.changed |= (marked or carried) and truth != keyed
            record = MarkRecord(
                model=self.model,
                principal=principal.id,
                kind="mark" if marked or carried else "control",
                input_sha256=hashlib.sha256(data).hexdigest(),
                row=tuple(canonical[index].tolist()),
                truth=answer.truth,
                keyed=answer.keyed,
                classes=answer.classes,
                key=self.fingerprint,
                time=datetime.now(UTC).isoformat(timespec="seconds"),
                family=family[0] if family is not None else "",
            )
            marking.records.append(record)
            if (marked or carried) and self.families is not None:
                where = scaled[index] if scaled is not None else self._scaled_row(rows[index])
                marking.carriers.append(Carrier(where.astype(np.float32), keyed, record.root))
        return marking

    def _family(
        self, recalled: Recalled, row: npt.NDArray[np.float64], repeat: bool
    ) -> tuple[str, int] | None:
        """The family (root, keyed class) of the remembered mark this row is a near-copy
        of; None: none. An exact repeat is carried only when it is a remembered mark."""
        nearest, distance = recalled.nearest(row)
        if distance >= (_SAME if repeat else self.radius):
            return None
        return recalled.families[nearest], int(recalled.keyed[nearest])

    def _scaled_row(self, row: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        assert self._scale is not None  # noqa: S101 - only with families
        scaled: npt.NDArray[np.float64] = self._scale(row[None, :])[0]
        return scaled

    async def record(self, marking: Marking, principal: Principal) -> None:
        """Keep the marking's records: one event for each new one, once it is stored."""
        for record in marking.records:
            if await self.store.add(record):
                marking.events.append(_event(record, principal))
        if marking.carriers and self.families is not None:
            await self.families.remember(principal.id, marking.carriers)

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
