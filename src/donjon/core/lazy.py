"""Public names of a package imported on first use (PEP 562 module ``__getattr__``).

A package lists where each public name lives and binds
``__getattr__ = lazy_exports(__name__, WHERE, globals())``, so importing the
package stays cheap and an extra's heavy modules load only when one of their
names is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, where: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``where`` maps a name to its sub-module."""

    def load(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    return load
