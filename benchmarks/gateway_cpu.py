"""The gateway's own CPU per request, in process: this checkout, or it against another.

    python benchmarks/gateway_cpu.py                       # this checkout alone
    git worktree add /tmp/before main                      # any earlier commit
    python benchmarks/gateway_cpu.py --against /tmp/before # interleaved, alternated

One-row requests on the digits victim of ``gateway_bench.py --overhead-only`` (its
profile and gateway config), cycling through 200 held-out rows, each request in a
fresh interpreter per checkout and round. Two paths, CPU time of the process
(``time.process_time``) per request, after a warm-up:

* *pipeline*: ``admit_async`` + ``complete_async`` (the rules, no HTTP);
* *proxy*: the reverse proxy's ASGI app on the same request with an upstream that
  answers at once (header handling, the pipeline, the reply; no sockets, no uvicorn).

With ``--against`` the two checkouts run in turn, the order alternating every round,
and the medians over rounds are printed: CPU time, unlike wall-clock time, holds on a
loaded machine, and alternating spreads the load's drift over both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = (
    '[auth]\napi_keys_file = "keys.json"\n[quotas]\nprincipal_rate = 1e9\n'
    "principal_burst = 1e9\nglobal_rate = 1e9\nglobal_burst = 1e9\n"
    '[[models]]\nname = "digits"\nroutes = ["/predict"]\nallow = ["*"]\n'
    'features = 64\nmin_value = 0\nmax_value = 16\nprofile = "profile.json"\n'
    "[models.detectors.extraction]\nbudget = 100000000\n"
)  # gateway_bench.py's overhead config
ROWS = 200
WARM = 400


def child(requests: int, repeats: int) -> dict[str, list[float]]:
    """Run in the checkout under test (its ``src`` first on the path)."""
    warnings.filterwarnings("ignore")
    import numpy as np
    from tests.gateway.harness import train_victim, victim_scores, write_setup

    from donjon.gateway import build_pipeline, load_gateway_settings
    from donjon.gateway.pipeline import GatewayRequest
    from donjon.gateway.proxy import create_proxy
    from donjon.gateway.replies import Reply
    from donjon.gateway.upstream import UpstreamResponse

    victim = train_victim()
    order = np.random.default_rng(7).permutation(len(victim.x_test))
    held = victim.x_test[order[len(order) // 2 :]][:ROWS]
    with tempfile.TemporaryDirectory() as folder:
        _, keys = write_setup(Path(folder), victim, ["load"])
        config = Path(folder) / "gateway.toml"
        config.write_text(CONFIG)
        pipeline = build_pipeline(load_gateway_settings(config))
        proxy = create_proxy(build_pipeline(load_gateway_settings(config)), "http://upstream")
    key = keys["load"]
    bodies = [json.dumps({"inputs": [row.tolist()]}).encode() for row in held]
    answers = [
        json.dumps({"outputs": victim_scores(victim.model, [row]).tolist()}).encode()
        for row in held
    ]

    async def rules(count: int) -> None:
        headers = {"x-api-key": key, "content-type": "application/json"}
        for i in range(count):
            request = GatewayRequest("POST", "/predict", headers, bodies[i % ROWS])
            admitted = await pipeline.admit_async(request)
            if isinstance(admitted, Reply):
                raise RuntimeError(f"refused: {admitted.body()}")
            await pipeline.complete_async(admitted, 200, answers[i % ROWS])

    class Answering:
        i = 0

        async def request(self, method: str, target: bytes, headers: Any, body: bytes) -> Any:
            return UpstreamResponse(200, b"application/json", answers[self.i % ROWS])

        async def aclose(self) -> None:
            pass

    upstream = Answering()
    proxy._upstream = upstream  # the stub instead of the pool
    raw_headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk"),
        (b"x-api-key", key.encode()),
        (b"content-type", b"application/json"),
    ]

    async def proxied(count: int) -> None:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        for i in range(count):
            body = bodies[i % ROWS]
            upstream.i = i
            headers = [*raw_headers, (b"content-length", str(len(body)).encode())]
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/predict",
                "query_string": b"",
                "headers": headers,
                "client": ("127.0.0.1", 5000),
            }
            message = {"type": "http.request", "body": body, "more_body": False}

            async def receive(message: Any = message) -> Any:
                return message

            await proxy(scope, receive, send)
            if sent[0]["status"] != 200:
                raise RuntimeError(f"refused: {sent}")
            sent.clear()

    async def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"pipeline": [], "proxy": []}
        await rules(WARM)
        await proxied(WARM)
        for _ in range(repeats):
            for name, run in (("pipeline", rules), ("proxy", proxied)):
                begin = time.process_time()
                await run(requests)
                out[name].append((time.process_time() - begin) / requests * 1e6)
        await pipeline.aclose()
        return out

    return asyncio.run(measure())


def run_child(tree: Path, requests: int, repeats: int) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(tree)]),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    args = [sys.executable, __file__, "--child", str(requests), str(repeats)]
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=True)
    found: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: statistics.median(values) for name, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", type=Path, help="another checkout's root, e.g. a worktree")
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per checkout")
    parser.add_argument("--requests", type=int, default=2000, help="per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per process")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    trees = {"this": ROOT}
    if args.against is not None:
        trees = {"against": args.against.resolve(), "this": ROOT}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for i in range(args.rounds):
        names = list(trees) if i % 2 == 0 else list(reversed(trees))
        for name in names:
            runs[name].append(run_child(trees[name], args.requests, args.repeats))
        line = "; ".join(
            f"{n}: pipeline {runs[n][-1]['pipeline']:.1f} us, proxy {runs[n][-1]['proxy']:.1f} us"
            for n in names
        )
        print(f"round {i + 1} ({' first, '.join(names)} second): {line}", flush=True)
    print(f"\nload average (1 min) {os.getloadavg()[0]:.1f}; medians of {args.rounds} rounds")
    print("CPU per one-row request, in process (us):")
    for path in ("pipeline", "proxy"):
        cells = {n: statistics.median(r[path] for r in runs[n]) for n in trees}
        text = ", ".join(f"{n} {v:.1f}" for n, v in cells.items())
        if "against" in cells:
            text += f" (this / against {cells['this'] / cells['against']:.2f})"
        print(f"  {path}: {text}")


if __name__ == "__main__":
    main()
