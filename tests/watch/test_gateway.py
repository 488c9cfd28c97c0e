"""The watch through the inference firewall: a prober is counted, never blocked or quota'd.

Enrolment bisects towards the decision boundary (thousands of close, collinear
queries: exactly what the evasion detector and the quotas stop). Under a
principal listed in the gateway's ``probers`` it goes through and leaves no
finding; the same enrolment under an ordinary principal is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from donjon.cli.main import main
from donjon.core import EventBus, MemorySink
from donjon.gateway import build_pipeline, build_profile, create_proxy, new_api_key
from donjon.gateway.pipeline import Pipeline
from donjon.gateway.settings import GatewaySettings
from tests.gateway.harness import serve_app
from tests.watch.conftest import MODEL, Lab, held_out_rows


@contextmanager
def gateway(
    lab: Lab, folder: Path, probers: list[str]
) -> Iterator[tuple[str, dict[str, str], Pipeline, MemorySink]]:
    keys, entries = {}, []
    for principal in ("watch", "mallory"):
        token, entry = new_api_key(principal, principal, kind="service")
        keys[principal] = token
        entries.append(entry)
    (folder / "keys.json").write_text(json.dumps({"keys": entries}))
    build_profile(np.asarray(held_out_rows(), dtype=np.float64)).save(folder / "profile.json")
    settings = GatewaySettings.model_validate({
        "auth": {"api_keys_file": str(folder / "keys.json")},
        "event_interval_seconds": 0,
        "log_sample_rate": 0,
        "probers": probers,
        "models": [{"name": MODEL, "routes": ["/predict"], "allow": ["*"],
                    "profile": str(folder / "profile.json")}],
    })  # fmt: skip
    sink = MemorySink()
    pipeline = build_pipeline(settings, bus=EventBus([sink]))
    upstream = lab.endpoint.removesuffix("/predict")
    with serve_app(create_proxy(pipeline, upstream)) as url:
        yield f"{url}/predict", keys, pipeline, sink


def _enrol(lab: Lab, endpoint: str) -> int:
    return main([
        "watch", "enrol", MODEL, "1", "--endpoint", endpoint, "--data", str(lab.data),
        "--drop-column", "label", "--private-key", str(lab.key),
    ])  # fmt: skip


def test_the_prober_is_accounted_but_trips_no_detector_or_quota(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with gateway(lab, tmp_path, probers=["watch"]) as (url, keys, pipeline, sink):
        monkeypatch.setenv("DONJON_WATCH_TOKEN", keys["watch"])
        assert _enrol(lab, url) == 0
        capsys.readouterr()
        assert main(["--format", "json", "watch", "run", "--public-key", str(lab.public)]) == 0
        (result,) = json.loads(capsys.readouterr().out)
        assert result["status"] == "same"
        assert [e for e in sink.events if e.finding is not None] == []
        counted = pipeline.metrics.queries.labels(MODEL)._value.get()
        assert counted == lab.victim.queries  # every prober query is accounted

        # an ordinary principal doing the same is stopped (detector or quota), and reported
        monkeypatch.setenv("DONJON_WATCH_TOKEN", keys["mallory"])
        assert _enrol(lab, url) == 2
        assert "refused the query" in capsys.readouterr().err
        assert {e.finding.subject.principal for e in sink.events if e.finding is not None} == {
            "mallory"
        }
