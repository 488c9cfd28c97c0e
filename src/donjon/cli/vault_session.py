"""What ``donjon login`` stores and the vault commands read: server URL and token.

The file is ``$DONJON_HOME/credentials.json``, created with mode 0600 (the
folder 0700) and replaced atomically; the token is never printed or logged.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.errors import ConfigError, InputError

if TYPE_CHECKING:
    from donjon.cli.state import CliState
    from donjon.client import VaultClient

CREDENTIALS = "credentials.json"


def credentials_path(home: Path) -> Path:
    return home / CREDENTIALS


def save_credentials(home: Path, server: str, token: str) -> Path:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = credentials_path(home)
    tmp = home / f".{CREDENTIALS}.{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"server": server, "token": token}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_credentials(home: Path) -> tuple[str, str]:
    path = credentials_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["server"]), str(data["token"])
    except FileNotFoundError:
        raise ConfigError("not logged in to a vault: run 'donjon login' first") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cannot read {path}: {type(e).__name__}; run 'donjon login'") from None


def client_class() -> type[VaultClient]:
    try:
        from donjon.client import VaultClient
    except ImportError as e:
        raise ConfigError(
            f"the vault client needs httpx: pip install 'donjon[client]' ({e})"
        ) from e
    return VaultClient


def open_client(cli: CliState, server: str | None = None) -> VaultClient:
    saved_server, token = load_credentials(cli.settings.home)
    return client_for(cli, server or saved_server, token)


def client_for(
    cli: CliState, url: str, token: str | None, *, insecure_http: bool = False
) -> VaultClient:
    """A client with the TLS settings (``vault.ca_file``, ``client_cert``, ...)."""
    VaultClient = client_class()  # noqa: N806

    vault = cli.settings.vault
    return VaultClient(
        url,
        token,
        ca_file=vault.ca_file,
        client_cert=vault.client_cert,
        client_key=vault.client_key,
        allow_insecure_http=insecure_http or vault.insecure_http,
    )


def parse_metadata(text: str | None) -> dict[str, object] | None:
    """``--metadata '{"rows": 3}'``: a JSON object or nothing."""
    import typer

    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise typer.BadParameter(f"not JSON: {e}", param_hint="--metadata") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    return value


def show_versions(cli: CliState, records: list[dict[str, object]], title: str) -> None:
    from rich.table import Table

    if cli.json:
        cli.print_json(records)
        return
    table = Table("version", "stage", "status", "size", "digest", "created", "by", title=title)
    for r in records:
        table.add_row(
            str(r["version"]),
            str(r.get("stage") or "-"),
            str(r["status"]),
            str(r["size"]),
            str(r["digest"])[:19] + "...",
            str(r["created_at"])[:19],
            str(r["created_by"]),
        )
    cli.out.print(table)


def show_record(cli: CliState, verb: str, record: dict[str, object]) -> None:
    if cli.json:
        cli.print_json(record)
        return
    stage = f" [{record['stage']}]" if record.get("stage") else ""
    cli.out.print(
        f"{verb} {record['kind']} {record['name']}@{record['version']}{stage} "
        f"{record['digest']} ({record['size']} bytes, {record['status']})"
    )


def list_names(cli: CliState, server: str | None, kind: str, prefix: str, versions: bool) -> None:
    """``datasets list`` / ``models list``: the names under ``prefix``, or one's versions."""
    if versions and not prefix.strip("/"):
        raise InputError(f"--versions lists one {kind}'s versions: name it (PREFIX)")
    with open_client(cli, server) as client:
        if versions:
            show_versions(cli, client.versions(kind, prefix), f"{kind} {prefix}")
            return
        names = client.names(kind, prefix)
    if cli.json:
        cli.print_json(names)
    else:
        for found in names:
            cli.out.print(found)
