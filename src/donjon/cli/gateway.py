"""``donjon gateway``: the inference firewall in front of a model server.

``donjon gateway --upstream URL --config gateway.toml`` serves the reverse proxy
(``--vault-identities``, ``--vault-policies``: the vault's tokens and Cedar policy);
``donjon gateway profile DATA -o profile.json`` builds a reference profile;
``donjon gateway key ID --principal NAME --file keys.json`` adds an API key;
``donjon gateway verify-suspect`` tests a suspect model for the gateway's watermarks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from donjon.cli.gateway_verify import verify_suspect
from donjon.cli.paths import ensure_parent
from donjon.cli.state import ExitCode, state
from donjon.core.textfile import read_csv_rows, read_text
from donjon.errors import ConfigError, InputError

app = typer.Typer(
    help="Guard deployed models: authenticate, rate-limit, detect attacks, harden outputs.",
    invoke_without_command=True,
)


@app.callback()
def serve(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Gateway config (TOML).", dir_okay=False)
    ] = None,
    upstream: Annotated[
        str | None, typer.Option("--upstream", help="Model server URL (overrides the config).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the config, key file and profiles; exit.")
    ] = False,
    vault_identities: Annotated[
        bool,
        typer.Option(
            "--vault-identities",
            help="Authenticate callers with the vault's API tokens (and JWT issuer).",
        ),
    ] = False,
    vault_policies: Annotated[
        bool,
        typer.Option(
            "--vault-policies",
            help="Authorise model.predict on models/<name> with the vault's Cedar policy.",
        ),
    ] = False,
) -> None:
    """Serve the reverse proxy (when no sub-command is given)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("give the gateway config with --config", param_hint="--config")
    from donjon.app import gateway_pipeline, with_delivery
    from donjon.gateway import load_gateway_settings

    cli = state(ctx)
    settings = load_gateway_settings(config)
    target = upstream or settings.upstream
    if not target or not target.startswith(("http://", "https://")):
        raise typer.BadParameter("an http(s) upstream URL is needed", param_hint="--upstream")
    database = None
    if vault_identities or settings.auth.vault_identities:
        from donjon.cli.access_admin import sql_database

        database = sql_database(ctx)  # disposed when the command ends
    pipeline = gateway_pipeline(
        cli.settings,
        settings,
        cli.app.bus,
        vault_identities=vault_identities or None,
        vault_policies=vault_policies or None,
        database=database,
    )
    summary = {
        "upstream": target,
        "listen": f"{host}:{port}",
        "models": [
            {"name": m.name, "routes": list(m.routes), "profile": m.profile is not None}
            for m in pipeline.models
        ],
        "vault_identities": settings.auth.vault_identities or vault_identities,
        "vault_policies": pipeline.authorizer is not None,
    }
    if check:
        if cli.json:
            cli.print_json(summary)
        else:
            cli.out.print(f"gateway config OK: {len(pipeline.models)} model(s), upstream {target}")
        raise typer.Exit(ExitCode.OK)
    import uvicorn

    from donjon.gateway.proxy import create_proxy

    cli.info(f"donjon gateway on http://{host}:{port} -> {target}")
    proxy = create_proxy(
        pipeline, target, timeout=settings.upstream_timeout, metrics_path=settings.metrics_path
    )
    served = with_delivery(proxy, cli.app)  # the outbox relay runs while the gateway does
    # proxy_headers off: the peer address is what auth.trusted_proxies is checked against,
    # never an X-Forwarded-For a caller wrote
    uvicorn.run(
        served, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False
    )


app.command("verify-suspect")(verify_suspect)


@app.command("profile")
def profile(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Argument(help="Training data: CSV, TSV, Parquet, JSON or JSON lines rows.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Profile file to write.")],
    drop: Annotated[
        list[str] | None,
        typer.Option("--drop", help="Column (name or 0-based index) to leave out, e.g. a label."),
    ] = None,
    sample_size: Annotated[int, typer.Option(min=20, help="Rows kept for distances.")] = 2000,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            help="The label column (name or 0-based index): left out of the features and "
            "kept for the answer-consistency test (DJ-GW-012).",
        ),
    ] = None,
) -> None:
    """Build the reference profile (feature statistics and a distance sample) from DATA."""
    from donjon.gateway import build_profile

    cli = state(ctx)
    rows, labels = _read_rows(data, drop or [], label)
    built = build_profile(rows, sample_size=sample_size, labels=labels)
    ensure_parent(output)
    built.save(output)
    summary = {
        "profile": str(output),
        "rows": built.count,
        "features": built.features,
        "sample": len(built.sample),
        "quantum": built.quantum,
        "ood_threshold": built.knn_threshold(0.99),
        "consistency": None if built.consistency is None else list(built.consistency.classes),
    }
    if cli.json:
        cli.print_json(summary)
    else:
        cli.out.print(
            f"profile of {built.count} rows x {built.features} features written to {output}"
        )


@app.command("key")
def key(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id (letters, digits, dashes).")],
    principal: Annotated[str, typer.Option(help="Who the key authenticates.")],
    file: Annotated[Path, typer.Option("--file", help="API key file (created if missing).")],
    group: Annotated[list[str] | None, typer.Option(help="Group of the principal.")] = None,
) -> None:
    """Add an API key to the key file; the key is printed once and stored only as a hash."""
    from donjon.gateway import new_api_key

    cli = state(ctx)
    doc: dict[str, Any] = {"keys": []}
    if file.exists():
        try:
            doc = json.loads(read_text(file, "API key file"))
            keys = doc["keys"]
        except (InputError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"cannot read API key file {file}: {e}") from e
        if any(entry.get("id") == key_id for entry in keys):
            raise typer.BadParameter(f"key id {key_id!r} already exists in {file}")
    try:
        token, entry = new_api_key(key_id, principal, groups=group or [])
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    doc["keys"].append(entry)
    ensure_parent(file, "--file")
    file.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    file.chmod(0o600)
    if cli.json:
        cli.print_json({"id": key_id, "principal": principal, "key": token})
    else:
        cli.out.print(token)


def _read_rows(
    path: Path, drop: list[str], label: str | None = None
) -> tuple[list[list[float]], list[str] | None]:
    """The numeric rows of ``path`` without the ``drop`` columns, and the ``label``
    column's values (as text) when asked."""
    header: list[str] | None = None
    table: Any
    if path.suffix.lower() in (".json", ".jsonl", ".ndjson"):
        text = read_text(path)
        try:
            if path.suffix.lower() == ".json":
                doc = json.loads(text)
                table = doc.get("inputs", doc.get("instances")) if isinstance(doc, dict) else doc
            else:
                table = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise InputError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(table, list):
            raise InputError(f"{path} must hold a list of rows")
    elif path.suffix.lower() in (".parquet", ".pq"):
        header, table = _parquet_rows(path)
    else:  # the encoding and delimiter found as every table reader finds them
        table = read_csv_rows(path)
        if not table:
            raise InputError(f"{path} holds no rows")
        if not _numeric(table[0][0]):
            header, table = [name.strip() for name in table[0]], table[1:]
    indexes = {_column(name, header, "--drop") for name in drop}
    table = [row for row in table if row != []]
    labels = None
    if label is not None:
        where = _column(label, header, "--label")
        indexes.add(where)
        try:
            labels = [str(row[where]) for row in table]
        except (IndexError, KeyError, TypeError) as e:
            raise InputError(f"{path}: a row has no label column {label!r}") from e
    try:
        return [[float(v) for i, v in enumerate(row) if i not in indexes] for row in table], labels
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: every kept column must be numeric ({e})") from e


def _parquet_rows(path: Path) -> tuple[list[str], list[list[Any]]]:
    """The column names and rows of a Parquet file (pyarrow, from donjon[data])."""
    try:
        from donjon.data.tabular import read_table
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pip install 'donjon[data]'") from None
    table = read_table(path)
    return table.column_names, [list(row) for row in zip(*table.to_pydict().values(), strict=True)]


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column(name: str, header: list[str] | None, option: str) -> int:
    if name.isdigit():
        return int(name)
    if header is None or name not in header:
        raise typer.BadParameter(f"no column named {name!r}", param_hint=option)
    return header.index(name)
