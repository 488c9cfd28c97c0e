"""What the scanner allows, denies and bounds: the three tiers and the limits.

A callable is named by its full dotted path (``module.qualname``). The verdict:

1. **deny** if the path starts with a deny-listed module or names a denied
   callable, or if any attribute on the path is a dunder (``numpy.__builtins__``);
2. **allow** if the exact path is on the allow-list;
3. **deny** if a later part of the path is a denied module or callable (a
   re-export: ``torch.serialization.os.system`` is denied through ``os``);
4. **unknown** otherwise (reported at medium severity when called).

User entries (``[scan] allow`` / ``deny``) extend the built-in lists; an allow
entry never overrides a denied module prefix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from donjon.scan import allowlist, denylist

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    UNKNOWN = "unknown"


def normalise(module: str, name: str) -> str:
    """``module.name`` with Python 2 module aliases mapped the way pickle maps them."""
    module = _PY2_MODULES.get(module, module)
    return f"{module}.{name}" if name else module


def is_identifier_path(text: str) -> bool:
    return bool(_IDENT.match(text))


@dataclass(frozen=True, slots=True)
class ScanPolicy:
    """Lists and bounds for one scan. Build it from settings with :meth:`with_extra`."""

    allow: frozenset[str] = field(default_factory=lambda: allowlist.ALLOWED)
    deny: frozenset[str] = field(default_factory=lambda: denylist.DENIED)
    max_opcodes: int = 5_000_000
    max_memo: int = 1_000_000
    max_stack: int = 1_000_000
    max_nesting: int = 8
    max_seconds: float = 60.0
    max_pickle_bytes: int = 1 << 30
    max_member_bytes: int = 512 << 20
    max_total_bytes: int = 4 << 30
    max_members: int = 100_000
    max_ratio: float = 200.0
    max_header_bytes: int = 100 << 20
    workers: int = 0

    def with_extra(
        self,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        **bounds: float | int,
    ) -> ScanPolicy:
        """A copy with user allow / deny entries added and bounds replaced."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update({k: v for k, v in bounds.items() if v is not None})
        values["allow"] = self.allow | frozenset(allow)
        values["deny"] = self.deny | frozenset(deny)
        return ScanPolicy(**values)

    def verdict(self, dotted: str) -> Verdict:
        parts = dotted.split(".")
        if any(p.startswith("__") and p.endswith("__") and len(p) > 4 for p in parts[1:]):
            return Verdict.DENY
        if any(".".join(parts[:end]) in self.deny for end in range(1, len(parts) + 1)):
            return Verdict.DENY  # a denied module, or a denied callable, named directly
        if dotted in self.allow or allowlist.is_allowed_class(dotted):
            return Verdict.ALLOW  # exact entries win over re-export matches below
        for start in range(1, len(parts)):
            for end in range(start + 1, len(parts) + 1):
                if ".".join(parts[start:end]) in self.deny:
                    return Verdict.DENY  # a re-export: torch.serialization.os.system
        return Verdict.UNKNOWN


DEFAULT_POLICY = ScanPolicy()
