"""The inference firewall: one rule pipeline in front of deployed models.

Two forms share the pipeline: a reverse proxy (:func:`create_proxy`, ``donjon
gateway``) and in-process wrappers (:class:`GuardedModel`,
:class:`FirewallMiddleware`). See ``docs/gateway.md``.

The names below load on first use, so ``donjon.gateway.rules`` (read by the
rule catalogue) works on a core install without the ``gateway`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.core.lazy import lazy_exports

if TYPE_CHECKING:
    from donjon.gateway.auth import (
        ApiKeyAuthenticator,
        Authenticator,
        ChainAuthenticator,
        JwtAuthenticator,
        TrustedHeaderAuthenticator,
        new_api_key,
    )
    from donjon.gateway.build import build_pipeline
    from donjon.gateway.detectors import Action, Signal
    from donjon.gateway.hardening import Hardening
    from donjon.gateway.metrics import GatewayMetrics
    from donjon.gateway.middleware import FirewallMiddleware, GuardedModel, Refused
    from donjon.gateway.outputs import OutputKind, ResponseReader
    from donjon.gateway.pipeline import Admitted, GatewayRequest, Pipeline
    from donjon.gateway.profile import ReferenceProfile, build_profile
    from donjon.gateway.proxy import create_proxy
    from donjon.gateway.quotas import Bucket, MemoryQuotas, RedisQuotas
    from donjon.gateway.replies import Reply
    from donjon.gateway.settings import GatewaySettings, load_gateway_settings
    from donjon.gateway.validation import ApiFormat, InputContract, InvalidRequest

_WHERE = {
    "ApiKeyAuthenticator": "auth",
    "Authenticator": "auth",
    "ChainAuthenticator": "auth",
    "JwtAuthenticator": "auth",
    "TrustedHeaderAuthenticator": "auth",
    "new_api_key": "auth",
    "build_pipeline": "build",
    "Action": "detectors",
    "Signal": "detectors",
    "Hardening": "hardening",
    "GatewayMetrics": "metrics",
    "FirewallMiddleware": "middleware",
    "GuardedModel": "middleware",
    "Refused": "middleware",
    "OutputKind": "outputs",
    "ResponseReader": "outputs",
    "Admitted": "pipeline",
    "GatewayRequest": "pipeline",
    "Pipeline": "pipeline",
    "Reply": "replies",
    "ReferenceProfile": "profile",
    "build_profile": "profile",
    "create_proxy": "proxy",
    "Bucket": "quotas",
    "MemoryQuotas": "quotas",
    "RedisQuotas": "quotas",
    "GatewaySettings": "settings",
    "load_gateway_settings": "settings",
    "ApiFormat": "validation",
    "InputContract": "validation",
    "InvalidRequest": "validation",
}

__all__ = [
    "Action",
    "Admitted",
    "ApiFormat",
    "ApiKeyAuthenticator",
    "Authenticator",
    "Bucket",
    "ChainAuthenticator",
    "FirewallMiddleware",
    "GatewayMetrics",
    "GatewayRequest",
    "GatewaySettings",
    "GuardedModel",
    "Hardening",
    "InputContract",
    "InvalidRequest",
    "JwtAuthenticator",
    "MemoryQuotas",
    "OutputKind",
    "Pipeline",
    "RedisQuotas",
    "ReferenceProfile",
    "Refused",
    "Reply",
    "ResponseReader",
    "Signal",
    "TrustedHeaderAuthenticator",
    "build_pipeline",
    "build_profile",
    "create_proxy",
    "load_gateway_settings",
    "new_api_key",
]


__getattr__ = lazy_exports(__name__, _WHERE, globals())
