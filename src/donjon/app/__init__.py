"""Composition root: Settings in, wired services out.

The only place that knows which adapter serves which port. The CLI and the
server build one :class:`Donjon` (or the services of one capability) from
here; capabilities never reach for settings or adapters themselves. One module
per area: ``wiring`` (the application and its bus), ``soc`` (outbox, sinks,
metrics), ``access`` (identities, policies, the ledger), ``vault``, ``scan``.
"""

from donjon.app.access import (
    build_authenticator,
    build_authorizer,
    build_identity,
    build_ledger,
    vault_access,
)
from donjon.app.gateway import gateway_pipeline
from donjon.app.scan import scan_policy
from donjon.app.service import with_delivery
from donjon.app.soc import SocWiring, build_metrics, build_outbox, build_sinks, build_soc
from donjon.app.vault import VaultServices, build_vault
from donjon.app.wiring import Donjon, build

__all__ = [
    "Donjon",
    "SocWiring",
    "VaultServices",
    "build",
    "build_authenticator",
    "build_authorizer",
    "build_identity",
    "build_ledger",
    "build_metrics",
    "build_outbox",
    "build_sinks",
    "build_soc",
    "build_vault",
    "gateway_pipeline",
    "scan_policy",
    "vault_access",
    "with_delivery",
]
