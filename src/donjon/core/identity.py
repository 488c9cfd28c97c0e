"""Who acts: users, groups and service accounts."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PrincipalKind(enum.StrEnum):
    USER = "user"
    GROUP = "group"
    SERVICE = "service"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated (or explicitly anonymous) caller."""

    id: str
    kind: PrincipalKind = PrincipalKind.USER
    display_name: str | None = None
    groups: tuple[str, ...] = ()
    # The actions a scoped credential (an API token) may be used for, as patterns
    # (``dataset.read``, ``model.*``, ``*``); ``None`` when the credential is not
    # scoped. A scope only narrows what policies grant, it never widens it.
    scopes: frozenset[str] | None = None

    @classmethod
    def anonymous(cls) -> Principal:
        return cls("anonymous", PrincipalKind.ANONYMOUS)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"
