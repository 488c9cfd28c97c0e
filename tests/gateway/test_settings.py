"""Rates whose extreme values would break the detectors' math (an infinite CUSUM step, a
test that can never fire) are refused when ``gateway.toml`` is read, with the key and the
reason, through the real loader and ``donjon gateway --check``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from donjon.cli.main import main
from donjon.errors import ConfigError
from donjon.gateway.detectors.extraction import (
    ExtractionConfig,
    ExtractionDetector,
    binomial_tail,
)
from donjon.gateway.detectors.scatter import largest_step
from donjon.gateway.settings import (
    ExtractionSettings,
    OodSettings,
    ScatterSettings,
    load_gateway_settings,
)

BASE = '[[models]]\nname = "m"\nroutes = ["/predict"]\nallow = ["*"]\n'


def _config(tmp_path: Path, section: str, body: str) -> Path:
    path = tmp_path / "gateway.toml"
    top = 'upstream = "http://127.0.0.1:9"\n[auth]\nallow_anonymous = true\n'
    path.write_text(f"{top}{BASE}[models.detectors.{section}]\n{body}")
    return path


REFUSED = [
    # shift at the null rate: both CUSUM steps are ln(1) = 0, the change test silently off
    ("extraction", "shift_rate = 0.5\n", "must exceed null_rate"),
    ("extraction", "null_rate = 0.97\n", "must exceed null_rate"),  # the default 0.95 shift
    # 0.95 / 1e-320 overflows: an infinite step, an infinite CUSUM in the event's evidence
    ("extraction", "null_rate = 1e-320\n", "infinite or zero step"),
    # 1 - 1e-17 rounds to 1: a natural query's step is ln(1) = 0, the CUSUM only climbs
    ("extraction", "null_rate = 1e-18\nshift_rate = 1e-17\n", "infinite or zero step"),
    # at p_floor 0.5 a query adds at most ln(0.25) + 0.75 ln 2 < 0: the CUSUM stays at 0
    ("scatter", "p_floor = 0.5\n", "could never fire"),
    ("scatter", "alternative = 0.9\np_floor = 0.5\n", "could never fire"),
    # the OOD tests' own rates add up to every natural query
    ("ood", "range_rate = 0.6\nsplit_rate = 0.5\n", "every natural query"),
]


@pytest.mark.parametrize(("section", "body", "reason"), REFUSED)
def test_the_loader_names_the_key_and_the_reason(
    tmp_path: Path, section: str, body: str, reason: str
) -> None:
    path = _config(tmp_path, section, body)
    with pytest.raises(ConfigError) as caught:
        load_gateway_settings(path)
    message = str(caught.value)
    assert f"models.0.detectors.{section}" in message
    assert reason in message


@pytest.mark.parametrize(("section", "body", "reason"), REFUSED[:3] + REFUSED[3:4])
def test_the_check_command_refuses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, body: str, reason: str
) -> None:
    path = _config(tmp_path, section, body)
    assert main(["gateway", "--config", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert reason in err
    assert "invalid gateway config" in err


def test_the_edges_that_still_work_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = "shift_rate = 0\nnull_rate = 0.97\n"  # the change test off: the majority test alone
    assert main(["gateway", "--config", str(_config(tmp_path, "extraction", body)), "--check"]) == 0
    capsys.readouterr()
    settings_ = load_gateway_settings(_config(tmp_path, "extraction", "null_rate = 1e-300\n"))
    assert settings_.models[0].detectors.extraction.null_rate == 1e-300


RATES = st.one_of(
    st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
    st.sampled_from([5e-324, 1e-320, 1e-308, 1e-17, 0.5, 1 - 1e-9, 0.9999999999999999]),
)


@settings(max_examples=300, deadline=None)
@given(null=RATES, shift=st.one_of(st.just(0.0), RATES), alpha=RATES)
def test_every_accepted_extraction_setting_keeps_the_math_finite(
    null: float, shift: float, alpha: float
) -> None:
    try:
        s = ExtractionSettings(null_rate=null, shift_rate=shift, alpha=alpha)
    except ValidationError:
        return
    detector = ExtractionDetector(
        ExtractionConfig(null_rate=s.null_rate, alpha=s.alpha, shift_rate=s.shift_rate or None)
    )
    assert math.isfinite(detector.limit)
    assert math.isfinite(detector._up)
    assert math.isfinite(detector._down)
    if s.shift_rate:
        assert detector._up > 0 > detector._down  # a synthetic query raises it, a natural lowers
    for n in (10, 64, 2500):
        for k in (1, n // 2, n - 1, n):
            if k > s.null_rate * n:
                assert 0.0 <= binomial_tail(k, n, s.null_rate) <= 1.0


@settings(max_examples=300, deadline=None)
@given(alternative=RATES, floor=RATES)
def test_every_accepted_scatter_setting_can_fire(alternative: float, floor: float) -> None:
    try:
        ScatterSettings(alternative=alternative, p_floor=floor)
    except ValidationError:
        assert largest_step(alternative, floor) <= 0
        return
    assert 0 < largest_step(alternative, floor) < math.inf


def test_the_ood_rates_are_the_suspicion_tests_null() -> None:
    ood = OodSettings(quantile=0.99, range_rate=0.01, split_rate=0.02)
    assert ood.natural_rate == pytest.approx(0.04)
    with pytest.raises(ValidationError, match="every natural query"):
        OodSettings(quantile=0.51, range_rate=0.3, split_rate=0.25)
