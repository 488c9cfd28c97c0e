"""The console's view of the ledger: its entries parsed once, tailed on each request.

Every event is in the audit ledger. :class:`EventIndex` reads the entries it has
not seen yet (``seq`` greater than the last one read), keeps the newest
``capacity`` of them as :class:`Entry` values, and answers the pages' questions
(findings by severity and ATLAS tactic, alerts of the last day, filtered lists)
from memory. Reading is incremental, so a page costs the new entries, not the
whole ledger.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from donjon.core.severity import Severity
from donjon.core.taxonomy import ATLAS_TACTICS, technique
from donjon.errors import DonjonError

Rows = Callable[[int], Iterable[tuple[int, str, str, str]]]
SEVERITIES = tuple(s.label for s in Severity)
REFUSING = frozenset({"block", "throttle"})  # the gateway's refusing detector actions
QUIET_KINDS = frozenset({"access", "authentication"})  # decisions: not a change to show


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry's event, reduced to what the pages show and filter on."""

    seq: int
    time: datetime
    kind: str
    source: str
    action: str
    message: str
    severity: str
    outcome: str
    principal: str
    rule: str
    atlas: tuple[str, ...]
    attributes: Mapping[str, Any] = field(hash=False, compare=False)
    model: str = ""  # the model it is about: an attribute, the finding's or decision's subject
    refused: bool = False  # the caller was refused: a denial, or a blocking detection

    @property
    def level(self) -> int:
        return int(Severity.parse(self.severity))

    def subject(self) -> str:
        """The model, dataset or resource the event is about, when it names one."""
        for key in ("model", "resource", "dataset", "endpoint"):
            value = self.attributes.get(key)
            if isinstance(value, str) and value:
                return value
        return ""


def parse_entry(seq: int, body: str) -> Entry | None:
    """The entry of a ledger body; None when the body is not an event (kept out of view)."""
    try:
        event = json.loads(body)["event"]
        finding = event.get("finding") or {}
        rule = finding.get("rule") or {}
        principal = event.get("principal") or {}
        decision = event.get("decision") or {}
        attributes = dict(event.get("attributes") or {})
        target = str(decision.get("resource") or "")
        model = str(
            attributes.get("model")
            or (finding.get("subject") or {}).get("model")
            or (target.split("/", 1)[1].split("@")[0] if target.startswith("models/") else "")
        )
        action = (finding.get("evidence") or {}).get("action")
        refused = action in REFUSING or (bool(decision) and decision.get("effect") == "deny")
        return Entry(
            seq=seq,
            time=datetime.fromisoformat(event["time"]),
            kind=str(event["kind"]),
            source=str(event["source"]),
            action=str(event["action"]),
            message=str(event["message"]),
            severity=str(event["severity"]),
            outcome=str(event["outcome"]),
            principal=str(principal.get("id") or ""),
            rule=str(rule.get("id") or ""),
            atlas=tuple(str(t) for t in rule.get("atlas") or ()),
            attributes=attributes,
            model=model,
            refused=refused,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@functools.lru_cache(maxsize=1024)
def tactics_of(techniques: tuple[str, ...]) -> tuple[str, ...]:
    """The ATLAS tactic names of technique ids (unknown ids are skipped)."""
    names: list[str] = []
    for technique_id in techniques:
        try:
            found = technique(technique_id)
        except KeyError:
            continue
        for tactic in found.tactics:
            name = ATLAS_TACTICS.get(tactic, tactic)
            if name not in names:
                names.append(name)
    return tuple(names)


class EventIndex:
    """The newest ``capacity`` ledger events in memory, caught up on :meth:`refresh`.

    With ``head`` (the ledger's), the first refresh starts ``capacity`` entries
    before the head, so a long ledger costs a bounded read, not all of it.
    """

    def __init__(
        self,
        rows: Rows,
        capacity: int = 100_000,
        head: Callable[[], tuple[int, str]] | None = None,
    ) -> None:
        self._rows = rows
        self._head = head
        self._capacity = capacity
        self._entries: deque[Entry] = deque(maxlen=capacity)
        self._last = 0
        self.first_seq = 1  # the oldest entry read: a long ledger is read from its tail
        self.last_change = 0  # seq of the newest event that is not an access decision
        self.last_verification: Entry | None = None
        self._findings = FindingCounts()  # over every entry read, evicted ones included
        self._lock = threading.Lock()

    @property
    def last_seq(self) -> int:
        return self._last

    def refresh(self, stop: threading.Event | None = None) -> None:
        """Read the entries written since the last call (until ``stop`` is set)."""
        with self._lock:
            if self._last == 0 and self._head is not None:  # the first read: the tail only
                try:
                    self.first_seq = max(1, self._head()[0] - self._capacity + 1)
                except DonjonError:  # no head row yet: read from the start
                    self.first_seq = 1
                self._last = self.first_seq - 1
            for seq, _prev, _hash, body in self._rows(self._last + 1):
                if stop is not None and stop.is_set():
                    break
                entry = parse_entry(seq, body)
                self._last = seq
                if entry is None:
                    continue
                self._entries.append(entry)
                if entry.kind not in QUIET_KINDS:
                    self.last_change = seq
                if entry.kind == "finding":
                    self._findings.add(entry)
                elif entry.action == "audit.verify":
                    self.last_verification = entry

    def entries(self) -> Iterator[Entry]:
        """Newest first."""
        with self._lock:
            snapshot = list(self._entries)
        return reversed(snapshot)

    def search(
        self,
        *,
        text: str = "",
        kind: str = "",
        severity: str = "",
        source: str = "",
        limit: int = 200,
    ) -> list[Entry]:
        """The newest events that match every given filter (``severity``: at least)."""
        needle = text.strip().lower()
        floor = int(Severity.parse(severity)) if severity else 0
        found: list[Entry] = []
        for entry in self.entries():
            if kind and entry.kind != kind:
                continue
            if source and entry.source != source:
                continue
            if floor and entry.level < floor:
                continue
            if needle and needle not in (
                f"{entry.action} {entry.message} {entry.principal} {entry.rule}".lower()
            ):
                continue
            found.append(entry)
            if len(found) >= limit:
                break
        return found

    def finding_summary(self) -> FindingSummary:
        """Findings by severity and ATLAS tactic, over every entry read since ``first_seq``."""
        with self._lock:
            return self._findings.summary()

    def since(self, start: datetime, kind: str) -> list[Entry]:
        out = []
        for entry in self.entries():
            if entry.time < start:
                break
            if entry.kind == kind:
                out.append(entry)
        return out


@dataclass(frozen=True, slots=True)
class FindingSummary:
    by_severity: dict[str, int]
    by_tactic: dict[str, Counter[str]]  # tactic -> severity -> count
    total: int


class FindingCounts:
    """Running counts of findings by severity and by ATLAS tactic and severity."""

    def __init__(self) -> None:
        self.by_severity: Counter[str] = Counter()
        self.by_tactic: dict[str, Counter[str]] = {}
        self.total = 0

    def add(self, entry: Entry) -> None:
        self.total += 1
        self.by_severity[entry.severity] += 1
        for tactic in tactics_of(entry.atlas) or ("(no ATLAS tactic)",):
            self.by_tactic.setdefault(tactic, Counter())[entry.severity] += 1

    def summary(self) -> FindingSummary:
        ordered = {s: self.by_severity.get(s, 0) for s in reversed(SEVERITIES)}
        tactics = {t: Counter(c) for t, c in sorted(self.by_tactic.items())}
        return FindingSummary(ordered, tactics, self.total)


def summarise_findings(findings: Iterable[Entry]) -> FindingSummary:
    counts = FindingCounts()
    for entry in findings:
        counts.add(entry)
    return counts.summary()


def day_before(now: datetime) -> datetime:
    return now - timedelta(hours=24)
