"""Overhead of donjon.guard per load, against the plain loader, in the same run.

    python benchmarks/guard_bench.py [--repeats 15] [--mb 4]

For each wrapped loader (torch.load, joblib.load, numpy.load with allow_pickle,
pickle.loads) a model of about --mb megabytes is written once, then loaded
plain and guarded in alternating order. "cold" is the first load of each
(fresh file name, page cache warm); "warm" is the median of --repeats loads.
The guard's cost is the scan: it reads the file once before the loader does.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import joblib
import numpy as np
import torch

import donjon.guard


def _build(folder: Path, mb: int) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    n = mb * (1 << 20) // 4
    layers = {f"layer{i}.weight": torch.randn(n // 8) for i in range(8)}
    torch.save(layers, folder / "m.pt")
    joblib.dump({"coef": np.random.default_rng(0).random(n // 2)}, folder / "m.joblib")
    np.save(folder / "m.npy", np.array([np.ones(n // 2), {"meta": 1}], dtype=object))
    # lambdas: each call looks the loader up, as user code does (and finds the guard)
    payload = pickle.dumps({"coef": np.ones(n // 2)}, protocol=5)
    return {
        "torch.load": (lambda p: torch.load(p, weights_only=True), folder / "m.pt"),
        "joblib.load": (lambda p: joblib.load(p), folder / "m.joblib"),
        "numpy.load(allow_pickle)": (lambda p: np.load(p, allow_pickle=True), folder / "m.npy"),
        "pickle.loads": (lambda b: pickle.loads(b), payload),
    }


def _once(load: Callable[[Any], Any], arg: Any, guarded: bool) -> float:
    if guarded:
        donjon.guard.install()
    try:
        started = time.perf_counter()
        load(arg)
        return time.perf_counter() - started
    finally:
        donjon.guard.uninstall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--mb", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = _build(Path(tmp), args.mb)
        print(f"{'loader':26} {'cold plain':>11} {'cold guard':>11} "
              f"{'warm plain':>11} {'warm guard':>11} {'ratio':>6} {'+ms':>7}")  # fmt: skip
        for name, (load, arg) in cases.items():
            cold_guard = _once(load, arg, True)  # the guarded load first: its cold is the worst
            cold_plain = _once(load, arg, False)
            plain, guarded = [], []
            for i in range(args.repeats):
                order = (False, True) if i % 2 else (True, False)
                for g in order:
                    (guarded if g else plain).append(_once(load, arg, g))
            mp, mg = statistics.median(plain), statistics.median(guarded)
            cells = [cold_plain, cold_guard, mp, mg]
            times = " ".join(f"{t * 1e3:10.2f}m" for t in cells)
            print(f"{name:26} {times} {mg / mp:6.2f} {(mg - mp) * 1e3:7.2f}")


if __name__ == "__main__":
    main()
