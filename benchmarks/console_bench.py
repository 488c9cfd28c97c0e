"""Server time of each console page with 10,000 events, 200 model versions and 100 datasets.

    python benchmarks/console_bench.py [--events 10000] [--models 20] [--versions 10]
                                       [--datasets 100] [--repeat 9]

The vault is built as ``donjon server`` builds it (``vault_app``: SQLite, Cedar,
API tokens, the signed ledger, the console); datasets and models are pushed over
HTTP with their manifests (every model scanned at push), a tenth of the models
promoted to staging, and ``--events`` events (scan and gateway findings, access
decisions, alerts) published on the bus, so they are in the ledger. Then the
server is restarted on that home four times, alternately without and with the
console's start-up warm-up (waited for), and each page is requested by a
logged-in administrator; an ASGI wrapper times each request from its arrival to
the end of its response (server time, no network). The first request of each
page after a restart is shown apart (cold: without the warm-up, the first one
reads the ledger's tail into the console's index, the audit page runs the Sigma
rules over it); then medians of ``--repeat``, pages alternated. The peer is
the vault's own JSON API for the same data (``GET /v1/models`` and each
model's versions), measured in the same run. Target: every page under 300 ms.
Last, the CPU per event of the audit page's Sigma tally, with its pre-filter and
without it (every rule on every flattened event), alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tests.console.site import log_in

from donjon.app import build, build_identity
from donjon.catalog import rule_registry
from donjon.config import load_settings
from donjon.core.decision import Decision
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.core.identity import Principal
from donjon.core.severity import Severity
from donjon.data.documents import manifest_document_of
from donjon.quickstart.vault import LoopbackServer
from donjon.server.factory import vault_app
from donjon.server.ui.wiring import ConsoleOptions

POLICY = '@id("admin-all")\npermit(principal == User::"ada", action, resource);\n'
PAGES = (
    "posture",
    "models",
    "models/model-00",
    "datasets",
    "datasets/data-000",  # two versions' manifests diffed
    "gateway",
    "events",
    "audit",
)


class Timing:
    """ASGI wrapper: the server time of each request, by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: dict[str, list[float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                elapsed = time.perf_counter() - start
                self.times.setdefault(scope["path"], []).append(elapsed)

        await self.app(scope, receive, timed_send)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    server = LoopbackServer(app)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def safetensors(seed: int) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack("<2f", seed, seed + 1)


def events(count: int) -> Iterator[SecurityEvent]:
    rules = rule_registry()
    scan_rule, gw_rules = rules.get("DJ-PKL-001"), [rules.get("DJ-GW-001"), rules.get("DJ-GW-002")]
    now = datetime.now(UTC)
    for i in range(count):
        when = now - timedelta(seconds=(count - i) * 30)
        who = Principal(f"user-{i % 37}")
        if i % 4 == 0:
            finding = Finding(scan_rule, Subject(model=f"model-{i % 20:02d}"), f"payload {i}")
            yield SecurityEvent.of_finding(finding, "scan", time=when, model=f"model-{i % 20:02d}")
        elif i % 4 == 1:
            rule = gw_rules[i % 2]
            finding = Finding(
                rule,
                Subject(model=f"model-{i % 20:02d}", principal=who.id),
                f"{who} blocked ({i})",
                evidence={"detector": "bench", "action": "block"},
            )
            yield SecurityEvent.of_finding(finding, "gateway", principal=who, time=when)
        elif i % 4 == 2:
            decision = Decision.deny(who, "model.read", f"models/model-{i % 20:02d}", "bench")
            yield SecurityEvent.of_decision(decision, "server", time=when)
        else:
            yield SecurityEvent(
                EventKind.ALERT, "monitor", "monitor.alert", f"latency above band ({i})",
                Severity.MEDIUM, Outcome.FAILURE, time=when,
            )  # fmt: skip


def push_table(client: httpx.Client, name: str, table: Path) -> None:
    """Push a table and attach its manifest, as ``donjon datasets push`` does."""
    r = client.post(f"/v1/datasets/{name}/versions", content=table.read_bytes())
    assert r.status_code == 201, r.text
    document = json.dumps(manifest_document_of(table, label_column="y")).encode()
    number = r.json()["version"]
    r = client.post(
        f"/v1/datasets/{name}/versions/{number}/attestations?kind=manifest", content=document
    )
    assert r.status_code == 201, r.text


def populate(url: str, token: str, args: argparse.Namespace, folder: Path) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    table = folder / "table.csv"
    with httpx.Client(base_url=url, headers=auth, timeout=60) as client:
        for d in range(args.datasets):
            table.write_text("x,y\n" + "".join(f"{d + i},{i % 3}\n" for i in range(200)))
            push_table(client, f"data-{d:03d}", table)
        table.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(210)))
        push_table(client, "data-000", table)  # a second version: the diff page
        for m in range(args.models):
            for v in range(1, args.versions + 1):
                r = client.post(
                    f"/v1/models/model-{m:02d}/versions",
                    content=safetensors(m * 1000 + v),
                    headers={
                        "X-Donjon-Filename": "m.safetensors",
                        "X-Donjon-Lineage": f"data-{m:03d}@1",
                    },
                )
                assert r.status_code == 201, r.text
            r = client.post(
                f"/v1/models/model-{m:02d}/versions/1/promote", json={"stage": "staging"}
            )
            assert r.status_code == 200, r.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--datasets", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-bench-") as folder:
        settings = load_settings(home=Path(folder))
        settings.home.mkdir(parents=True, exist_ok=True)
        settings.policy_path.write_text(POLICY, encoding="utf-8")
        donjon = build(settings)
        try:
            identity = build_identity(settings, donjon.bus)
            identity.create_user("ada")
            token = identity.issue_token("ada", description="bench").secret
            with serve(vault_app(settings, donjon, ConsoleOptions(warm=False))) as url:
                t0 = time.perf_counter()
                populate(url, token, args, Path(folder))
                donjon.bus.publish_all(list(events(args.events)))
                assert donjon.ledger is not None
                print(
                    f"populated in {time.perf_counter() - t0:.1f} s: {args.datasets} datasets, "
                    f"{args.models * args.versions} model versions, "
                    f"{donjon.ledger.head()[0]} ledger entries; load {os.getloadavg()[0]:.1f}"
                )
        finally:
            donjon.close()
        for warm in (False, True, False, True):  # restarts, alternated: cold with and without
            restarted(settings, token, args, warm)
    sigma_cost(args.events)


def sigma_cost(count: int, rounds: int = 5) -> None:
    """CPU per event of the Audit page's Sigma board as it reads the ledger (JSON body to
    event to OCSF to the tally), with the tally's pre-filter and without it (every rule on
    every flattened event: the peer), alternated over ``rounds``; medians."""
    from donjon.soc.ocsf import to_ocsf
    from donjon.soc.sigma_match import SigmaTally, shipped_rules

    bodies = [json.dumps({"event": e.to_dict()}) for e in events(count)]
    rules = shipped_rules()
    cost: dict[bool, list[float]] = {True: [], False: []}
    for i in range(rounds * 2):
        prefilter = i % 2 == 0
        tally = SigmaTally(rules, prefilter=prefilter)
        start = time.process_time()
        for seq, body in enumerate(bodies):
            event = SecurityEvent.from_dict(json.loads(body)["event"])
            tally.feed(seq, event.time, to_ocsf(event))
        cost[prefilter].append((time.process_time() - start) / count * 1e6)
    filtered, plain = statistics.median(cost[True]), statistics.median(cost[False])
    print(
        f"\nAudit page's Sigma board, CPU per ledger event over {count} events (median of "
        f"{rounds}): {filtered:.1f} us with the pre-filter, {plain:.1f} us without "
        f"({plain / filtered:.2f}x); load {os.getloadavg()[0]:.1f}"
    )


def restarted(settings: Any, token: str, args: argparse.Namespace, warm: bool) -> None:
    """A server started afresh on the populated home (``warm``: with the start-up warm-up,
    waited for); its first request of each page is the cold one."""
    donjon = build(settings)
    try:
        app = vault_app(settings, donjon, ConsoleOptions(warm=warm))
        console = app.state.console
        timing = Timing(app)
        started = time.perf_counter()
        with serve(timing) as url:
            if warm:
                while console.warmed is None and time.perf_counter() - started < 300:
                    time.sleep(0.05)
                print(f"\nrestart with warm-up: ready {console.warmed:.2f} s after start")
            else:
                print("\nrestart without warm-up")
            measure(url, token, timing, args.repeat, args.models)
    finally:
        donjon.close()


def measure(url: str, token: str, timing: Timing, repeat: int, models: int) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        log_in(client, token)
        timing.times.clear()
        for _ in range(repeat + 1):  # alternate the pages; the first round is cold
            for page in PAGES:
                r = client.get(f"/ui/{page}")
                assert r.status_code == 200, (page, r.status_code)
        api = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"})
        api_times = []
        for _ in range(repeat):
            start = time.perf_counter()
            before = sum(len(v) for v in timing.times.values())
            names = api.get("/v1/models").json()["names"]
            for name in names:
                api.get(f"/v1/models/{name}/versions")
            after = [t for v in timing.times.values() for t in v]
            assert len(after) == before + 1 + len(names)
            api_times.append(time.perf_counter() - start)
    print(f"{'page':<22}{'cold ms':>9}{'median ms':>11}{'max ms':>9}  target < 300 ms")
    worst = 0.0
    for page in PAGES:
        times = timing.times[f"/ui/{page}"]
        cold, warm = times[0], times[1:]
        median = statistics.median(warm)
        worst = max(worst, median)
        print(f"/ui/{page:<18}{cold * 1e3:>9.1f}{median * 1e3:>11.1f}{max(warm) * 1e3:>9.1f}")
    peer = statistics.median(api_times)
    print(
        f"peer: the JSON API's model listing + {models} version listings, round trips: "
        f"{peer * 1e3:.1f} ms (posture / peer = "
        f"{statistics.median(timing.times['/ui/posture'][1:]) / peer:.2f})"
    )
    coldest = max(timing.times[f"/ui/{page}"][0] for page in PAGES)
    print(
        f"slowest page median {worst * 1e3:.1f} ms, slowest cold {coldest * 1e3:.1f} ms: "
        f"{'PASS' if max(worst, coldest) < 0.3 else 'FAIL'} (load {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
