"""Hostile and random input never crashes the scanner and never passes silently."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.core import Severity
from donjon.scan import rules, scan_file
from donjon.scan.pickle_vm import PickleVM, Reader
from donjon.scan.policy import DEFAULT_POLICY, ScanPolicy
from donjon.scan.samples import gguf, onnx_model, torch_zip
from donjon.scan.samples_pickle import call, glob0, p2

_BENIGN = pickle.dumps({"a": [1, 2.5, "x", b"y"], "b": (None, True)}, protocol=4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_interpreter(data: bytes) -> None:
    PickleVM(ScanPolicy(max_opcodes=10_000)).run(Reader(io.BytesIO(data)))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_BENIGN) - 1), st.integers(0, 255))
def test_mutated_pickles_never_crash(position: int, value: int) -> None:
    data = bytearray(_BENIGN)
    data[position] = value
    PickleVM(DEFAULT_POLICY).run(Reader(io.BytesIO(bytes(data))))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(0, 400), st.integers(0, 255))
def test_mutated_torch_zips_never_crash(tmp_path: Path, position: int, value: int) -> None:
    data = bytearray(torch_zip(p2(call(glob0("os", "system"), "id"))))
    data[position % len(data)] = value
    target = tmp_path / "m.pt"
    target.write_bytes(bytes(data))
    report = scan_file(str(target))
    assert report.error is None


def test_truncated_gguf_is_a_finding(tmp_path: Path) -> None:
    target = tmp_path / "m.gguf"
    target.write_bytes(gguf("{{ messages }}")[:40])
    (finding,) = scan_file(str(target)).findings
    assert finding.rule is rules.GGF_MALFORMED


def test_garbage_onnx_is_a_finding(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"\xff\xff\xff\xff")
    assert [f.rule for f in scan_file(str(target)).findings] == [rules.ONX_MALFORMED]


def test_onnx_external_data_inside_the_folder_is_clean(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones(4096, dtype=np.float32), "w")
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4096])],
        [weight],
    )
    model = helper.make_model(graph)
    target = tmp_path / "ext.onnx"
    onnx.save_model(model, str(target), save_as_external_data=True, location="ext.data")
    assert scan_file(str(target)).findings == ()
    escape = tmp_path / "escape.onnx"
    escape.write_bytes(onnx_model(["sub/../../outside.bin"], []))
    assert [f.rule for f in scan_file(str(escape)).findings] == [rules.ONX_EXTERNAL]


def test_an_unreadable_file_is_an_error_not_a_pass(tmp_path: Path) -> None:
    import os

    target = tmp_path / "locked.pkl"
    target.write_bytes(_BENIGN)
    target.chmod(0)
    try:
        report = scan_file(str(target))
    finally:
        target.chmod(0o600)
    if os.geteuid() == 0:  # root reads anything: then the file is simply clean
        assert report.error is None
    else:
        assert report.error is not None


def test_zip_member_count_bound_is_a_finding(tmp_path: Path) -> None:
    target = tmp_path / "many.zip"
    with zipfile.ZipFile(target, "w") as z:
        for i in range(30):
            z.writestr(f"f{i}.txt", "x")
    from donjon.scan.engine import scan_file as scan

    report = scan(str(target), ScanPolicy(max_members=10))
    assert rules.ARC_MALFORMED in {f.rule for f in report.findings}
    assert report.max_severity is Severity.MEDIUM


def test_time_budget_is_a_finding(tmp_path: Path) -> None:
    target = tmp_path / "long.pkl"
    target.write_bytes(b"\x80\x04]" + b"N0" * 200_000 + b".")
    report = scan_file(str(target), ScanPolicy(max_seconds=0.0))
    assert {f.rule for f in report.findings} & {rules.PKL_BOUND, rules.SCN_BUDGET}


def test_hugging_face_cache_layout_is_scanned_per_file(tmp_path: Path) -> None:
    from donjon.scan import scan_path

    repo = tmp_path / "models--org--name"
    blobs, snap = repo / "blobs", repo / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / "1f2e").write_bytes(p2(call(glob0("os", "system"), "id")))
    (blobs / "9a9a").write_bytes(b'{"hidden_size": 8}')
    (snap / "pytorch_model.bin").symlink_to(blobs / "1f2e")
    (snap / "config.json").symlink_to(blobs / "9a9a")
    (snap / "escape.bin").symlink_to("/etc/hostname")
    report = scan_path(tmp_path, workers=1)
    names = sorted(Path(r.path).name for r in report.files)
    assert names == ["config.json", "pytorch_model.bin"]
    flagged = {Path(r.path).name for r in report.files if r.findings}
    assert flagged == {"pytorch_model.bin"}


def test_a_member_that_inflates_past_its_declared_size_is_a_bomb(tmp_path: Path) -> None:
    import struct as st

    target = tmp_path / "liar.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02]" + b"N0" * (2 << 20) + b".")
        z.writestr("archive/version", "3\n")
    data = bytearray(target.read_bytes())
    central = data.find(b"PK\x01\x02")
    st.pack_into("<I", data, central + 24, 100)  # declared uncompressed size: 100 bytes
    target.write_bytes(bytes(data))
    report = scan_file(str(target))
    assert rules.ARC_BOMB in {f.rule for f in report.findings}


def test_text_files_are_not_mistaken_for_code_formats(tmp_path: Path) -> None:
    for name, text in (
        ("vocab.txt", "[PAD]\n[UNK]\nI\n"),
        ("notes.md", "x^2 is a square\n"),
        ("merges.txt", "#version: 0.2\nc a\nt s\n"),
        ("tokenizer.json", '{"model": {"type": "BPE"}}'),
    ):
        target = tmp_path / name
        target.write_text(text)
        assert scan_file(str(target)).findings == (), name


def test_compressed_tar_members_are_scanned(tmp_path: Path) -> None:
    import tarfile

    evil = p2(call(glob0("os", "system"), "id"))
    target = tmp_path / "bundle.tar.gz"
    with tarfile.open(target, "w:gz") as tar:
        info = tarfile.TarInfo("model/data.pkl")
        info.size = len(evil)
        tar.addfile(info, io.BytesIO(evil))
    report = scan_file(str(target))
    assert report.format == "gzip"
    found = [f for f in report.findings if f.rule is rules.PKL_DANGEROUS]
    assert found
    assert found[0].location.member == "model/data.pkl"
