"""Progress bars for long work: on a terminal only, never with ``--quiet`` or JSON output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from donjon.cli.state import CliState


def wanted(cli: CliState) -> bool:
    """Whether to draw progress: standard error is a terminal, no --quiet, no JSON."""
    return not cli.quiet and not cli.json and cli.err_is_terminal()


@contextmanager
def byte_progress(cli: CliState, what: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A transient Rich bar of bytes done (size, speed, time); yields ``advance(n)``."""
    if not wanted(cli):
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(
        *columns, TransferSpeedColumn(), TimeElapsedColumn(), console=cli.err, transient=True
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def tree_size(path: object) -> int | None:
    """Bytes under a file or folder (None when it cannot be read), for a bar's total."""
    from pathlib import Path

    root = Path(str(path))
    try:
        if root.is_file():
            return root.stat().st_size
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    except OSError:
        return None
