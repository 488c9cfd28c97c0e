"""Safe loading: scan every model file before ``torch.load`` and friends touch it.

import donjon.guard
donjon.guard.install()                      # or: with donjon.guard.guarded(): ...
torch.load("model.pt")                      # scanned first; ModelRefused if it is unsafe

Wrapped (see :mod:`donjon.guard.targets`): ``pickle.load`` / ``pickle.loads``,
``torch.load``, ``joblib.load``, ``numpy.load`` with ``allow_pickle=True``,
``keras.models.load_model`` and ``transformers`` ``PreTrainedModel.from_pretrained``.
Donjon imports none of these libraries: one already imported is patched at
once, one imported later is patched as it is imported.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from donjon.errors import ModelRefused
from donjon.guard.check import GuardPolicy, scan_bytes
from donjon.guard.hooks import Installation, wrap
from donjon.guard.targets import TARGETS, Target

__all__ = [
    "GuardPolicy",
    "ModelRefused",
    "Target",
    "guarded",
    "install",
    "installed",
    "scan_bytes",
    "uninstall",
]

_guard: Installation[GuardPolicy] = Installation(TARGETS, wrap, GuardPolicy)


def install(policy: GuardPolicy | None = None) -> None:
    """Wrap the loaders (again with a new policy if already installed)."""
    _guard.install(policy)


def uninstall() -> None:
    """Put every wrapped loader back as it was; a no-op when not installed."""
    _guard.uninstall()


def installed() -> GuardPolicy | None:
    """The active policy, or ``None`` when the guard is not installed."""
    return _guard.installed()


def guarded(policy: GuardPolicy | None = None) -> AbstractContextManager[GuardPolicy]:
    """Guard the loaders inside a ``with`` block; restore the previous state after."""
    return _guard.guarded(policy)
