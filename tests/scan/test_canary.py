"""Nothing a scan reads ever runs: an audit hook watches every scan of the whole corpus."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.scan import scan_path
from donjon.scan.npy import AST_ONLY
from donjon.scan.samples_pickle import CANARY

_WATCHING = False
_EVENTS: list[tuple[str, str]] = []
_FORBIDDEN = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen", "exec",
              "compile", "pty.spawn", "webbrowser.open", "socket.connect", "ctypes.dlopen",
              "marshal.loads", "pickle.find_class"}  # fmt: skip
# Modules named by malicious samples that must never be imported by a scan.
_SAMPLE_MODULES = {"mailcap", "webbrowser", "pty", "runpy", "pip", "mlflow", "evilpkg",
                   "mylib", "pdb", "cProfile", "timeit", "pandas", "torch"}  # fmt: skip


def _watched_import(event: str, args: tuple[Any, ...]) -> bool:
    return event == "import" and bool(args) and str(args[0]).split(".")[0] in _SAMPLE_MODULES


def _canary_open(event: str, args: tuple[Any, ...]) -> bool:
    return event == "open" and bool(args) and CANARY in str(args[0])


def _syntax_tree_only(event: str, args: tuple[Any, ...]) -> bool:
    """ast.parse (npy headers, shipped source) raises "compile" but builds no code."""
    return event == "compile" and len(args) > 1 and args[1] == AST_ONLY


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if (
        _WATCHING
        and not _syntax_tree_only(event, args)
        and (event in _FORBIDDEN or _watched_import(event, args) or _canary_open(event, args))
    ):
        _EVENTS.append((event, repr(args)[:200]))


sys.addaudithook(_hook)


@pytest.fixture
def watch() -> Iterator[list[tuple[str, str]]]:
    global _WATCHING
    _EVENTS.clear()
    _WATCHING = True
    try:
        yield _EVENTS
    finally:
        _WATCHING = False


def test_scanning_the_whole_corpus_runs_nothing(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    malicious_corpus: dict[Path, str],
    benign_corpus: list[Path],
    watch: list[tuple[str, str]],
) -> None:
    global _WATCHING
    monkeypatch.chdir(tmp_path)
    _WATCHING = False
    # Warm up: import the scanner's own lazily loaded modules before watching.
    scan_path(*list(malicious_corpus)[:3], *benign_corpus, workers=1)
    _WATCHING = True
    report = scan_path(*malicious_corpus, *benign_corpus, workers=1)
    _WATCHING = False
    assert len(report.files) == len(malicious_corpus) + len(benign_corpus)
    assert watch == []
    assert not (tmp_path / CANARY).exists()  # where the payloads would write


def test_the_guard_sees_what_it_should() -> None:
    """The hook is live: an import of a watched module is recorded."""
    global _WATCHING
    _EVENTS.clear()
    _WATCHING = True
    try:
        sys.modules.pop("mailcap", None)
        with pytest.warns(DeprecationWarning, match="mailcap"):
            __import__("mailcap")
    finally:
        _WATCHING = False
    assert any(event == "import" and "mailcap" in args for event, args in _EVENTS)
