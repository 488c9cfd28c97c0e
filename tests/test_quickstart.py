"""``donjon quickstart`` end to end: its detections, read from the event files it wrote."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import psutil
import pytest

from donjon.cli.main import main
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.quickstart.checks import expectations, missing
from donjon.soc.jsonl import read_all_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class Run:
    def __init__(self, folder: Path, code: int, threads: set[int], children: int) -> None:
        self.folder = folder
        self.code = code
        self.threads_left = threads
        self.children_left = children
        self.events: list[SecurityEvent] = list(read_all_events(folder / "events.jsonl"))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("quickstart") / "run"
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("DONJON_"):
                mp.delenv(name)
        mp.setenv("DONJON_HOME", str(tmp_path_factory.mktemp("home")))
        before = {t.ident for t in threading.enumerate()}
        # only what the quickstart starts counts: earlier tests may leave pool workers
        children_before = {p.pid for p in psutil.Process().children(recursive=True)}
        code = main(["--quiet", "quickstart", "--dir", str(folder)])
        left = {t.ident for t in threading.enumerate() if t.is_alive()} - before
        alive = {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()}
        children = len(alive - children_before)
    return Run(folder, code, {i for i in left if i is not None}, children)


def findings(run: Run, rule_id: str) -> list[SecurityEvent]:
    return [e for e in run.events if e.finding is not None and e.finding.rule.id == rule_id]


def test_quickstart_passes_and_cleans_up(run: Run) -> None:
    assert run.code == 0
    assert run.threads_left == set()  # the vault server, outbox dispatcher: all stopped
    assert run.children_left == 0  # the `donjon audit verify` subprocess was waited for


def test_data_poisoning_and_untrusted_sources_caught(run: Run) -> None:
    (untrusted,) = findings(run, "DJ-DAT-002")
    assert untrusted.finding is not None
    assert untrusted.finding.evidence["quarantined"] == 150  # every scraped record
    assert findings(run, "DJ-DAT-003")  # flipped labels
    trigger = findings(run, "DJ-DAT-004")  # the backdoor patch
    assert trigger
    assert trigger[0].finding is not None
    assert "AML.T0020" in trigger[0].finding.rule.atlas


def test_malicious_third_party_model_quarantined_at_push(run: Run) -> None:
    scans = [e for e in run.events if e.source == "scan" and e.finding is not None]
    assert {e.attributes["model"] for e in scans} == {"vendor-digits-boost"}
    pushes = {
        e.attributes["resource"]: e.attributes["status"]
        for e in run.events
        if e.action == "model.write" and "resource" in e.attributes
    }
    assert pushes["models/vendor-digits-boost@1"] == "quarantined"
    assert pushes["models/vendor-sentiment@1"] == "active"
    assert pushes["models/digits-clf@1"] == "active"


def test_least_privilege_and_promotion_gates(run: Run) -> None:
    denied = [
        e
        for e in run.events
        if e.kind is EventKind.ACCESS and e.outcome is Outcome.FAILURE and e.principal
    ]
    assert {(e.principal.id, e.action) for e in denied if e.principal} == {
        ("dana", "model.promote")
    }
    gates = [e for e in run.events if e.action == "registry.gate.signature"]
    assert [(e.attributes["target"], e.outcome) for e in gates] == [
        ("staging", Outcome.SUCCESS),
        ("prod", Outcome.SUCCESS),
    ]
    promoted = [e for e in run.events if e.action == "model.promote" and e.source == "registry"]
    assert [e.attributes["target_stage"] for e in promoted if "target_stage" in e.attributes] == [
        "staging",
        "prod",
    ]
    assert any(e.action == "provenance.attest" for e in run.events)


def test_gateway_blocks_the_attackers_not_the_frontend(run: Run) -> None:
    evasion = findings(run, "DJ-GW-001")
    extraction = findings(run, "DJ-GW-002")
    assert {e.principal.id for e in evasion if e.principal} == {"mallory"}
    assert {e.principal.id for e in extraction if e.principal} == {"eve"}
    assert all(e.finding and e.finding.evidence["action"] == "block" for e in evasion + extraction)
    frontend = [
        e
        for e in run.events
        if e.source == "gateway" and e.principal and e.principal.id == "frontend" and e.finding
    ]
    assert all(e.finding is not None and e.finding.level.label == "info" for e in frontend)


def test_ledger_tamper_drill_on_a_copy(run: Run) -> None:
    (tampered,) = findings(run, "DJ-LED-001")
    assert tampered.attributes["drill"].endswith("tamper-drill")
    drill = list(read_all_events(run.folder / "tamper-drill" / "events.jsonl"))
    assert any(e.finding and e.finding.rule.id == "DJ-LED-001" for e in drill)
    assert main(["--home", str(run.folder), "audit", "verify"]) == 0  # the real one is intact


def test_ocsf_file_and_report(run: Run) -> None:
    lines = (run.folder / "events.ocsf.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == len(run.events)
    detections = [d for d in docs if d["class_uid"] == 2004]
    assert len(detections) == sum(1 for e in run.events if e.finding is not None)
    assert "DJ-GW-001" in (run.folder / "report.html").read_text()


def test_every_expectation_is_met_and_a_miss_is_named(run: Run) -> None:
    met, missed = missing(run.events)
    assert missed == []
    assert len(met) == len(expectations())
    without_gateway = [e for e in run.events if e.source != "gateway"]
    _, missed = missing(without_gateway)
    assert {m.what for m in missed} == {
        "evasion walk blocked by the gateway",
        "extraction attempt blocked by the gateway",
    }


def test_quickstart_refuses_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    assert main(["quickstart", "--dir", str(tmp_path)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_up_without_a_policy_file_refuses_to_start(
    donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["up", "--for", "1", "--vault-port", "0", "--metrics-port", "0"]) == 2
    assert "no Cedar policy file" in capsys.readouterr().err


def test_up_serves_vault_gateway_metrics_and_stops_them(tmp_path: Path, donjon_home: Path) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from donjon.gateway import new_api_key
    from donjon.quickstart.vault import LoopbackServer

    async def predict(request: Request) -> JSONResponse:
        rows = (await request.json())["inputs"]
        return JSONResponse({"outputs": [[0.25, 0.75] for _ in rows]})

    donjon_home.mkdir(parents=True, exist_ok=True)  # the vault starts only with a policy
    (donjon_home / "policies.cedar").write_text(
        '@id("none")\nforbid (principal, action, resource);\n'
    )
    upstream = LoopbackServer(Starlette(routes=[Route("/predict", predict, methods=["POST"])]))
    upstream.start()
    try:
        secret, entry = new_api_key("app", "app")
        (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry]}))
        (tmp_path / "gateway.toml").write_text(
            f'upstream = "{upstream.url}"\n[auth]\napi_keys_file = "keys.json"\n'
            '[[models]]\nname = "m"\nroutes = ["/predict"]\nallow = ["app"]\n'
        )
        vault, gateway, metrics = _free_port(), _free_port(), _free_port()
        codes: list[int] = []
        argv = ["up", "--for", "4", "--vault-port", str(vault), "--metrics-port", str(metrics)]
        argv += ["--gateway", str(tmp_path / "gateway.toml"), "--gateway-port", str(gateway)]
        before = {t.ident for t in threading.enumerate()}
        runner = threading.Thread(target=lambda: codes.append(main(argv)))
        runner.start()
        with httpx.Client(timeout=5) as http:

            def started() -> bool:  # the metrics endpoint starts last; --for counts from then
                assert runner.is_alive(), f"donjon up stopped before it served: {codes}"
                try:
                    return http.get(f"http://127.0.0.1:{metrics}/metrics").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(started, what="donjon up to start its services")
            body = {"inputs": [[1.0, 2.0]]}
            url = f"http://127.0.0.1:{gateway}/predict"
            assert http.post(url, json=body).status_code == 401
            answer = http.post(url, json=body, headers={"authorization": f"Bearer {secret}"})
            assert answer.status_code == 200
            assert answer.json()["outputs"] == [[0.25, 0.75]]
            assert http.get(f"http://127.0.0.1:{vault}/health").status_code == 200
            assert http.get(f"http://127.0.0.1:{vault}/ui/login").status_code == 200  # console
            scrape = http.get(f"http://127.0.0.1:{metrics}/metrics")
            assert scrape.status_code == 200
            assert "donjon_" in scrape.text
        runner.join(30)
        assert codes == [0]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{vault}/health", timeout=1)
        left = {t.ident for t in threading.enumerate() if t.is_alive()} - before
        assert left == set()
    finally:
        upstream.stop()


def test_up_fails_cleanly_when_a_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = {t.ident for t in threading.enumerate()}
        assert main(["up", "--for", "1", "--vault-port", "0", "--metrics-port", str(port)]) == 2
        assert {t.ident for t in threading.enumerate() if t.is_alive()} - before == set()


def test_shipped_sigma_rules_fire_on_the_attacks_and_only_on_them(run: Run) -> None:
    """Every rule of rules/sigma against this real run's events, as OCSF and through the
    ECS pipeline: the drill's attacks fire their rules, nothing else fires anything
    (the normal staging and prod promotions included)."""
    from sigma.collection import SigmaCollection

    from tests.soc.test_sigma import RULES_DIR, matching_rules, matching_rules_ecs

    rules = SigmaCollection.load_ruleset([RULES_DIR])
    fired: dict[str, set[str]] = {}
    for event in run.events:
        hits = matching_rules(rules, event)
        assert matching_rules_ecs(event) == hits, event.action
        for title in hits:
            fired.setdefault(title, set()).add(
                event.finding.rule.id if event.finding else f"{event.action}:{event.outcome.value}"
            )
    assert fired == {
        "Donjon - Model Extraction Finding": {"DJ-GW-002"},
        "Donjon - Access Denied": {"model.promote:failure"},  # dana may not promote to prod
        "Donjon - Audit Ledger Verification Failed": {"DJ-LED-001"},  # the tamper drill
        "Donjon - Malicious Model Artifact Pushed": {"DJ-PKL-001"},
    }
