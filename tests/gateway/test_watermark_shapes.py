"""Watermarks in every answer shape the gateway reads, and under output hardening.

The pipeline in process (admit + complete) with answers built in each shape from
the victim's scores; the marked rows are the recorded marks. Rate 5 % on 200 rows.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from donjon.errors import ConfigError
from donjon.gateway import build_pipeline
from donjon.gateway.pipeline import GatewayRequest, Pipeline
from donjon.gateway.replies import Reply
from donjon.gateway.watermark import FolderMarks
from donjon.gateway.watermark.keys import fingerprint, resolve_key
from tests.gateway.harness import Victim, victim_scores, write_setup

NAMES = [f"class-{i}" for i in range(10)]


def _pipeline(tmp_path: Path, victim: Victim, **extra: Any) -> tuple[Pipeline, str]:
    hardening = extra.pop("hardening", {})
    key = tmp_path / "wm.key"
    key.write_text("cd" * 32)
    key.chmod(0o600)
    mark = {"rate": 0.05, "control_rate": 0.0, "key": f"file:{key}", "folder": str(tmp_path)}
    settings, keys = write_setup(
        tmp_path, victim, ["alice"], {"watermark": {**mark, **extra}, "hardening": hardening}
    )
    return build_pipeline(settings), keys["alice"]


def _through(pipeline: Pipeline, key: str, rows: np.ndarray, answer: bytes) -> Any:
    body = json.dumps({"inputs": rows.tolist()}).encode()
    admitted = pipeline.admit(GatewayRequest("POST", "/predict", {"x-api-key": key}, body))
    assert not isinstance(admitted, Reply)
    status, out = pipeline.complete(admitted, 200, answer)
    assert status == 200
    return json.loads(out)


def _marked(tmp_path: Path, rows: np.ndarray) -> dict[int, Any]:
    records = {r.input_sha256: r for r in FolderMarks(tmp_path).records("digits")}
    found = {}
    for i, row in enumerate(rows):
        digest = hashlib.sha256((np.asarray(row, dtype="<f8") + 0.0).tobytes()).hexdigest()
        if digest in records:
            found[i] = records[digest]
    return found


def table(scores: np.ndarray) -> bytes:
    return json.dumps({"outputs": scores.tolist()}).encode()


def kserve(scores: np.ndarray) -> bytes:
    tensors = [
        {"name": "probabilities", "shape": list(scores.shape), "datatype": "FP32",
         "data": scores.ravel().tolist()},
        {"name": "label", "shape": [len(scores)], "datatype": "INT64",
         "data": scores.argmax(axis=1).tolist()},
    ]  # fmt: skip
    return json.dumps({"model_name": "digits", "outputs": tensors}).encode()


def records(scores: np.ndarray) -> bytes:
    return json.dumps([dict(zip(NAMES, r, strict=True)) for r in scores.tolist()]).encode()


def string_labels(scores: np.ndarray) -> bytes:
    return json.dumps({"predictions": [NAMES[i] for i in scores.argmax(axis=1)]}).encode()


def _top(doc: Any, i: int, shape: str) -> Any:
    """The class the answer of row ``i`` names, read the way a client would."""
    if shape == "table":
        return int(np.argmax(doc["outputs"][i]))
    if shape == "kserve":
        probs = np.asarray(doc["outputs"][0]["data"]).reshape(-1, 10)
        label = doc["outputs"][1]["data"][i]
        assert label == int(np.argmax(probs[i]))  # the two tensors agree
        return label
    if shape == "records":
        return max(doc[i], key=doc[i].get)
    return doc["predictions"][i]


@pytest.mark.parametrize(
    ("shape", "encode", "extra"),
    [
        ("table", table, {}),
        ("kserve", kserve, {}),
        ("records", records, {}),
        ("labels", string_labels, {"labels": NAMES}),
    ],
)
def test_marks_in_every_answer_shape(
    tmp_path: Path, victim: Victim, shape: str, encode: Callable[[np.ndarray], bytes], extra: Any
) -> None:
    pipeline, key = _pipeline(tmp_path, victim, **extra)
    rows = victim.x_test[:200]
    scores = victim_scores(victim.model, rows)
    doc = _through(pipeline, key, rows, encode(scores))
    marked = _marked(tmp_path, rows)
    assert 3 <= len(marked) <= 25
    truth = scores.argmax(axis=1)
    for i in range(len(rows)):
        named = shape in ("records", "labels")
        own = NAMES[truth[i]] if named else int(truth[i])
        if i in marked:
            assert marked[i].truth == own
            assert _top(doc, i, "labels" if shape == "labels" else shape) == marked[i].keyed != own
        else:
            assert _top(doc, i, "labels" if shape == "labels" else shape) == own


@pytest.mark.parametrize(
    "hardening", [{"top_k": 1}, {"top_k": 3, "decimals": 2}, {"label_only": True}]
)
def test_marks_survive_output_hardening(tmp_path: Path, victim: Victim, hardening: Any) -> None:
    pipeline, key = _pipeline(tmp_path, victim, hardening=hardening)
    rows = victim.x_test[:200]
    scores = victim_scores(victim.model, rows)
    doc = _through(pipeline, key, rows, table(scores))
    marked = _marked(tmp_path, rows)
    assert marked
    answers = np.asarray(doc["outputs"])
    tops = answers if answers.ndim == 1 else answers.argmax(axis=1)
    for i, record in marked.items():
        assert int(tops[i]) == record.keyed != int(scores[i].argmax())
    unmarked = [i for i in range(len(rows)) if i not in marked]
    assert (tops[unmarked] == scores[unmarked].argmax(axis=1)).all()


def test_binary_scores_are_mirrored_without_float_artefacts(tmp_path: Path, victim: Victim) -> None:
    pipeline, key = _pipeline(tmp_path, victim)
    rows = victim.x_test[:200]
    positive = np.round(victim_scores(victim.model, rows)[:, 3], 3)
    doc = _through(pipeline, key, rows, json.dumps({"predictions": positive.tolist()}).encode())
    marked = _marked(tmp_path, rows)
    assert marked
    for i in marked:
        assert doc["predictions"][i] == round(1 - positive[i], 3)
        assert len(repr(doc["predictions"][i])) <= 5  # 0.123, never 0.12299999999999
    unmarked = [i for i in range(len(rows)) if i not in marked]
    assert [doc["predictions"][i] for i in unmarked] == positive[unmarked].tolist()


def test_labels_only_without_classes_are_answered_truthfully(
    tmp_path: Path, victim: Victim
) -> None:
    pipeline, key = _pipeline(tmp_path, victim)
    rows = victim.x_test[:200]
    labels = victim.model.predict(rows / 16.0).tolist()
    doc = _through(pipeline, key, rows, json.dumps({"labels": labels}).encode())
    assert doc["labels"] == labels  # no class count: nothing can be marked, nothing recorded
    assert not _marked(tmp_path, rows)


def test_key_references(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    made = resolve_key("keys:wm", keys)
    assert len(made) == 32
    assert stat.S_IMODE((keys / "wm.hmac").stat().st_mode) == 0o600
    assert resolve_key("keys:wm", keys) == made  # created once, then read
    assert resolve_key("env:WM", keys, environ={"WM": "ef" * 32}) == bytes.fromhex("ef" * 32)
    assert fingerprint(made) != fingerprint(bytes.fromhex("ef" * 32))
    with pytest.raises(ConfigError, match="shorter"):
        resolve_key("env:WM", keys, environ={"WM": "short"})
    with pytest.raises(ConfigError, match="not set"):
        resolve_key("env:NOPE", keys, environ={})
    with pytest.raises(ConfigError, match="no key"):
        resolve_key("keys:other", keys, create=False)
    loose = tmp_path / "loose.key"
    loose.write_text("ab" * 32)
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        resolve_key(f"file:{loose}", keys)
    with pytest.raises(ConfigError, match="use keys:ID"):
        resolve_key("vault:wm", keys)


@pytest.mark.parametrize("mode", ["principal", "global"])
def test_principal_mode_marks_each_principal_apart(
    tmp_path: Path, victim: Victim, mode: str
) -> None:
    key = tmp_path / "wm.key"
    key.write_text("cd" * 32)
    key.chmod(0o600)
    mark = {"rate": 0.05, "control_rate": 0.0, "key": f"file:{key}", "folder": str(tmp_path)}
    settings, keys = write_setup(
        tmp_path, victim, ["alice", "bob"], {"watermark": {**mark, "mode": mode}}
    )
    pipeline = build_pipeline(settings)
    rows = victim.x_test[:200]
    answer = table(victim_scores(victim.model, rows))
    tops = {
        who: np.asarray(_through(pipeline, keys[who], rows, answer)["outputs"]).argmax(axis=1)
        for who in ("alice", "bob")
    }
    store = FolderMarks(tmp_path)
    marked = {who: {r.input_sha256 for r in store.records("digits", [who])} for who in tops}
    assert marked["alice"]
    assert marked["bob"]
    if mode == "global":  # the same inputs marked, with the same keyed answers
        assert marked["alice"] == marked["bob"]
        assert (tops["alice"] == tops["bob"]).all()
    else:  # each principal its own keyed subset: a mark names whom it was given to
        assert marked["alice"] != marked["bob"]
