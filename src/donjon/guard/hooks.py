"""Patch and restore the wrapped loaders; patch modules imported later on import."""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Generic, TypeVar

from donjon.errors import ModelRefused
from donjon.guard.check import (
    GuardPolicy,
    check_cached_repo,
    check_path,
    check_stream,
    enforce,
    scan_bytes,
)
from donjon.guard.targets import Target

# Inside a guarded call, nested loads (torch.load -> pickle.load) run unguarded:
# the outer call already scanned the whole file.
_depth = threading.local()
P = TypeVar("P")


def _inside() -> bool:
    return getattr(_depth, "n", 0) > 0


def _checked(target: Target, value: Any, policy: GuardPolicy, revision: Any = None) -> Any:
    """Scan the file argument; return it, or a replacement for a consumed stream."""
    if target.bytes_only or isinstance(value, bytes | bytearray | memoryview):
        name = f"bytes-for-{target.label.replace('.', '-')}"  # no dot: no extension hint
        enforce(scan_bytes(bytes(value), name, policy.scan), policy, target.label)
        return value
    if target.hub_ids and isinstance(value, str) and not os.path.exists(value):
        check_cached_repo(
            value, revision if isinstance(revision, str) else None, policy, target.label
        )
        return value  # a repository id: its cached snapshot, scanned
    if isinstance(value, str | os.PathLike):
        check_path(value, policy, target.label)
        return value
    if callable(getattr(value, "read", None)):
        return check_stream(value, policy, target.label)
    raise ModelRefused(f"{target.label}: refused an argument the guard cannot scan: {value!r}")


PolicySource = Callable[[], GuardPolicy | None]
Wrapper = Callable[[Target, Callable[..., Any], Callable[[], Any]], Any]


def wrap(target: Target, original: Callable[..., Any], policy_of: PolicySource) -> Any:
    """``original`` with a scan of its file argument first (fail closed).

    ``policy_of`` gives the active policy; ``None`` (guard uninstalled) makes
    a wrapper left behind in someone's namespace call straight through.
    """
    offset = 1 if target.is_method else 0  # a classmethod's function gets cls first

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        rest = args[offset:]
        policy = policy_of()
        if policy is None or _inside() or not target.applies(rest, kwargs):
            return original(*args, **kwargs)
        if rest:
            checked = _checked(target, rest[0], policy, kwargs.get("revision"))
            args = (*args[:offset], checked, *rest[1:])
        elif target.argument in kwargs:
            value = kwargs[target.argument]
            kwargs[target.argument] = _checked(target, value, policy, kwargs.get("revision"))
        _depth.n = getattr(_depth, "n", 0) + 1
        try:
            return original(*args, **kwargs)
        finally:
            _depth.n -= 1

    guarded.__donjon_guard__ = True  # type: ignore[attr-defined]
    return guarded


class Patcher:
    """The patched attributes of one installation, and how to put them back.

    ``wrapper(target, original, policy)`` builds each replacement: :func:`wrap`
    here; other guards (``donjon.integrations.mlflow.guard``) bring their own.
    """

    def __init__(
        self, targets: Sequence[Target], policy: Callable[[], Any], wrapper: Wrapper = wrap
    ) -> None:
        self.targets = targets
        self.policy = policy
        self.wrapper = wrapper
        self.restore: dict[str, Callable[[], None]] = {}
        self.lock = threading.RLock()

    def patch_module(self, module: ModuleType) -> None:
        with self.lock:
            for target in self.targets:
                if target.module == module.__name__ and target.label not in self.restore:
                    self._patch(target, module)

    def _patch(self, target: Target, module: ModuleType) -> None:
        if target.is_method:
            cls_name, name = target.attribute.split(".", 1)
            owner: Any = getattr(module, cls_name, None)
            raw = owner.__dict__.get(name) if owner is not None else None
            if not isinstance(raw, classmethod):
                return
            setattr(owner, name, classmethod(self.wrapper(target, raw.__func__, self.policy)))
            original: Any = raw
        else:
            owner, name = module, target.attribute
            raw = getattr(module, name, None)
            if raw is None:
                return
            if getattr(raw, "__donjon_guard__", False):  # re-exported from a patched module
                original = raw.__wrapped__
            else:
                original = raw
                setattr(module, name, self.wrapper(target, raw, self.policy))
        self.restore[target.label] = functools.partial(setattr, owner, name, original)

    def unpatch_all(self) -> None:
        with self.lock:
            for undo in self.restore.values():
                undo()
            self.restore.clear()


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then patches the fresh module."""

    def __init__(self, inner: importlib.abc.Loader, patcher: Patcher) -> None:
        self.inner, self.patcher = inner, patcher

    def __getattr__(self, name: str) -> Any:  # resource readers, get_source, is_package...
        return getattr(self.inner, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        self.patcher.patch_module(module)


class PatchOnImport(importlib.abc.MetaPathFinder):
    """A meta-path finder that patches a target module once it is imported."""

    def __init__(self, patcher: Patcher) -> None:
        self.patcher = patcher
        self.names = {t.module for t in patcher.targets}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, self.patcher)
                return spec
        return None


class Installation(Generic[P]):
    """One guard's install / uninstall / ``with guarded()``: its policy and its patches.

    ``targets`` are patched when already imported and, through a meta-path
    hook, as soon as they are imported later.
    """

    def __init__(self, targets: Sequence[Target], wrapper: Wrapper, default: Callable[[], P]):
        self.targets, self.wrapper, self.default = targets, wrapper, default
        self.lock = threading.RLock()
        self.policy: P | None = None
        self._patcher: Patcher | None = None
        self._finder: PatchOnImport | None = None

    def current(self) -> P | None:
        return self.policy

    def install(self, policy: P | None = None) -> None:
        with self.lock:
            self.policy = policy if policy is not None else self.default()
            if self._patcher is not None:
                return
            self._patcher = Patcher(self.targets, self.current, self.wrapper)
            self._finder = PatchOnImport(self._patcher)
            sys.meta_path.insert(0, self._finder)
            for name in {t.module for t in self.targets}:
                module = sys.modules.get(name)
                if module is not None:
                    self._patcher.patch_module(module)

    def uninstall(self) -> None:
        with self.lock:
            if self._finder is not None and self._finder in sys.meta_path:
                sys.meta_path.remove(self._finder)
            if self._patcher is not None:
                self._patcher.unpatch_all()
            self.policy, self._patcher, self._finder = None, None, None

    def installed(self) -> P | None:
        return self.policy if self._patcher is not None else None

    @contextmanager
    def guarded(self, policy: P | None = None) -> Iterator[P]:
        with self.lock:
            before = self.installed()
            self.install(policy)
            active = self.policy if self.policy is not None else self.default()
        try:
            yield active
        finally:
            with self.lock:
                if before is None:
                    self.uninstall()
                else:
                    self.install(before)
