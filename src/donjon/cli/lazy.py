"""Sub-commands imported only when they run, so one command pays for its own imports.

``donjon scan`` must not import the vault, the gateway or SQLAlchemy to start.
The root group knows each sub-command by name, module and one-line help;
``donjon --help`` lists them from that table without importing any, and the
module of a command is imported (and turned into a Click command by Typer,
exactly as ``add_typer`` / ``command`` would) when that command is resolved.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import Command, Context

    from donjon.cli.commands import LazyCommand


class _Commands(MutableMapping[str, "Command"]):
    """The group's commands: every name of the table, each imported on first lookup."""

    def __init__(self, loaded: MutableMapping[str, Command], group: LazyGroup) -> None:
        self._loaded = dict(loaded)
        self._group = group

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            entry = self._group.entry(name)
            if entry is None:
                raise KeyError(name)
            self._loaded[name] = entry.load(self._group.rich_markup_mode)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._loaded
        yield from (c.name for c in self._group.lazy if c.name not in self._loaded)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or self._group.entry(str(name)) is not None

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded


class LazyGroup(TyperGroup):
    """A Typer root group whose sub-commands come from a table of :class:`LazyCommand`.

    Its ``commands`` mapping names every command (usage errors still suggest
    close names) and imports one when it is looked up; the help page lists
    the table's names and help without importing anything.
    """

    lazy: tuple[LazyCommand, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands(self.commands, self)
        self._listing = False

    def entry(self, name: str) -> LazyCommand | None:
        return next((c for c in self.lazy if c.name == name), None)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        commands = self.commands
        entry = self.entry(cmd_name)
        unloaded = isinstance(commands, _Commands) and not commands.is_loaded(cmd_name)
        if self._listing and entry is not None and unloaded:
            # the help page needs the name and the help only
            return TyperCommand(entry.name, help=entry.help, rich_markup_mode=self.rich_markup_mode)
        return commands.get(cmd_name)

    def format_help(self, ctx: Context, formatter: Any) -> None:
        with self._listing_only():
            super().format_help(ctx, formatter)

    @contextmanager
    def _listing_only(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False


def lazy_group(commands: tuple[LazyCommand, ...]) -> type[LazyGroup]:
    """The group class for ``typer.Typer(cls=...)`` serving ``commands``."""

    class Group(LazyGroup):
        lazy = commands

    return Group
