"""Manifests: Merkle roots over files and records, streamed; the record table is checked."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from donjon.data.manifest import build_manifest, load_manifest, read_records
from donjon.data.merkle import MerkleAccumulator, leaf_hash, node_hash
from donjon.data.tabular import encode_rows, read_npz
from donjon.errors import DataError, InputError


def rfc6962_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return node_hash(rfc6962_root(leaves[:split]), rfc6962_root(leaves[split:]))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 4095, 4096, 4097, 8195])
def test_merkle_root_matches_rfc6962_whatever_the_batching(n: int) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(n)]
    acc = MerkleAccumulator()
    for start in range(0, n, 777):
        acc.extend(leaves[start : start + 777])
    assert acc.root() == rfc6962_root(leaves)


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    df["name"] = [f"r{i}" for i in range(n)]
    df["label"] = rng.integers(0, 3, n)
    return df


def test_parquet_and_csv_manifests_are_stable_and_batch_independent(tmp_path: Path) -> None:
    df = frame()
    df.to_parquet(tmp_path / "d.parquet", row_group_size=64)
    first = build_manifest(tmp_path / "d.parquet", tmp_path / "one.json", label_column="label")
    again = build_manifest(tmp_path / "d.parquet", tmp_path / "two.json", label_column="label")
    assert first.root == again.root
    assert first.count == 300
    table = read_records(load_manifest(tmp_path / "one.json"))
    assert table.num_rows == 300
    assert table.column("label").to_pylist()[:3] == [str(v) for v in df.label[:3]]
    document = json.loads((tmp_path / "one.json").read_text())
    assert document["format"] == "donjon.data.manifest/v1"
    assert document["source"] == "d.parquet"
    df.loc[17, "b"] = 0.5
    df.to_parquet(tmp_path / "e.parquet")
    changed = build_manifest(tmp_path / "e.parquet", tmp_path / "three.json", label_column="label")
    assert changed.root != first.root


def test_canonical_encoding_normalises_zero_and_nan() -> None:
    a = pd.DataFrame({"x": [0.0, float("nan")]})
    b = pd.DataFrame({"x": [-0.0, float("-nan")]})
    import pyarrow as pa

    ea = encode_rows(pa.Table.from_pandas(a), ["x"])
    eb = encode_rows(pa.Table.from_pandas(b), ["x"])
    assert (ea == eb).all()


def test_editing_the_record_table_is_detected(tmp_path: Path) -> None:
    frame().to_csv(tmp_path / "d.csv", index=False)
    build_manifest(tmp_path / "d.csv", tmp_path / "m.json", label_column="label")
    records = tmp_path / "m.records.parquet"
    raw = bytearray(records.read_bytes())
    raw[200] ^= 0xFF
    records.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match"):
        read_records(load_manifest(tmp_path / "m.json"))


def test_folder_manifest_hashes_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "a.png").write_bytes(b"\x89PNG one")
    (folder / "b.txt").write_text("two")
    manifest = build_manifest(folder, tmp_path / "m.json")
    assert manifest.kind == "files"
    assert [f.path for f in manifest.files] == ["b.txt", "cats/a.png"]
    assert manifest.files[0].digest == "sha256:" + hashlib.sha256(b"two").hexdigest()


def test_manifest_never_overwrites_and_checks_columns(tmp_path: Path) -> None:
    frame().to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(InputError, match="already exists"):
        build_manifest(tmp_path / "d.csv", tmp_path / "m.json")
    assert (tmp_path / "m.json").read_text() == "{}"
    with pytest.raises(InputError, match="label column 'nope'"):
        build_manifest(tmp_path / "d.csv", tmp_path / "n.json", label_column="nope")
    assert not (tmp_path / "n.records.parquet").exists()


def _npz_with_object_array(path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", buffer.getvalue())


def test_npz_object_arrays_are_refused_never_unpickled(tmp_path: Path) -> None:
    _npz_with_object_array(tmp_path / "evil.npz")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        read_npz(tmp_path / "evil.npz")


def test_npz_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", X=rng.integers(0, 16, (50, 8, 8)), y=rng.integers(0, 10, 50))
    manifest = build_manifest(tmp_path / "d.npz", tmp_path / "m.json", label_column="y")
    assert manifest.count == 50
    assert len(manifest.schema) == 65


def test_in_memory_arrays_manifest_like_their_npz(tmp_path: Path) -> None:
    from donjon.data.manifest import manifest_arrays

    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 4, 4)), rng.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    from_file = build_manifest(tmp_path / "d.npz", tmp_path / "m.json", label_column="y")
    in_memory = manifest_arrays(X, y, tmp_path / "arrays.records.parquet")
    assert in_memory.root == from_file.root
    assert in_memory.label_column == "y"


def test_parquet_streaming_keeps_memory_bounded(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from donjon.data.tabular import open_batches

    rng = np.random.default_rng(0)
    table = pa.table({f"c{j}": rng.normal(size=200_000) for j in range(20)})
    pq.write_table(table, tmp_path / "big.parquet", row_group_size=10_000)
    size = table.nbytes
    del table
    start = pa.total_allocated_bytes()
    peak = 0
    for _batch in open_batches(tmp_path / "big.parquet", batch_rows=4096).batches:
        peak = max(peak, pa.total_allocated_bytes() - start)
    assert peak < size / 4, f"streaming held {peak} of {size} bytes"
