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

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from donjon.errors import ModelRefused
from donjon.guard.check import GuardPolicy, scan_bytes
from donjon.guard.hooks import Patcher, PatchOnImport
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

_lock = threading.RLock()
_policy: GuardPolicy | None = None
_patcher: Patcher | None = None
_finder: PatchOnImport | None = None


def _current() -> GuardPolicy | None:
    return _policy


def install(policy: GuardPolicy | None = None) -> None:
    """Wrap the loaders (again with a new policy if already installed)."""
    global _policy, _patcher, _finder
    with _lock:
        _policy = policy or GuardPolicy()
        if _patcher is not None:
            return
        _patcher = Patcher(TARGETS, _current)
        _finder = PatchOnImport(_patcher)
        sys.meta_path.insert(0, _finder)
        for name in {t.module for t in TARGETS}:
            module = sys.modules.get(name)
            if module is not None:
                _patcher.patch_module(module)


def uninstall() -> None:
    """Put every wrapped loader back as it was; a no-op when not installed."""
    global _policy, _patcher, _finder
    with _lock:
        if _finder is not None and _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        if _patcher is not None:
            _patcher.unpatch_all()
        _policy, _patcher, _finder = None, None, None


def installed() -> GuardPolicy | None:
    """The active policy, or ``None`` when the guard is not installed."""
    return _policy if _patcher is not None else None


@contextmanager
def guarded(policy: GuardPolicy | None = None) -> Iterator[GuardPolicy]:
    """Guard the loaders inside a ``with`` block; restore the previous state after."""
    with _lock:
        before = installed()
        install(policy)
        active = _policy or GuardPolicy()
    try:
        yield active
    finally:
        with _lock:
            if before is None:
                uninstall()
            else:
                install(before)
