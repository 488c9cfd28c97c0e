"""``donjon scan --hf-cache`` against ``donjon scan`` on the same files as plain paths.

    python benchmarks/hf_cache_bench.py [--files 1000] [--repeats 5]

A cache of --files files (10 repositories x 2 revisions; small pickles, json
and safetensors, the shape of a real cache) is built with the layout
huggingface_hub reads back; the same contents are written to a plain folder.
Both scans run in-process through ``main([...])``, alternating, JSON output
to a file, after one warm-up of each command (imports). The plain scan takes
Donjon's Typer-free fast path; ``--hf-cache`` goes through Typer and the
settings. Target: the cache scan within 1.5x of the plain one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.integrations.hfcache import add_snapshot

from donjon.cli.main import main
from donjon.scan.samples import safetensors


def _content(i: int) -> tuple[str, bytes]:
    kind = i % 3
    if kind == 0:
        return f"weights_{i}.bin", pickle.dumps({"layer": list(range(i % 50)), "i": i})
    if kind == 1:
        return f"config_{i}.json", f'{{"hidden": {i}, "layers": 12}}'.encode()
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    return f"model_{i}.safetensors", safetensors(header, i.to_bytes(16, "little"))


def _build(root: Path, files: int) -> tuple[Path, Path]:
    cache, plain = root / "hub", root / "plain"
    per = files // 20
    for r in range(10):
        for rev in range(2):
            chunk = dict(_content(r * 1000 + rev * per + k) for k in range(per))
            add_snapshot(cache, f"org/repo{r}", f"{r}{rev}".ljust(40, "0"), chunk)
            folder = plain / f"repo{r}" / str(rev)
            folder.mkdir(parents=True)
            for name, data in chunk.items():
                (folder / name).write_bytes(data)
    return cache, plain


def _time(args: list[str]) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    assert code in (0, 1), code
    return time.perf_counter() - started


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache, plain = _build(Path(tmp), args.files)
        home = str(Path(tmp) / "home")
        out = str(Path(tmp) / "r.json")
        base = ["-q", "--home", home, "--format", "json", "scan", "--force", "-o", out]
        hub_args, plain_args = [*base, "--hf-cache", str(cache)], [*base, str(plain)]
        # imports paid once, outside both measures: "cold" is each scan's first run
        warmup = Path(tmp) / "warmup"
        warmup.mkdir()
        (warmup / "w.pkl").write_bytes(pickle.dumps(1))
        add_snapshot(Path(tmp) / "warm-hub", "org/warm", "0" * 40, {"w.pkl": pickle.dumps(1)})
        _time([*base[:-3], str(warmup)])  # the plain scan's fast path
        _time([*base[:-3], "--hf-cache", str(Path(tmp) / "warm-hub")])  # Typer and settings
        cold_hub, cold_plain = _time(hub_args), _time(plain_args)
        hub, flat = [], []
        for i in range(args.repeats):
            for which in ("hub", "plain") if i % 2 else ("plain", "hub"):
                (hub if which == "hub" else flat).append(
                    _time(hub_args if which == "hub" else plain_args)
                )
        mh, mp = statistics.median(hub), statistics.median(flat)
        print(f"files: {args.files}")
        print(f"cold: --hf-cache {cold_hub:.3f}s  plain {cold_plain:.3f}s")
        print(f"warm median: --hf-cache {mh:.3f}s  plain {mp:.3f}s  ratio {mh / mp:.2f}")


if __name__ == "__main__":
    main_bench()
