"""Severity of a finding or event, ordered, with its OCSF ``severity_id``."""

from __future__ import annotations

import enum


class Severity(enum.IntEnum):
    """How bad a finding is: ``INFO < LOW < MEDIUM < HIGH < CRITICAL``."""

    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @property
    def label(self) -> str:
        """Lower-case name, as written in configs, JSON and on the command line."""
        return self.name.lower()

    @property
    def ocsf_id(self) -> int:
        """OCSF ``severity_id``: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical."""
        return int(self.value)

    @property
    def ocsf_name(self) -> str:
        return "Informational" if self is Severity.INFO else self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse ``"high"``, ``"HIGH"`` or ``"informational"``; ValueError lists the choices."""
        key = text.strip().upper()
        if key == "INFORMATIONAL":
            key = "INFO"
        try:
            return cls[key]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r}; choose one of {choices}") from None

    def __str__(self) -> str:
        return self.label
