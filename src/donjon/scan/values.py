"""The values the pickle interpreter puts on its stack: stand-ins, never real objects.

Plain classes with ``__slots__`` rather than dataclasses: the interpreter makes
thousands of them per file, and compares them by identity only.
"""

from __future__ import annotations

from typing import Any


class Global:
    """An import target (GLOBAL, STACK_GLOBAL, INST ...): never imported."""

    __slots__ = ("dotted", "offset")

    def __init__(self, dotted: str, offset: int) -> None:
        self.dotted = dotted
        self.offset = offset


class Obj:
    """The result of calling ``func`` with ``args`` (REDUCE, NEWOBJ, INST, OBJ)."""

    __slots__ = ("args", "func", "offset", "state")

    def __init__(self, func: Any, args: Any, offset: int, state: Any = None) -> None:
        self.func = func
        self.args = args
        self.offset = offset
        self.state = state


class PList:
    __slots__ = ("items",)

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items = [] if items is None else items


class PDict:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Any]] | None = None) -> None:
        self.items = [] if items is None else items

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if k == key:
                return v
        return None


class Blob:
    """A byte string too large to keep: its length and first bytes."""

    __slots__ = ("head", "size")

    def __init__(self, size: int, head: bytes) -> None:
        self.size = size
        self.head = head


class Persistent:
    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid


class Opaque:
    """A value the interpreter could not compute (after a malformation)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class Malformed(Exception):
    """The stream cannot be read further at this point."""


class Bound(Exception):
    """An analysis bound was reached."""


class Mark:
    """The MARK sentinel."""


MARK = Mark()
