"""``donjon watch enrol|run|status`` end to end: a vault and scikit-learn victims on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.core.identity import Principal
from tests.watch.conftest import MODEL, Lab


def _enrol(lab: Lab, *extra: str) -> int:
    return main([
        "watch", "enrol", MODEL, "1", "--endpoint", lab.endpoint, "--data", str(lab.data),
        "--drop-column", "label", "--private-key", str(lab.key), *extra,
    ])  # fmt: skip


def _run(lab: Lab, public: Path | None = None) -> int:
    return main(["--format", "json", "watch", "run", "--public-key", str(public or lab.public)])


def _events(home: Path) -> list[dict[str, object]]:
    path = home / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _rule_ids(home: Path) -> list[str]:
    found = []
    for event in _events(home):
        text = json.dumps(event)
        for rule in ("DJ-WT-001", "DJ-WT-002"):
            if rule in text:
                found.append(rule)
    return found


def test_a_swapped_model_is_found_and_the_promoted_one_passes(
    lab: Lab, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _enrol(lab) == 0
    assert "Enrolled churn-clf@1" in capsys.readouterr().out
    # the fingerprint is in the vault, attached to the version, signed
    (attached,) = lab.registry.attachments(Principal("alice"), MODEL, 1)
    assert attached.kind.value == "fingerprint"
    assert attached.summary["points"] == 200
    sent = lab.victim.queries

    assert _run(lab) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["status"], result["changed"], result["queries"]) == ("same", 0, 200)
    assert lab.victim.queries - sent == 200

    for name in ("other seed", "other architecture"):
        lab.victim.scores = lab.models[name].predict_proba  # type: ignore[attr-defined]
        assert _run(lab) == 1, name
        (result,) = json.loads(capsys.readouterr().out)
        assert result["status"] == "differs"
        assert result["changed"] > 100
        assert result["p_value"] < 1e-6
    assert _rule_ids(donjon_home).count("DJ-WT-001") == 2

    assert main(["--format", "json", "watch", "status"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert (status["model"], status["last_check"]["status"]) == (MODEL, "differs")


def test_server_noise_within_the_enrolled_tolerance_is_no_alarm(
    lab: Lab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab.victim.noise = 1e-3
    assert _enrol(lab) == 0
    capsys.readouterr()
    for _ in range(5):
        assert _run(lab) == 0
        (result,) = json.loads(capsys.readouterr().out)
        assert (result["status"], result["changed"]) == ("same", 0)
    lab.victim.scores = lab.models["other seed"].predict_proba  # type: ignore[attr-defined]
    assert _run(lab) == 1


def test_an_untrusted_fingerprint_or_a_dead_endpoint_fails_closed(
    lab: Lab, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _enrol(lab) == 0
    capsys.readouterr()
    assert _run(lab, lab.other_public) == 1  # signed by a key this check does not trust
    (result,) = json.loads(capsys.readouterr().out)
    assert result["status"] == "failed"
    assert "trusted key" in result["reason"]
    assert main([
        "--format", "json", "watch", "run", MODEL, "1", "--public-key", str(lab.public),
        "--endpoint", "http://127.0.0.1:9/predict",
    ]) == 1  # fmt: skip
    (result,) = json.loads(capsys.readouterr().out)
    assert result["status"] == "failed"
    assert "did not answer" in result["reason"]
    assert _rule_ids(donjon_home).count("DJ-WT-002") == 2


def test_bad_input_is_a_clear_error(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["watch", "run", "--public-key", str(lab.public)]) == 2  # nothing enrolled
    assert "nothing is watched" in capsys.readouterr().err
    text = tmp_path / "text.csv"
    text.write_text("a,b\n1,x\n2,y\n")
    assert main([
        "watch", "enrol", MODEL, "1", "--endpoint", lab.endpoint, "--data", str(text),
        "--private-key", str(lab.key),
    ]) == 2  # fmt: skip
    assert "numeric" in capsys.readouterr().err
    assert _enrol(lab, "--drop-column", "nope") == 2
    assert (
        main(
            [
                "watch",
                "enrol",
                MODEL,
                "7",
                "--endpoint",
                lab.endpoint,
                "--data",
                str(lab.data),
                "--drop-column",
                "label",
                "--private-key",
                str(lab.key),
            ]
        )
        == 2
    )  # fmt: skip - no such version: nothing attached, nothing watched
    assert main(["--format", "json", "watch", "status"]) == 0
    assert json.loads(capsys.readouterr().out) == []
