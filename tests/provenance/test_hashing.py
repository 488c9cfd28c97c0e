"""OMS manifest rules: names, order, ignored paths, symlinks, shards, flat streaming."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from donjon.errors import InputError
from donjon.provenance.hashing import HashOptions, build_manifest, hash_range
from tests.provenance.pki import make_model


def test_manifest_names_files_by_posix_path_and_skips_git(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    manifest = build_manifest(model)
    assert [i.name for i in manifest.items] == ["sub/config.json", "tokenizer.txt", "weights.bin"]
    weights = hashlib.sha256((model / "weights.bin").read_bytes()).hexdigest()
    assert manifest.digests()["weights.bin"] == weights
    root = hashlib.sha256(b"".join(bytes.fromhex(i.digest) for i in manifest.items)).hexdigest()
    assert manifest.subject_digest == root
    assert manifest.model_name == "m"


def test_order_follows_path_components_not_plain_strings(tmp_path: Path) -> None:
    # "a/b" < "a-c" by components (as model_signing sorts) but not as strings.
    (tmp_path / "m" / "a").mkdir(parents=True)
    (tmp_path / "m" / "a" / "b").write_text("1")
    (tmp_path / "m" / "a-c").write_text("2")
    names = [i.name for i in build_manifest(tmp_path / "m").items]
    assert names == ["a/b", "a-c"]


def test_ignore_paths_cover_folders_and_files(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    options = HashOptions(ignore_paths=("sub", "tokenizer.txt"))
    assert [i.name for i in build_manifest(model, options).items] == ["weights.bin"]
    assert options.serialization()["ignore_paths"][-2:] == ["sub", "tokenizer.txt"]
    with_git = build_manifest(model, HashOptions(ignore_git_paths=False))
    assert ".git/HEAD" in with_git.digests()


def test_symlinks_are_refused_unless_allowed(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    (model / "link.bin").symlink_to(model / "weights.bin")
    with pytest.raises(InputError, match=r"link\.bin is a symbolic link"):
        build_manifest(model)
    allowed = build_manifest(model, HashOptions(allow_symlinks=True)).digests()
    assert allowed["link.bin"] == allowed["weights.bin"]


def test_special_files_are_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    os.mkfifo(model / "pipe")
    with pytest.raises(InputError, match="not a regular file"):
        build_manifest(model)


def test_sockets_are_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(model / "sock"))
        with pytest.raises(InputError, match="not a regular file"):
            build_manifest(model)


def test_shards_split_big_files_and_hash_each_range(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", big=250_000)
    manifest = build_manifest(model, HashOptions(method="shards", shard_size=100_000, workers=3))
    data = (model / "weights.bin").read_bytes()
    shards = {k: v for k, v in manifest.digests().items() if k.startswith("weights.bin:")}
    assert sorted(shards) == [
        "weights.bin:0:100000",
        "weights.bin:100000:200000",
        "weights.bin:200000:250000",
    ]
    assert shards["weights.bin:200000:250000"] == hashlib.sha256(data[200_000:]).hexdigest()


def test_parallel_and_serial_hashing_agree(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    for n in range(20):
        (model / f"f{n}.txt").write_text(str(n) * n)
    serial = build_manifest(model, HashOptions(workers=1))
    parallel = build_manifest(model, HashOptions(workers=4))
    assert serial.items == parallel.items


def test_streaming_reads_larger_than_the_buffer(tmp_path: Path) -> None:
    path = tmp_path / "big"
    data = os.urandom(9 * 1024 * 1024 + 17)
    path.write_bytes(data)
    assert hash_range(path) == hashlib.sha256(data).hexdigest()
    assert hash_range(path, start=5, end=5_000_000) == hashlib.sha256(data[5:5_000_000]).hexdigest()


def test_blake3_is_an_option(tmp_path: Path) -> None:
    import blake3

    model = make_model(tmp_path / "m")
    manifest = build_manifest(model, HashOptions(algorithm="blake3"))
    expected = blake3.blake3((model / "weights.bin").read_bytes()).hexdigest()
    assert manifest.digests()["weights.bin"] == expected


def test_a_single_file_model_is_named_like_model_signing_names_it(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")
    manifest = build_manifest(path)
    assert [i.name for i in manifest.items] == ["."]


def test_memory_stays_flat_whatever_the_model_size(tmp_path: Path) -> None:
    import tracemalloc

    model = tmp_path / "m"
    model.mkdir()
    chunk = os.urandom(1024 * 1024)
    for n in range(4):
        with (model / f"shard-{n}").open("wb") as f:
            for _ in range(12):
                f.write(chunk)
    tracemalloc.start()
    try:
        build_manifest(model, HashOptions(workers=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 48 MiB hashed with two 256 KiB buffers: far below the model's size
    assert peak < 12 * 1024 * 1024, peak
