"""``donjon login``: check a token against a vault server and keep it (0600)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from donjon.cli.state import state
from donjon.cli.vault_session import save_credentials


def login(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", help="Vault URL (default: settings vault.url).")
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the token from standard input.")
    ] = False,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Allow http:// to a non-loopback host (the token crosses the network in "
            "clear); later commands need vault.insecure_http too.",
        ),
    ] = False,
) -> None:
    """Log in to a vault: the token is checked, then stored under DONJON_HOME (mode 0600).

    ``http://`` is refused for any host but this machine unless ``--insecure-http``.
    """
    from donjon.cli.vault_session import client_for
    from donjon.client.vault import check_url
    from donjon.errors import InputError

    cli = state(ctx)
    url = server or cli.settings.vault.url
    try:  # before asking for the token
        check_url(url, allow_insecure_http=insecure_http or cli.settings.vault.insecure_http)
    except InputError as e:
        raise typer.BadParameter(str(e), param_hint="--server") from None
    try:
        typed = sys.stdin.readline() if token_stdin else typer.prompt("API token", hide_input=True)
        readable = True
    except UnicodeDecodeError:  # UTF-16, as PowerShell 5 writes files
        typed, readable = "", False
    token = typed.removeprefix("\ufeff").strip()  # a token file Notepad saved
    if readable and not token:
        raise typer.BadParameter("an empty token", param_hint="token")
    if not (readable and token.isascii() and token.isprintable()) or " " in token:
        # never echoed: it may be a real token with a stray character
        raise typer.BadParameter(
            "the token holds a space, a control or a non-ASCII character, which no token "
            "has; is the file in another encoding (save it as UTF-8 or ASCII)?",
            param_hint="token",
        )
    with client_for(cli, url, token, insecure_http=insecure_http) as client:
        me = client.whoami()
    path = save_credentials(cli.settings.home, url, token)
    if cli.json:
        cli.print_json({"server": url, "principal": me, "credentials": str(path)})
    else:
        cli.info(f"logged in to {url} as {me['kind']}:{me['id']} (token kept in {path})")
