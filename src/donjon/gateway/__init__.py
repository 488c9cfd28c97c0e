"""The inference firewall: one rule pipeline in front of deployed models.

Two forms share the pipeline: a reverse proxy (:func:`create_proxy`, ``donjon
gateway``) and in-process wrappers (:class:`GuardedModel`,
:class:`FirewallMiddleware`). See ``docs/gateway.md``.
"""

from donjon.gateway.auth import (
    ApiKeyAuthenticator,
    Authenticator,
    ChainAuthenticator,
    JwtAuthenticator,
    new_api_key,
)
from donjon.gateway.build import build_pipeline
from donjon.gateway.detectors import Action, Signal
from donjon.gateway.hardening import Hardening
from donjon.gateway.metrics import GatewayMetrics
from donjon.gateway.middleware import FirewallMiddleware, GuardedModel, Refused
from donjon.gateway.pipeline import Admitted, GatewayRequest, Pipeline, Reply
from donjon.gateway.profile import ReferenceProfile, build_profile
from donjon.gateway.quotas import Bucket, MemoryQuotas, RedisQuotas
from donjon.gateway.settings import GatewaySettings, load_gateway_settings
from donjon.gateway.validation import ApiFormat, InputContract, InvalidRequest

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
    "Pipeline",
    "RedisQuotas",
    "ReferenceProfile",
    "Refused",
    "Reply",
    "Signal",
    "build_pipeline",
    "build_profile",
    "create_proxy",
    "load_gateway_settings",
    "new_api_key",
]


def __getattr__(name: str) -> object:
    if name == "create_proxy":  # Starlette and httpx load only when the proxy is used
        from donjon.gateway.proxy import create_proxy

        return create_proxy
    raise AttributeError(name)
