"""Build a :class:`Pipeline` from ``gateway.toml`` settings."""

from __future__ import annotations

import logging
from pathlib import Path

from donjon.core.bus import EventBus
from donjon.core.identity import PrincipalKind
from donjon.core.ports import Authorizer
from donjon.errors import ConfigError
from donjon.gateway.auth import (
    ApiKeyAuthenticator,
    Authenticator,
    ChainAuthenticator,
    CredentialPort,
    JwtAuthenticator,
    TrustedHeaderAuthenticator,
    VaultAuthenticator,
)
from donjon.gateway.detectors.redis_states import RedisStates
from donjon.gateway.detectors.stores import StateStore
from donjon.gateway.guard import ModelGuard
from donjon.gateway.metrics import GatewayMetrics
from donjon.gateway.pipeline import Pipeline
from donjon.gateway.profile import ReferenceProfile
from donjon.gateway.quotas import Bucket, MemoryQuotas, QuotaStore, RedisQuotas
from donjon.gateway.redis_link import RedisLink
from donjon.gateway.settings import GatewaySettings
from donjon.gateway.watermark.build import build_watermarker, family_memory, mark_store

log = logging.getLogger("donjon.gateway")


def build_authenticator(
    settings: GatewaySettings, vault: CredentialPort | None = None
) -> Authenticator:
    """The key file, the JWKS and (``auth.vault_identities``) the vault's identities."""
    auth = settings.auth
    if auth.vault_identities and vault is None:
        raise ConfigError(
            "auth.vault_identities needs the vault's authenticator: start the gateway with "
            "'donjon gateway' (it wires the vault of the Donjon settings)"
        )
    chained = VaultAuthenticator(vault) if auth.vault_identities and vault is not None else None
    keys = ApiKeyAuthenticator.from_file(auth.api_keys_file) if auth.api_keys_file else None
    if auth.jwks_file is not None and auth.jwks_url is not None:
        raise ConfigError("set one of auth.jwks_file and auth.jwks_url, not both")
    options = {
        "audience": auth.jwt_audience,
        "issuer": auth.jwt_issuer,
        "algorithms": tuple(auth.jwt_algorithms),
    }
    verifier = None
    if auth.jwks_file is not None:
        verifier = JwtAuthenticator.from_file(auth.jwks_file, **options)
    elif auth.jwks_url is not None:
        verifier = JwtAuthenticator.from_url(auth.jwks_url, **options)
    methods = (keys, verifier, chained, auth.principal_header)
    if all(m is None for m in methods) and not auth.allow_anonymous:
        raise ConfigError(
            "the gateway needs auth.api_keys_file, auth.jwks_file / jwks_url, "
            "auth.vault_identities or auth.principal_header "
            "(or the explicitly insecure auth.allow_anonymous = true)"
        )
    if auth.allow_anonymous:
        log.warning("gateway: anonymous callers are allowed (auth.allow_anonymous = true)")
    return ChainAuthenticator(keys, verifier, vault=chained, allow_anonymous=auth.allow_anonymous)


def build_identity_header(settings: GatewaySettings) -> TrustedHeaderAuthenticator | None:
    """``auth.principal_header`` believed from ``auth.trusted_proxies`` only, if set."""
    auth = settings.auth
    if auth.principal_header is None:
        if auth.trusted_proxies:
            raise ConfigError("auth.trusted_proxies is set but auth.principal_header is not")
        return None
    return TrustedHeaderAuthenticator(
        auth.principal_header,
        auth.trusted_proxies,
        groups_header=auth.principal_groups_header,
        kind=PrincipalKind(auth.principal_kind),
    )


def build_quotas(settings: GatewaySettings, links: dict[str, RedisLink]) -> QuotaStore:
    q = settings.quotas
    if q.backend == "redis":
        return RedisQuotas(_link(links, q.redis_url), prefix=q.redis_prefix)
    return MemoryQuotas()


def build_states(
    settings: GatewaySettings, model: str, features: int, links: dict[str, RedisLink]
) -> StateStore | None:
    """Redis-shared detector state for one model (None: the guard's in-process table)."""
    state = settings.state
    if state.backend != "redis":
        return None
    return RedisStates(
        _link(links, state.redis_url),
        window=settings.window,
        features=features,
        prefix=f"{state.redis_prefix}{model}:",
        ttl=state.ttl_seconds,
        max_cached=settings.max_principals,
    )


def _link(links: dict[str, RedisLink], url: str) -> RedisLink:
    """One link (one pool per event loop) per Redis URL, shared by its users."""
    if url not in links:
        links[url] = RedisLink(url)
    return links[url]


def build_pipeline(
    settings: GatewaySettings,
    *,
    bus: EventBus | None = None,
    authenticator: Authenticator | None = None,
    quotas: QuotaStore | None = None,
    metrics: GatewayMetrics | None = None,
    vault_authenticator: CredentialPort | None = None,
    authorizer: Authorizer | None = None,
    home: Path | None = None,
) -> Pipeline:
    """Wire a pipeline; the authenticator port defaults to the key file / JWKS of the settings.

    ``vault_authenticator`` (the vault's ``Authenticator`` port) is used when
    ``auth.vault_identities`` is set; ``authorizer`` (the vault's ``Authorizer``
    port) is required when ``auth.vault_policies`` is set and decides
    ``model.predict`` on ``models/<name>``. ``home`` (Donjon's data folder) holds
    the watermark keys and records by default.
    """
    if settings.auth.vault_policies and authorizer is None:
        raise ConfigError(
            "auth.vault_policies needs the vault's authorizer: start the gateway with "
            "'donjon gateway' (it wires the vault's Cedar policy)"
        )
    guards = []
    links: dict[str, RedisLink] = {}
    for model in settings.models:
        profile = ReferenceProfile.load(model.profile) if model.profile else None
        guard = ModelGuard(
            model,
            profile=profile,
            window=settings.window,
            max_principals=settings.max_principals,
            states=build_states(settings, model.name, profile.features if profile else 1, links),
        )
        if model.watermark is not None and model.watermark.enabled:
            shared = settings.state.backend == "redis"
            link = _link(links, settings.state.redis_url) if shared else None
            store = mark_store(model.watermark, settings.state, home, link)
            families = family_memory(
                model.name,
                model.watermark,
                settings.state,
                guard.features,
                settings.max_principals,
                link,
            )
            guard.watermark = build_watermarker(
                model.name, model.watermark, home, store, profile=profile, families=families
            )
        guards.append(guard)
    q = settings.quotas
    return Pipeline(
        guards,
        authenticator or build_authenticator(settings, vault_authenticator),
        quotas or build_quotas(settings, links),
        principal_bucket=Bucket(q.principal_rate, q.principal_burst),
        global_bucket=Bucket(q.global_rate, q.global_burst),
        bus=bus,
        metrics=metrics,
        cooldown=settings.cooldown_seconds,
        event_interval=settings.event_interval_seconds,
        log_sample_rate=settings.log_sample_rate,
        authorizer=authorizer if settings.auth.vault_policies else None,
        identity_header=build_identity_header(settings),
        probers=frozenset(settings.probers),
        # the vault's store and policy are called off the event loop
        blocking=settings.auth.vault_identities or settings.auth.vault_policies,
        links=tuple(links.values()),
    )
