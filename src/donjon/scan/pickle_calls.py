"""Opcode handlers that import and call: GLOBAL, STACK_GLOBAL, INST, OBJ, REDUCE,
NEWOBJ, NEWOBJ_EX, BUILD, PERSID, BINPERSID and EXT1/2/4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.scan.pickle_ops import Handler, Marks, Memo, Stack, _u, pop, pop_mark, registrar
from donjon.scan.policy import normalise
from donjon.scan.values import Global, Malformed, Opaque, PDict, Persistent

if TYPE_CHECKING:
    from donjon.scan.pickle_vm import PickleVM
    from donjon.scan.reader import Reader

HANDLERS: dict[bytes, Handler] = {}
op = registrar(HANDLERS)


def _name_lines(r: Reader) -> str:
    module = r.line().decode("utf-8", "replace").strip()
    name = r.line().decode("utf-8", "replace").strip()
    return normalise(module, name)


@op(b"c")
def _global(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(vm.use_global(_name_lines(r), at, "GLOBAL"))


@op(b"\x93")
def _stack_global(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    name = pop(s)
    module = pop(s)
    if isinstance(module, str) and isinstance(name, str):
        s.append(vm.use_global(normalise(module, name), at, "STACK_GLOBAL"))
        return
    vm.unresolved(
        at, f"STACK_GLOBAL with computed operands ({type(module).__name__}, {type(name).__name__})"
    )
    s.append(Opaque("computed global"))


@op(b"i")
def _inst(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    target = vm.use_global(_name_lines(r), at, "INST")
    args = tuple(pop_mark(s, m))
    s.append(vm.call(target, args, at, "INST"))


@op(b"o")
def _obj(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    items = pop_mark(s, m)
    if not items:
        raise Malformed("OBJ without a class")
    s.append(vm.call(items[0], tuple(items[1:]), at, "OBJ"))


@op(b"R")
def _reduce(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    args = pop(s)
    func = pop(s)
    s.append(vm.call(func, args, at, "REDUCE"))


@op(b"\x81")
def _newobj(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    args = pop(s)
    cls = pop(s)
    s.append(vm.call(cls, args, at, "NEWOBJ"))


@op(b"\x92")
def _newobj_ex(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    kwargs = pop(s)
    args = pop(s)
    cls = pop(s)
    empty = isinstance(kwargs, PDict) and not kwargs.items
    s.append(vm.call(cls, args if empty else (args, kwargs), at, "NEWOBJ"))


@op(b"b")
def _build(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    state = pop(s)
    target = pop(s)
    s.append(vm.build(target, state, at, r))


@op(b"P")
def _persid(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(Persistent(r.line().decode("ascii", "replace")))


@op(b"Q")
def _binpersid(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
    s.append(Persistent(pop(s)))


def _ext(size: int, fmt: str) -> Handler:
    def handler(vm: PickleVM, r: Reader, s: Stack, m: Marks, memo: Memo, at: int) -> None:
        code = _u(r, fmt, size)
        vm.unresolved(at, f"EXT{size} extension-registry code {code}")
        s.append(Global(f"<extension {code}>", at))

    return handler


HANDLERS[b"\x82"] = _ext(1, "<B")
HANDLERS[b"\x83"] = _ext(2, "<H")
HANDLERS[b"\x84"] = _ext(4, "<i")
