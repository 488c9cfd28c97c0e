"""Gateway wiring: the inference firewall with the vault's identities and policies.

``auth.vault_identities`` (or ``donjon gateway --vault-identities``) makes the
gateway accept the vault's API tokens (and its JWT issuer, when configured): the
same tokens ``donjon access token issue`` and ``donjon login`` hand out, checked
against the vault's database on every request, so a revoked or expired token is
refused at once. ``auth.vault_policies`` (``--vault-policies``) has the vault's
Cedar policy decide ``model.predict`` on ``models/<name>`` for every request,
each decision published on the bus like the vault's own. Without either, the
gateway stands alone on its key file / JWKS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.errors import ConfigError, InputError

if TYPE_CHECKING:
    from donjon.gateway.pipeline import Pipeline
    from donjon.gateway.settings import GatewaySettings
    from donjon.storage.sql import Database


def gateway_pipeline(
    settings: Settings,
    gateway: GatewaySettings,
    bus: EventBus,
    *,
    vault_identities: bool | None = None,
    vault_policies: bool | None = None,
    database: Database | None = None,
) -> Pipeline:
    """The gateway's pipeline; the flags, when given, override ``gateway.auth``.

    ``database`` is the vault's (the caller disposes of it); by default one is
    opened on ``settings.sql_url`` when the vault's identities are used.
    """
    from donjon.app.access import build_authenticator, build_authorizer
    from donjon.gateway.build import build_pipeline

    update = {
        key: value
        for key, value in (
            ("vault_identities", vault_identities),
            ("vault_policies", vault_policies),
        )
        if value is not None
    }
    auth = gateway.auth.model_copy(update=update)
    gateway = gateway.model_copy(update={"auth": auth})
    port = build_authenticator(settings, bus, database) if auth.vault_identities else None
    authorizer = None
    if auth.vault_policies:
        from donjon.authz import Resource

        if not settings.policy_path.is_file():
            raise ConfigError(
                f"auth.vault_policies: no Cedar policy file at {settings.policy_path} "
                "(set authz.policy_path; docs/access.md has an example)"
            )
        for model in gateway.models:
            try:
                Resource.parse(f"models/{model.name}")
            except InputError as e:
                raise ConfigError(f"model name {model.name!r} is not a vault resource: {e}") from e
        authorizer = build_authorizer(settings, bus)
    pipeline = build_pipeline(
        gateway, bus=bus, vault_authenticator=port, authorizer=authorizer, home=settings.home
    )
    if gateway.drift_bucket_seconds is not None:
        from donjon.app.watch import watch_drift

        watch_drift(pipeline, gateway.drift_bucket_seconds, bus)
    return pipeline
