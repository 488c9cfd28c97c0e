"""Baselines: no alert on a healthy series, a trend alert before the breach."""

from __future__ import annotations

import random

import pytest

from donjon.core import EventKind
from donjon.monitor.baseline import DEFAULT_RULES, AlertRule, evaluate, evaluate_series, learn_band
from donjon.monitor.series import Series, build_series
from donjon.soc.ocsf import to_ocsf
from tests.monitor.traffic import traffic
from tests.soc.ocsf_schema import assert_valid_ocsf


def series(values: list[float], name: str = "deny_ratio") -> Series:
    return Series(name, {i * 60: v for i, v in enumerate(values)})


@pytest.mark.parametrize("seed", range(8))
def test_a_stable_healthy_series_raises_nothing(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    rule, counts = AlertRule("m"), AlertRule("m", count=True)
    assert (
        evaluate_series(
            series([float(sum(rng.random() < 0.04 for _ in range(40))) for _ in range(400)]), counts
        )
        == []
    )  # rare counts
    for shape in (
        [rng.gauss(100, 10) for _ in range(400)],  # gaussian noise
        [rng.gammavariate(4, 6) for _ in range(400)],  # skewed, like latencies
        [sum(rng.random() < 0.3 for _ in range(50)) / 50 for _ in range(400)],  # a ratio
    ):
        assert evaluate_series(series(shape, "m"), rule) == []


def test_a_slow_rise_alerts_on_the_trend_before_the_band_is_breached() -> None:
    rng = random.Random(1)  # noqa: S311 - test data, not secrets
    healthy = [rng.gauss(0.05, 0.01) for _ in range(150)]
    ramp = [0.05 + 0.006 * i + rng.gauss(0, 0.005) for i in range(1, 60)]
    s = series(healthy + ramp)
    rule = AlertRule("deny_ratio", upper_only=True)
    alerts = evaluate_series(s, rule)
    assert [a.kind for a in alerts][:2] == ["trend", "breach"]
    trend, breach = alerts[0], alerts[1]
    assert trend.value <= trend.band.high < trend.projected  # type: ignore[operator]
    assert trend.bucket < breach.bucket  # warned before the incident
    assert (breach.bucket - trend.bucket) // 60 >= 2
    assert trend.bucket // 60 > 150  # and not during the healthy period


def test_a_sudden_spike_is_a_breach_and_a_dip_respects_upper_only() -> None:
    rng = random.Random(2)  # noqa: S311 - test data, not secrets
    values = [rng.gauss(20, 2) for _ in range(140)]
    spike = [*values, 90.0, *values[:10]]
    (alert,) = evaluate_series(series(spike, "latency_ms"), AlertRule("latency_ms"))
    assert alert.kind == "breach"
    assert alert.value == 90.0
    dip = [*values, 0.0, *values[:10]]
    assert evaluate_series(series(dip, "x"), AlertRule("x", upper_only=True)) == []
    assert [a.kind for a in evaluate_series(series(dip, "x"), AlertRule("x"))] == ["breach"]


def test_band_is_robust_to_outliers_in_training() -> None:
    rng = random.Random(4)  # noqa: S311 - test data, not secrets
    window = [rng.gauss(10, 1) for _ in range(40)] + [1000.0, 900.0]
    band = learn_band(window, AlertRule("m"))
    assert band.high < 20


def test_events_to_alerts_end_to_end() -> None:
    healthy = traffic(240, seed=3)
    all_series = build_series(healthy)
    assert len(all_series["deny_ratio"].points) == 240
    assert evaluate(all_series) == []  # four healthy hours: silence
    drifting = traffic(
        240, seed=3,
        deny_ratio=lambda m: 0.04 if m < 180 else 0.04 + 0.006 * (m - 180),
        score=lambda m: 0.2 if m < 180 else 0.2 + 0.003 * (m - 180),
    )  # fmt: skip
    alerts = evaluate(build_series(drifting), DEFAULT_RULES)
    by_metric: dict[str, list[str]] = {}
    for a in alerts:
        by_metric.setdefault(a.metric, []).append(a.kind)
    assert by_metric["deny_ratio"][0] == "trend"
    assert "score:extraction" in by_metric
    for metric in by_metric:
        assert metric in {"deny_ratio", "score:extraction", "error_ratio"}, by_metric
    events = [a.to_event() for a in alerts]
    assert all(e.kind is EventKind.ALERT for e in events)
    for e in events:
        doc = to_ocsf(e)
        assert_valid_ocsf(doc)
        assert doc["finding_info"]["analytic"]["type_id"] == 3  # Statistical
