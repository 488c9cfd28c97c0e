"""Drift from the gateway's traffic: PSI per feature and class shares, as monitor series."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from donjon.app.watch import watch_drift
from donjon.core import EventBus, MemorySink
from donjon.gateway import build_pipeline, build_profile, create_proxy, new_api_key
from donjon.gateway.settings import GatewaySettings
from donjon.monitor.baseline import evaluate
from donjon.monitor.series import build_series
from donjon.watch.drift import DriftMonitor, psi
from tests.gateway.harness import serve_app
from tests.watch.conftest import MODEL, Lab, held_out_rows


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_psi_is_zero_for_the_same_shares_and_grows_with_a_shift() -> None:
    same = np.array([10.0, 20.0, 30.0])
    assert psi(same, same) == 0.0
    assert psi(same, same * 3) < 1e-3  # the same shares of a bigger sample
    assert psi(np.array([30.0, 20.0, 10.0]), same) > 0.3


def test_a_shifted_feature_is_a_monitor_alert_and_benign_buckets_are_not() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2000, 4))
    sink, clock = MemorySink(), Clock()
    monitor = DriftMonitor("m", reference, EventBus([sink]).publish, clock=clock)
    for bucket in range(130):
        rows = rng.normal(size=(300, 4))
        if bucket >= 127:
            rows[:, 2] += 0.5  # half a standard deviation on one feature
        monitor.observe(rows, (rows[:, 0] > 0).astype(int).tolist())
        clock.now += 60
    monitor.flush()
    drift = [e for e in sink.events if e.action == "watch.drift"]
    assert len(drift) == 130
    assert {e.attributes["drift_feature"] for e in drift[127:]} == {2}
    assert max(e.attributes["drift_score"] for e in drift[:127]) < 5
    alerts = evaluate(build_series(sink.events))
    assert [(a.metric, a.kind) for a in alerts] == [("drift:m", "breach")]
    shifted = [int(e.time.timestamp()) for e in drift[127:129]]
    assert alerts[0].bucket in shifted  # within two buckets of the shift


def test_the_gateway_feeds_its_traffic_to_the_drift_monitor(lab: Lab, tmp_path: Path) -> None:
    token, entry = new_api_key("app", "app", kind="service")
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry]}))
    reference = np.asarray(held_out_rows(), dtype=np.float64)
    build_profile(reference).save(tmp_path / "profile.json")
    settings = GatewaySettings.model_validate({
        "auth": {"api_keys_file": str(tmp_path / "keys.json")},
        "quotas": {"principal_rate": 1e6, "principal_burst": 1e6},
        "models": [{"name": MODEL, "routes": ["/predict"], "allow": ["*"],
                    "profile": str(tmp_path / "profile.json"),
                    "detectors": {"evasion": {"enabled": False},
                                  "extraction": {"enabled": False}}}],
    })  # fmt: skip
    sink = MemorySink()
    pipeline = build_pipeline(settings, bus=EventBus([sink]))
    monitors = watch_drift(pipeline, 3600, EventBus([sink]))
    upstream = lab.endpoint.removesuffix("/predict")
    shifted = reference.copy()
    shifted[:, 1] += 0.5 * reference[:, 1].std()
    with serve_app(create_proxy(pipeline, upstream)) as url, httpx.Client() as http:
        for rows in (reference, shifted, shifted):  # the PSI is of the last two buckets
            for start in range(0, len(rows), 50):
                answer = http.post(
                    f"{url}/predict",
                    json={"inputs": rows[start : start + 50].tolist()},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 200, answer.text
            monitors[MODEL].flush()
    first, _, second = (e for e in sink.events if e.action == "watch.drift")
    assert first.attributes["rows"] == second.attributes["rows"] == len(reference)
    assert first.attributes["psi"] < 0.1 < second.attributes["psi"]
    assert second.attributes["psi_feature"] == 1
    assert sum(first.attributes["class_shares"].values()) == 1.0
    assert first.time <= datetime.now(UTC)


def test_the_drift_tests_hold_their_false_alarm_rate_at_any_bucket_size() -> None:
    """Under no drift the p-values are uniform whatever n is: 1 % of them fall below 0.01."""
    from donjon.watch.drift import BINS, homogeneity_p, rank_p

    rng = np.random.default_rng(1)
    expected = np.full(BINS, 200.0)  # a reference of 2,000 rows in its deciles
    for n in (50, 400, 5000):
        draws = rng.multinomial(n, np.full(BINS, 1 / BINS), size=2000).astype(np.float64)
        for test in (rank_p, homogeneity_p):
            low = np.mean([test(d, expected) < 0.01 for d in draws])
            assert low < 0.02, (n, test.__name__, low)  # binomial: 0.01 +- 0.0022


def test_low_traffic_stretches_buckets_and_still_alerts_within_two() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(2000, 6))
    sink, clock = MemorySink(), Clock()
    monitor = DriftMonitor("m", reference, EventBus([sink]).publish, clock=clock)
    for minute in range(600):  # 50 rows a minute: a drift bucket spans 4 minutes (200 rows)
        rows = rng.normal(size=(50, 6))
        if minute >= 560:
            rows[:, 4] += 0.5
        monitor.observe(rows, (rows[:, 0] > 0).astype(int).tolist())
        clock.now += 60
    drift = [e for e in sink.events if e.action == "watch.drift"]
    assert {e.attributes["rows"] for e in drift} == {200}
    assert all(e.attributes["stretched"] and e.attributes["seconds"] == 240 for e in drift)
    alerts = evaluate(build_series(sink.events))
    assert [a.metric for a in alerts] == ["drift:m"]
    shifted = [
        int(e.time.timestamp())
        for e in drift
        if e.attributes["bucket_start"] >= 1_800_000_000 + 560 * 60
    ]
    assert alerts[0].bucket in shifted[:2]
