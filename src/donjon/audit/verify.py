"""Verification of the ledger: every entry, the head row, checkpoints and outside witnesses.

What the database alone proves, and what needs a witness, is written down in
``docs/audit.md``: a cut tail is visible from inside the database only while
the head row or a later checkpoint survives; past that, only a checkpoint
held outside (a witness file, the SOC stream, a head file) shows it.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from donjon.audit.chain import GENESIS, Checkpoint, body_seq_suffix, entry_hash
from donjon.errors import VerificationError

# A key id derived from the public key (SHA-256 of its DER SubjectPublicKeyInfo).
DERIVED_KEY_ID = re.compile(r"^[0-9a-f]{64}$")

Row = tuple[int, str, str, str]


class ChainSource(Protocol):
    def head(self) -> tuple[int, str] | None: ...

    def rows(self, start: int = 1) -> Iterator[Row]: ...


class Problem(enum.StrEnum):
    MODIFIED = "modified"
    MISSING = "missing"  # a deleted entry (a gap in the sequence)
    OUT_OF_ORDER = "out-of-order"  # inserted or reordered entries
    TRUNCATED = "truncated"
    HEAD_MISSING = "head-missing"  # the head row was deleted
    BAD_CHECKPOINT = "bad-checkpoint"


@dataclass(frozen=True, slots=True)
class Issue:
    problem: Problem
    seq: int
    message: str


@dataclass(frozen=True)
class Verification:
    """The result of :meth:`Ledger.verify`: ``ok`` or the issues, first bad entry first."""

    entries: int
    head_hash: str
    checkpoints: int
    issues: tuple[Issue, ...] = ()
    anchors: tuple[str, ...] = field(default=())
    witnessed: int = 0  # checkpoints read from outside the database

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def first_bad_seq(self) -> int | None:
        return min(i.seq for i in self.issues) if self.issues else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_hash": self.head_hash,
            "checkpoints": self.checkpoints,
            "witnessed": self.witnessed,
            "first_bad_seq": self.first_bad_seq,
            "issues": [
                {"problem": i.problem.value, "seq": i.seq, "message": i.message}
                for i in self.issues
            ],
            "anchors": list(self.anchors),
        }


def verify_chain(
    source: ChainSource,
    checkpoints: Sequence[Checkpoint],
    *,
    keys: Mapping[str, bytes],
    pinned_key: bytes | None = None,
    head: Checkpoint | None = None,
    witnessed: Sequence[Checkpoint] = (),
) -> Verification:
    """Walk the chain once, then check the head row and every anchor against it.

    ``keys`` are the registered public keys by key id; ``pinned_key``, when
    given, is the only key trusted (an auditor's own copy of the public key).
    """
    anchored = [
        *(("checkpoint", c) for c in checkpoints),
        *((("head file", head),) if head else ()),
        *(("witnessed checkpoint", c) for c in witnessed),
    ]
    anchors = {c.seq for _, c in anchored}
    seen: dict[int, str] = {0: GENESIS}
    issues: list[Issue] = []
    prev, expected = GENESIS, 1
    highest = 0
    sha256 = hashlib.sha256
    for seq, stored_prev, digest, body in source.rows():
        highest = seq
        if issues:
            continue  # the chain is broken; only find where the table ends
        intact = (
            seq == expected
            and stored_prev == prev
            and body.endswith(f',"seq":{seq}}}')
            and sha256((prev + body).encode()).hexdigest() == digest
        )  # the fast path of _check_row, which says what is wrong otherwise
        if not intact:
            issue = _check_row(seq, expected, prev, stored_prev, digest, body)
            issues.append(issue or Issue(Problem.MODIFIED, seq, f"entry {seq} is corrupt"))
            continue
        if seq in anchors:
            seen[seq] = digest
        prev, expected = digest, expected + 1
    last = expected - 1 if not issues else highest
    head_row = source.head()
    if head_row is None:
        issues.append(
            Issue(
                Problem.HEAD_MISSING,
                last + 1,
                f"the chain head row is missing (deleted): entries after {last} may have "
                "been cut with it",
            )
        )
    elif not issues and head_row != (last, prev):
        head_seq = head_row[0]
        problem = Problem.TRUNCATED if head_seq > last else Problem.OUT_OF_ORDER
        issues.append(
            Issue(
                problem,
                min(head_seq, last) + 1,
                f"the chain head records entry {head_seq} but the ledger ends at {last}",
            )
        )
    beyond: tuple[int, Issue] | None = None  # the anchor furthest past the end says it all
    for what, checkpoint in anchored:
        for issue in _check_anchor(what, checkpoint, seen, last, keys, pinned_key, checkpoints):
            if issue.problem is not Problem.TRUNCATED:
                issues.append(issue)
            elif beyond is None or checkpoint.seq > beyond[0]:
                beyond = (checkpoint.seq, issue)
    if beyond is not None:
        issues.append(beyond[1])
    issues.sort(key=lambda i: i.seq)
    return Verification(
        entries=last,
        head_hash=prev,
        checkpoints=len(checkpoints),
        issues=tuple(_dedupe(issues)),
        anchors=tuple(sorted({f"{w}@{c.seq}" for w, c in anchored})),
        witnessed=len(witnessed),
    )


def _dedupe(issues: list[Issue]) -> Iterator[Issue]:
    seen: set[tuple[Problem, int, str]] = set()
    for issue in issues:
        key = (issue.problem, issue.seq, issue.message)
        if key not in seen:
            seen.add(key)
            yield issue


def _check_row(
    seq: int, expected: int, prev: str, stored_prev: str, digest: str, body: str
) -> Issue | None:
    if seq > expected:
        return Issue(Problem.MISSING, expected, f"entry {expected} is missing (deleted)")
    if seq < expected:
        return Issue(Problem.OUT_OF_ORDER, seq, f"entry {seq} appears again after {expected - 1}")
    if not body.endswith(body_seq_suffix(seq)):
        return Issue(Problem.OUT_OF_ORDER, seq, f"entry {seq} holds the body of another entry")
    if stored_prev != prev:
        return Issue(
            Problem.OUT_OF_ORDER, seq, f"entry {seq} does not follow entry {seq - 1} (inserted?)"
        )
    if entry_hash(prev, body) != digest:
        return Issue(Problem.MODIFIED, seq, f"entry {seq} was modified (hash mismatch)")
    return None


def candidate_keys(
    checkpoint: Checkpoint, keys: Mapping[str, bytes], pinned_key: bytes | None
) -> list[bytes]:
    """The public keys that may have signed ``checkpoint``.

    A pinned key is the only one. Otherwise the key registered under the
    checkpoint's key id; a checkpoint from before key ids were derived from
    the key (a name such as ``ledger``) may match any registered key.
    """
    if pinned_key is not None:
        return [pinned_key]
    if checkpoint.key_id in keys:
        return [keys[checkpoint.key_id]]
    if DERIVED_KEY_ID.match(checkpoint.key_id):
        return []
    return list(dict.fromkeys(keys.values()))


def verify_signature(
    checkpoint: Checkpoint, keys: Mapping[str, bytes], pinned_key: bytes | None
) -> None:
    """Raise VerificationError unless a trusted key signed ``checkpoint``."""
    candidates = candidate_keys(checkpoint, keys, pinned_key)
    if not candidates:
        if not keys:
            raise VerificationError("no public key to verify it")
        raise VerificationError(
            f"signed by key {checkpoint.key_id[:16]}, which the database does not register"
        )
    error: VerificationError | None = None
    for pem in candidates:
        try:
            checkpoint.verify(pem)
        except VerificationError as e:
            error = e
        else:
            return
    raise error or VerificationError("no key verifies it")


def _check_anchor(
    what: str,
    checkpoint: Checkpoint,
    seen: dict[int, str],
    last: int,
    keys: Mapping[str, bytes],
    pinned_key: bytes | None,
    checkpoints: Sequence[Checkpoint],
) -> list[Issue]:
    try:
        verify_signature(checkpoint, keys, pinned_key)
    except VerificationError as e:
        return [
            Issue(Problem.BAD_CHECKPOINT, checkpoint.seq, f"{what} at entry {checkpoint.seq}: {e}")
        ]
    if checkpoint.seq > last:
        span = (
            f"entry {last + 1}"
            if checkpoint.seq == last + 1
            else f"entries {last + 1}..{checkpoint.seq}"
        )
        return [
            Issue(
                Problem.TRUNCATED,
                last + 1,
                f"ledger truncated: the signed {what} covers entry {checkpoint.seq} "
                f"but the ledger ends at {last} ({span} missing)",
            )
        ]
    if checkpoint.seq not in seen:
        return []  # beyond the first broken entry: already reported
    if seen[checkpoint.seq] != checkpoint.hash:
        earlier = [c.seq for c in checkpoints if c.seq < checkpoint.seq]
        since = max(earlier, default=0) + 1
        return [
            Issue(
                Problem.MODIFIED,
                since,
                f"entries {since}..{checkpoint.seq} were rewritten: entry "
                f"{checkpoint.seq} no longer matches its signed {what}",
            )
        ]
    return []
