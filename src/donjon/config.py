"""Settings: built once (by ``donjon.app`` or the CLI) and passed down.

Precedence, highest first:

1. explicit values (command-line flags, keyword arguments to :func:`load_settings`);
2. environment variables ``DONJON_*`` (nested sections with ``__``:
   ``DONJON_EVENTS__FSYNC=true``);
3. the TOML settings file: ``--config PATH``, else ``$DONJON_CONFIG``, else
   ``$DONJON_HOME/config.toml`` when it exists;
4. the defaults below.

Nothing here runs at import time.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from donjon.config_files import default_home, find_config_file
from donjon.core.textfile import read_text
from donjon.errors import ConfigError

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("donjon_config_file", default=None)


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class EventSettings(Section):
    """Where events go on embedded defaults."""

    jsonl_path: Path | None = Field(
        default=None, description="JSON-lines event file; default $DONJON_HOME/events.jsonl"
    )
    fsync: bool = Field(default=False, description="force every event line to disk")


class AuthzSettings(Section):
    """Identities, tokens and Cedar policies (``donjon.authz``)."""

    policy_path: Path | None = Field(
        default=None, description="Cedar policy file; default $DONJON_HOME/policies.cedar"
    )
    token_ttl_days: int = Field(default=90, ge=1, le=3650, description="API token lifetime")
    jwt_issuer: str | None = Field(default=None, description="trusted OIDC issuer (iss)")
    jwt_audience: str | None = Field(default=None, description="this service's audience (aud)")
    jwks_path: Path | None = Field(default=None, description="JWKS file of the issuer's keys")
    jwks_url: str | None = Field(default=None, description="JWKS URL (fetched with httpx)")
    jwt_algorithms: list[str] = Field(default=["RS256", "ES256"], description="allowed algs")
    jwt_principal_claim: str = Field(default="sub", description="claim naming the principal")
    jwt_groups_claim: str = Field(default="groups", description="claim listing the groups")


class AuditSettings(Section):
    """The tamper-evident ledger (``donjon.audit``)."""

    checkpoint_every: int = Field(
        default=1000, ge=0, description="sign a checkpoint every N entries (0: not by count)"
    )
    checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        description="sign a checkpoint at most this long after an entry (0: not by time)",
    )
    witness_file: Path | None = Field(
        default=None, description="append every checkpoint to this JSON-lines file (off-host)"
    )
    witness_url: str | None = Field(
        default=None, description="POST every checkpoint as JSON to this URL"
    )
    key_file: Path | None = Field(
        default=None, description="the ledger's private key (PEM); replicas share one"
    )
    key_env: str = Field(
        default="DONJON_LEDGER_KEY",
        description="environment variable that may hold the ledger's private key (PEM)",
    )
    key_id: str = Field(
        default="ledger", description="name of the default key file under $DONJON_HOME/keys"
    )
    ledger: bool = Field(
        default=True, description="record every event in the ledger before it is acknowledged"
    )


class VaultSettings(Section):
    """The vault server (``donjon server``) and its clients."""

    host: str = Field(default="127.0.0.1", description="address the server binds")
    port: int = Field(default=8470, ge=0, le=65535, description="port the server binds")
    url: str = Field(
        default="http://127.0.0.1:8470", description="the server clients talk to by default"
    )
    ca_file: Path | None = Field(
        default=None, description="clients: trust this CA for the vault's TLS certificate"
    )
    client_cert: Path | None = Field(
        default=None, description="clients: certificate (PEM) for mTLS as a service account"
    )
    client_key: Path | None = Field(default=None, description="clients: key of client_cert")
    insecure_http: bool = Field(
        default=False, description="clients: allow plain http:// to a non-loopback vault"
    )
    max_upload_bytes: int = Field(
        default=10 << 30, ge=1, description="largest dataset or model upload accepted"
    )
    require_lineage: bool = Field(
        default=True, description="promotion to prod needs the model's training datasets"
    )
    auth_failure_limit: int = Field(
        default=20,
        ge=0,
        description="failed authentications from one address within auth_failure_window "
        "before it gets 429 until the window ends (0: never refuse)",
    )
    auth_failure_window: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="seconds of a source's failure window; its failures past the first are "
        "ledgered as one summary when it closes (0: ledger each failure on its own)",
    )
    console_session_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86400,
        description="the web console (/ui): a login's session ends this long after it began",
    )
    console_poll_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="the web console: how often an open page asks whether anything changed",
    )
    console_oidc_issuer: str | None = Field(
        default=None,
        description="the web console: sign in through this OpenID Connect issuer (with "
        "console_oidc_client_id); its ID token's subject and groups are the principal",
    )
    console_oidc_client_id: str | None = Field(
        default=None, description="the web console's client id at the OIDC issuer"
    )
    console_oidc_client_secret: SecretStr | None = Field(
        default=None, description="its client secret (none: a public client, PKCE only)"
    )
    console_oidc_groups_claim: str = Field(
        default="groups", description="the ID token claim listing the principal's groups"
    )
    s3_bucket: str | None = Field(
        default=None, description="keep blobs in this S3 bucket instead of $DONJON_HOME/blobs"
    )
    s3_prefix: str = Field(default="", description="key prefix inside the bucket")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph); default AWS"
    )
    trusted_keys: list[Path] = Field(
        default=[],
        description="public keys (PEM) trusted to sign models and their provenance; "
        "with any, prod also needs a valid signature and admitted provenance",
    )
    trusted_roots: list[Path] = Field(
        default=[], description="CA certificates (PEM) trusted to issue model signing certificates"
    )
    verify_policy: Path | None = Field(
        default=None,
        description="a provenance policy TOML (signature keys or roots, builder keys, builders, "
        "metrics) used by the signature and provenance gates instead of trusted_keys",
    )
    gates: dict[str, list[str]] | None = Field(
        default=None,
        description="promotion gates per stage, e.g. {prod = ['clean-scan', 'signature', "
        "'provenance', 'lineage']}; default: staging clean-scan, prod clean-scan + lineage "
        "(+ signature + provenance when trust is configured)",
    )


# -- SOC sinks and the outbox ([soc]) ----------------------------------------


class _Sink(Section):
    name: str | None = Field(default=None, description="cursor name; default the sink type")


class JsonlSinkSettings(_Sink):
    type: Literal["jsonl"]
    path: Path
    max_bytes: int | None = Field(default=None, gt=0)
    backups: int = Field(default=5, ge=1)
    fsync: bool = False


class SyslogSinkSettings(_Sink):
    type: Literal["syslog"]
    host: str
    port: int = Field(default=514, gt=0, lt=65536)
    protocol: Literal["udp", "tcp", "tls"] = "tcp"
    payload: Literal["ocsf", "cef", "text"] = "ocsf"
    facility: str = "authpriv"
    enterprise_number: int | None = Field(default=None, gt=0)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class HecSinkSettings(_Sink):
    type: Literal["hec"]
    url: str
    token: SecretStr
    index: str | None = None
    format: Literal["ocsf", "ecs"] = "ocsf"
    verify: bool = True


class ElasticSinkSettings(_Sink):
    type: Literal["elastic"]
    url: str
    index: str = "donjon-events"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    verify: bool = True


class WebhookSinkSettings(_Sink):
    type: Literal["webhook"]
    url: str
    secret: SecretStr = Field(min_length=16)
    format: Literal["ocsf", "ecs", "donjon"] = "ocsf"
    verify: bool = True


class NatsSinkSettings(_Sink):
    type: Literal["nats"]
    url: str = "nats://127.0.0.1:4222"
    stream: str = "DONJON_EVENTS"
    subject_prefix: str = "donjon.events"
    format: Literal["ocsf", "ecs", "donjon"] = "ocsf"


SinkSettings = Annotated[
    JsonlSinkSettings
    | SyslogSinkSettings
    | HecSinkSettings
    | ElasticSinkSettings
    | WebhookSinkSettings
    | NatsSinkSettings,
    Field(discriminator="type"),
]


class SocSettings(Section):
    """The durable outbox and the sinks it delivers to (besides the event file)."""

    outbox: bool = Field(default=True, description="store events before acknowledging them")
    outbox_url: str | None = Field(default=None, description="default: database_url / SQLite")
    sinks: list[SinkSettings] = Field(default_factory=list)
    jsonl_max_bytes: int | None = Field(default=None, gt=0, description="rotate the event file")
    jsonl_backups: int = Field(default=5, ge=1)
    batch_size: int = Field(default=500, ge=1)
    max_attempts: int = Field(default=5, ge=1, description="before an event is dead-lettered")
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_max: float = Field(default=60.0, gt=0)
    drain_on_close: float = Field(default=5.0, ge=0, description="seconds to deliver on exit")
    relay_interval: float = Field(
        default=0.2,
        gt=0,
        le=5,
        description="seconds between delivery rounds unless a full batch is waiting",
    )
    lease_seconds: float = Field(
        default=10.0, ge=1, description="relay lease: a stopped relay's successor waits this"
    )


# -- metrics, baselines and alert rules ([monitor]) --------------------------


class AlertRuleSettings(Section):
    metric: str = Field(description="watched metric, e.g. deny_ratio or requests:<principal>")
    severity: Literal["info", "low", "medium", "high", "critical"] = "medium"
    k: float = Field(default=4.5, gt=0, description="fences: quartiles +/- k inter-quartile ranges")
    min_width: float = Field(default=0.0, ge=0, description="smallest distance band-median")
    window: int = Field(default=120, ge=5, description="buckets the baseline learns from")
    horizon: int = Field(default=10, ge=1, description="buckets ahead a trend is projected")
    trend_points: int = Field(default=20, ge=4)
    upper_only: bool = Field(default=False, description="alert on rises only")
    absolute_high: float | None = Field(default=None, description="a fixed ceiling")
    count: bool = Field(default=False, description="a count per bucket (Poisson floor)")
    lower_only: bool = Field(default=False, description="alert on drops only")
    threshold_only: bool = Field(
        default=False, description="alert only above absolute_high; learn no band, no trend"
    )


class MonitorSettings(Section):
    bucket_seconds: int = Field(default=60, ge=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, lt=65536)
    rules: list[AlertRuleSettings] = Field(default_factory=list)


class ScanSettings(Section):
    """The model scanner: list extensions, bounds and parallelism (docs/scan.md)."""

    allow: list[str] = Field(default_factory=list, description="extra allowed callables")
    deny: list[str] = Field(default_factory=list, description="extra denied modules/callables")
    fail_on: Literal["info", "low", "medium", "high", "critical"] = "medium"
    max_seconds: float = Field(default=60.0, gt=0, description="time budget per file")
    max_opcodes: int = Field(default=5_000_000, gt=0)
    max_nesting: int = Field(default=8, gt=0, description="nested containers and pickles")
    max_members: int = Field(default=100_000, gt=0, description="members per archive")
    max_member_bytes: int = Field(default=512 << 20, gt=0, description="decompressed member")
    max_total_bytes: int = Field(default=4 << 30, gt=0, description="decompressed archive")
    max_ratio: float = Field(default=200.0, gt=1, description="compression ratio of a member")
    workers: int = Field(default=0, ge=0, description="folder-scan processes; 0 = CPU count")
    record_clean: bool = Field(
        default=False,
        description="journal a scan.completed event for scans with no finding and no error too",
    )


# -- deployed models watched by donjon up and the promotion gate ([watch]) ---


class WatchModelSettings(Section):
    """One model the vault fingerprints when a version enters one of ``stages``."""

    name: str = Field(description="the model's name in the vault")
    endpoint: str = Field(description="URL that serves the promoted version (http or https)")
    data: Path = Field(description="held-out rows (CSV) the fingerprint is picked from")
    drop_columns: list[str] = Field(default=[], description="CSV columns to leave out (a label)")
    format: Literal["inputs", "instances", "kserve", "mlflow"] = Field(
        default="inputs", description="the request shape the endpoint takes"
    )
    output: str | None = Field(default=None, description="key or JSON pointer of the scores")
    stages: list[Literal["staging", "prod"]] = Field(
        default=["prod"], description="stages whose promotion enrols the version"
    )


class WatchSettings(Section):
    """``donjon watch`` inside the vault: enrolment at promotion, checks in ``donjon up``."""

    key: str | None = Field(
        default=None, description="id of a `donjon keys` key that signs the fingerprints"
    )
    passphrase_env: str | None = Field(
        default=None, description="environment variable holding that key's passphrase"
    )
    token_env: str = Field(
        default="DONJON_WATCH_TOKEN",
        description="environment variable holding the prober's bearer token for the endpoints",
    )
    check_seconds: float = Field(
        default=3600.0, ge=0, description="donjon up: fingerprint checks this often (0: never)"
    )
    probe_seconds: float = Field(
        default=86400.0, ge=0, description="donjon up: robustness probes this often (0: never)"
    )
    probe_budget: int = Field(default=2000, ge=50, le=100_000, description="queries per probe")
    probe_rows: int = Field(default=40, ge=1, description="held-out rows a probe attacks from")
    probe_min_drop: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="DJ-WT-003 needs the new version's median row this much less robust too",
    )
    models: list[WatchModelSettings] = Field(
        default=[], description="models enrolled when promoted to a watched stage"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DONJON_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home, description="Donjon's data folder")
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql://...); default SQLite $DONJON_HOME/donjon.db",
    )
    database_migrate: bool = Field(
        default=True,
        description="migrate the database schema when a command or server opens it (serialised "
        "across replicas); false: `donjon db upgrade` migrates and the rest refuse an old schema",
    )
    events: EventSettings = Field(default_factory=EventSettings)
    authz: AuthzSettings = Field(default_factory=AuthzSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    vault: VaultSettings = Field(default_factory=VaultSettings)
    soc: SocSettings = Field(default_factory=SocSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    scan: ScanSettings = Field(default_factory=ScanSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(_TomlFile(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def events_path(self) -> Path:
        return self.events.jsonl_path or self.home / "events.jsonl"

    @property
    def database_path(self) -> Path:
        return self.home / "donjon.db"

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite+pysqlite:///{self.database_path}"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def policy_path(self) -> Path:
        return self.authz.policy_path or self.home / "policies.cedar"


class _TomlFile(TomlConfigSettingsSource):
    """The settings file, read as every other TOML file of Donjon's is (a byte-order mark,
    as Windows editors write, is not a syntax error)."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return tomllib.loads(read_text(Path(file_path), "settings file"))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; every problem becomes a ConfigError naming the field."""
    path = find_config_file(config_file)
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = [_problem(err["loc"], err["msg"]) for err in e.errors()]
        from_file = path is not None and any(not p.startswith("DONJON_") for p in problems)
        where = f" in {path}" if from_file else ""
        raise ConfigError(f"invalid settings{where}: {'; '.join(problems)}") from e
    except (OSError, ValueError) as e:  # TOML syntax errors are ValueErrors
        raise ConfigError(f"cannot read settings file {path}: {e}") from e
    finally:
        _CONFIG_FILE.reset(token)


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """One validation problem, naming the variable when a ``DONJON_*`` variable set it."""
    variable = "DONJON_" + "__".join(str(p) for p in loc).upper()
    if loc and variable in os.environ:
        return f"{variable}={os.environ[variable]!r}: {message}"
    return f"{'.'.join(str(p) for p in loc) or 'settings'}: {message}"
