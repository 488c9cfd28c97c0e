"""``donjon gateway verify-suspect``: does a suspect model carry this gateway's watermarks?

The suspect is an HTTP endpoint (``--url``, any request and answer shape the
gateway reads) or an ONNX file (``--onnx``, run by onnxruntime in a child
process). Exit code 1 when a principal is identified (a DJ-GW-011 finding),
0 otherwise; ``--verdict`` writes the signed DSSE verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.state import ExitCode, state


def verify_suspect(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Gateway config (TOML).", dir_okay=False)
    ],
    model: Annotated[str, typer.Option("--model", help="The watermarked model's name.")],
    url: Annotated[str | None, typer.Option("--url", help="The suspect's HTTP endpoint.")] = None,
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="The suspect as an ONNX file.", dir_okay=False)
    ] = None,
    api: Annotated[
        str, typer.Option("--api", help="Request shape: generic, kserve or mlflow.")
    ] = "generic",
    header: Annotated[
        list[str] | None, typer.Option("--header", help="'Name: value' sent to the suspect.")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="Key or JSON pointer of its scores/labels.")
    ] = None,
    principal: Annotated[
        list[str] | None, typer.Option("--principal", help="Suspected principal (repeatable).")
    ] = None,
    alpha: Annotated[
        float, typer.Option("--alpha", min=1e-300, max=0.5, help="Significance level.")
    ] = 1e-6,
    null_rate: Annotated[
        float | None,
        typer.Option(
            "--null-rate", min=0.0, max=1.0, help="Null rate measured on independent models."
        ),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key", help="A key of `donjon keys` to sign the verdict.")
    ] = None,
    private_key: Annotated[
        Path | None, typer.Option("--private-key", help="PEM ECDSA key to sign the verdict.")
    ] = None,
    passphrase_env: Annotated[
        str | None, typer.Option("--passphrase-env", help="Variable holding the passphrase.")
    ] = None,
    verdict: Annotated[
        Path | None, typer.Option("--verdict", help="Write the signed DSSE verdict here.")
    ] = None,
    force: Force = False,
) -> None:
    """Query a suspect model on the recorded watermarked inputs; report per principal."""
    from donjon.app.watermark import verify_suspect as run
    from donjon.cli.sign import passphrase_from_env
    from donjon.gateway.settings import load_gateway_settings
    from donjon.gateway.validation import ApiFormat
    from donjon.gateway.watermark.suspect import HttpSuspect, OnnxSuspect, Suspect
    from donjon.provenance.dsse import Signer

    cli = state(ctx)
    if (url is None) == (onnx is None):
        raise typer.BadParameter("give exactly one of --url and --onnx")
    if key_id is not None and private_key is not None:
        raise typer.BadParameter("give at most one of --key and --private-key")
    signing = key_id is not None or private_key is not None
    if verdict is not None and not signing:
        raise typer.BadParameter("a verdict is signed: give --key or --private-key")
    if verdict is not None:
        refuse_overwrite(verdict, force, "--verdict")
    try:
        fmt = ApiFormat(api)
    except ValueError:
        raise typer.BadParameter("use generic, kserve or mlflow", param_hint="--api") from None
    headers = {}
    for line in header or []:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{line!r} is not 'Name: value'", param_hint="--header")
        headers[name.strip()] = value.strip()
    settings = load_gateway_settings(config)
    suspect: Suspect
    if url is not None:
        suspect = HttpSuspect(url, api=fmt, headers=headers, output=output)
    else:
        assert onnx is not None  # noqa: S101 - exactly one of the two is set
        suspect = OnnxSuspect(onnx)
    signer: Signer | None = None
    if signing:
        from donjon.provenance.keys import FileKeySigner, LocalKeyProvider, ProviderSigner

        secret = passphrase_from_env(passphrase_env)
        if private_key is not None:
            signer = FileKeySigner.from_file(private_key, secret)
        else:
            assert key_id is not None  # noqa: S101 - signing means one of the two
            provider = LocalKeyProvider(cli.settings.keys_dir, lambda _id: secret)
            signer = ProviderSigner(provider, key_id)
    report = run(
        cli.settings,
        settings,
        model,
        suspect,
        principals=principal,
        alpha=alpha,
        null_rate=null_rate,
        signer=signer,
        bus=cli.app.bus,
    )
    if verdict is not None and report.envelope is not None and signer is not None:
        from donjon.provenance.attest import write_envelope

        write_envelope(report.envelope, verdict, signer)
    if cli.json:
        cli.print_json({**report.summary(), "verdict": str(verdict) if verdict else None})
    else:
        for v in report.verdicts:
            exact = f"{v.p_exact:.2e}" if v.p_exact is not None else "-"
            scores = (
                f"; score test on {v.ranked} marks: p {v.p_rank:.2e}"
                if v.p_rank is not None
                else ""
            )
            cli.out.print(
                f"{v.principal}: {v.reproduced}/{v.marks} watermarks reproduced, "
                f"{v.control_hits}/{v.controls} look-alikes (null rate {v.null_rate:.4f}); "
                f"p binomial {v.p_binomial:.2e}, p exact {exact}{scores}: "
                + ("IDENTIFIED" if v.identified else "not identified")
            )
        if verdict is not None:
            cli.out.print(f"signed verdict written to {verdict}")
    if report.identified:
        raise typer.Exit(ExitCode.FINDINGS)
