"""An opcode-level abstract interpreter for pickle streams, written for Donjon.

It never unpickles and never imports: it tracks the stack and the memo with
stand-in values (:mod:`donjon.scan.values`), resolves every import target
(GLOBAL, STACK_GLOBAL, INST, names built through the memo, dotted names,
numpy's ``_ufunc_reconstruct``), records every call (REDUCE, NEWOBJ, NEWOBJ_EX,
INST, OBJ, BUILD) and follows nested pickles handed to ``loads``-like
callables. On a malformed stream it records the fault and goes on where it can.
"""

from __future__ import annotations

import io
import itertools
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from donjon.core.rules import Rule
from donjon.core.severity import Severity
from donjon.scan import rules
from donjon.scan.denylist import LOADS_LIKE
from donjon.scan.pickle_calls import HANDLERS as _CALLS
from donjon.scan.pickle_ops import HANDLERS as _OPS
from donjon.scan.policy import ScanPolicy, Verdict, is_identifier_path, normalise
from donjon.scan.reader import Reader
from donjon.scan.values import Blob, Bound, Global, Malformed, Obj, Opaque, PDict, PList

_GLOBAL_TEXT = re.compile(rb"c([A-Za-z_][\w.]{0,200})\n([A-Za-z_][\w.]{0,200})\n")
_JOBLIB_WRAPPERS = {
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
}
_HANDLERS = {**_OPS, **_CALLS}
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_NAME_RESOLVERS = {"numpy.core._ufunc_reconstruct", "numpy._core._ufunc_reconstruct"}
_NEWOBJ_HELPERS = {"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"}


@dataclass
class Issue:
    rule: Rule
    message: str
    offset: int | None = None
    opcode_index: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    severity: Severity | None = None


@dataclass
class _Use:
    offset: int
    opcode_index: int
    called: bool = False
    context: str = "GLOBAL"


class PickleVM:
    """Analyse one stream (possibly several pickles back to back)."""

    def __init__(
        self, policy: ScanPolicy, *, depth: int = 0, deadline: float | None = None
    ) -> None:
        self.policy = policy
        self.depth = depth
        self.deadline = deadline or (time.monotonic() + policy.max_seconds)
        self.issues: list[Issue] = []
        self.uses: dict[str, _Use] = {}
        self.opcodes = 0
        self.pickles = 0
        self.skipped_arrays = 0
        self.plain = False  # True on the second, plain-pickle pass of a joblib stream
        self._nested_budget = 64
        self.last: Any = None
        self._verdicts = _verdicts_of(policy)

    # -- public ------------------------------------------------------------

    def run(self, reader: Reader, *, multi: bool = True) -> list[Issue]:
        limit = 1 << 20
        while True:
            complete = self._one(reader)
            self.pickles += 1
            if self.pickles == 1 and self.last == _LEGACY_TORCH_MAGIC:
                limit = 5  # magic, protocol, sys_info, model, storage keys; then raw data
            if not complete or not multi or self.pickles >= limit:
                break
            # Legacy torch.save writes its five pickles in the chosen protocol (0-2),
            # so only a legacy file's streams are read whatever their first byte.
            if limit != 5 and reader.peek1() != b"\x80":
                break
        self._report_uses()
        return self.issues

    def run_stream(self, reader: Reader) -> bool:
        """Interpret one pickle without reporting; False when it broke before STOP."""
        return self._one(reader)

    # -- interpreter ---------------------------------------------------------

    def _fault(self, rule: Rule, message: str, reader: Reader, **evidence: Any) -> None:
        if self.plain and rule is rules.PKL_MALFORMED:
            return
        self.issues.append(Issue(rule, message, reader.pos, self.opcodes, dict(evidence)))

    def _one(self, reader: Reader) -> bool:
        """Interpret one pickle up to STOP; False when the stream broke first."""
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}
        first = True
        stream = reader.stream
        read = stream.read
        handlers = _HANDLERS
        try:
            while True:
                opcodes = self.opcodes = self.opcodes + 1
                if opcodes & 0xFF == 0:  # bounds grow by at most one per opcode
                    self._check_bounds(stack, memo)
                offset = reader.pos
                code = read(1)
                if not code:
                    if first and self.pickles > 0:
                        return False
                    raise Malformed(f"stream ends without STOP at offset {offset}")
                reader.pos = offset + 1
                first = False
                if code == b".":
                    self._check_bounds(stack, memo)
                    self.last = stack[-1] if stack else None
                    return True
                handler = handlers.get(code)
                if handler is None:
                    raise Malformed(f"unknown opcode {code!r} at offset {offset}")
                handler(self, reader, stack, marks, memo, offset)
                if reader.stream is not stream:  # a peek swapped the stream
                    stream = reader.stream
                    read = stream.read
        except (Malformed, ValueError, TypeError, IndexError, OverflowError, struct.error) as e:
            # UnicodeDecodeError is a ValueError: pickle.load fails on all of these too.
            self._fault(rules.PKL_MALFORMED, f"malformed pickle: {e}", reader)
            if not self.plain:
                self._salvage(reader)
            return False
        except Bound as e:
            if not self.plain:
                self._fault(rules.PKL_BOUND, f"pickle analysis stopped: {e}", reader)
            return False

    def _check_bounds(self, stack: list[Any], memo: dict[int, Any]) -> None:
        policy = self.policy
        if self.opcodes > policy.max_opcodes:
            raise Bound(f"more than {policy.max_opcodes} opcodes")
        if len(stack) > policy.max_stack:
            raise Bound(f"stack deeper than {policy.max_stack}")
        if len(memo) > policy.max_memo:
            raise Bound(f"memo larger than {policy.max_memo}")
        if self.opcodes & 0xFFF == 0 and time.monotonic() > self.deadline:
            raise Bound("time budget exhausted")

    # -- helpers used by opcode handlers -----------------------------------

    def use_global(self, dotted: str, offset: int, context: str) -> Global:
        if not is_identifier_path(dotted):
            if not self.plain:
                self.issues.append(
                    Issue(
                        rules.PKL_MALFORMED,
                        f"import target {dotted[:80]!r} is not a valid dotted name",
                        offset,
                        self.opcodes,
                    )
                )
            return Global(dotted, offset)
        if dotted not in self.uses:
            self.uses[dotted] = _Use(offset, self.opcodes, context=context)
        return Global(dotted, offset)

    def _verdict(self, dotted: str) -> Verdict:
        verdict = self._verdicts.get(dotted)
        if verdict is None:
            verdict = self._verdicts[dotted] = self.policy.verdict(dotted)
        return verdict

    def unresolved(self, offset: int, what: str) -> None:
        self.issues.append(
            Issue(rules.PKL_UNRESOLVED, f"unresolvable import target: {what}", offset, self.opcodes)
        )

    def _salvage(self, reader: Reader) -> None:
        """After a fault, look for import targets in the rest of the stream (bounded)."""
        try:
            rest = reader.stream.read(16 << 20)
        except OSError:
            return
        base = reader.pos
        for found in _GLOBAL_TEXT.finditer(rest):
            dotted = normalise(found[1].decode(), found[2].decode())
            self.use_global(dotted, base + found.start(), "after a fault")
        strings: list[tuple[int, int, str]] = []
        for found in re.finditer(rb"\x8c", rest):
            start = found.start()
            size = rest[start + 1] if start + 1 < len(rest) else 0
            raw = rest[start + 2 : start + 2 + size]
            if len(raw) == size and size and is_identifier_path(raw.decode("latin-1")):
                strings.append((start, start + 2 + size, raw.decode("latin-1")))
        for (_, end1, module), (start2, end2, name) in itertools.pairwise(strings):
            tail = rest[end2 : end2 + 3]
            if start2 - end1 <= 2 and b"\x93" in tail:
                self.use_global(normalise(module, name), base + start2, "after a fault")

    def call(self, func: Any, args: Any, offset: int, how: str) -> Any:
        empty = isinstance(args, tuple) and not args
        if isinstance(func, Global):
            name = func.dotted
            use = self.uses.get(name)
            if name in _NEWOBJ_HELPERS and isinstance(args, tuple) and args:
                if use is not None:
                    use.called = True
                self._newobj_helper(name, args)
                return Obj(args[0], args[1:], offset)
            if name in _NAME_RESOLVERS and _two_strings(args):
                return self.use_global(normalise(args[0], args[1]), offset, "resolved")
            if use is not None and not (how == "NEWOBJ" and empty):
                use.called = True
            if name in LOADS_LIKE:
                self._nested(args, offset)
            if self._verdict(name) is Verdict.ALLOW:
                return Obj(func, args, offset)  # allowed callables never unpickle their bytes
        elif not isinstance(func, Opaque):
            kind = type(func).__name__
            self.issues.append(
                Issue(
                    rules.PKL_UNRESOLVED,
                    f"{how} calls a computed value ({kind}), not an imported callable",
                    offset,
                    self.opcodes,
                    {"opcode": how},
                )
            )
        self._scan_bytes(args, offset)
        return Obj(func, args, offset)

    def _newobj_helper(self, helper: str, args: tuple[Any, ...]) -> None:
        """copyreg's helpers call a class: with arguments, that is a call of the class."""
        if helper == "copyreg._reconstructor":
            # base.__new__(cls, state) and base.__init__(obj, state) unless base is object
            base = args[1] if len(args) > 1 else None
            called = base if isinstance(base, Global) and base.dotted != "builtins.object" else None
        else:  # cls.__new__(cls, *args) / cls.__new__(cls, *args, **kwargs)
            rest = args[1:]
            empty = rest in ((), ((),), ((), None)) or (
                len(rest) == 2
                and rest[0] == ()
                and isinstance(rest[1], PDict)
                and not rest[1].items
            )
            called = None if empty else args[0]
        if not isinstance(args[0], Global):
            self.issues.append(
                Issue(
                    rules.PKL_UNRESOLVED,
                    f"{helper} instantiates a computed value ({type(args[0]).__name__})",
                    None,
                    self.opcodes,
                )
            )
        if isinstance(called, Global) and called.dotted in self.uses:
            self.uses[called.dotted].called = True

    def build(self, target: Any, state: Any, offset: int, reader: Reader) -> Any:
        keys: list[Any] = []
        if isinstance(state, PDict):
            keys = [k for k, _ in state.items]
        elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], PDict):
            keys = [k for k, _ in state[1].items]
        bad = [k for k in keys if isinstance(k, str) and k.startswith("__") and k.endswith("__")]
        if bad:
            self.issues.append(
                Issue(
                    rules.PKL_STATE,
                    f"BUILD sets special attributes {sorted(bad)[:5]}",
                    offset,
                    self.opcodes,
                    {"attributes": sorted(bad)[:20]},
                )
            )
        if isinstance(target, Obj):
            target.state = state
            func = target.func
            if (
                not self.plain
                and isinstance(func, Global)
                and func.dotted in _JOBLIB_WRAPPERS
                and isinstance(state, PDict)
            ):
                self._skip_joblib_array(state, reader)
                return Obj(Global("numpy.ndarray", offset), (), offset)
        self._scan_bytes(state, offset)
        return target

    def _skip_joblib_array(self, state: PDict, reader: Reader) -> None:
        """joblib writes raw array bytes (or an object-array pickle) right after BUILD."""
        dtype, shape = state.get("dtype"), state.get("shape")
        count = 1
        if isinstance(shape, tuple):
            for dim in shape:
                count *= dim if isinstance(dim, int) and dim >= 0 else 0
        code, itemsize = _dtype_code(dtype)
        if code.startswith("O"):
            self._nested_stream(reader, "joblib object array")
            return
        if itemsize is None:
            raise Malformed("joblib array wrapper with an unreadable dtype")
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = reader.read(1)[0]
            reader.skip(pad)
        reader.skip(count * itemsize)
        self.skipped_arrays += 1

    def _nested_stream(self, reader: Reader, why: str) -> None:
        if self.depth + 1 > self.policy.max_nesting:
            raise Bound(f"nested pickles deeper than {self.policy.max_nesting}")
        inner = PickleVM(self.policy, depth=self.depth + 1, deadline=self.deadline)
        inner.run(reader, multi=False)
        for issue in inner.issues:
            issue.evidence.setdefault("nested", why)
        self.issues.extend(inner.issues)
        self.opcodes += inner.opcodes

    def _nested(self, args: Any, offset: int) -> None:
        for value in _walk(args, 3):
            if isinstance(value, bytes | bytearray) and self._nested_budget > 0:
                self._nested_budget -= 1
                self._analyse_bytes(bytes(value), offset, "argument of a loads-like callable")

    def _scan_bytes(self, value: Any, offset: int) -> None:
        """Byte strings that look like pickles are analysed wherever they appear."""
        if not _holds_bytes(value, 2):
            return
        for item in _walk(value, 2):
            if isinstance(item, bytes) and _looks_like_pickle(item) and self._nested_budget > 0:
                self._nested_budget -= 1
                self._analyse_bytes(item, offset, "embedded pickle bytes")
            elif isinstance(item, Blob) and _looks_like_pickle(item.head):
                self.issues.append(
                    Issue(
                        rules.PKL_BOUND,
                        f"embedded pickle of {item.size} bytes too large to analyse",
                        offset,
                        self.opcodes,
                    )
                )

    def _analyse_bytes(self, data: bytes, offset: int, why: str) -> None:
        if self.depth + 1 > self.policy.max_nesting:
            self.issues.append(
                Issue(rules.PKL_BOUND, "nested pickles too deep", offset, self.opcodes)
            )
            return
        inner = PickleVM(self.policy, depth=self.depth + 1, deadline=self.deadline)
        inner.run(Reader(io.BytesIO(data)), multi=True)
        for issue in inner.issues:
            issue.evidence.setdefault("nested", why)
            issue.evidence.setdefault("outer_offset", offset)
            issue.offset = offset
        self.issues.extend(inner.issues)

    def _report_uses(self) -> None:
        for dotted, use in self.uses.items():
            verdict = self._verdict(dotted)
            if verdict is Verdict.ALLOW:
                continue
            evidence = {"callable": dotted, "called": use.called, "via": use.context}
            if verdict is Verdict.DENY:
                self.issues.append(
                    Issue(
                        rules.PKL_DANGEROUS,
                        f"pickle imports dangerous callable {dotted}",
                        use.offset,
                        use.opcode_index,
                        evidence,
                    )
                )
            else:
                how = "calls" if use.called else "imports"
                self.issues.append(
                    Issue(
                        rules.PKL_UNKNOWN,
                        f"pickle {how} {dotted}, which is not on the allow-list",
                        use.offset,
                        use.opcode_index,
                        evidence,
                        None if use.called else Severity.LOW,
                    )
                )


# The verdicts of the last policy used, shared by the files of a scan (a pure function
# of the policy's lists and the name; one policy at a time, so the cache stays small).
_LAST_VERDICTS: tuple[ScanPolicy, dict[str, Verdict]] | None = None


def _verdicts_of(policy: ScanPolicy) -> dict[str, Verdict]:
    global _LAST_VERDICTS
    last = _LAST_VERDICTS
    if last is None or last[0] is not policy or len(last[1]) > 100_000:
        last = _LAST_VERDICTS = (policy, {})
    return last[1]


def _two_strings(args: Any) -> bool:
    return isinstance(args, tuple) and len(args) == 2 and all(isinstance(a, str) for a in args)


def _looks_like_pickle(data: bytes) -> bool:
    """Embedded bytes worth interpreting: a PROTO header, or a protocol-0/1 import first."""
    if len(data) < 4 or data.rstrip()[-1:] != b".":
        return False
    start = 1 if data[:1] == b"(" else 0
    return (data[0] == 0x80 and data[1] <= 5) or _GLOBAL_TEXT.match(data, start) is not None


def _holds_bytes(value: Any, depth: int) -> bool:
    """False only when no ``bytes`` or :class:`Blob` lies within ``depth`` levels of
    ``value``: everything :func:`_walk` would reach, and more; True when unsure (large).

    Types are checked a level at a time (a set of a few types), not item by item."""
    if not isinstance(value, _CONTAINERS):  # a lone value: the common case
        return isinstance(value, _BYTES)
    level: list[Any] = [value]
    budget = 10_000
    for at in range(depth + 1):
        kinds = set(map(type, level))
        if any(issubclass(k, _BYTES) for k in kinds):
            return True
        if at == depth or not any(issubclass(k, _CONTAINERS) for k in kinds):
            return False
        inner: list[Any] = []
        for item in level:
            if isinstance(item, tuple):
                inner.extend(item)
            elif isinstance(item, PList):
                inner.extend(item.items[:1000])
            elif isinstance(item, PDict):
                inner.extend([v for _, v in item.items[:1000]])
        budget -= len(inner)
        if budget < 0:
            return True
        level = inner
    return False


_BYTES = (bytes, Blob)
_CONTAINERS = (tuple, PList, PDict)


def _walk(value: Any, depth: int) -> list[Any]:
    """Flatten containers to ``depth`` levels; each container is visited once."""
    out: list[Any] = []
    seen: set[int] = set()
    todo = [(value, 0)]
    while todo and len(out) < 10_000:
        item, level = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        out.append(item)
        if level >= depth:
            continue
        level += 1
        if isinstance(item, tuple):
            todo.extend([(v, level) for v in item])
        elif isinstance(item, PList):
            todo.extend([(v, level) for v in item.items[:1000]])
        elif isinstance(item, PDict):
            todo.extend([(v, level) for _, v in item.items[:1000]])
    return out


def _dtype_code(dtype: Any) -> tuple[str, int | None]:
    """The type code and item size of a pickled ``numpy.dtype`` stand-in."""
    if not isinstance(dtype, Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        return "", None
    code = dtype.args[0]
    if not isinstance(code, str):
        return "", None
    state = dtype.state
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return code, state[5]
    digits = "".join(c for c in code if c.isdigit())
    return code, int(digits) if digits else (1 if code in ("b", "B", "?") else None)


__all__ = ["Bound", "Issue", "Malformed", "PickleVM", "Reader"]
