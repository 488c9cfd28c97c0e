"""The verdict depends on content, never on a file's name or first bytes alone."""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from donjon.core.severity import Severity
from donjon.scan import scan_file
from donjon.scan.samples import write_samples
from donjon.scan.samples_pickle import shell

NAMES = ["model", "model.pkl", "weights.txt", "README.md", "x.onnx", "saved_model.pb"]


class _Shell:
    """Pickled, never unpickled: ``__reduce__`` names os.system."""

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (shell(),))


def _worst(path: Path) -> Severity | None:
    report = scan_file(str(path))
    assert report.error is None
    return max((f.level for f in report.findings), default=None)


def _flagged(path: Path) -> bool:
    worst = _worst(path)
    return worst is not None and worst >= Severity.MEDIUM


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_samples(tmp_path_factory.mktemp("samples"))


@pytest.mark.parametrize("name", ["model", "data.json", "notes.md"])
def test_every_sample_gets_the_same_verdict_under_any_name(
    samples: dict[str, list[Path]], tmp_path: Path, name: str
) -> None:
    wrong: list[str] = []
    for kind, paths in samples.items():
        for path in paths:
            renamed = tmp_path / name
            shutil.copyfile(path, renamed)
            if _flagged(renamed) != (kind == "malicious"):
                wrong.append(f"{kind}/{path.name}")
    assert wrong == []


@pytest.mark.parametrize("protocol", range(6))
@pytest.mark.parametrize("name", NAMES)
def test_pickles_of_every_protocol_are_found_whatever_their_name(
    tmp_path: Path, protocol: int, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"run": _Shell()}, protocol=protocol))
    assert _worst(path) is Severity.CRITICAL


def test_a_pickle_without_proto_opcode_and_a_truncated_one_are_found(tmp_path: Path) -> None:
    body = pickle.dumps(_Shell(), protocol=2)[2:]  # no PROTO: pickle.load still runs it
    (tmp_path / "a").write_bytes(body)
    (tmp_path / "b").write_bytes(pickle.dumps(_Shell(), protocol=0)[:-1])  # no STOP
    assert _worst(tmp_path / "a") is Severity.CRITICAL
    assert _worst(tmp_path / "b") is Severity.CRITICAL


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_legacy_torch_save_is_read_stream_by_stream(tmp_path: Path, protocol: int) -> None:
    bad, good = io.BytesIO(), io.BytesIO()
    options = {"_use_new_zipfile_serialization": False, "pickle_protocol": protocol}
    torch.save({"w": torch.zeros(2), "hook": _Shell()}, bad, **options)  # type: ignore[arg-type]
    torch.save({"w": torch.zeros(2)}, good, **options)  # type: ignore[arg-type]
    (tmp_path / "bad").write_bytes(bad.getvalue())
    (tmp_path / "good").write_bytes(good.getvalue())
    assert _worst(tmp_path / "bad") is Severity.CRITICAL
    assert _worst(tmp_path / "good") is None


def test_a_payload_in_the_storage_keys_pickle_of_a_legacy_file(tmp_path: Path) -> None:
    good = io.BytesIO()
    torch.save({"w": 1}, good, _use_new_zipfile_serialization=False, pickle_protocol=0)
    streams = pickle.dumps(0x1950A86A20F9469CFC6C, 0) + pickle.dumps(1001, 0)
    streams += pickle.dumps({"little_endian": True}, 0) + pickle.dumps({"w": 1}, 0)
    streams += pickle.dumps(_Shell(), 0)  # torch reads the fifth pickle as storage keys
    (tmp_path / "keys").write_bytes(streams)
    assert _worst(tmp_path / "keys") is Severity.CRITICAL


def test_text_and_data_only_pickles_are_not_taken_for_code(tmp_path: Path) -> None:
    texts = {
        "rst": b"CMAKE_COMMAND\n-------------\n\nThe full path.\n",
        "top_level": b"isympy\nsympy\n",
        "notes": b"No way out.\nThis is (not) a pickle.\n",
        "data": pickle.dumps([1, 2.5, "x", {"a": (1, 2)}], protocol=0),
    }
    for name, data in texts.items():
        (tmp_path / name).write_bytes(data)
        assert _worst(tmp_path / name) is None, name


def test_npy_headers_are_literals_in_any_key_order_and_quoting(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([1, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "fields.npy", np.zeros(2, dtype=[("Obj", "<f8"), ("b", "<i4")]))
    np.save(tmp_path / "fobj.npy", np.zeros(2, dtype=[("a", "<f8"), ("b", "O")]), allow_pickle=True)
    header = b"{'shape': (1,), \"fortran_order\": False, 'descr' : \"|O\"}"
    header += b" " * (63 - len(header) % 64) + b"\n"
    reordered = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    (tmp_path / "reordered").write_bytes(reordered + pickle.dumps([_Shell()], protocol=2))
    rules = {p: {f.rule.id for f in scan_file(str(tmp_path / p)).findings} for p in
             ("obj.npy", "fields.npy", "fobj.npy", "reordered")}  # fmt: skip
    assert rules["obj.npy"] == {"DJ-PKL-007"}
    assert rules["fields.npy"] == set()
    assert rules["fobj.npy"] == {"DJ-PKL-007"}
    assert {"DJ-PKL-007", "DJ-PKL-001"} <= rules["reordered"]


@pytest.mark.parametrize("codec", ["zlib", "gzip", "bz2", "lzma", "xz", "lz4"])
def test_compressed_joblib_of_every_codec(tmp_path: Path, codec: str) -> None:
    joblib.dump({"a": np.arange(50_000)}, tmp_path / "good", compress=(codec, 3))
    joblib.dump({"a": np.arange(10), "e": _Shell()}, tmp_path / "bad", compress=(codec, 3))
    assert _worst(tmp_path / "good") is None
    assert _worst(tmp_path / "bad") is Severity.CRITICAL


def test_lz4_frames_decode_like_the_reference_library() -> None:
    import lz4.frame

    from donjon.scan.lz4frame import Lz4FrameDecompressor

    data = b"".join(bytes([i % 7]) * (i % 300) + os.urandom(i % 5) for i in range(3000))
    for options in ({}, {"block_linked": False}, {"content_checksum": True}):
        packed = lz4.frame.compress(data, **options)
        decoder = Lz4FrameDecompressor()
        chunks = [packed[i : i + 4096] for i in range(0, len(packed), 4096)]
        assert b"".join(decoder.decompress(chunk) for chunk in chunks) == data
        assert decoder.eof
