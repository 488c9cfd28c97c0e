"""Poisoning benchmark: Donjon's detectors against cleanlab alone and IBM ART's defences.

Corpora are built in code from scikit-learn's bundled data sets (no download): the
75 % training split of digits, breast cancer and wine, poisoned with

- random label flips at 5 / 10 / 20 % of records;
- a targeted (class-conditional) flip: 20 / 30 / 40 % of one class relabelled as another
  (digits 1->7, others 0->1);
- a BadNets trigger (2x2 patch of 16s in the bottom-right corner, label set to 0) on
  1 / 5 / 10 % of the digits records;
- a tabular feature trigger on the continuous sets (breast cancer, wine): two features
  set to fixed in-range values (their 90th percentiles, nothing an outlier test sees),
  label set to the first class, on 5 / 10 % of the records;
- near-duplicate injection: 10 records copied 5 times each with 2 % noise;
- nothing (the clean control).

For each scenario it prints precision, recall and F1 of the flagged records for:
Donjon (``donjon.data.checks``, every detector, no poison rate given); cleanlab alone
(``find_label_issues`` on cross-validated probabilities of a small MLP); ART 1.20.1
SpectralSignatureDefense with its default expected poison rate and when told the true
rate; ART ActivationDefence. The ART defences need a neural network: a small PyTorch MLP
trained on the poisoned data, wrapped in ART's ``PyTorchClassifier``. A peer that crashes
is reported as such.

Then the scale part: manifesting a large Parquet file in one pass (peak RSS of the child
process), and diffing two 1M-row versions; pandas' non-cryptographic row hashing is the
peer for the hashing speed.

    python benchmarks/poison_bench.py                   # detection + a 1M-row manifest
    python benchmarks/poison_bench.py --manifest-rows 10000000
    python benchmarks/poison_bench.py --only detection  # or: scale
    python benchmarks/poison_bench.py --only detection --methods donjon,cleanlab
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.model_selection import train_test_split

Scenario = tuple[np.ndarray, np.ndarray, np.ndarray]  # X, y, poisoned mask


# -- corpora ---------------------------------------------------------------------------


def base(name: str) -> tuple[np.ndarray, np.ndarray]:
    loader = {"digits": load_digits, "breast_cancer": load_breast_cancer, "wine": load_wine}
    X, y = loader[name](return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    return X_train.astype(float), y_train.astype(int)


def random_flips(X: np.ndarray, y: np.ndarray, rate: float, rng: np.random.Generator) -> Scenario:
    labels = y.copy()
    rows = rng.choice(len(y), round(rate * len(y)), replace=False)
    classes = np.unique(y)
    for row in rows:
        labels[row] = rng.choice(classes[classes != y[row]])
    mask = np.zeros(len(y), dtype=bool)
    mask[rows] = True
    return X, labels, mask


def targeted(
    X: np.ndarray, y: np.ndarray, src: int, dst: int, share: float, rng: np.random.Generator
) -> Scenario:
    labels = y.copy()
    pool = np.flatnonzero(y == src)
    rows = rng.choice(pool, round(share * len(pool)), replace=False)
    labels[rows] = dst
    mask = np.zeros(len(y), dtype=bool)
    mask[rows] = True
    return X, labels, mask


def badnets(X: np.ndarray, y: np.ndarray, rate: float, rng: np.random.Generator) -> Scenario:
    images, labels = X.reshape(-1, 8, 8).copy(), y.copy()
    rows = rng.choice(np.flatnonzero(y != 0), round(rate * len(y)), replace=False)
    images[rows, 6:, 6:] = 16.0
    labels[rows] = 0
    mask = np.zeros(len(y), dtype=bool)
    mask[rows] = True
    return images.reshape(len(y), -1), labels, mask


def feature_trigger(
    X: np.ndarray, y: np.ndarray, rate: float, rng: np.random.Generator
) -> Scenario:
    """Two features stamped with fixed in-range values, relabelled to class 0."""
    table, labels = X.copy(), y.copy()
    features = rng.choice(X.shape[1], 2, replace=False)
    rows = rng.choice(np.flatnonzero(y != 0), round(rate * len(y)), replace=False)
    for j in features:
        table[rows, j] = np.percentile(X[:, j], 90)
    labels[rows] = 0
    mask = np.zeros(len(y), dtype=bool)
    mask[rows] = True
    return table, labels, mask


def near_duplicates(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Scenario:
    sources = rng.choice(len(y), 10, replace=False)
    scale = X.std(axis=0)
    copies = np.array(
        [X[s] + rng.normal(0, 0.02, X.shape[1]) * scale for s in sources for _ in range(5)]
    )
    X2 = np.vstack([X, copies])
    y2 = np.concatenate([y, np.repeat(y[sources], 5)])
    mask = np.zeros(len(y2), dtype=bool)
    mask[len(y) :] = True
    order = rng.permutation(len(y2))
    return X2[order], y2[order], mask[order]


def scenarios(name: str, seed: int) -> dict[str, Scenario]:
    X, y = base(name)
    rng = np.random.default_rng(seed)
    out: dict[str, Scenario] = {"clean": (X, y, np.zeros(len(y), dtype=bool))}
    for rate in (0.05, 0.10, 0.20):
        out[f"random flips {rate:.0%}"] = random_flips(X, y, rate, rng)
    src, dst = (1, 7) if name == "digits" else (0, 1)
    for share in (0.20, 0.30, 0.40):
        out[f"targeted {src}->{dst} {share:.0%}"] = targeted(X, y, src, dst, share, rng)
    if name == "digits":
        for rate in (0.01, 0.05, 0.10):
            out[f"BadNets {rate:.0%}"] = badnets(X, y, rate, rng)
    else:
        for rate in (0.05, 0.10):
            out[f"feature trigger {rate:.0%}"] = feature_trigger(X, y, rate, rng)
    out["near-duplicates"] = near_duplicates(X, y, rng)
    return out


# -- methods ---------------------------------------------------------------------------


def donjon(X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from donjon.data.checks import check

    report = check(X, y)
    flagged = np.zeros(len(y), dtype=bool)
    flagged[report.flagged_rows] = True
    return flagged


def _mlp_probs(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.model_selection import cross_val_predict
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=500, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(cross_val_predict(model, X, y, cv=5, method="predict_proba"))


def cleanlab_alone(X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    return np.asarray(find_label_issues(y, _mlp_probs(X, y)))


_TRAINED: dict[tuple[int, int], object] = {}


def _art_classifier(X: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
    """A small MLP trained on the poisoned data, shared by the ART defences of a scenario."""
    import torch
    from art.estimators.classification import PyTorchClassifier

    key = (hash(X.tobytes()), hash(y.tobytes()))
    if key in _TRAINED:
        return _TRAINED[key]
    _TRAINED.clear()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    k = int(y.max()) + 1
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, k)
    )
    classifier = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        input_shape=(X.shape[1],),
        nb_classes=k,
        device_type="cpu",
    )
    classifier.fit(X.astype(np.float32), np.eye(k)[y], batch_size=64, nb_epochs=40, verbose=False)
    _TRAINED[key] = classifier
    return classifier


def _standardise(X: np.ndarray) -> np.ndarray:
    return ((X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)).astype(np.float32)


def art_spectral(told: bool) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def run(X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from art.defences.detector.poison import SpectralSignatureDefense

        Xs = _standardise(X)
        k = int(y.max()) + 1
        rate = max(float(mask.mean()), 0.01) if told else 0.33
        defence = SpectralSignatureDefense(
            _art_classifier(Xs, y), Xs, np.eye(k)[y], expected_pp_poison=rate
        )
        _, is_clean = defence.detect_poison()
        return np.asarray(is_clean) == 0

    return run


def art_activation(X: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from art.defences.detector.poison import ActivationDefence

    Xs = _standardise(X)
    k = int(y.max()) + 1
    defence = ActivationDefence(_art_classifier(Xs, y), Xs, np.eye(k)[y])
    _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
    return np.asarray(is_clean) == 0


METHODS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "donjon": donjon,
    "cleanlab": cleanlab_alone,
    "ART spectral": art_spectral(told=False),
    "ART spectral (told rate)": art_spectral(told=True),
    "ART activation": art_activation,
}


def score(flagged: np.ndarray, mask: np.ndarray) -> tuple[float, float, float, int]:
    hits = int((flagged & mask).sum())
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(mask.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, int(flagged.sum())


def detection(datasets: list[str], seed: int, methods: list[str]) -> None:
    print(f"\n## Detection (seed {seed}; flagged per 1000 on clean = false positives)\n")
    print("| data set | scenario | poisoned | method | flagged | precision | recall | F1 | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in datasets:
        for scenario, (X, y, mask) in scenarios(name, seed).items():
            for method in methods:
                run = METHODS[method]
                start = time.perf_counter()
                try:
                    flagged = run(X, y, mask)
                except Exception as e:  # noqa: BLE001 - a crashing peer is a result
                    cell = f"crashed: {type(e).__name__}: {str(e)[:60]}"
                    print(f"| {name} | {scenario} | {int(mask.sum())} | {method} | {cell} |||||")
                    continue
                elapsed = time.perf_counter() - start
                p, r, f1, count = score(flagged, mask)
                if not mask.any():
                    shown = f"{count} ({1000 * count / len(y):.1f}/1000)"
                    cells = f"{shown} | - | - | - | {elapsed:.1f}"
                    print(f"| {name} | {scenario} | 0 | {method} | {cells} |")
                else:
                    print(
                        f"| {name} | {scenario} | {int(mask.sum())} | {method} | {count} | "
                        f"{p:.2f} | {r:.2f} | {f1:.2f} | {elapsed:.1f} |"
                    )
            sys.stdout.flush()


# -- scale -----------------------------------------------------------------------------


def write_parquet(path: Path, rows: int, columns: int, seed: int, chunk: int = 500_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = [f"f{j}" for j in range(columns - 1)] + ["label"]
    schema = pa.schema([(n, pa.float64()) for n in names[:-1]] + [("label", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            cols = [pa.array(rng.normal(size=n)) for _ in range(columns - 1)]
            cols.append(pa.array(rng.integers(0, 10, n)))
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=100_000)


CHILD = """
import sys, time, resource
from pathlib import Path
def peak_mib():
    # VmHWM: this address space's peak RSS (ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

from donjon.data.manifest import build_manifest
start = time.perf_counter()
m = build_manifest(Path(sys.argv[1]), Path(sys.argv[2]), label_column="label")
elapsed = time.perf_counter() - start
print(m.count, elapsed, peak_mib())
"""

PEER = """
import sys, time, resource
import pandas as pd, pyarrow.parquet as pq
def peak_mib():
    # VmHWM: this address space's peak RSS (ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

start = time.perf_counter(); n = 0
parquet = pq.ParquetFile(sys.argv[1], pre_buffer=False, buffer_size=1 << 20)
for batch in parquet.iter_batches(batch_size=65536):
    n += len(pd.util.hash_pandas_object(batch.to_pandas(), index=False))
elapsed = time.perf_counter() - start
print(n, elapsed, peak_mib())
"""


def _child(code: str, *args: str) -> tuple[int, float, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    count, elapsed, rss_mib = done.stdout.split()
    return int(count), float(elapsed), float(rss_mib)


def scale(manifest_rows: int, diff_rows: int, seed: int) -> None:
    from donjon.data.diffs import diff
    from donjon.data.manifest import build_manifest

    print("\n## Scale\n")
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        work = Path(tmp)
        big = work / "big.parquet"
        write_parquet(big, manifest_rows, 50, seed)
        size = big.stat().st_size / 2**30
        count, elapsed, rss = _child(CHILD, str(big), str(work / "big.json"))
        peer_count, peer_elapsed, peer_rss = _child(PEER, str(big))
        print("| task | rows | tool | seconds | rows/s | peak RSS MiB |")
        print("|---|---|---|---|---|---|")
        print(
            f"| manifest {size:.1f} GiB Parquet, 50 cols (Merkle, BLAKE2b rows) | {count} | "
            f"donjon | {elapsed:.1f} | {count / elapsed:,.0f} | {rss:.0f} |"
        )
        print(
            f"| row hashing only (pandas hash_pandas_object, not cryptographic) | {peer_count} | "
            f"pandas | {peer_elapsed:.1f} | {peer_count / peer_elapsed:,.0f} | {peer_rss:.0f} |"
        )
        print(f"\nratio donjon / pandas time: {elapsed / peer_elapsed:.2f}")
        big.unlink()
        old, new = work / "v1.parquet", work / "v2.parquet"
        write_parquet(old, diff_rows, 10, seed)
        _edit_version(old, new, seed)
        start = time.perf_counter()
        report = diff(old, new, label_column="label")
        from_data = time.perf_counter() - start
        build_manifest(old, work / "v1.json", label_column="label")
        build_manifest(new, work / "v2.json", label_column="label")
        start = time.perf_counter()
        again = diff(work / "v1.json", work / "v2.json", verify=False)
        from_manifests = time.perf_counter() - start
        r = again.records
        print(
            f"\n| diff {diff_rows} rows x 10 cols | seconds |\n|---|---|\n"
            f"| two data files (hash both, then match) | {from_data:.1f} |\n"
            f"| two manifests (match record tables) | {from_manifests:.1f} |\n"
        )
        print(
            f"diff found: {len(r.added)} added, {len(r.removed)} removed, "
            f"{len(r.relabelled)} relabelled, {r.unchanged} unchanged "
            f"(expected 1000 / 1000 / 1000; "
            f"same from data: {report.records.unchanged == r.unchanged})"
        )


def _edit_version(old: Path, new: Path, seed: int) -> None:
    """v2: 1000 rows removed, 1000 relabelled, 1000 new rows appended."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(old)
    rng = np.random.default_rng(seed + 1)
    n = table.num_rows
    drop = rng.choice(n, 1000, replace=False)
    keep = np.setdiff1d(np.arange(n), drop)
    relabel = rng.choice(keep, 1000, replace=False)
    labels = table.column("label").to_numpy().copy()
    labels[relabel] = (labels[relabel] + 1) % 10
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
    table = table.take(pa.array(keep))
    extra = pq.read_table(old).slice(0, 1000)
    extra = extra.set_column(0, "f0", pc.add(extra.column("f0"), 1000.0))
    pq.write_table(pa.concat_tables([table, extra]), new, row_group_size=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["detection", "scale"])
    parser.add_argument("--datasets", default="digits,breast_cancer,wine")
    parser.add_argument("--manifest-rows", type=int, default=1_000_000)
    parser.add_argument("--diff-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}"
    )
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}; max RSS of this process so far "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    if args.only in (None, "detection"):
        detection(args.datasets.split(","), args.seed, args.methods.split(","))
    if args.only in (None, "scale"):
        scale(args.manifest_rows, args.diff_rows, args.seed)


if __name__ == "__main__":
    main()
