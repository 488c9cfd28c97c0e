"""What the gateway checks is exactly what the model server reads (the two-body bypass).

Differential tests: every body the gateway accepts is forwarded in its canonical
form, and the servers' own parsers read from that form exactly the rows the
gateway validated: MLflow's pyfunc scoring server (its real parser, when mlflow
installs), and reference parsers of the KServe v1 and v2 / Triton JSON formats
written from their specifications. A hypothesis fuzz test throws mixed, duplicated,
one-dimensional and ill-typed bodies at all of them.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.gateway.validation import ApiFormat, InputContract, InvalidRequest, parse_request

CONTRACT = InputContract(max_rows=16, max_body_bytes=100_000)


def mlflow_parser() -> Any:
    with warnings.catch_warnings():  # mlflow's import-time notes about its own type hints
        warnings.simplefilter("ignore")
        server = pytest.importorskip("mlflow.pyfunc.scoring_server")
    return server._parse_json_data


class Refused(Exception):
    """The reference server refuses the body."""


def kserve_v2_rows(doc: dict[str, Any]) -> np.ndarray:
    """The KServe v2 / Triton JSON request as the specification defines it."""
    tensors = doc["inputs"]
    if len(tensors) != 1:
        raise Refused("one input tensor")
    tensor = tensors[0]
    shape, datatype = tensor["shape"], tensor["datatype"]
    data = np.asarray(tensor["data"])  # flat, or nested row-major
    if data.size != math.prod(shape):
        raise Refused("element count")
    dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.get(datatype, np.int64)
    values = data.astype(dtype).reshape(shape)
    return values.reshape(shape[0], -1).astype(np.float64)


def kserve_v1_rows(doc: Any) -> np.ndarray:
    """KServe v1 / TF Serving row format: one instance per element of 'instances'; a bare
    array as TorchServe's base handler (``torch.as_tensor``) and BentoML's numpy input read it."""
    if isinstance(doc, list):
        return np.asarray(doc, dtype=np.float64)
    if list(doc) not in (["instances"], ["inputs"]):
        raise Refused("one of instances or inputs")
    return np.asarray(doc[next(iter(doc))], dtype=np.float64)


def mlflow_rows(body: bytes) -> np.ndarray:
    parsed = mlflow_parser()(body.decode(), None, None).data
    if hasattr(parsed, "to_numpy"):
        return np.asarray(parsed.to_numpy(), dtype=np.float64)
    return np.asarray(parsed, dtype=np.float64)


def servers_read(fmt: ApiFormat, forwarded: bytes) -> list[tuple[str, np.ndarray]]:
    doc = json.loads(forwarded)
    if fmt is ApiFormat.KSERVE:
        return [("kserve-v2", kserve_v2_rows(doc))]
    if isinstance(doc, list):
        return [("torchserve-bentoml", kserve_v1_rows(doc))]
    readings = [("mlflow", mlflow_rows(forwarded))]
    if fmt is ApiFormat.GENERIC:
        readings.append(("kserve-v1", kserve_v1_rows(doc)))
    return readings


def assert_same_reading(body: bytes, api: ApiFormat) -> bool:
    """Accepted bodies are read by every server as the rows the gateway checked."""
    try:
        parsed = parse_request(body, api, CONTRACT)
    except InvalidRequest:
        return False
    for server, rows in servers_read(parsed.format, parsed.body):
        assert rows.shape == parsed.rows.shape, (server, body, parsed.body)
        assert np.array_equal(rows, parsed.rows), (server, body, parsed.body)
    if parsed.format is not ApiFormat.KSERVE and isinstance(json.loads(body), dict):
        # the caller's own bytes, where MLflow accepts them, hold the same numbers too
        try:
            original = mlflow_rows(body)
        except Exception:  # noqa: BLE001 - MLflow refusing the original is fine
            return True
        if original.size == parsed.rows.size:
            assert np.array_equal(original.reshape(parsed.rows.shape), parsed.rows)
    return True


def test_the_two_body_bypass_is_refused() -> None:
    decoy = {"columns": ["a", "b"], "data": [[0.0, 0.0]]}
    payload = [[5.0, 5.0]] * 1000
    for body in (
        {"dataframe_split": decoy, "inputs": payload},
        {"dataframe_records": [{"a": 0, "b": 0}], "instances": payload},
        {"inputs": [[0.0, 0.0]], "instances": payload},
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0, 0]}],
         "instances": payload},
        {"inputs": [[0.0, 0.0]], "params": {"predict_fn": "x"}},
    ):  # fmt: skip
        raw = json.dumps(body).encode()
        for api in ApiFormat:
            with pytest.raises(InvalidRequest, match=r"exactly one|does not define"):
                parse_request(raw, api, CONTRACT)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"inputs": [[1, 2]], "inputs": [[1000, 2000]]}',  # duplicate keys: last one wins
        b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]], "data": [[3, 4]]}}',
        b'{"inputs": [1, 2, 3]}',  # one row as a flat array: forwarded as a table of one row
        b"[[1, 2], [3, 4.5]]",  # a bare array of rows (TorchServe, BentoML)
        b"[1, 2, 3]",
        b'{"instances": [[1e0, 2.50000000000000000001]]}',
        b'{"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}',
        b'{"inputs": [{"shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4e0]}]}',
        b'{"id": "r1", "inputs": [{"shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]}',
        b'{"inputs": [{"shape": [1, 2], "datatype": "FP32", "data": [0.1, 16777217]}]}',
    ],
)  # fmt: skip
def test_the_forwarded_body_is_read_as_the_checked_rows(raw: bytes) -> None:
    for api in ApiFormat:
        assert_same_reading(raw, api)
    parsed = parse_request(raw, ApiFormat.AUTO, CONTRACT)
    assert json.loads(parsed.body)  # canonical JSON, one key per name
    if raw.startswith(b'{"inputs": [[1, 2]]'):
        assert parsed.rows.tolist() == [[1000.0, 2000.0]]
        assert parsed.body == b'{"inputs":[[1000,2000]]}'


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": [[2**60, 1]]}, "2\\*\\*53"),
        ({"inputs": [{"shape": [1, 2], "datatype": "FP16", "data": [70000, 1]}]}, "range"),
        ({"inputs": [{"shape": [1, 2], "datatype": "UINT8", "data": [-1, 1]}]}, "range"),
        ({"inputs": [{"shape": [1, 2], "datatype": "FP32", "data": [1, 2],
                      "parameters": {"binary_data_size": 8}}]}, "does not define"),
        ({"inputs": [{"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
          "parameters": {"binary_data_output": True}}, "does not define"),
        ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, "distinct"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, "column per value"),
        ({"instances": [[1, 2]], "signature_name": "serving_default"}, "does not define"),
    ],
)  # fmt: skip
def test_bodies_a_server_would_read_otherwise_are_refused(doc: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_request(json.dumps(doc).encode(), ApiFormat.AUTO, CONTRACT)


# -- the fuzz test ------------------------------------------------------------------

_weird = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
number = st.one_of(st.integers(-20, 20), st.floats(-20, 20), _weird)
row = st.lists(number, max_size=3)
good_table = st.integers(1, 3).flatmap(
    lambda width: st.lists(
        st.lists(st.one_of(st.integers(-9, 9), st.floats(-9, 9)), min_size=width, max_size=width),
        min_size=1,
        max_size=3,
    )
)
table = st.one_of(good_table, good_table, st.lists(row, max_size=3), row, number)
columns = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)
good_tensor = good_table.flatmap(
    lambda rows: st.fixed_dictionaries(
        {
            "shape": st.just([len(rows), len(rows[0])]),
            "datatype": st.sampled_from(["FP32", "FP64", "INT64", "INT8"]),
            "data": st.just([v for r in rows for v in r]),
        },
        optional={"name": st.text(max_size=2)},
    )
)
tensor = st.one_of(
    good_tensor,
    st.fixed_dictionaries(
        {
            "shape": st.lists(st.integers(-1, 4), max_size=3),
            "datatype": st.sampled_from(["FP32", "FP16", "INT8", "UINT8", "BYTES"]),
            "data": table,
        },
        optional={"name": st.text(max_size=2), "parameters": st.just({"binary_data_size": 4})},
    ),
)
VALUES = {
    "inputs": st.one_of(
        good_table,
        table,
        st.lists(good_tensor, min_size=1, max_size=1),
        st.lists(tensor, min_size=1, max_size=2),
    ),
    "instances": table,
    "dataframe_split": st.one_of(
        good_table.flatmap(
            lambda rows: st.fixed_dictionaries(
                {"data": st.just(rows), "columns": st.just(list("abc")[: len(rows[0])])},
                optional={"index": st.just(list(range(len(rows))))},
            )
        ),
        st.fixed_dictionaries(
            {"data": table}, optional={"columns": columns, "index": st.lists(st.integers(0, 3))}
        ),
    ),
    "dataframe_records": st.lists(
        st.dictionaries(st.sampled_from(["a", "b"]), number, max_size=2), max_size=3
    ),
    "params": st.dictionaries(st.text(max_size=2), number, max_size=1),
    "id": st.text(max_size=3),
    "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=2)}), max_size=1),
    "signature_name": st.text(max_size=2),
}
keys = st.one_of(
    st.sampled_from(sorted(VALUES)).map(lambda k: [k]),  # one key: often accepted
    st.lists(st.sampled_from(sorted(VALUES)), min_size=2, max_size=3, unique=True),
)
bodies = st.one_of(
    keys.flatmap(lambda ks: st.fixed_dictionaries({k: VALUES[k] for k in ks})),
    table,  # bare arrays
    st.fixed_dictionaries(  # KServe v2 / Triton bodies, most of them well-formed
        {"inputs": st.lists(good_tensor, min_size=1, max_size=1)},
        optional={"id": st.text(max_size=3), "outputs": VALUES["outputs"]},
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, api=st.sampled_from(list(ApiFormat)))
def test_no_body_is_accepted_and_read_differently(body: Any, api: ApiFormat) -> None:
    mlflow_parser()  # skips without mlflow
    raw = json.dumps(body, allow_nan=True).encode()
    assert_same_reading(raw, api)


def test_the_fuzzer_reaches_accepted_bodies() -> None:
    """The strategy is not vacuous: a fair share of its bodies pass the gateway."""
    accepted = 0

    @settings(max_examples=200, deadline=None, database=None)
    @given(body=bodies)
    def count(body: Any) -> None:
        nonlocal accepted
        try:
            parse_request(json.dumps(body, allow_nan=True).encode(), ApiFormat.AUTO, CONTRACT)
            accepted += 1
        except InvalidRequest:
            pass

    count()
    assert accepted >= 10
