"""Benchmark ``donjon scan`` against picklescan, modelscan, fickling and modelaudit.

    python benchmarks/scan_bench.py --peer-python PEERS/bin/python [--big-mb 1024] [--advisories]

One run builds the corpus in code (tests/scan/corpus.py), scans every file with
Donjon and with each peer (their Python APIs, in the peer environment), prints
detection per technique family, false positives and errors, then times each
tool's command line end to end on a large checkpoint, a folder of small model
files and a zip bomb, with peak resident memory and the ratio to Donjon
(``--repeat N``: best of N runs, commands slower than 30 s run once; Donjon runs
with a fresh ``--home``, byte-compiled first as pip installs it). ``--skip-peer
NAME`` leaves a peer out while iterating (modelaudit takes minutes on the
folder); published tables include every peer.
Install the peers with ``pip install '.[scan-bench]'`` (or in a separate venv).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scan.advisories.cases import Effect, write_corpus  # noqa: E402
from tests.scan.corpus import write_benign, write_malicious  # noqa: E402

from donjon.core import Severity  # noqa: E402
from donjon.scan import scan_file  # noqa: E402

PEER_ENV = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
            "MODELAUDIT_DISABLE_TELEMETRY": "1"}  # fmt: skip
COLUMNS = [
    ("donjon", "hit"),
    ("picklescan", "hit"),
    ("picklescan", "loose"),
    ("modelscan", "hit"),
    ("fickling", "hit"),
    ("modelaudit", "hit"),
    ("modelaudit", "loose"),
]
LABELS = ["donjon>=med", "picklescan", "pscan+susp", "modelscan", "fickling", "maudit crit",
          "maudit warn"]  # fmt: skip


def donjon_verdicts(paths: list[Path]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    for path in paths:
        report = scan_file(str(path))
        worst = report.max_severity
        hit = worst is not None and worst >= Severity.MEDIUM
        out[str(path)] = {"hit": hit, "loose": hit, "error": report.error is not None}
    out["__seconds__"] = time.perf_counter() - started  # type: ignore[assignment]
    return out


def peer_verdicts(
    python: str, paths: list[Path], skip: list[str]
) -> dict[str, dict[str, dict[str, object]]]:
    done = subprocess.run(
        [python, str(ROOT / "benchmarks" / "scan_peers.py"), *skip],
        input=json.dumps([str(p) for p in paths]),
        capture_output=True,
        text=True,
        check=True,
        env=PEER_ENV,
    )
    last = done.stdout.strip().splitlines()[-1]
    result: dict[str, dict[str, dict[str, object]]] = json.loads(last)
    return result


def detection_table(
    tables: dict[str, dict[str, dict[str, object]]],
    malicious: dict[Path, str],
    benign: list[Path],
) -> None:
    families: dict[str, list[str]] = defaultdict(list)
    for path, family in malicious.items():
        families[family].append(str(path))
    width = max(len(f) for f in families) + 2
    columns = [(t, k) for t, k in COLUMNS if t in tables]
    labels = [label for label, (t, _) in zip(LABELS, COLUMNS, strict=True) if t in tables]
    print(f"\n{'technique family':{width}}{'n':>4} " + " ".join(f"{c:>12}" for c in labels))
    for family in sorted(families):
        files = families[family]
        cells = []
        for tool, key in columns:
            hits = sum(bool(tables[tool][f][key]) for f in files if f in tables[tool])
            cells.append(f"{hits:>5}/{len(files):<6}")
        print(f"{family:{width}}{len(files):>4} " + " ".join(f"{c:>12}" for c in cells))
    mal = [str(p) for p in malicious]
    ben = [str(p) for p in benign]
    rows = {
        "detected %": lambda t, k: 100 * sum(bool(t[f][k]) for f in mal) / len(mal),
        "benign flagged %": lambda t, k: 100 * sum(bool(t[f][k]) for f in ben) / len(ben),
        "errors (malicious)": lambda t, k: sum(bool(t[f]["error"]) for f in mal),
        "errors (benign)": lambda t, k: sum(bool(t[f]["error"]) for f in ben),
        "corpus seconds": lambda t, k: float(t["__seconds__"]),  # type: ignore[arg-type]
    }
    print()
    for label, fn in rows.items():
        print(f"{label:{width + 5}}" + " ".join(f"{fn(tables[t], k):>12.1f}" for t, k in columns))
    print(f"\n{len(mal)} malicious and {len(ben)} benign files")


def advisory_table(tables: dict[str, dict[str, dict[str, object]]], cases: dict[Path, str]) -> None:
    """One row per published advisory (tests/scan/advisories): who flags it."""
    columns = [(t, k) for t, k in COLUMNS if t in tables]
    labels = [label for label, (t, _) in zip(LABELS, COLUMNS, strict=True) if t in tables]
    width = max(len(name) for name in cases.values()) + 2
    print(f"\n{'advisory case':{width}}" + " ".join(f"{c:>12}" for c in labels))
    for path, name in sorted(cases.items(), key=lambda item: item[1]):
        cells = ["yes" if tables[t][str(path)][k] else ("error" if tables[t][str(path)]["error"]
                 else "-") for t, k in columns]  # fmt: skip
        print(f"{name:{width}}" + " ".join(f"{c:>12}" for c in cells))
    totals = [sum(bool(tables[t][str(p)][k]) for p in cases) for t, k in columns]
    print(f"{'flagged':{width}}" + " ".join(f"{n:>9}/{len(cases):<2}" for n in totals))


# A small launcher process, so the child's peak RSS is its own and not this process's
# (a fork copies the parent's resident pages until exec).
_LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(json.loads(sys.argv[1]), stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps([time.perf_counter() - started, usage.ru_maxrss / 1024,
                  os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime]))
"""


def timed(command: list[str]) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS in MB, exit code, CPU seconds of the process (not its workers)."""
    done = subprocess.run(
        ["/usr/bin/env", "python3", "-S", "-c", _LAUNCHER, json.dumps(command)],
        capture_output=True,
        text=True,
        check=True,
        env=PEER_ENV,
    )
    seconds, rss, rc, cpu = json.loads(done.stdout)
    return float(seconds), float(rss), int(rc), float(cpu)


def build_timing_inputs(
    work: Path, big_mb: int, small_files: int, benign: list[Path]
) -> dict[str, Path]:
    import torch

    big = work / "big_checkpoint.pt"
    tensors = {f"layer{i}.weight": torch.zeros(big_mb * (1 << 20) // 16 // 4) for i in range(16)}
    torch.save(tensors, big)
    del tensors
    folder = work / "many_small"
    folder.mkdir()
    models = [p for p in benign if p.suffix in (".pt", ".pkl", ".joblib", ".safetensors", ".npy")]
    for i in range(small_files):
        source = models[i % len(models)]
        shutil.copy(source, folder / f"{i:03d}_{source.name}")
    bomb = work / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        f = z.open("zeros.bin", "w", force_zip64=True)
        chunk = bytes(1 << 20)
        for _ in range(big_mb):
            f.write(chunk)
        f.close()
    return {f"checkpoint {big_mb} MB": big, f"folder of {small_files} files": folder,
            f"zip bomb {big_mb} MB": bomb}  # fmt: skip


def compile_donjon() -> None:
    """Byte-compile the Donjon package the ``donjon`` command runs, as ``pip install`` does.

    The peers were byte-compiled when pip installed them; a source checkout run
    with ``PYTHONDONTWRITEBYTECODE`` set would compile Donjon's modules on every
    run instead (about 20 ms of each command)."""
    import compileall

    import donjon

    compileall.compile_dir(str(Path(donjon.__file__).parent), quiet=1)


def timing_table(
    inputs: dict[str, Path], peer_bin: Path, skip: list[str], home: Path, repeat: int
) -> None:
    donjon = str(Path(sys.executable).parent / "donjon")
    tools = {
        "donjon": lambda p: [donjon, "--home", str(home), "--quiet", "scan", str(p)],
        "picklescan": lambda p: [str(peer_bin / "picklescan"), "-p", str(p)],
        "modelscan": lambda p: [str(peer_bin / "modelscan"), "-p", str(p)],
        "fickling": lambda p: [str(peer_bin / "fickling"), "--check-safety", str(p)],
        "modelaudit": lambda p: [str(peer_bin / "modelaudit"), "scan", "--no-cache", str(p)],
    }
    print(
        f"\n{'input':24}{'tool':12}{'wall s':>8}{'x donjon':>9}{'cpu s':>8}{'x donjon':>9}"
        f"{'peak MB':>9}{'rc':>4}"
    )
    for label, path in inputs.items():
        base: tuple[float, float] | None = None
        for tool, make in tools.items():
            if tool in skip or (tool == "fickling" and path.is_dir()):
                continue
            seconds, rss, rc, cpu = timed(make(path))
            for _ in range(repeat - 1 if seconds < 30 else 0):  # best of N; slow tools once
                again = timed(make(path))
                seconds, rss, cpu = min(seconds, again[0]), max(rss, again[1]), min(cpu, again[3])
            base = base or (seconds, cpu)
            print(
                f"{label:24}{tool:12}{seconds:8.2f}{seconds / base[0]:9.2f}{cpu:8.2f}"
                f"{cpu / max(base[1], 1e-3):9.2f}{rss:9.0f}{rc:4}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=sys.executable, help="python with the peers")
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the big inputs")
    parser.add_argument("--small-files", type=int, default=200)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument(
        "--advisories", action="store_true", help="also measure every tool on tests/scan/advisories"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="time each command N times, keep the best"
    )
    parser.add_argument(
        "--skip-peer",
        action="append",
        default=[],
        choices=["picklescan", "modelscan", "fickling", "modelaudit"],
        help="leave a peer out (repeatable; modelaudit takes minutes on the folder)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        work = Path(tmp)
        malicious = write_malicious(work / "corpus")
        benign = write_benign(work / "benign")
        paths = [*malicious, *benign]
        peers = peer_verdicts(args.peer_python, paths, args.skip_peer)
        tables = {"donjon": donjon_verdicts(paths), **peers}
        detection_table(tables, malicious, benign)
        if args.advisories:
            written = write_corpus(work / "advisories", Effect.attacker())
            cases = {path: case.name for path, case in written.items()}
            found = peer_verdicts(args.peer_python, list(cases), args.skip_peer)
            advisory_table({"donjon": donjon_verdicts(list(cases)), **found}, cases)
        if not args.skip_timing:
            inputs = build_timing_inputs(work, args.big_mb, args.small_files, benign)
            compile_donjon()
            peer_bin = Path(args.peer_python).parent
            timing_table(inputs, peer_bin, args.skip_peer, work / "home", args.repeat)


if __name__ == "__main__":
    main()
