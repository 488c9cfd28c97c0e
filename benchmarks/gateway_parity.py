"""Fuzzed request bodies: does the model server read what the gateway checked?

Run from the repository root:  python benchmarks/gateway_parity.py [--examples N]

Hypothesis draws request bodies (mixed, duplicated, one-dimensional and ill-typed
input keys; the strategy of ``tests/gateway/test_request_parity.py``). For every
body the gateway accepts, the servers' parsers (MLflow's own scoring-server
parser, KServe v1 and v2 / Triton and TorchServe / BentoML reference parsers) read
two bodies: the canonical one the gateway forwards, and, as the peer, the
caller's own bytes (what a gateway that forwards the raw body would send). A
divergence is a body the server reads as other rows than the gateway checked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gateway.test_request_parity import CONTRACT, bodies, servers_read  # noqa: E402

from donjon.gateway.validation import ApiFormat, InvalidRequest, parse_request  # noqa: E402


def diverges(fmt: ApiFormat, body: bytes, rows: np.ndarray) -> bool | None:
    """True when a server reads other rows from ``body``; None when every server refuses it."""
    try:
        readings = servers_read(fmt, body)
    except Exception:  # noqa: BLE001 - a server refusing the body is no divergence
        return None
    return any(r.shape != rows.shape or not np.array_equal(r, rows) for _, r in readings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # mlflow's import-time notes
    counts: Counter[str] = Counter()
    started = time.perf_counter()

    @settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=bodies, api=st.sampled_from(list(ApiFormat)))
    def run(body: Any, api: ApiFormat) -> None:
        raw = json.dumps(body, allow_nan=True).encode()
        counts["bodies"] += 1
        try:
            parsed = parse_request(raw, api, CONTRACT)
        except InvalidRequest:
            counts["refused by the gateway"] += 1
            return
        counts[f"accepted ({parsed.format.value})"] += 1
        for name, forwarded in (("canonical", parsed.body), ("raw (peer)", raw)):
            verdict = diverges(parsed.format, forwarded, parsed.rows)
            if verdict is None:
                counts[f"{name}: refused by the server"] += 1
            elif verdict:
                counts[f"{name}: read differently"] += 1

    run()
    seconds = time.perf_counter() - started
    print(f"## Request parity ({counts['bodies']} fuzzed bodies, {seconds:.0f} s)\n")
    for key in sorted(counts):
        print(f"{key:40s} {counts[key]:6d}")
    canonical = counts["canonical: read differently"]
    raw = counts["raw (peer): read differently"]
    print(f"\nread differently: canonical forwarding {canonical}, raw forwarding (peer) {raw}")


if __name__ == "__main__":
    main()
