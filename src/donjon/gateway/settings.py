"""The gateway's own configuration file (``gateway.toml``), validated by pydantic.

Relative paths (key file, JWKS, profiles) are read relative to the file. Unknown
keys are errors. See ``docs/gateway.md`` for every key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from donjon.core.textfile import read_text
from donjon.errors import ConfigError, InputError
from donjon.gateway.detectors import Action
from donjon.gateway.detectors.extraction import change_steps
from donjon.gateway.detectors.scatter import largest_step
from donjon.gateway.outputs import OutputKind
from donjon.gateway.validation import ApiFormat
from donjon.gateway.watermark.config import WatermarkSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthConfig(_Section):
    api_keys_file: Path | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None  # fetched and cached by PyJWT's PyJWKClient (https)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    allow_anonymous: bool = False
    # the vault's identities: its API tokens (djt_...) and JWTs authenticate callers
    vault_identities: bool = False
    # the vault's Cedar policy decides model.predict on models/<name> (every decision recorded)
    vault_policies: bool = False
    # identity from the deployment: a header set by an API gateway / service mesh that has
    # authenticated the caller, believed only on connections from these CIDRs
    principal_header: str | None = None
    principal_groups_header: str | None = None
    principal_kind: Literal["user", "service"] = "service"
    trusted_proxies: list[str] = Field(default_factory=list)


class QuotaConfig(_Section):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "donjon:gw:quota:"
    principal_rate: float = Field(default=50.0, gt=0)
    principal_burst: float = Field(default=500.0, gt=0)
    global_rate: float = Field(default=20_000.0, gt=0)
    global_burst: float = Field(default=40_000.0, gt=0)


class StateConfig(_Section):
    """Where the detectors keep each principal's history (see detectors/stores.py)."""

    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "donjon:gw:state:"
    ttl_seconds: float = Field(default=86_400.0, gt=0)  # after a principal's last query
    # with backend = "redis", the watermark records too (never expiring: evidence)
    marks_prefix: str = "donjon:gw:marks:"


class EvasionSettings(_Section):
    enabled: bool = True
    action: Action = Action.BLOCK
    near_factor: float = Field(default=0.5, gt=0)
    min_near: int = Field(default=4, ge=1)
    min_labels: int = Field(default=2, ge=1)
    min_walk: int = Field(default=2, ge=0)  # 0 turns the line-search test off
    walk_tolerance: float = Field(default=0.02, gt=0, lt=1)
    walk_offset: float = Field(default=0.1, gt=0, lt=0.5)


class MembershipSettings(_Section):
    enabled: bool = True
    action: Action = Action.BLOCK
    min_near: int = Field(default=12, ge=1)


class OodSettings(_Section):
    enabled: bool = True
    action: Action = Action.LOG
    quantile: float = Field(default=0.995, gt=0.5, lt=1)
    check_grid: bool = True
    range_rate: float = Field(default=0.005, ge=0, lt=1)  # 0 turns the range test off
    range_margin: float = Field(default=0.25, ge=0)  # in feature scales
    split_rate: float = Field(default=0.005, ge=0, lt=1)  # 0 turns the split test off
    distance_action: Action = Action.LOG  # far from the data, no perturbation structure

    @property
    def natural_rate(self) -> float:
        """The share of natural queries the detector flags, at most (each test's own rate):
        the null of the watermark's suspicion test (``Guard.suspects``)."""
        return (1 - self.quantile) + self.range_rate + self.split_rate

    @model_validator(mode="after")
    def _some_natural_queries_pass(self) -> OodSettings:
        if self.natural_rate >= 1:
            raise ValueError(
                f"(1 - quantile) + range_rate + split_rate = {self.natural_rate:g}: the tests "
                "would flag every natural query (the sum must stay below 1)"
            )
        return self


class ConsistencySettings(_Section):
    """The answer-consistency test (profiles built with labels): an alert by default,
    the answer forwarded; calibrated so that each benign change of a row (one feature
    jittered, sensor noise) is flagged at most 1 % (docs/gateway.md)."""

    enabled: bool = True
    action: Action = Action.ALERT  # block: the answer is withheld (403)
    quantile: float = Field(default=0.995, gt=0.5, lt=1)


class ExtractionSettings(_Section):
    enabled: bool = True
    action: Action = Action.BLOCK
    null_rate: float = Field(default=0.5, gt=0, lt=1)
    alpha: float = Field(default=1e-6, gt=0, lt=1)
    min_queries: int = Field(default=10, ge=1)
    budget: int | None = Field(default=100_000, ge=1)
    budget_action: Action = Action.THROTTLE
    far_score: float = Field(default=1.5, gt=0)
    derived_quantile: float = Field(default=0.1, gt=0, lt=0.5)
    shift_rate: float = Field(default=0.95, ge=0, lt=1)  # 0 turns the CUSUM change test off

    @model_validator(mode="after")
    def _change_test_steps(self) -> ExtractionSettings:
        """A shift_rate at or below null_rate would silently turn the change test off, and
        a null_rate near 0 overflows its step: refused here, not at the first query."""
        if self.shift_rate == 0:
            return self
        if self.shift_rate <= self.null_rate:
            raise ValueError(
                f"shift_rate ({self.shift_rate}) must exceed null_rate ({self.null_rate}), "
                "or be 0 to turn the change test off"
            )
        change_steps(self.null_rate, self.shift_rate)  # ValueError names the infinite step
        return self


class ScatterSettings(_Section):
    enabled: bool = True
    action: Action = Action.BLOCK
    alpha: float = Field(default=1e-4, gt=0, lt=1)
    min_queries: int = Field(default=10, ge=1)
    alternative: float = Field(default=0.25, gt=0, lt=1)
    p_floor: float = Field(default=0.01, gt=0, lt=1)
    gate: float = Field(default=0.95, gt=0, lt=1)

    @model_validator(mode="after")
    def _a_query_can_add_evidence(self) -> ScatterSettings:
        step = largest_step(self.alternative, self.p_floor)
        if step <= 0:
            raise ValueError(
                f"alternative {self.alternative} and p_floor {self.p_floor}: a query adds at "
                f"most ln(alternative) + (1 - alternative) ln(1 / p_floor) = {step:.3g} to the "
                "CUSUM, so the test could never fire (lower p_floor or alternative)"
            )
        return self


class DetectorSettings(_Section):
    evasion: EvasionSettings = Field(default_factory=EvasionSettings)
    membership: MembershipSettings = Field(default_factory=MembershipSettings)
    ood: OodSettings = Field(default_factory=OodSettings)
    consistency: ConsistencySettings = Field(default_factory=ConsistencySettings)
    extraction: ExtractionSettings = Field(default_factory=ExtractionSettings)
    scatter: ScatterSettings = Field(default_factory=ScatterSettings)


class HardeningSettings(_Section):
    top_k: int | None = Field(default=None, ge=1)
    decimals: int | None = Field(default=None, ge=0, le=12)
    label_only: bool = False


class ModelSettings(_Section):
    name: str
    routes: list[str] = Field(min_length=1)
    api: ApiFormat = ApiFormat.AUTO
    allow: list[str] = Field(default_factory=list)
    features: int | None = Field(default=None, ge=1)
    min_value: float | None = None
    max_value: float | None = None
    integer: bool = False
    max_rows: int = Field(default=256, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=64)
    profile: Path | None = None
    hardening: HardeningSettings = Field(default_factory=HardeningSettings)
    # where the answer's scores or labels are: a top-level key or a JSON pointer (RFC 6901);
    # unset, the known shapes are recognised (MLflow, KServe v1/v2, Triton, TorchServe...)
    output: str | None = Field(default=None, min_length=1)
    output_kind: OutputKind = OutputKind.AUTO
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)
    watermark: WatermarkSettings | None = None  # keyed watermarks in the answers


class GatewaySettings(_Section):
    upstream: str | None = None
    upstream_timeout: float = Field(default=30.0, gt=0)
    window: int = Field(default=128, ge=2, le=4096)
    max_principals: int = Field(default=2000, ge=1)
    cooldown_seconds: float = Field(default=900.0, ge=0)
    event_interval_seconds: float = Field(default=60.0, ge=0)
    log_sample_rate: float = Field(default=0.01, ge=0, le=1)
    metrics_path: str | None = "/metrics"
    # principals of `donjon watch`: their queries are authorised and counted, but take no
    # quota and reach no detector, so fingerprint checks never trip a real principal's
    probers: list[str] = Field(default_factory=list)
    # drift of inputs (PSI per feature) and classes per bucket of this many seconds (watch.md)
    drift_bucket_seconds: float | None = Field(default=None, gt=0)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    quotas: QuotaConfig = Field(default_factory=QuotaConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    models: list[ModelSettings] = Field(min_length=1)


def load_gateway_settings(path: Path) -> GatewaySettings:
    """Read and validate ``gateway.toml``; ConfigError names the bad key."""
    try:
        raw = tomllib.loads(read_text(path, "gateway config"))  # a byte-order mark too
    except (InputError, ValueError) as e:
        raise ConfigError(f"cannot read gateway config {path}: {e}") from e
    try:
        settings = GatewaySettings.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid gateway config {path}: {problems}") from e
    base = path.parent
    auth = settings.auth
    for name in ("api_keys_file", "jwks_file"):
        value = getattr(auth, name)
        if value is not None and not value.is_absolute():
            setattr(auth, name, base / value)
    for model in settings.models:
        if model.profile is not None and not model.profile.is_absolute():
            model.profile = base / model.profile
        if model.watermark is not None:
            model.watermark = model.watermark.relative_to(base)
    return settings
