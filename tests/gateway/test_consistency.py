"""The answer-consistency test (DJ-GW-012) on a continuous table, through the real proxy:
transfer inputs that change the victim's answer are refused, benign rows are answered."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from donjon.cli.main import main
from donjon.core import EventBus, MemorySink
from donjon.errors import InputError
from donjon.gateway import (
    ReferenceProfile,
    build_pipeline,
    build_profile,
    create_proxy,
    new_api_key,
)
from donjon.gateway.detectors import Action
from donjon.gateway.detectors.consistency import ConsistencyDetector
from donjon.gateway.outputs import ResponseReader
from donjon.gateway.settings import GatewaySettings
from tests.gateway.harness import serve_app
from tests.support import victims


class Table:
    def __init__(self) -> None:
        x, y = load_breast_cancer(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(x))
        train, rest = order[:340], order[340:]
        self.x_train, self.y_train = x[train], y[train]
        half = len(rest) // 2
        self.attacker, self.attacker_y = x[rest[:half]], y[rest[:half]]
        self.held = x[rest[half:]]
        self.model: Pipeline = make_pipeline(
            StandardScaler(), MLPClassifier((32,), max_iter=500, random_state=0)
        ).fit(self.x_train, self.y_train)
        self.profile = build_profile(self.x_train, labels=self.y_train)

    def transfer(self, rows: np.ndarray, eps: float) -> np.ndarray:
        """FGSM from the attacker's own logistic regression, on features scaled to the
        range of its rows (the benchmark's attack, without ART)."""
        low = self.attacker.min(axis=0)
        span = self.attacker.max(axis=0) - low
        surrogate = LogisticRegression(max_iter=2000).fit(
            (self.attacker - low) / span, self.attacker_y
        )
        own = surrogate.predict((rows - low) / span)  # ART's labels: the surrogate's own
        # the sign of the cross-entropy's gradient: away from the surrogate's answer
        sign = np.where(own[:, None] == 1, -1.0, 1.0) * np.sign(surrogate.coef_[0])
        return np.maximum(rows + eps * span * sign, 0.0)


@pytest.fixture(scope="module")
def table() -> Table:
    return Table()


@pytest.fixture
def gateway(table: Table, tmp_path: Path) -> Iterator[tuple[str, str, MemorySink]]:
    token, entry = new_api_key("alice", "alice")
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [entry]}))
    table.profile.save(tmp_path / "profile.json")
    settings = GatewaySettings.model_validate(
        {
            "auth": {"api_keys_file": str(tmp_path / "keys.json")},
            "quotas": {"principal_rate": 1e6, "principal_burst": 1e6},
            "event_interval_seconds": 0,
            "log_sample_rate": 0,
            "models": [
                {
                    "name": "cancer",
                    "routes": ["/predict"],
                    "allow": ["*"],
                    "profile": str(tmp_path / "profile.json"),
                    "detectors": {
                        "consistency": {"action": "block"},
                        "evasion": {"enabled": False},
                        "membership": {"enabled": False},
                        "extraction": {"enabled": False},
                        "scatter": {"enabled": False},
                    },
                }
            ],
        }
    )
    sink = MemorySink()
    pipeline = build_pipeline(settings, bus=EventBus([sink]))
    with (
        victims.serve(table.model.predict_proba) as upstream,
        serve_app(create_proxy(pipeline, upstream)) as url,
    ):
        yield url, token, sink


def refused(url: str, token: str, rows: np.ndarray) -> list[Any]:
    """Per row (one request each): the refusal's rule, or None when answered."""
    out: list[Any] = []
    with httpx.Client(base_url=url, headers={"x-api-key": token}, timeout=30) as client:
        for row in rows:
            response = client.post("/predict", json={"inputs": [row.tolist()]})
            if response.status_code == 200:
                assert len(response.json()["probabilities"]) == 1
                out.append(None)
            else:
                assert response.status_code == 403
                out.append(response.json()["error"]["rule"])
    return out


def test_transfer_inputs_are_refused_and_noisy_benign_rows_answered(
    table: Table, gateway: tuple[str, str, MemorySink]
) -> None:
    url, token, sink = gateway
    targets = table.held[:40]
    adversarial = table.transfer(targets, 0.3)
    fooling = adversarial[table.model.predict(adversarial) != table.model.predict(targets)]
    assert len(fooling) >= 20
    rng = np.random.default_rng(1)
    spread = table.x_train.std(axis=0)
    noisy = np.maximum(targets + rng.normal(0, 0.05, targets.shape) * spread, 0.0)
    assert refused(url, token, noisy) == [None] * len(noisy)
    verdicts = refused(url, token, fooling[:20])
    assert verdicts.count("DJ-GW-012") >= 18
    events = [e for e in sink.events if e.finding and e.finding.rule.id == "DJ-GW-012"]
    assert len(events) == verdicts.count("DJ-GW-012")  # one event per refused answer
    assert events[0].finding.evidence["action"] == "block"
    assert "ML01" in events[0].finding.rule.owasp
    assert "AML.T0043" in events[0].finding.rule.atlas


def test_a_failing_check_withholds_the_answer_and_says_so(
    table: Table, gateway: tuple[str, str, MemorySink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed: an error in the check after the model answered denies (500, DJ-GW-009)."""
    url, token, sink = gateway

    def broken(self: ConsistencyDetector, rows: np.ndarray, classes: list[str]) -> list[Any]:
        raise FloatingPointError("singular")

    monkeypatch.setattr(ConsistencyDetector, "signals", broken)
    with httpx.Client(base_url=url, headers={"x-api-key": token}, timeout=30) as client:
        response = client.post("/predict", json={"inputs": [table.held[0].tolist()]})
    assert response.status_code == 500
    assert "probabilities" not in response.text
    assert [e.finding.rule.id for e in sink.events if e.finding] == ["DJ-GW-009"]


def test_natural_rows_stay_under_the_calibrated_rate(table: Table) -> None:
    """Held-out rows answered by the model, with benign changes of the whole row."""
    model = table.profile.consistency
    assert model is not None
    assert model.classes == ("0", "1")
    detector = ConsistencyDetector(model, table.profile.alignment)
    assert detector.config.action is Action.ALERT  # on by default: an alert, answer forwarded
    rng = np.random.default_rng(2)
    held = table.held
    changed = {
        "held-out": held,
        "gain": held * rng.choice([0.85, 1.15], size=(len(held), 1)),
        "units": held * rng.uniform(0.95, 1.05, size=(len(held), 1)),
        "offset": held + 0.25 * table.x_train.std(axis=0),
    }
    for name, rows in changed.items():
        answered = [str(v) for v in table.model.predict(rows)]
        assert len(detector.signals(rows, answered)) <= 0.02 * len(rows), name


def test_one_feature_jitter_stays_under_one_percent(table: Table) -> None:
    """The calibration includes benign copies of the profile's rows (one feature off by 1
    or 2 of its deviations, sensor noise): held-out rows jittered that way, as the model
    answers them, are flagged at most about 1 %, and transfer inputs at a quarter of the
    range still are, mostly."""
    model = table.profile.consistency
    assert model is not None
    assert model.calibration == ("natural", "jitter", "noise")
    detector = ConsistencyDetector(model, table.profile.alignment)
    rng = np.random.default_rng(3)
    spread = table.x_train.std(axis=0)
    held = np.concatenate([table.held] * 6)
    jittered = held.copy()
    cols = rng.integers(0, held.shape[1], len(held))
    steps = rng.choice([-2.0, -1.0, 1.0, 2.0], len(held))
    jittered[np.arange(len(held)), cols] += steps * spread[cols]
    jittered = np.maximum(jittered, 0.0)
    answered = [str(v) for v in table.model.predict(jittered)]
    assert len(detector.signals(jittered, answered)) <= 0.015 * len(jittered)
    attack = table.transfer(table.held, 0.25)
    fooled = table.model.predict(attack) != table.model.predict(table.held)
    answered = [str(v) for v in table.model.predict(attack[fooled])]
    assert len(detector.signals(attack[fooled], answered)) >= 0.5 * fooled.sum()


def test_labels_as_names_and_unknown_labels(table: Table) -> None:
    """A server answering label names is compared by name; a label the profile does not
    know is not tested."""
    model = table.profile.consistency
    assert model is not None
    detector = ConsistencyDetector(model, table.profile.alignment)
    rows = table.transfer(table.held[:10], 0.3)
    answered = [str(v) for v in table.model.predict(rows)]
    assert detector.signals(rows, answered)
    assert detector.signals(rows, ["benign"] * len(rows)) == []
    assert ResponseReader("m").label_name(1) == "1"


def test_profiles_v1_load_without_the_model_and_v2_keep_it(table: Table) -> None:
    doc = table.profile.to_dict()
    assert doc["format"] == "donjon.gateway.profile/v2"
    again = ReferenceProfile.from_dict(json.loads(json.dumps(doc)))
    assert again.consistency is not None
    rows = table.held[:5]
    index = np.zeros(5, dtype=np.int64)
    assert np.allclose(
        again.consistency.scores(rows, index, again.alignment),
        table.profile.consistency.scores(rows, index, table.profile.alignment),  # type: ignore[union-attr]
        rtol=1e-5,
    )
    old = {k: v for k, v in doc.items() if k != "consistency"} | {
        "format": "donjon.gateway.profile/v1"
    }
    assert ReferenceProfile.from_dict(old).consistency is None
    older = json.loads(json.dumps(doc))  # v2 of an earlier score: its quantiles do not fit
    del older["consistency"]["statistic"]
    assert ReferenceProfile.from_dict(older).consistency is None
    broken = json.loads(json.dumps(doc))
    broken["consistency"]["means"] = broken["consistency"]["means"][:1]
    with pytest.raises(InputError):
        ReferenceProfile.from_dict(broken)
    with pytest.raises(InputError):
        ReferenceProfile.from_dict({**doc, "format": "donjon.gateway.profile/v9"})
    assert build_profile(table.x_train[:40]).consistency is None  # no labels: no model


def test_cli_profile_keeps_the_label_column(
    table: Table, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.csv"
    names = ["benign" if y else "malignant" for y in table.y_train[:120]]
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*(f"f{i}" for i in range(30)), "diagnosis"])
        writer.writerows([*row, name] for row, name in zip(table.x_train[:120], names, strict=True))
    out = tmp_path / "profile.json"
    code = main(
        ["-f", "json", "gateway", "profile", str(data), "-o", str(out), "--label", "diagnosis"]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["consistency"] == ["benign", "malignant"]
    assert ReferenceProfile.load(out).features == 30
    assert main(["gateway", "profile", str(data), "-o", str(out), "--label", "nope"]) == 2
