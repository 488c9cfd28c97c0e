"""The SOC and monitor commands end to end through ``main([...])``."""

from __future__ import annotations

import json
import threading
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from donjon.cli.main import main
from donjon.core import EventKind, Outcome, SecurityEvent, Severity
from donjon.soc.jsonl import JsonLinesSink, read_all_events
from tests.monitor.traffic import traffic
from tests.soc.collector import Collector, parse_concatenated_json
from tests.soc.rsyslog import Rsyslog, free_port
from tests.soc.samples import ALICE, every_kind
from tests.support.waiting import wait_for


class Tables(HTMLParser):
    """Collects every ``<table id=...>`` as rows of cell texts, and ``<p id=...>`` texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.paragraphs: dict[str, str] = {}
        self._table: str | None = None
        self._p: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id")
        if tag == "table" and ident:
            self._table = ident
            self.tables[ident] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "p" and ident:
            self._p = ident
            self.paragraphs[ident] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "p":
            self._p = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._p:
            self.paragraphs[self._p] += data


def _write(path: Path, events: list[SecurityEvent]) -> None:
    sink = JsonLinesSink(path)
    sink.emit_batch(events)
    sink.close()


def test_report_html_has_findings_models_anomalies_and_ledger(
    donjon_home: Path, tmp_path: Path
) -> None:
    events = every_kind()
    events.append(
        SecurityEvent(EventKind.ACTIVITY, "provenance", "provenance.attest",
                      "training provenance for fraud-clf@3", Severity.INFO, Outcome.SUCCESS,
                      ALICE, attributes={"model": "fraud-clf@3"})
    )  # fmt: skip
    events.append(
        SecurityEvent(EventKind.ACCESS, "registry", "model.read", "<script>alert(1)</script>",
                      attributes={"resource": "models/churn@1"})
    )  # fmt: skip
    _write(donjon_home / "events.jsonl", events)
    out = tmp_path / "report.html"
    code = main(["--format", "json", "report", "-o", str(out)])
    assert code == 1  # the last ledger verification failed
    text = out.read_text()
    assert "<script>" not in text  # every value escaped
    parsed = Tables()
    parsed.feed(text)
    t = parsed.tables
    header, *rows = t["findings-by-tactic"]
    assert header[:3] == ["tactic", "id", "critical"]
    by_id = {r[1]: dict(zip(header, r, strict=True)) for r in rows}
    assert by_id["AML.TA0010"]["high"] == "1"  # the extraction finding: Exfiltration
    assert by_id["AML.TA0005"]["high"] == "1"  # the pickle finding: Execution
    models = {r[0]: (r[1], r[2]) for r in t["models"][1:]}
    assert models["fraud-clf"] == ("True", "True")  # signed (model.sign) and attested
    assert models["churn"] == ("False", "False")
    assert t["denials"][1:] == [["k-42", "1"]]
    assert t["auth-failures"][1:] == [["k-42", "1"]]
    assert [r[2] for r in t["alerts"][1:]] == ["deny_ratio"]
    assert "FAILED" in parsed.paragraphs["ledger-status"]
    assert len(t["ledger"]) == 3
    assert ["jsonl", "0", "0"] in t["delivery"]


def test_report_on_a_clean_record_exits_0(donjon_home: Path, tmp_path: Path) -> None:
    _write(donjon_home / "events.jsonl", every_kind()[2:4] + every_kind()[9:10])
    assert main(["report", "-o", str(tmp_path / "r.html")]) == 0
    assert main(["report", "--file", str(tmp_path / "missing.jsonl")]) == 2


def test_monitor_raises_alerts_publishes_them_once_and_exits_1(donjon_home: Path) -> None:
    events = traffic(
        240, seed=5, rate=30,
        score=lambda m: 0.2 if m < 180 else 0.2 + 0.004 * (m - 180),
    )  # fmt: skip
    _write(donjon_home / "events.jsonl", events)
    config = donjon_home / "config.toml"
    config.write_text('[monitor]\nbucket_seconds = 60\n[[monitor.rules]]\nmetric = "score:*"\n'
                      'severity = "high"\nmin_width = 0.05\nupper_only = true\n')  # fmt: skip
    import contextlib
    import io

    for _ in range(2):  # a second run re-publishes nothing: alert uids are deterministic
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["--format", "json", "--config", str(config), "monitor"])
        assert code == 1
    result = json.loads(buf.getvalue())
    assert "score:extraction" in result["metrics"]
    kinds = [a["action"] for a in result["alerts"]]
    assert kinds[0] == "monitor.trend"  # the warning comes first
    assert {a["attributes"]["metric"] for a in result["alerts"]} == {"score:extraction"}
    recorded = [e for e in read_all_events(donjon_home / "events.jsonl") if e.kind.value == "alert"]
    assert len(recorded) == len(result["alerts"])
    quiet = donjon_home / "quiet.jsonl"
    _write(quiet, traffic(200, seed=6, rate=30))
    assert main(["--config", str(config), "monitor", "--file", str(quiet), "--no-publish"]) == 0


def test_metrics_serve_exports_counters_and_outbox_lag(donjon_home: Path) -> None:
    events = every_kind()
    _write(donjon_home / "events.jsonl", events)
    port = free_port()
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(main(["metrics", "serve", "--port", str(port), "--for", "4",
                                          "--poll", "0.1"]))
    )  # fmt: skip
    worker.start()

    def replayed() -> str | None:
        # the server serves for 4 s from when it has started, however late that is
        assert worker.is_alive(), "the exporter stopped before it had counted every event"
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        done = 'donjon_access_decisions_total{action="model.promote",effect="deny"} 1.0' in body
        return body if done else None

    body = wait_for(replayed, what="the exporter to count every event")
    worker.join()
    assert codes == [0]
    assert 'donjon_events_total{kind="finding",severity="high",source="gateway"} 1.0' in body
    assert 'donjon_access_decisions_total{action="model.promote",effect="deny"} 1.0' in body
    assert 'donjon_authentications_total{outcome="failure"} 1.0' in body
    assert 'donjon_findings_total{rule="DJ-GWX-001",severity="high",source="gateway"} 1.0' in body
    assert 'donjon_outbox_lag_events{sink="jsonl"} 0.0' in body


def test_metrics_asgi_app_and_bus_subscription() -> None:
    import asyncio

    from donjon.app import build
    from donjon.config import load_settings
    from donjon.monitor.metrics import metrics_app

    with build(load_settings()) as app:
        assert app.metrics is not None
        for event in every_kind():
            app.bus.publish(event)

        async def scrape() -> str:
            transport = httpx.ASGITransport(app=metrics_app(app.metrics))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (await client.get("/metrics")).text

        body = asyncio.run(scrape())
    assert 'donjon_events_total{kind="account",severity="info",source="authz"} 1.0' in body
    assert 'donjon_alerts_total{metric="deny_ratio",type="unknown"} 1.0' in body
    assert 'donjon_outbox_lag_events{sink="jsonl"} 12.0' in body  # not delivered yet


def test_sinks_configured_in_the_settings_file_deliver_and_catch_up(
    donjon_home: Path, rsyslog: Rsyslog
) -> None:
    hec_port = free_port()
    config = donjon_home / "config.toml"
    donjon_home.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[soc]\nbackoff_base = 0.01\nbackoff_max = 0.05\ndrain_on_close = 0\n"
        f'[[soc.sinks]]\ntype = "syslog"\nname = "siem"\nhost = "127.0.0.1"\n'
        f'port = {rsyslog.tcp_port}\nprotocol = "tcp"\npayload = "cef"\n'
        f'[[soc.sinks]]\ntype = "hec"\nurl = "http://127.0.0.1:{hec_port}"\ntoken = "t0k"\n'
    )
    from donjon.app import build
    from donjon.config import load_settings

    before = len(rsyslog.received())
    events = every_kind()
    with build(load_settings(config)) as app:
        for event in events:
            app.bus.publish(event)
    assert main(["--config", str(config), "events", "deliver", "--timeout", "0.5"]) == 1
    got = rsyslog.wait_for(before + len(events))[before:]
    assert len(got) == len(events)
    assert all(r["msg"].startswith("CEF:0|Donjon|") for r in got)
    collector = Collector(lambda r: (200, {"text": "Success", "code": 0})).start(hec_port)
    try:
        assert main(["--config", str(config), "events", "deliver", "--timeout", "5"]) == 0
        uids = [
            o["fields"]["donjon_uid"]
            for r in collector.requests
            for o in parse_concatenated_json(r.body)
        ]
        assert uids == [e.uid for e in events]
    finally:
        collector.stop()
    assert main(["--config", str(config), "--format", "json", "events", "dead-letters"]) == 0


def test_an_ocsf_export_given_as_the_event_file_says_which_file_to_read(
    donjon_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart leaves events.jsonl and events.ocsf.jsonl side by side; the SOC
    commands read the first, and name it when given the second."""
    from donjon.soc.ocsf import to_ocsf

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    assert main(["scan", str(evil)]) == 1
    events = list(read_all_events(donjon_home / "events.jsonl"))
    ocsf = tmp_path / "events.ocsf.jsonl"
    ocsf.write_text("".join(json.dumps(to_ocsf(e), default=str) + "\n" for e in events))
    capsys.readouterr()
    for argv in (["report", "-o", str(tmp_path / "r.html")], ["events", "tail"], ["monitor"]):
        assert main([*argv, "--file", str(ocsf)]) == 2
        assert "the OCSF form a SIEM receives; read Donjon's own event file" in (
            capsys.readouterr().err
        )
    assert (
        main(
            ["report", "-o", str(tmp_path / "r.html"), "--file", str(donjon_home / "events.jsonl")]
        )
        == 1
    )
