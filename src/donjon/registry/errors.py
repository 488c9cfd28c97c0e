"""The registry's errors, under the project's one tree (``donjon.errors``)."""

from __future__ import annotations

from collections.abc import Sequence

from donjon.errors import Conflict, InputError, NotFound
from donjon.registry.model import GateResult


class TooLarge(InputError):
    """An upload is bigger than the configured limit; nothing was stored."""


class Gone(NotFound):
    """The version was deleted (tombstoned): its record stays, its bytes are not served."""


class Quarantined(Conflict):
    """The version is quarantined and is not served until an administrator releases it."""


class GateFailed(Conflict):
    """An admission gate refused a promotion; the version stayed where it was."""

    def __init__(self, message: str, results: Sequence[GateResult]) -> None:
        super().__init__(message)
        self.results = tuple(results)
