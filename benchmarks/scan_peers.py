"""Run the peer scanners' Python APIs on a list of files; print one JSON verdict table.

Arguments name peers to leave out.

Run with the interpreter of the environment where the peers are installed
(``pip install '.[scan-bench]'``); called by ``scan_bench.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from typing import Any

os.environ.setdefault("PROMPTFOO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MODELAUDIT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
logging.disable(logging.CRITICAL)


def picklescan(path: str) -> dict[str, Any]:
    from picklescan.scanner import scan_file_path

    r = scan_file_path(path)
    suspicious = any(g.safety.name != "Innocuous" for g in r.globals)
    return {"hit": r.issues_count > 0 or r.infected_files > 0, "loose": suspicious,
            "error": bool(r.scan_err)}  # fmt: skip


def modelscan(path: str) -> dict[str, Any]:
    from modelscan.modelscan import ModelScan

    result = ModelScan().scan(path)
    hit = bool(result["issues"])
    return {"hit": hit, "loose": hit, "error": bool(result["errors"]) and not hit}


def fickling(path: str) -> dict[str, Any]:
    import fickling as fk

    safe = fk.is_likely_safe(path)
    return {"hit": not safe, "loose": not safe, "error": False}


def modelaudit(path: str) -> dict[str, Any]:
    from modelaudit.core import scan_model_directory_or_file

    result = scan_model_directory_or_file(path).model_dump()
    levels = {str(i.get("severity", "")).lower() for i in result.get("issues", [])}
    return {
        "hit": "critical" in levels,
        "loose": bool(levels & {"critical", "warning"}),
        "error": bool(result.get("has_errors")) and not levels,
    }


PEERS = {"picklescan": picklescan, "modelscan": modelscan, "fickling": fickling,
         "modelaudit": modelaudit}  # fmt: skip


def main() -> None:
    paths = json.loads(sys.stdin.read())
    skip = set(sys.argv[1:])  # peers not to run (scan_bench.py --skip-peer)
    table: dict[str, dict[str, Any]] = {}
    for name, run in PEERS.items():
        if name in skip:
            continue
        table[name] = {}
        started = time.perf_counter()
        for path in paths:
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    table[name][path] = run(path)
            except Exception as e:  # noqa: BLE001 - a peer crash is an error, not the end
                table[name][path] = {"hit": False, "loose": False, "error": True,
                                     "crash": f"{type(e).__name__}: {e}"[:200]}  # fmt: skip
        table[name]["__seconds__"] = time.perf_counter() - started  # type: ignore[assignment]
    print(json.dumps(table))


if __name__ == "__main__":
    main()
