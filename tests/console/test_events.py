"""The console's event index: incremental, bounded, and its finding counts."""

from __future__ import annotations

from collections.abc import Iterator

from donjon.audit.chain import entry_body
from donjon.catalog import rule_registry
from donjon.core.events import EventKind, SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.server.ui.events import EventIndex


class Chain:
    """Ledger rows in memory (the ``entries`` port of the ledger), counting what is read."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str, str, str]] = []
        self.read = 0

    def add(self, event: SecurityEvent) -> None:
        seq = len(self.rows) + 1
        self.rows.append((seq, "", "", entry_body(seq, event)))

    def entries(self, start: int) -> Iterator[tuple[int, str, str, str]]:
        for row in self.rows[start - 1 :]:
            self.read += 1
            yield row

    def head(self) -> tuple[int, str]:
        return len(self.rows), ""


def finding(rule_id: str) -> SecurityEvent:
    found = Finding(rule_registry().get(rule_id), Subject(model="m"), "payload")
    return SecurityEvent.of_finding(found, "scan", model="m")


def activity(n: int) -> SecurityEvent:
    return SecurityEvent(EventKind.ACTIVITY, "test", "test.step", f"step {n}")


def test_refresh_reads_only_new_entries_and_counts_findings() -> None:
    chain = Chain()
    chain.add(finding("DJ-PKL-001"))
    chain.add(activity(1))
    index = EventIndex(chain.entries, head=chain.head)
    index.refresh()
    assert chain.read == 2
    chain.add(finding("DJ-GW-001"))
    index.refresh()
    assert chain.read == 3  # the new entry only
    summary = index.finding_summary()
    assert summary.total == 2
    assert summary.by_severity["critical"] == 1
    assert "Execution" in summary.by_tactic  # DJ-PKL-001's ATLAS technique
    assert index.last_change == 3
    assert [e.seq for e in index.search(kind="finding")] == [3, 1]
    assert [e.seq for e in index.search(severity="critical")] == [1]
    assert [e.seq for e in index.search(text="step 1")] == [2]


def test_a_long_ledger_is_read_from_its_tail() -> None:
    chain = Chain()
    for n in range(50):
        chain.add(activity(n))
    index = EventIndex(chain.entries, capacity=10, head=chain.head)
    index.refresh()
    assert chain.read == 10
    assert index.first_seq == 41
    assert [e.seq for e in index.entries()][:2] == [50, 49]


def test_an_unreadable_body_is_skipped_not_fatal() -> None:
    chain = Chain()
    chain.rows.append((1, "", "", "not json"))
    chain.add(activity(2))
    index = EventIndex(chain.entries, head=chain.head)
    index.refresh()
    assert [e.seq for e in index.entries()] == [2]
    assert index.last_seq == 2


def test_gateway_detections_name_their_model_and_whether_they_refused() -> None:
    chain = Chain()
    blocking = Finding(
        rule_registry().get("DJ-GW-001"),
        Subject(model="clf", principal="mallory"),
        "walk to the boundary",
        evidence={"action": "block"},
    )
    logged = Finding(
        rule_registry().get("DJ-GW-002"),
        Subject(model="clf"),
        "noise queries",
        evidence={"action": "log"},
    )
    chain.add(SecurityEvent.of_finding(blocking, "gateway"))
    chain.add(SecurityEvent.of_finding(logged, "gateway"))
    index = EventIndex(chain.entries, head=chain.head)
    index.refresh()
    newest, oldest = list(index.entries())
    assert (oldest.model, oldest.refused) == ("clf", True)
    assert (newest.model, newest.refused) == ("clf", False)
