"""Donjon's one exception tree.

Every error Donjon raises on purpose derives from :class:`DonjonError`; each
capability has one base of its own, so callers can catch as broadly or as
narrowly as they need::

    DonjonError
    ├── ConfigError            bad settings file, variable or flag
    ├── InputError             bad user input (a path, a value, a document)
    ├── ScanError              the model scanner could not run (not a finding)
    │   └── ModelRefused           a guarded loader refused a file (donjon.guard)
    ├── DataError              dataset manifests, filters and detectors
    ├── VerificationError      signatures, provenance, policies did not verify
    ├── AccessDenied           authentication or authorisation refused
    │   └── AuthenticationError    no or bad credentials
    ├── AuditError             the tamper-evident ledger
    │   └── LedgerTampered         verification found a broken chain
    ├── RegistryError          the vault's datasets and models
    │   ├── NotFound
    │   └── Conflict
    ├── GatewayError           the inference firewall
    ├── MonitorError           metrics, baselines and alerts
    ├── WatchError             deployed models seen from outside (fingerprints, probes)
    ├── ExportError            SOC formats and sinks
    ├── StorageError           databases, blob stores, files
    └── IntegrationError       a tool Donjon plugs into (MLflow) failed or refused

Third-party errors are wrapped at the boundary with ``raise ... from e`` so the
cause stays visible while callers deal with one tree.
"""

from __future__ import annotations


class DonjonError(Exception):
    """Root of every error Donjon raises on purpose."""


class ConfigError(DonjonError):
    """Settings could not be read or are invalid."""


class InputError(DonjonError):
    """A user-supplied value is invalid; nothing was changed."""


class ScanError(DonjonError):
    """The scanner itself failed (bad arguments, unreadable path).

    A malformed *artifact* is never a ScanError: it is a finding.
    """


class ModelRefused(ScanError):
    """A guarded loader (``donjon.guard``) refused a model before loading it.

    ``report`` holds the scan's :class:`~donjon.scan.FileReport` when there is one.
    """

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class DataError(DonjonError):
    """A dataset operation failed."""


class VerificationError(DonjonError):
    """A signature, attestation or policy did not verify."""


class AccessDenied(DonjonError):
    """A request was refused by authentication or authorisation."""


class AuthenticationError(AccessDenied):
    """Credentials were missing, malformed, expired or revoked."""


class AuditError(DonjonError):
    """The audit ledger could not be written or read."""


class LedgerTampered(AuditError):
    """Ledger verification found a modified, missing or reordered entry."""


class RegistryError(DonjonError):
    """A vault operation failed."""


class NotFound(RegistryError):
    """The named dataset, model or version does not exist."""


class Conflict(RegistryError):
    """The operation conflicts with existing state (versions are immutable)."""


class GatewayError(DonjonError):
    """The inference firewall failed to process a request."""


class MonitorError(DonjonError):
    """A monitor, baseline or alert rule failed."""


class WatchError(DonjonError):
    """A deployed model could not be enrolled or checked."""


class ExportError(DonjonError):
    """An event could not be rendered or delivered to a SOC sink."""


class StorageError(DonjonError):
    """A database, blob store or file operation failed."""


class IntegrationError(DonjonError):
    """A tool Donjon plugs into (an MLflow server) failed or refused a request."""
