"""Request validation and output hardening for the three JSON API shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from donjon.gateway.hardening import BadUpstreamResponse, Hardening, harden
from donjon.gateway.outputs import ResponseReader
from donjon.gateway.validation import ApiFormat, InputContract, InvalidRequest, parse_request

CONTRACT = InputContract(features=3, min_value=0, max_value=16, max_rows=4, max_body_bytes=2000)


def parse(doc: object, fmt: ApiFormat = ApiFormat.AUTO) -> np.ndarray:
    return parse_request(json.dumps(doc).encode(), fmt, CONTRACT).rows


def test_generic_kserve_and_mlflow_bodies_give_the_same_rows() -> None:
    rows = [[1, 2, 3], [4, 5, 6]]
    generic = parse({"inputs": rows})
    kserve = parse(
        {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    )
    split = parse({"dataframe_split": {"columns": ["a", "b", "c"], "data": rows}})
    records = parse({"dataframe_records": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": 5, "c": 6}]})
    instances = parse({"instances": rows}, ApiFormat.MLFLOW)
    for got in (generic, kserve, split, records, instances):
        assert got.tolist() == rows
    assert parse({"inputs": [1, 2, 3]}).shape == (1, 3)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": [[1, 2]]}, "expected 3"),
        ({"inputs": [[1, 2, 17]]}, "above the maximum"),
        ({"inputs": [[1, 2, -1]]}, "below the minimum"),
        ({"inputs": [[1, 2, "3"]]}, "non-number"),
        ({"inputs": [[1, 2, True]]}, "non-number"),
        ({"inputs": [[1, 2, 3], [1, 2]]}, "rectangular"),
        ({"inputs": [[1, 2, 3]] * 5}, "exceed the limit"),
        ({"inputs": []}, "non-empty"),
        ({"x": 1}, "needs an 'inputs'"),
        ("x", "JSON object"),
        ({"inputs": [{"shape": [1, 3], "datatype": "BYTES", "data": [1, 2, 3]}]}, "datatype"),
        ({"inputs": [{"shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, "shape"),
        ({"inputs": [{"shape": [1, 3], "datatype": "INT32", "data": [1, 2.5, 3]}]}, "integer"),
        ({"dataframe_records": [{"a": 1}, {"b": 2}]}, "same columns"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(doc: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse(doc)


def test_nan_size_and_syntax_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="NaN"):
        parse_request(b'{"inputs": [[1, NaN, 3]]}', ApiFormat.AUTO, CONTRACT)
    with pytest.raises(InvalidRequest, match="exceeds"):
        parse_request(b" " * 2001, ApiFormat.AUTO, CONTRACT)
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_request(b"{", ApiFormat.AUTO, CONTRACT)
    with pytest.raises(InvalidRequest, match="integers"):
        parse_request(
            b'{"inputs": [[1, 2.5, 3]]}', ApiFormat.AUTO, InputContract(features=3, integer=True)
        )


def read_outputs(body: bytes, _fmt: ApiFormat) -> object:
    return ResponseReader("m").read(body)


def test_hardening_top_k_rounding_and_label_only_keep_the_api_shape() -> None:
    scores = [[0.1234, 0.6, 0.2766], [0.5, 0.25, 0.25]]
    generic = read_outputs(json.dumps({"outputs": scores}).encode(), ApiFormat.GENERIC)
    assert generic.labels.tolist() == [1, 0]
    top = json.loads(harden(generic, Hardening(top_k=1, decimals=1)) or b"")
    assert top["outputs"] == [[0.0, 0.6, 0.0], [0.5, 0.0, 0.0]]
    kserve_body = {
        "outputs": [
            {
                "name": "p",
                "shape": [2, 3],
                "datatype": "FP64",
                "data": [v for row in scores for v in row],
            }
        ]
    }
    kserve = read_outputs(json.dumps(kserve_body).encode(), ApiFormat.KSERVE)
    labels = json.loads(harden(kserve, Hardening(label_only=True)) or b"")["outputs"][0]
    assert labels == {"name": "p", "shape": [2], "datatype": "INT64", "data": [1, 0]}
    mlflow = read_outputs(json.dumps({"predictions": scores}).encode(), ApiFormat.MLFLOW)
    rounded = json.loads(harden(mlflow, Hardening(decimals=0)) or b"")
    assert rounded == {"predictions": [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]}
    assert harden(generic, Hardening()) is None
    with pytest.raises(BadUpstreamResponse):
        read_outputs(b'{"nothing": "here"}', ApiFormat.GENERIC)


def test_answers_the_fast_reader_refuses_are_read_as_the_standard_library_reads_them() -> None:
    """Labels beyond 64 bits and NaN scores: read (or refused) as ``json`` would."""
    huge = 2**70
    labels = read_outputs(json.dumps({"labels": [huge, 3]}).encode(), ApiFormat.GENERIC)
    assert labels.labels[1] == 3
    assert labels.labels[0] != 3  # a stable id of its own, not a wrapped integer
    with pytest.raises(BadUpstreamResponse, match="NaN"):
        read_outputs(b'{"probabilities": [[0.5, NaN]]}', ApiFormat.GENERIC)
    with pytest.raises(BadUpstreamResponse, match="not JSON"):
        read_outputs(b'{"probabilities": [[0.5, 0.5]]', ApiFormat.GENERIC)
