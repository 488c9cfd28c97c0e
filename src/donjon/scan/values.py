"""The values the pickle interpreter puts on its stack: stand-ins, never real objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Global:
    """An import target (GLOBAL, STACK_GLOBAL, INST ...): never imported."""

    dotted: str
    offset: int


@dataclass(eq=False)
class Obj:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, INST, OBJ)."""

    func: Any
    args: Any
    offset: int
    state: Any = None


@dataclass(eq=False)
class PList:
    items: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class PDict:
    items: list[tuple[Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        return None


@dataclass(eq=False)
class Blob:
    """A byte string too large to keep: its length and first bytes."""

    size: int
    head: bytes


@dataclass(eq=False)
class Persistent:
    pid: Any


@dataclass(eq=False)
class Opaque:
    """A value the interpreter could not compute (after a malformation)."""

    why: str


class Malformed(Exception):
    """The stream cannot be read further at this point."""


class Bound(Exception):
    """An analysis bound was reached."""


class Mark:
    """The MARK sentinel."""


MARK = Mark()
