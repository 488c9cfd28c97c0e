"""Opcode handlers of the pickle interpreter (protocols 0 to 5).

Each handler reads its operand from the stream and updates the stand-in stack
and memo exactly as ``pickle`` would, without building real objects.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from donjon.scan.values import (
    MARK,
    Blob,
    Malformed,
    Mark,
    Obj,
    Opaque,
    PDict,
    PList,
)

if TYPE_CHECKING:
    from donjon.scan.pickle_vm import PickleVM
    from donjon.scan.reader import Reader

Stack = list[Any]
Marks = list[int]
Memo = dict[int, Any]
Handler = Callable[["PickleVM", "Reader", Stack, Marks, Memo, int], None]
HANDLERS: dict[bytes, Handler] = {}
_KEEP_BYTES = 8 << 20


def registrar(table: dict[bytes, Handler]) -> Callable[[bytes], Callable[[Handler], Handler]]:
    def op(code: bytes) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            table[code] = fn
            return fn

        return register

    return op


op = registrar(HANDLERS)


def pop(stack: Stack) -> Any:
    if not stack:
        raise Malformed("stack underflow")
    value = stack.pop()
    if isinstance(value, Mark):
        raise Malformed("MARK used as a value")
    return value


def top(stack: Stack) -> Any:
    if not stack:
        raise Malformed("stack underflow")
    return stack[-1]


def pop_mark(stack: Stack, marks: Marks) -> list[Any]:
    if not marks:
        raise Malformed("no MARK on the stack")
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    if items and items[0] is MARK and items.count(MARK) == 1:  # the usual case
        del items[0]
        return items
    return [i for i in items if not isinstance(i, Mark)]


def _u(reader: Reader, fmt: str, size: int) -> int:
    if size == 1:
        return reader.read(1)[0]
    value: int = struct.unpack(fmt, reader.read(size))[0]
    return value


def _byte(reader: Reader) -> int:
    """One operand byte, as ``reader.read(1)[0]`` reads it (and fails)."""
    data = reader.stream.read(1)
    if not data:
        raise Malformed(f"truncated: wanted 1 bytes at offset {reader.pos}")
    reader.pos += 1
    return data[0]


def _bytes(reader: Reader, size: int, vm: PickleVM) -> bytes | Blob:
    if size < 0 or size > vm.policy.max_pickle_bytes:
        raise Malformed(f"declared length {size} out of bounds")
    if size <= _KEEP_BYTES:
        return reader.read(size)
    head = reader.read(16)
    reader.skip(size - 16)
    return Blob(size, head)


def _text(reader: Reader, size: int, vm: PickleVM) -> str | Blob:
    data = _bytes(reader, size, vm)
    if isinstance(data, Blob):
        return data
    return data.decode("utf-8", "surrogatepass")


# -- structure -----------------------------------------------------------------


@op(b"\x80")
def _proto(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    version = r.read(1)[0]
    if version > 5:
        raise Malformed(f"unsupported protocol {version}")


@op(b"\x95")
def _frame(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    r.read(8)


@op(b"(")
def _mark(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    m.append(len(s))
    s.append(MARK)


@op(b"0")
def _pop(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    if s and isinstance(s[-1], Mark):
        s.pop()
        if m:
            m.pop()
        return
    pop(s)


@op(b"1")
def _pop_mark(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    pop_mark(s, m)


@op(b"2")
def _dup(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(top(s))


# -- constants -----------------------------------------------------------------


def _push(value: Any) -> Handler:
    def handler(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
        s.append(value)

    return handler


for _code, _value in ((b"N", None), (b"\x88", True), (b"\x89", False)):
    HANDLERS[_code] = _push(_value)


def _fixed(size: int, fmt: str) -> Handler:
    def handler(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
        s.append(struct.unpack(fmt, r.read(size))[0])

    return handler


HANDLERS[b"J"] = _fixed(4, "<i")


@op(b"K")
def _binint1(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(_byte(r))  # the most common opcodes get handlers without helpers


HANDLERS[b"M"] = _fixed(2, "<H")
HANDLERS[b"G"] = _fixed(8, ">d")


@op(b"I")
def _int(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    text = r.line().strip()
    if text in (b"00", b"01"):
        s.append(text == b"01")
        return
    try:
        s.append(int(text[:4300]))
    except ValueError as e:
        raise Malformed(f"bad INT {text[:20]!r}") from e


@op(b"L")
def _long(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    text = r.line().strip().rstrip(b"L")
    try:
        s.append(int(text[:4300]))
    except ValueError as e:
        raise Malformed(f"bad LONG {text[:20]!r}") from e


@op(b"F")
def _float(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    text = r.line()
    try:
        s.append(float(text))
    except ValueError as e:
        raise Malformed(f"bad FLOAT {text[:20]!r}") from e


def _long_n(size_bytes: int, fmt: str) -> Handler:
    def handler(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
        n = _u(r, fmt, size_bytes)
        if n > 1 << 16:
            r.skip(n)
            s.append(Opaque("huge integer"))
            return
        s.append(int.from_bytes(r.read(n), "little", signed=True))

    return handler


HANDLERS[b"\x8a"] = _long_n(1, "<B")
HANDLERS[b"\x8b"] = _long_n(4, "<i")


@op(b"S")
def _string(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    text = r.line().rstrip()
    if len(text) < 2 or text[:1] not in b"'\"" or text[-1:] != text[:1]:
        raise Malformed("bad STRING literal")
    try:
        value = codecs.escape_decode(text[1:-1])[0]  # what pickle itself does
    except ValueError as e:
        raise Malformed("bad STRING escape") from e
    s.append(value.decode("latin-1"))


@op(b"V")
def _unicode(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(r.line().decode("raw-unicode-escape"))


def _counted(size_bytes: int, fmt: str, kind: str) -> Handler:
    def handler(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
        n = _u(r, fmt, size_bytes)
        if kind == "str":
            s.append(_text(r, n, vm))
        elif kind == "latin1":
            data = _bytes(r, n, vm)
            s.append(data.decode("latin-1") if isinstance(data, bytes) else data)
        else:
            s.append(_bytes(r, n, vm))

    return handler


for _code, _n, _fmt, _kind in (
    (b"T", 4, "<i", "latin1"),
    (b"U", 1, "<B", "latin1"),
    (b"X", 4, "<I", "str"),
    (b"\x8c", 1, "<B", "str"),
    (b"\x8d", 8, "<Q", "str"),
    (b"B", 4, "<I", "bytes"),
    (b"C", 1, "<B", "bytes"),
    (b"\x8e", 8, "<Q", "bytes"),
    (b"\x96", 8, "<Q", "bytes"),
):
    HANDLERS[_code] = _counted(_n, _fmt, _kind)


@op(b"\x8c")
def _short_binunicode(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    n = _byte(r)  # at most 255: under _KEEP_BYTES
    if n > vm.policy.max_pickle_bytes:
        raise Malformed(f"declared length {n} out of bounds")
    s.append(r.read(n).decode("utf-8", "surrogatepass"))


@op(b"\x97")
def _next_buffer(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(Opaque("out-of-band buffer"))


@op(b"\x98")
def _readonly(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    top(s)


# -- containers --------------------------------------------------------------------


@op(b"}")
def _empty_dict(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(PDict())


@op(b"]")
def _empty_list(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(PList())


@op(b")")
def _empty_tuple(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(())


@op(b"\x8f")
def _empty_set(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(PList())


@op(b"d")
def _dict(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    items = pop_mark(s, m)
    s.append(PDict(list(zip(items[::2], items[1::2], strict=False))))


@op(b"l")
def _list(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(PList(pop_mark(s, m)))


@op(b"t")
def _tuple(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(tuple(pop_mark(s, m)))


@op(b"\x91")
def _frozenset(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(PList(pop_mark(s, m)))


def _tuple_n(n: int) -> Handler:
    def handler(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
        items = s[-n:]
        if len(items) == n and MARK not in items:
            del s[-n:]
            s.append(tuple(items))
            return
        items = [pop(s) for _ in range(n)]  # raises what the stack lacks
        s.append(tuple(reversed(items)))

    return handler


for _n, _code in ((1, b"\x85"), (2, b"\x86"), (3, b"\x87")):
    HANDLERS[_code] = _tuple_n(_n)


def _extend(target: Any, items: list[Any]) -> None:
    if isinstance(target, PList):
        if len(target.items) < 1_000_000:
            target.items.extend(items)
    elif isinstance(target, Obj):  # list subclasses call .append/.extend
        target.state = target.state if target.state is not None else PList()


@op(b"a")
def _append(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    value = pop(s)
    _extend(top(s), [value])


@op(b"e")
def _appends(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    items = pop_mark(s, m)
    _extend(top(s), items)


@op(b"\x90")
def _additems(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    items = pop_mark(s, m)
    _extend(top(s), items)


def _setitems(target: Any, pairs: list[tuple[Any, Any]]) -> None:
    if isinstance(target, PDict) and len(target.items) < 1_000_000:
        target.items.extend(pairs)


@op(b"s")
def _setitem(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    value = pop(s)
    key = pop(s)
    _setitems(top(s), [(key, value)])


@op(b"u")
def _setitems_op(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    items = pop_mark(s, m)
    _setitems(top(s), list(zip(items[::2], items[1::2], strict=False)))


# -- memo --------------------------------------------------------------------------


def _put(index: int, s: Stack, memo: Memo) -> None:
    if index < 0:
        raise Malformed(f"negative memo index {index}")
    memo[index] = top(s)


def _get(index: int, s: Stack, memo: Memo) -> None:
    if index not in memo:
        raise Malformed(f"memo key {index} was never stored")
    s.append(memo[index])


@op(b"p")
def _put_text(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    text = r.line()
    if not text.strip().isdigit():
        raise Malformed(f"bad PUT index {text[:20]!r}")
    _put(int(text), s, memo)


@op(b"g")
def _get_text(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    text = r.line()
    if not text.strip().isdigit():
        raise Malformed(f"bad GET index {text[:20]!r}")
    _get(int(text), s, memo)


HANDLERS[b"r"] = lambda vm, r, s, m, memo, at: _put(_u(r, "<I", 4), s, memo)
HANDLERS[b"j"] = lambda vm, r, s, m, memo, at: _get(_u(r, "<I", 4), s, memo)


@op(b"q")
def _binput(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    index = _byte(r)
    if not s:
        raise Malformed("stack underflow")
    memo[index] = s[-1]


@op(b"h")
def _binget(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    index = _byte(r)
    if index not in memo:
        raise Malformed(f"memo key {index} was never stored")
    s.append(memo[index])


@op(b"\x94")
def _memoize(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    if not s:
        raise Malformed("stack underflow")
    memo[len(memo)] = s[-1]
