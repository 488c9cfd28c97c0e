"""``donjon scan --hf-cache`` against ``donjon scan`` on the same files as plain paths.

    python benchmarks/hf_cache_bench.py [--files 1000] [--repeats 5]

A cache of --files files (10 repositories x 2 revisions; small pickles, json
and safetensors, the shape of a real cache) is built with the layout
huggingface_hub reads back; the same contents are written to a plain folder.
Both scans write JSON to a file and run alternately: "cold" in a fresh
interpreter each (``python -m donjon``, imports included), "warm" in-process
through ``main([...])`` after one run of each. Both command lines take Donjon's
Typer-free fast path. Medians of wall and CPU time (children's CPU for cold
runs). Target: the cache scan within 1.5x of the plain one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.integrations.hfcache import add_snapshot

from donjon.cli.main import main
from donjon.scan.samples import safetensors

SRC = Path(__file__).resolve().parents[1] / "src"


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


def _warm(args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one in-process run (imports already paid)."""
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    assert code in (0, 1), code
    return time.perf_counter() - wall, time.process_time() - cpu


def _cold(args: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -m donjon ARGS`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "donjon", *args], env=env, capture_output=True, check=False
    )
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _alternated(
    run: Callable[[list[str]], tuple[float, float]], hub: list[str], plain: list[str], repeats: int
) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {"hub": [], "plain": []}
    for i in range(repeats):
        for which in ("hub", "plain") if i % 2 else ("plain", "hub"):
            times[which].append(run(hub if which == "hub" else plain))
    return times


def _row(label: str, times: dict[str, list[tuple[float, float]]]) -> None:
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    print(
        f"{label:<5} median wall: --hf-cache {wall['hub']:.3f}s plain {wall['plain']:.3f}s "
        f"ratio {wall['hub'] / wall['plain']:.2f} | CPU: --hf-cache {cpu['hub']:.3f}s "
        f"plain {cpu['plain']:.3f}s ratio {cpu['hub'] / cpu['plain']:.2f}"
    )


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
        cold = _alternated(_cold, hub_args, plain_args, args.repeats)
        # warm: imports paid once by a first run of each, outside the measures
        _warm(hub_args), _warm(plain_args)
        warm = _alternated(_warm, hub_args, plain_args, args.repeats)
        print(
            f"files: {args.files}, repeats: {args.repeats}, load average {os.getloadavg()[0]:.1f}"
        )
        _row("cold", cold)
        _row("warm", warm)


if __name__ == "__main__":
    main_bench()
