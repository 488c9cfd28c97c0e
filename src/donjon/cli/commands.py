"""The table of ``donjon`` sub-commands: name, module, and the help ``donjon --help`` shows.

No Typer here: ``donjon.cli.main`` reads it before deciding how to run a command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typer._click import Command


@dataclass(frozen=True)
class LazyCommand:
    """``name`` runs ``module.attr``: a ``typer.Typer`` (a group) or a command function.

    ``help`` is the first paragraph the command's own help shows (a test keeps
    them equal); ``options`` (name, value pairs) go to ``add_typer`` or
    ``command`` (e.g. ``no_args_is_help``).
    """

    name: str
    module: str
    attr: str
    help: str
    options: tuple[tuple[str, Any], ...] = ()

    def load(self, rich_markup_mode: Any) -> Command:
        """Import the module and build the command as the root's ``add_typer``/``command``."""
        import typer

        target = getattr(importlib.import_module(self.module), self.attr)
        holder = typer.Typer(rich_markup_mode=rich_markup_mode, add_completion=False)
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=self.name, **dict(self.options))
        elif callable(target):
            holder.command(self.name, **dict(self.options))(target)
        else:  # pragma: no cover - a wrong table entry is a programming error
            raise TypeError(f"{self.module}.{self.attr} is neither a Typer app nor a function")
        return typer.main.get_group(holder).commands[self.name]


# One module per sub-command, imported only when that command runs (``donjon.cli.lazy``):
# name, module, its Typer app or command function, and the one-line help `donjon --help` shows.
COMMANDS = (
    LazyCommand(
        "login",
        "donjon.cli.login",
        "login",
        "Log in to a vault: the token is checked, then stored under DONJON_HOME (mode 0600).",
    ),
    LazyCommand(
        "server",
        "donjon.cli.server",
        "server",
        "Serve the vault (datasets and models) over HTTP; every route but /health needs a token.",
    ),
    LazyCommand(
        "sign",
        "donjon.cli.sign",
        "sign",
        "Sign MODEL: hash every file, sign the manifest, write an OMS bundle.",
    ),
    LazyCommand(
        "verify",
        "donjon.cli.verify",
        "verify",
        "Verify MODEL against its signature (and a policy); exit 1 on any failure.",
    ),
    LazyCommand(
        "verify-files",
        "donjon.cli.verify_files",
        "verify_files",
        "Verify the signatures covering FILES (the donjon-verify pre-commit hook).",
    ),
    LazyCommand(
        "bom",
        "donjon.cli.bom",
        "bom",
        "Write the ML-BOM (CycloneDX 1.6 JSON): model, datasets, model card.",
    ),
    LazyCommand(
        "scan",
        "donjon.cli.scan",
        "scan",
        "Scan model files without loading them; exit 1 on findings at or above --fail-on.",
    ),
    LazyCommand(
        "samples",
        "donjon.cli.scan",
        "samples",
        "Write a small corpus of benign and malicious model files (made without ML libraries).",
    ),
    LazyCommand(
        "demo",
        "donjon.cli.demo",
        "demo",
        "Write the example files the README's tour uses (data, model, policies, configs).",
    ),
    LazyCommand(
        "demo-model",
        "donjon.cli.demo",
        "demo_model",
        "Serve the demo's model on 127.0.0.1:8080 for the gateway tour (POST /predict).",
    ),
    LazyCommand(
        "quickstart",
        "donjon.cli.quickstart",
        "quickstart",
        "Run a guarded ML lifecycle on embedded defaults, narrated step by step.",
    ),
    LazyCommand(
        "up",
        "donjon.cli.up",
        "up",
        "Start the vault, a gateway per config and the metrics endpoint; Ctrl-C stops all.",
    ),
    LazyCommand("rules", "donjon.cli.rules", "app", "List and document the detection rules."),
    LazyCommand("config", "donjon.cli.config", "app", "Inspect Donjon's settings."),
    LazyCommand("events", "donjon.cli.events", "app", "Read the security events Donjon recorded."),
    LazyCommand(
        "access",
        "donjon.cli.access",
        "app",
        "Who may do what: explain, who-can, users, groups, tokens.",
        (("no_args_is_help", True),),
    ),
    LazyCommand("audit", "donjon.cli.audit", "app", "The tamper-evident audit ledger."),
    LazyCommand("db", "donjon.cli.db", "app", "The SQL database: upgrade and check its schema."),
    LazyCommand(
        "datasets", "donjon.cli.datasets", "app", "Push, pull and list datasets in the vault."
    ),
    LazyCommand(
        "models", "donjon.cli.models", "app", "Push, pull, promote and list models in the vault."
    ),
    LazyCommand("metrics", "donjon.cli.metrics", "app", "Prometheus metrics."),
    LazyCommand(
        "monitor", "donjon.cli.monitor", "app", "Watch metrics against their learnt baselines."
    ),
    LazyCommand(
        "watch",
        "donjon.cli.watch",
        "app",
        "Fingerprint deployed models and check they are still the promoted version.",
    ),
    LazyCommand("report", "donjon.cli.report", "app", "Write the HTML posture report."),
    LazyCommand("keys", "donjon.cli.keys", "app", "Generate and list signing keys."),
    LazyCommand("attest", "donjon.cli.attest", "app", "Show and verify training-run provenance."),
    LazyCommand(
        "data",
        "donjon.cli.data",
        "app",
        "Dataset manifests, diffs, provenance filtering and poisoning checks.",
    ),
    LazyCommand(
        "mlflow",
        "donjon.cli.mlflow",
        "app",
        "Gate MLflow's model registry: scan and verify each version, tag it, guard aliases.",
    ),
    LazyCommand(
        "gateway",
        "donjon.cli.gateway",
        "app",
        "Guard deployed models: authenticate, rate-limit, detect attacks, harden outputs.",
    ),
)
