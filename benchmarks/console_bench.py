"""Server time of each console page with 10,000 events, 200 model versions and 100 datasets.

    python benchmarks/console_bench.py [--events 10000] [--models 20] [--versions 10]
                                       [--datasets 100] [--repeat 9]

The vault is built as ``donjon server`` builds it (``vault_app``: SQLite, Cedar,
API tokens, the signed ledger, the console); datasets and models are pushed over
HTTP (every model scanned at push), a tenth of the models promoted to staging,
and ``--events`` events (scan and gateway findings, access decisions, alerts)
published on the bus, so they are in the ledger. Each page is then requested by
a logged-in administrator; an ASGI wrapper times each request from its arrival
to the end of its response (server time, no network). The first request of each
page is shown apart (cold: the first one also reads the whole ledger into the
console's index); then medians of ``--repeat``, pages alternated. The peer is
the vault's own JSON API for the same data (``GET /v1/models`` and each
model's versions), measured in the same run. Target: every page under 300 ms.
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
from donjon.quickstart.vault import LoopbackServer
from donjon.server.factory import vault_app

POLICY = '@id("admin-all")\npermit(principal == User::"ada", action, resource);\n'
PAGES = ("posture", "models", "models/model-00", "datasets", "gateway", "events", "audit")


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


def populate(url: str, token: str, args: argparse.Namespace) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as client:
        for d in range(args.datasets):
            r = client.post(f"/v1/datasets/data-{d:03d}/versions", content=b"x,y\n%d,1\n" % d)
            assert r.status_code == 201, r.text
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
            timing = Timing(vault_app(settings, donjon))
            with serve(timing) as url:
                t0 = time.perf_counter()
                populate(url, token, args)
                donjon.bus.publish_all(list(events(args.events)))
                assert donjon.ledger is not None
                print(
                    f"populated in {time.perf_counter() - t0:.1f} s: {args.datasets} datasets, "
                    f"{args.models * args.versions} model versions, "
                    f"{donjon.ledger.head()[0]} ledger entries; load {os.getloadavg()[0]:.1f}"
                )
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
    print(f"slowest page median {worst * 1e3:.1f} ms: {'PASS' if worst < 0.3 else 'FAIL'}")


if __name__ == "__main__":
    main()
