"""``donjon watch enrol|run|status``: is the deployed model still the promoted version?"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from donjon.cli.sign import passphrase_from_env, require
from donjon.cli.state import CliState, ExitCode, state
from donjon.errors import ConfigError, InputError

if TYPE_CHECKING:
    from donjon.app.watch_runs import WatchRunner
    from donjon.watch.watchlist import Watched, WatchList

app = typer.Typer(
    help="Fingerprint deployed models and check they are still the promoted version.",
    no_args_is_help=True,
)

Server = Annotated[str | None, typer.Option("--server", help="Vault URL (default: login's).")]
TokenEnv = Annotated[
    str,
    typer.Option(
        "--token-env",
        help="Environment variable holding the prober's bearer token for the endpoint.",
    ),
]
Output = Annotated[
    str | None,
    typer.Option("--output", help="Key or JSON pointer of the scores in the model's answer."),
]
OneModel = Annotated[str | None, typer.Argument(help="One model (default: every watched).")]
OneVersion = Annotated[int | None, typer.Argument(min=1)]
OtherEndpoint = Annotated[
    str | None, typer.Option("--endpoint", help="Use this URL instead of the enrolled one.")
]
TrustedKeys = Annotated[
    list[Path] | None,
    typer.Option("--public-key", help="A key trusted to sign fingerprints (repeatable)."),
]
TrustedKeyId = Annotated[
    str | None, typer.Option("--key", help="A key of `donjon keys` trusted to sign them.")
]
TOKEN_ENV = "DONJON_WATCH_TOKEN"  # noqa: S105 - the variable's name, not a secret
FINGERPRINT = "fingerprint"


@contextmanager
def _watchlist(cli: CliState) -> Iterator[WatchList]:
    """The watch list in the database of the settings (the vault's, to share its list)."""
    from donjon.app.sql import open_sql
    from donjon.app.watch_gate import watch_list

    database = open_sql(cli.settings)
    try:
        yield watch_list(cli.settings, database)
    finally:
        database.dispose()


def _endpoint(url: str, model: str, fmt: str, output: str | None, token_env: str) -> Any:
    from donjon.app.watch_runs import http_model, token_from

    try:
        return http_model(url, model, fmt, output, token_from(token_env))
    except InputError as e:
        raise typer.BadParameter(str(e), param_hint="--format") from None


def _signer(
    cli: CliState, private_key: Path | None, key_id: str | None, passphrase_env: str | None
) -> Any:
    from donjon.provenance.keys import FileKeySigner, LocalKeyProvider, ProviderSigner

    if (private_key is None) == (key_id is None):
        raise typer.BadParameter("give exactly one of --private-key and --key")
    secret = passphrase_from_env(passphrase_env)
    if private_key is not None:
        return FileKeySigner.from_file(private_key, secret)
    return ProviderSigner(LocalKeyProvider(cli.settings.keys_dir, lambda _id: secret), str(key_id))


def _trusted_keys(cli: CliState, public_keys: list[Path] | None, key_id: str | None) -> list[Any]:
    from donjon.provenance.keys import LocalKeyProvider, load_public_key

    if public_keys:
        return [load_public_key(p) for p in public_keys]
    if key_id is not None:
        return [LocalKeyProvider(cli.settings.keys_dir).public_key(key_id)]
    home = cli.settings.home
    trusted = [p if p.is_absolute() else home / p for p in cli.settings.vault.trusted_keys]
    if not trusted:
        raise ConfigError(
            "no key to verify fingerprints with: give --public-key or --key, "
            "or set vault.trusted_keys"
        )
    return [load_public_key(p) for p in trusted]


@app.command("enrol")
def enrol(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name in the vault.")],
    version: Annotated[int, typer.Argument(min=1, help="The promoted version.")],
    endpoint: Annotated[str, typer.Option("--endpoint", help="URL that serves this version.")],
    data: Annotated[
        Path, typer.Option("--data", exists=True, dir_okay=False, help="Held-out rows (CSV).")
    ],
    drop_column: Annotated[
        list[str] | None,
        typer.Option("--drop-column", help="A CSV column to leave out (a label; repeatable)."),
    ] = None,
    request_format: Annotated[
        str, typer.Option("--format", help="inputs, instances, kserve or mlflow.")
    ] = "inputs",
    output: Output = None,
    held_out: Annotated[int, typer.Option("--held-out", min=0, help="Held-out rows kept.")] = 40,
    boundary: Annotated[
        int, typer.Option("--boundary", min=0, help="Points next to the decision boundary.")
    ] = 160,
    repeats: Annotated[
        int, typer.Option("--repeats", min=2, help="Reads of each point to measure noise.")
    ] = 3,
    tolerance: Annotated[
        float | None,
        typer.Option("--tolerance", min=0.0, help="Score tolerance (default: from the noise)."),
    ] = None,
    private_key: Annotated[
        Path | None, typer.Option("--private-key", help="PEM key that signs the fingerprint.")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key", help="A key of `donjon keys` instead of a file.")
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", help="Environment variable holding the passphrase."),
    ] = None,
    token_env: TokenEnv = TOKEN_ENV,
    server: Server = None,
) -> None:
    """Fingerprint the model at ENDPOINT, sign it and attach it to MODEL@VERSION in the vault."""
    require("cryptography", "sign")
    from donjon.app.watch import seal
    from donjon.cli.vault_session import open_client
    from donjon.watch import enrol as pick
    from donjon.watch.data import read_rows
    from donjon.watch.findings import activity
    from donjon.watch.watchlist import Watched

    cli = state(ctx)
    if held_out + boundary == 0:
        raise typer.BadParameter("the fingerprint needs --held-out or --boundary points")
    signer = _signer(cli, private_key, key_id, passphrase_env)
    rows = read_rows(data, drop_column or ())
    with _endpoint(endpoint, model, request_format, output, token_env) as target:
        fingerprint = pick(
            target, rows, name=model, version=version, endpoint=endpoint,
            request_format=request_format, held_out=held_out, boundary=boundary,
            repeats=repeats, tolerance=tolerance,
        )  # fmt: skip
    document = seal(fingerprint, signer)
    with open_client(cli, server) as client:
        record = client.attach(model, version, FINGERPRINT, data=document)
    with _watchlist(cli) as watchlist:
        watchlist.enrolled(
            Watched(model, version, endpoint, str(record["digest"]), fingerprint.size,
                    datetime.now(UTC).isoformat())
        )  # fmt: skip
    summary = {
        "model": model,
        "version": version,
        "endpoint": endpoint,
        "points": fingerprint.size,
        "tolerance": fingerprint.tolerance,
        "noise": fingerprint.noise,
        "enrol_queries": fingerprint.enrol_queries,
        "fingerprint": record["digest"],
    }
    cli.app.bus.publish(activity("enrol", f"{model}@{version} enrolled at {endpoint}", **summary))
    if cli.json:
        cli.print_json(summary)
        return
    cli.out.print(
        f"Enrolled {model}@{version} at {endpoint}: {fingerprint.size} points, tolerance "
        f"{fingerprint.tolerance:.3g} (noise {fingerprint.noise:.3g}), "
        f"{fingerprint.enrol_queries} queries; fingerprint {record['digest']}",
        markup=False,
    )


@app.command("run")
def run(
    ctx: typer.Context,
    model: OneModel = None,
    version: OneVersion = None,
    endpoint: OtherEndpoint = None,
    request_format: Annotated[
        str | None, typer.Option("--format", help="inputs, instances, kserve or mlflow.")
    ] = None,
    output: Output = None,
    public_key: TrustedKeys = None,
    key_id: TrustedKeyId = None,
    token_env: TokenEnv = TOKEN_ENV,
    server: Server = None,
) -> int:
    """Check each watched model once; exit 1 when one differs or cannot be checked."""
    require("cryptography", "sign")
    from donjon.cli.vault_session import open_client

    cli = state(ctx)
    keys = _trusted_keys(cli, public_key, key_id)
    results = []
    with _watchlist(cli) as watchlist:
        watched = _selected(watchlist, model, version)
        with open_client(cli, server) as client:
            runner = _runner(cli, watchlist, client, keys, token_env)
            for entry in watched:
                outcome = runner.check(entry, endpoint, request_format, output)
                results.append(outcome)
                _say(cli, entry, outcome, "check")
    if cli.json:
        cli.print_json(results)
    bad = [r for r in results if r["status"] != "same"]
    return ExitCode.FINDINGS if bad else ExitCode.OK


def _runner(
    cli: CliState, watchlist: WatchList, client: Any, keys: list[Any], token_env: str
) -> WatchRunner:
    """The app's watch runner, its fingerprints read from the vault over HTTP."""
    from donjon.app.watch_runs import WatchRunner, token_from

    def read(entry: Watched) -> bytes:
        data: bytes = client.attachment(entry.model, entry.version, entry.fingerprint)
        return data

    return WatchRunner(
        watchlist,
        cli.app.bus,
        read,
        keys,
        token_from(token_env),
        min_drop=cli.settings.watch.probe_min_drop,
    )


def _say(cli: CliState, entry: Watched, outcome: dict[str, Any], what: str) -> None:
    """One line per outcome; a check or probe that could not run goes to stderr."""
    if outcome["status"] == "failed":
        cli.err.print(f"{entry.key}: {what} failed: {outcome['reason']}", markup=False)
    elif cli.json:
        return
    elif what == "check":
        cli.out.print(
            f"{entry.key} at {outcome['endpoint']}: {outcome['status'].upper()} - "
            f"{outcome['changed']} of {outcome['points']} points changed, "
            f"p = {outcome['p_value']:.3g} ({outcome['queries']} queries)",
            markup=False,
        )
    else:
        cli.out.print(f"{entry.key} at {outcome['endpoint']}: {outcome['summary']}", markup=False)


@app.command("probe")
def probe(
    ctx: typer.Context,
    model: OneModel = None,
    version: OneVersion = None,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Held-out rows to attack from.")] = 40,
    budget: Annotated[
        int, typer.Option("--budget", min=50, max=100_000, help="Most queries per probe.")
    ] = 2000,
    endpoint: OtherEndpoint = None,
    output: Output = None,
    public_key: TrustedKeys = None,
    key_id: TrustedKeyId = None,
    token_env: TokenEnv = TOKEN_ENV,
    server: Server = None,
) -> int:
    """Probe each watched model (random rays and a surrogate's transfer attack); record it.

    Exit 1 when a probe failed or found a version less robust than the one before."""
    require("art", "watch")
    from donjon.cli.vault_session import open_client

    cli = state(ctx)
    keys = _trusted_keys(cli, public_key, key_id)
    results = []
    with _watchlist(cli) as watchlist:
        watched = _selected(watchlist, model, version)
        with open_client(cli, server) as client:
            runner = _runner(cli, watchlist, client, keys, token_env)
            for entry in watched:
                outcome = runner.probe(
                    entry, rows=rows, budget=budget, endpoint=endpoint, output=output
                )
                results.append(outcome)
                _say(cli, entry, outcome, "probe")
    if cli.json:
        cli.print_json(results)
    alarmed = any(r["status"] == "failed" or r.get("less_robust") for r in results)
    return ExitCode.FINDINGS if alarmed else ExitCode.OK


def _selected(watchlist: WatchList, model: str | None, version: int | None) -> list[Watched]:
    if (model is None) != (version is None):
        raise typer.BadParameter("give MODEL and VERSION together, or neither")
    watched = watchlist.load()
    if model is not None:
        watched = [w for w in watched if w.model == model and w.version == version]
        if not watched:
            raise InputError(f"{model}@{version} is not watched here: run 'donjon watch enrol'")
    if not watched:
        raise InputError("nothing is watched here: run 'donjon watch enrol' first")
    return watched


@app.command("status")
def status(ctx: typer.Context) -> None:
    """List the watched models: last fingerprint check, robustness trend and drift."""
    from rich.table import Table

    cli = state(ctx)
    with _watchlist(cli) as watchlist:
        watched = watchlist.load()
    drift = _last_drift(cli)
    if cli.json:
        cli.print_json([
            {"model": w.model, "version": w.version, "endpoint": w.endpoint,
             "points": w.points, "enrolled_at": w.enrolled_at, "last_check": w.last,
             "probes": w.probes[-5:], "drift": drift.get(w.model)}
            for w in watched
        ])  # fmt: skip
        return
    table = Table("model", "endpoint", "last check", "result", "changed", "p-value",
                  "robustness (last 5 probes; 95 % CI of the last)", "transfer at 0.1",
                  "drift (last bucket)", title="watched models")  # fmt: skip
    for w in watched:
        last = w.last or {}
        done = [p for p in w.probes if p.get("robustness") is not None]
        trend = " -> ".join(f"{p['robustness']:.3g}" for p in done[-5:])
        if done and done[-1].get("robustness_low") is not None:
            trend += f" [{done[-1]['robustness_low']:.3g}, {done[-1]['robustness_high']:.3g}]"
        transfer = done[-1].get("transfer_pgd_at_0.1") if done else None
        table.add_row(
            w.key, w.endpoint, str(last.get("time", "never"))[:19],
            str(last.get("status", "-")), str(last.get("changed", "-")),
            f"{last['p_value']:.3g}" if "p_value" in last else "-", trend or "-",
            f"{transfer:.0%}" if transfer is not None else "-", _drift_text(drift.get(w.model)),
        )  # fmt: skip
    cli.out.print(table)


def _last_drift(cli: CliState) -> dict[str, dict[str, Any]]:
    """The last ``watch.drift`` event of each model in the event file (the gateway's)."""
    from donjon.soc.jsonl import read_all_events

    path = cli.settings.events_path
    found: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return found
    for event in read_all_events(path):
        if event.action == "watch.drift" and isinstance(event.attributes.get("model"), str):
            keep = ("p_value", "drift_score", "drift_feature", "psi", "class_p_value", "rows")
            found[event.attributes["model"]] = {
                "time": event.time.isoformat(),
                **{k: event.attributes.get(k) for k in keep},
            }
    return found


def _drift_text(drift: dict[str, Any] | None) -> str:
    if not drift or drift.get("p_value") is None:
        return "-"
    alert = "ALERT " if (drift.get("drift_score") or 0) > 5 else ""
    feature = drift["drift_feature"]
    return f"{alert}p = {drift['p_value']:.2g} (feature {feature}), PSI {drift['psi']:.2g}"
