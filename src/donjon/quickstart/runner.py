"""``run_quickstart``: the guarded lifecycle, step by step, then what it caught.

Every step is real: the vault is the HTTP server on loopback, the data checks,
scanner, signer, gates, gateway detectors and ledger are the capabilities'
own code. The run passes when every expected detection is in the event file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from donjon.app import build, build_ledger
from donjon.config import AuditSettings, Settings
from donjon.core.events import SecurityEvent
from donjon.core.taxonomy import technique
from donjon.errors import DonjonError
from donjon.quickstart import lifecycle as lc
from donjon.quickstart.checks import STEP_OF_SOURCE, Expected, missing
from donjon.quickstart.narrate import Narrator

STEPS = {
    1: "Vault on loopback, two principals, least-privilege Cedar policy",
    2: "Ingest digits: manifest, source filter, poisoning checks, quarantine",
    3: "Third-party models: the push-time scan",
    4: "Train in a recorded run, sign, promote through the gates",
    5: "Deploy behind the gateway: benign traffic, evasion, extraction",
    6: "Verify the ledger, then tamper with a copy",
    7: "Summary",
}


@dataclass
class QuickstartResult:
    folder: Path
    events: Path
    ocsf: Path
    report: Path
    met: list[Expected] = field(default_factory=list)
    missed: list[Expected] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missed and not self.problems


NEEDS = ("sklearn", "cleanlab", "pyarrow", "fastapi", "uvicorn", "httpx", "cedarpy", "cryptography")


def _check_installed() -> None:
    import importlib.util

    absent = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if absent:
        raise DonjonError(
            f"donjon quickstart needs the 'quickstart' extra (missing: {', '.join(absent)}): "
            "pip install 'donjon[quickstart]'"
        )


def _settings(folder: Path) -> Settings:
    return Settings(home=folder, database_url=None, audit=AuditSettings(checkpoint_every=25))


def run_quickstart(folder: Path, console: Console | None = None) -> QuickstartResult:
    """Run the lifecycle in ``folder`` (new or empty) and check what it caught."""
    _check_installed()
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        raise DonjonError(f"{folder} is not empty: the quickstart needs a fresh folder")
    folder.mkdir(parents=True, exist_ok=True)
    say = Narrator(console or Console())
    settings = _settings(folder)
    result = QuickstartResult(
        folder, settings.events_path, folder / "events.ocsf.jsonl", folder / "report.html"
    )
    app = build(settings)
    lab = lc.Lab(folder, app, say)
    try:
        _lifecycle(lab, result)
        say.step(6, STEPS[6])
        _ledger_drill(lab, result)
    finally:
        lab.close()
        app.deliver()
        app.close()
    say.step(7, STEPS[7])
    _summary(say, result)
    result.seconds = say.elapsed()
    return result


def _lifecycle(lab: lc.Lab, result: QuickstartResult) -> None:
    say = lab.say
    state: dict[str, Any] = {}

    def s1() -> None:
        lc.start_vault(lab)

    def s2() -> None:
        state["data"] = lc.ingest_data(lab)

    def s3() -> None:
        statuses = lc.third_party_models(lab)
        if statuses.get("vendor-sentiment") != "active":
            result.problems.append("the benign third-party model was not admitted")

    def s4() -> None:
        pulled, outcome = lc.train_and_promote(lab, state["data"])
        state["pulled"] = pulled
        if outcome.get("prod") != "prod" or not outcome.get("pulled_digest_ok"):
            result.problems.append(f"the trained model did not reach prod intact: {outcome}")

    def s5() -> None:
        _gateway(lab, state, result)

    steps: list[Callable[[], None]] = [s1, s2, s3, s4, s5]
    for number, step in enumerate(steps, start=1):
        say.step(number, STEPS[number])
        try:
            step()
        except (DonjonError, OSError, ValueError, KeyError, RuntimeError) as e:
            say.warn(f"step {number} failed: {type(e).__name__}: {e}")
            result.problems.append(f"step {number} failed: {e}")
            for later in range(number + 1, 6):
                say.warn(f"step {later} is not part of this run: step {number} failed")
            return


def _gateway(lab: lc.Lab, state: dict[str, Any], result: QuickstartResult) -> None:
    from donjon.quickstart import gateway_step as gw
    from donjon.quickstart.weights import load_safetensors

    say, data = lab.say, state["data"]
    model = load_safetensors(state["pulled"])
    deployment = gw.deploy(model, data.X, lab.folder / "gateway", lab.app.bus)
    say.ok(f"{lab.folder.name}/gateway: API keys, reference profile; route {gw.ROUTE}")
    benign = gw.benign_traffic(deployment, data.X_holdout, data.y_holdout)
    if benign.refused_by:
        say.warn(f"frontend was refused ({benign.refused_by}) after {benign.queries} queries")
        result.problems.append(f"benign traffic was refused by {benign.refused_by}")
    else:
        say.ok(f"frontend: {benign.queries} natural queries answered; {benign.notes[0]}")
    for attack in (gw.evasion_walk(deployment, data.X_holdout, data.y_holdout),
                   gw.extraction(deployment)):  # fmt: skip
        if attack.refused_by:
            extra = f" ({'; '.join(attack.notes)})" if attack.notes else ""
            say.caught(
                f"{attack.caller}: refused {attack.status} by {attack.refused_by} "
                f"after {attack.queries} queries{extra}"
            )
        else:
            say.warn(f"{attack.caller} was never refused: {'; '.join(attack.notes)}")


def _ledger_drill(lab: lc.Lab, result: QuickstartResult) -> None:
    """Verify the real ledger, then tamper with one entry of a copy and run the CLI on it."""
    say, settings = lab.say, lab.app.settings
    lab.app.deliver()
    from donjon.storage.sql import open_database

    database = open_database(settings.sql_url)
    try:
        verification = build_ledger(settings, database).verify()
    finally:
        database.dispose()
    if verification.ok:
        say.ok(f"ledger verified: {verification.entries} entries, hash chain intact, "
               f"{verification.checkpoints} signed checkpoint(s)")  # fmt: skip
    else:
        say.warn(f"the real ledger does not verify: {verification.issues[:1]}")
        result.problems.append("the real ledger did not verify")
    drill = lab.folder / "tamper-drill"
    drill.mkdir()
    shutil.copytree(settings.keys_dir, drill / "keys")
    with (
        sqlite3.connect(settings.database_path) as src,
        sqlite3.connect(drill / "donjon.db") as dst,
    ):
        src.backup(dst)
    with sqlite3.connect(drill / "donjon.db") as db:
        triggers = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_ledger'"
        ).fetchall()
        for (name,) in triggers:  # what an attacker with write access to the database does
            db.execute(f'DROP TRIGGER "{name}"')
        rows = db.execute("SELECT seq, body FROM audit_ledger ORDER BY seq").fetchall()
        victim = next(
            ((seq, body) for seq, body in rows if '"model.promote"' in body and "denied" in body),
            rows[len(rows) // 2],
        )
        forged = (
            victim[1].replace("denied", "allowed") if "denied" in victim[1] else victim[1] + " "
        )
        db.execute("UPDATE audit_ledger SET body = ? WHERE seq = ?", (forged, victim[0]))
    say.info(
        f"copied the database to {drill.name}/, dropped its append-only trigger and rewrote "
        f"entry {victim[0]} ('denied' -> 'allowed': erasing the refused promotion)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    command = [sys.executable, "-m", "donjon", "--home", str(drill), "audit", "verify"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    say.info(f"$ donjon --home {drill.name} audit verify   -> exit {done.returncode}")
    for line in (done.stdout + done.stderr).strip().splitlines()[:6]:
        say.console.print(f"      {line}", markup=False, highlight=False)
    from donjon.audit.rules import LEDGER_TAMPERED
    from donjon.soc.jsonl import read_all_events

    drill_events = drill / "events.jsonl"
    found = [
        e.finding
        for e in (read_all_events(drill_events) if drill_events.exists() else [])
        if e.finding is not None and e.finding.rule.id == LEDGER_TAMPERED.id
    ]
    if done.returncode == 1 and found:
        say.caught(f"tampering detected at entry {victim[0]}; the real ledger is untouched")
        lab.app.bus.publish(SecurityEvent.of_finding(found[0], "audit", drill=str(drill)))
    else:
        say.warn("donjon audit verify did not report the tampered copy")


def _summary(say: Narrator, result: QuickstartResult) -> None:
    from donjon.soc.jsonl import read_all_events
    from donjon.soc.ocsf import to_ocsf
    from donjon.soc.report import assess, render_html

    events = list(read_all_events(result.events)) if result.events.exists() else []
    with result.ocsf.open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(to_ocsf(event), sort_keys=True, default=str) + "\n")
    result.report.write_text(
        render_html(assess(events), title="Donjon quickstart"), encoding="utf-8"
    )
    counts: Counter[tuple[int, str, str, str, str]] = Counter()
    for e in events:
        if e.finding is None or e.finding.level.label == "info":
            continue
        rule = e.finding.rule
        atlas = "; ".join(f"{t} {technique(t).name}" for t in rule.atlas) or "-"
        counts[
            (STEP_OF_SOURCE.get(e.source, 0), rule.id, rule.title, e.finding.level.label, atlas)
        ] += 1
    table = Table(title="What Donjon caught", title_justify="left")
    for column in ("Step", "Rule", "Finding", "Severity", "Events", "ATLAS technique"):
        table.add_column(column)
    for (step, rule_id, title, level, atlas), n in sorted(counts.items()):
        table.add_row(str(step), rule_id, title, level, str(n), atlas)
    say.console.print(table)
    result.met, result.missed = missing(events)
    checks = Table(title="Expected detections", title_justify="left")
    for column in ("Step", "Expected", "In the event file"):
        checks.add_column(column)
    for expected in sorted([*result.met, *result.missed], key=lambda x: x.step):
        ok = expected in result.met
        checks.add_row(
            str(expected.step), expected.what, "[green]yes[/green]" if ok else "[red]MISSED[/red]"
        )
    say.console.print(checks)
    for problem in result.problems:
        say.warn(problem)
    say.info(f"events: {result.events}")
    say.info(f"OCSF events: {result.ocsf}")
    say.info(f"HTML report: {result.report}")
    say.info(f"folder: {result.folder}  ({say.elapsed():.0f} s)")
