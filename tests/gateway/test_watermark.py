"""Keyed watermarks end to end: the real gateway over HTTP, a surrogate, and the CLI.

A rate of 5 % (ten times the default) keeps the test at a few hundred queries;
the benchmark (benchmarks/watermark_bench.py) runs ART's attacks at 0.5 %.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from donjon.cli.main import main
from donjon.gateway.watermark import FolderMarks
from donjon.provenance.dsse import Envelope
from donjon.provenance.keys import load_private_key
from tests.gateway.harness import Gateway, Victim, serve_victim

RATE, CONTROLS = 0.05, 0.3


def watermark(tmp_path: Path) -> dict[str, Any]:
    key = tmp_path / "wm.key"
    key.write_text("ab" * 32)
    key.chmod(0o600)
    return {
        "rate": RATE,
        "control_rate": CONTROLS,
        "key": f"file:{key}",
        "folder": str(tmp_path / "marks"),
    }


def gateway_toml(tmp_path: Path, mark: dict[str, Any]) -> Path:
    lines = [
        "[[models]]",
        'name = "digits"',
        'routes = ["/predict"]',
        "[models.watermark]",
        *(f"{k} = {json.dumps(v)}" for k, v in mark.items()),
    ]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def query(gateway: Gateway, who: str, rows: np.ndarray) -> np.ndarray:
    client = gateway.client(who)
    return np.concatenate([client(rows[i : i + 50]) for i in range(0, len(rows), 50)])


@pytest.fixture
def stolen(tmp_path: Path, victim: Victim, make_gateway: Any) -> dict[str, Any]:
    """Mallory queries 400 natural digits; bob 200 others; both through the gateway."""
    mark = watermark(tmp_path)
    # the detectors alert and answer: near-copies (eve's below) would be refused as probing,
    # and these tests are about what an extraction that gets through leaves behind
    alert = {"action": "alert"}
    detectors = {"evasion": alert, "membership": alert, "extraction": alert}
    gateway = make_gateway({"watermark": mark, "detectors": detectors})
    rows = victim.x_train[:400]
    answers = query(gateway, "mallory", rows)
    bob_answers = query(gateway, "bob", victim.x_test[:200])
    return {
        "gateway": gateway,
        "rows": rows,
        "answers": answers,
        "bob": bob_answers,
        "config": gateway_toml(tmp_path, mark),
        "store": FolderMarks(tmp_path / "marks"),
    }


def test_marked_answers_are_keyed_consistent_and_recorded(
    stolen: dict[str, Any], victim: Victim
) -> None:
    rows, answers = stolen["rows"], stolen["answers"]
    truth = victim.model.predict(rows / 16.0)
    changed = np.flatnonzero(answers.argmax(axis=1) != truth)
    records = stolen["store"].records("digits", ["mallory"])
    marks = {r.input_sha256: r for r in records if r.kind == "mark"}
    controls = [r for r in records if r.kind == "control"]
    # about 5 % of the answers changed, each one a recorded mark with the answer given
    assert 0.02 * len(rows) <= len(changed) <= 0.09 * len(rows)
    assert len(marks) == len(changed)
    assert 0.2 * len(rows) <= len(controls) <= 0.4 * len(rows)
    for i in changed:
        digest = _digest(rows[i])
        assert marks[digest].keyed == int(answers[i].argmax()) != marks[digest].truth
        # the scores were swapped, not invented: the same values, the top one moved
        original = victim.model.predict_proba(rows[i : i + 1] / 16.0)[0]
        assert sorted(answers[i]) == pytest.approx(sorted(original))
    # the same input gets the same (marked) answer again, in another request shape
    again = stolen["gateway"].client("mallory")(rows[changed[:5]])
    assert (again.argmax(axis=1) == answers[changed[:5]].argmax(axis=1)).all()
    # per principal: bob's marks are other inputs, his records his own
    assert {r.principal for r in stolen["store"].records("digits", ["bob"])} == {"bob"}
    recorded = [e for e in stolen["gateway"].sink.events if e.action == "gateway.watermark"]
    assert len(recorded) == len(stolen["store"].records("digits"))


def _digest(row: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256((np.asarray(row, dtype="<f8") + 0.0).tobytes()).hexdigest()


def _surrogate(rows: np.ndarray, labels: np.ndarray) -> KNeighborsClassifier:
    """A surrogate that memorises what it was taught (scaled like the victim's inputs)."""
    return KNeighborsClassifier(n_neighbors=1).fit(rows / 16.0, labels)


def test_verify_suspect_identifies_the_thief_and_signs_the_verdict(
    stolen: dict[str, Any],
    victim: Victim,
    tmp_path: Path,
    donjon_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["keys", "generate", "evidence"]) == 0
    capsys.readouterr()
    thief = _surrogate(stolen["rows"], stolen["answers"].argmax(axis=1))
    verdict = tmp_path / "verdict.dsse.json"
    with serve_victim(thief) as url:  # type: ignore[arg-type]
        code = main(
            [
                "-f", "json", "gateway", "verify-suspect", "-c", str(stolen["config"]),
                "--model", "digits", "--url", f"{url}/predict", "--key", "evidence",
                "--verdict", str(verdict),
            ]
        )  # fmt: skip
    assert code == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["identified"] == ["mallory"]
    by_name = {p["principal"]: p for p in summary["principals"]}
    mallory = by_name["mallory"]
    assert mallory["reproduced"] == mallory["marks"] > 5
    assert mallory["p_binomial"] < 1e-6
    assert mallory["p_exact"] < 1e-6
    assert not by_name["bob"]["identified"]
    # the verdict: a DSSE envelope signed with the evidence key, every input's digest inside
    envelope = Envelope.from_dict(json.loads(verdict.read_text()))
    key = load_private_key(donjon_home / "keys" / "evidence.key.pem", None)
    assert envelope.verify(key.public_key())  # type: ignore[arg-type]
    predicate = envelope.statement()["predicate"]
    inputs = {i["sha256"] for p in predicate["principals"] for i in p["inputs"]}
    assert inputs == {r.input_sha256 for r in stolen["store"].records("digits")}


def test_an_independent_model_is_not_identified(
    stolen: dict[str, Any], victim: Victim, capsys: pytest.CaptureFixture[str]
) -> None:
    # the same rows with their true labels: a model that never saw the watermarked answers
    honest = _surrogate(stolen["rows"], victim.y_train[:400])
    with serve_victim(honest) as url:  # type: ignore[arg-type]
        code = main(
            [
                "-f", "json", "gateway", "verify-suspect", "-c", str(stolen["config"]),
                "--model", "digits", "--url", f"{url}/predict",
            ]
        )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["identified"] == []
    assert all(p["reproduced"] <= 2 for p in summary["principals"])


def _near_copies(seeds: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Each seed and ``copies`` variants of it (six pixels moved by 2 on the 0..16 grid)."""
    rows = [seeds]
    for _ in range(copies):
        varied = seeds.copy()
        for row in varied:
            where = rng.choice(row.size, 6, replace=False)
            row[where] = np.clip(row[where] + rng.choice([-2.0, 2.0], 6), 0, 16)
        rows.append(varied)
    return np.unique(np.concatenate(rows), axis=0)


def test_the_score_test_finds_marks_that_near_copies_hid_from_the_top_answer(
    stolen: dict[str, Any], victim: Victim, capsys: pytest.CaptureFixture[str]
) -> None:
    """Eve augments 100 digits into 600 queries: a mark's near-copies sent before it are
    answered truthfully, so her 6-NN surrogate often answers the true class on the marks,
    but it gives the keyed class the highest or next-highest score there, which the score
    test sees (each family of carried marks counted once)."""
    rows = _near_copies(victim.x_test[200:300], 5, np.random.default_rng(5))
    answers = query(stolen["gateway"], "eve", rows)
    args = ["-f", "json", "gateway", "verify-suspect", "-c", str(stolen["config"])]
    args += ["--model", "digits", "--principal", "eve"]
    verdicts = {}
    for name, labels in (
        ("thief", answers.argmax(axis=1)),
        ("honest", victim.model.predict(rows / 16.0)),  # the same inputs, never marked
    ):
        model = KNeighborsClassifier(n_neighbors=6).fit(rows / 16.0, labels)
        with serve_victim(model) as url:  # type: ignore[arg-type]
            code = main([*args, "--url", f"{url}/predict"])
        [verdicts[name]] = json.loads(capsys.readouterr().out)["principals"]
        assert code == (1 if name == "thief" else 0)
    thief, honest = verdicts["thief"], verdicts["honest"]
    assert thief["marks"] > 15
    assert thief["carried"] > 0
    assert thief["ranked"] == thief["marks"]
    assert thief["p_rank"] < 1e-6
    assert thief["identified"]
    assert not honest["identified"]
    assert honest["reproduced"] <= 2
    assert honest["p_rank"] > 1e-3


def test_near_copies_of_a_mark_carry_it(stolen: dict[str, Any], victim: Victim) -> None:
    """Eve's near-copies make the detectors flag her (they alert here), so a near-copy of one
    of her marked inputs is answered with that mark's keyed class and recorded in its
    family; exact repeats get the same answers again."""
    rows = _near_copies(victim.x_test[200:300], 5, np.random.default_rng(5))
    answers = query(stolen["gateway"], "eve", rows)
    records = stolen["store"].records("digits", ["eve"])
    roots = {r.address: r for r in records if r.kind == "mark" and not r.family}
    carried = [r for r in records if r.family]
    where = {_digest(row): i for i, row in enumerate(rows)}
    assert len(roots) > 5
    assert len(carried) > 5  # the seeds come first: their near-copies carry the mark
    for record in carried:
        root = roots[record.family]
        assert record.kind == "mark"
        assert record.keyed == root.keyed != record.truth
        assert int(answers[where[record.input_sha256]].argmax()) == record.keyed
        distance = np.abs(np.asarray(record.row) - np.asarray(root.row)).max()
        assert 0 < distance <= 4  # a near-copy (the variants differ by 2 in six pixels)
    changed = answers.argmax(axis=1) != victim.model.predict(rows / 16.0)
    assert changed.sum() == len(roots) + len(carried)
    # bob's marks are not carried to eve's queries, nor eve's to bob's
    assert all(r.principal == "eve" for r in carried)
    assert not any(r.family for r in stolen["store"].records("digits", ["bob"]))
    again = query(stolen["gateway"], "eve", rows[-50:])
    assert (again.argmax(axis=1) == answers[-50:].argmax(axis=1)).all()


def _nearest_neighbour_onnx(path: Path, rows: np.ndarray, labels: np.ndarray) -> None:
    """A 1-NN classifier as an ONNX graph (built by code: Sub, ReduceSumSquare, ArgMin),
    with its label and its scores (one-hot: OneHot of the label) as outputs."""
    from onnx import TensorProto, helper, numpy_helper, save

    table = numpy_helper.from_array(rows.astype(np.float32)[None], "table")
    answers = numpy_helper.from_array(labels.astype(np.int64), "answers")
    axes = numpy_helper.from_array(np.asarray([2], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("Unsqueeze", ["x", "one"], ["x3"]),
        helper.make_node("Sub", ["x3", "table"], ["diff"]),
        helper.make_node("ReduceSumSquare", ["diff", "axes"], ["dist"], keepdims=0),
        helper.make_node("ArgMin", ["dist"], ["nearest"], axis=1, keepdims=0),
        helper.make_node("Gather", ["answers", "nearest"], ["label"]),
        helper.make_node("OneHot", ["label", "depth", "off_on"], ["scores"], axis=-1),
    ]
    one = numpy_helper.from_array(np.asarray([1], dtype=np.int64), "one")
    depth = numpy_helper.from_array(np.asarray(10, dtype=np.int64), "depth")
    off_on = numpy_helper.from_array(np.asarray([0.0, 1.0], dtype=np.float32), "off_on")
    graph = helper.make_graph(
        nodes,
        "nn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, rows.shape[1]])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 10]),
        ],
        initializer=[table, answers, axes, one, depth, off_on],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    save(model, str(path))


def test_verify_suspect_runs_an_onnx_file_in_a_child_process(
    stolen: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    thief = tmp_path / "thief.onnx"
    _nearest_neighbour_onnx(thief, stolen["rows"], stolen["answers"].argmax(axis=1))
    args = ["-f", "json", "gateway", "verify-suspect", "-c", str(stolen["config"])]
    code = main([*args, "--model", "digits", "--onnx", str(thief), "--principal", "mallory"])
    assert code == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["identified"] == ["mallory"]
    assert [p["principal"] for p in summary["principals"]] == ["mallory"]
    # the score tensor reached the score test: every mark ranked, the keyed class first
    [mallory] = summary["principals"]
    assert mallory["ranked"] == mallory["marks"] == mallory["rank_sum"]
    assert mallory["p_rank"] < 1e-6
    # a file that is not ONNX: the child fails, the command says so (exit 2), nothing crashes
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"\x08\x07not a protobuf model" * 10)
    assert main([*args, "--model", "digits", "--onnx", str(bogus)]) == 2
    assert "ONNX runner failed" in capsys.readouterr().err
