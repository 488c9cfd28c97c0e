"""Rich narration of the quickstart: one line per thing that happened."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from donjon.core.findings import Finding


class Narrator:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, number: int, title: str) -> None:
        self.console.print()
        self.console.print(Rule(f"[bold]{number}. {escape(title)}[/bold]", align="left"))

    def info(self, text: str) -> None:
        self.console.print(f"  [dim]·[/dim] {escape(text)}")

    def ok(self, text: str) -> None:
        self.console.print(f"  [green]✓[/green] {escape(text)}")

    def caught(self, text: str) -> None:
        self.console.print(f"  [bold red]✗ caught[/bold red] {escape(text)}")

    def warn(self, text: str) -> None:
        self.console.print(f"  [bold yellow]! {escape(text)}[/bold yellow]")

    def finding(self, finding: Finding) -> None:
        atlas = ", ".join(finding.rule.atlas) or "-"
        self.console.print(
            f"    [magenta]{finding.rule.id}[/magenta] {escape(f'[{finding.level.label}]')} "
            f"{escape(finding.message[:110])} [dim](ATLAS {atlas})[/dim]"
        )
