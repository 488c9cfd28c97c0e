"""The Donjon console: a server-rendered web dashboard under ``/ui`` of the vault."""

from donjon.server.ui.console import Console, mount_console
from donjon.server.ui.events import EventIndex
from donjon.server.ui.views import Sources

__all__ = ["Console", "EventIndex", "Sources", "mount_console"]
