"""Help that reads well: value kinds as TEXT / PATH / INTEGER, never Python type names.

Typer 0.29 shows each parameter's Python annotation (``<bool>`` on flags, ``<list[str]>``
on repeatable options). :func:`install` replaces that column, once, for every command:
flags show nothing, a repeatable option shows its element kind, choices stay listed.
"""

from __future__ import annotations

import re
from typing import Any

_KINDS = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "FLOAT",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIR",
    "datetime": "DATETIME",
}
_installed = False


def readable(label: str | None, is_flag: bool) -> str | None:
    """``<list[str]>`` -> ``TEXT``, ``<bool>`` on a flag -> nothing, ``<a|b>`` -> ``[a|b]``."""
    if label is None or is_flag:
        return None
    inner = label[1:-1] if label.startswith("<") and label.endswith(">") else label
    suffix = "..." if inner.endswith("...") else ""
    inner = inner.removesuffix("...")
    inner = re.sub(r"^list\[(.*)\]$", r"\1", inner)
    if inner in _KINDS:
        return _KINDS[inner] + suffix
    if inner == "bool":
        return "BOOLEAN"
    if "|" in inner:
        return f"[{inner}]{suffix}"
    return inner.upper() + suffix


def install() -> None:
    """Replace Typer's type column by :func:`readable` (idempotent)."""
    global _installed
    if _installed:
        return
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        original = cls.display_type_rich

        def display(self: Any, ctx: Any, _original: Any = original) -> str | None:
            if self.metavar is not None:
                return str(self.metavar)
            return readable(_original(self, ctx), bool(getattr(self, "is_flag", False)))

        cls.display_type_rich = display  # type: ignore[method-assign]
    _installed = True
