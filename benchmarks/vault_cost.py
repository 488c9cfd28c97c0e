"""What one request of each kind costs the vault's server, in CPU time.

    python benchmarks/vault_cost.py                     # 1 replica on PostgreSQL, 200 of each
    python benchmarks/vault_cost.py --backend sqlite --requests 100
    python benchmarks/vault_cost.py --profile out.txt   # py-spy raw stacks (GIL holder only)

It starts one real ``donjon server`` (as ``vault_scale.py`` does) and sends it, one at
a time from a plain blocking client, ``--requests`` requests of each kind of issue #22's
mix: a read of a version, a list of versions, a pull, a push (100 KB), a promotion,
a refusal (forbidden) and a bad token. The server's user + system CPU time before and
after each kind, divided by the count, is that kind's CPU budget; weighted by the mix it
is the CPU a request of the mix costs, and 2 cores divided by it the most requests per
second two cores could serve if nothing else ran (no load generator, no PostgreSQL).
CPU time barely depends on the machine's load (wall-clock time does): the order of kinds
is alternated over ``--rounds`` rounds and the median is printed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vault_scale import (
    Replica,
    cpu_seconds,
    free_port,
    home_of,
    prepare,
    python_speed,
    servers,
    vault_home,
)

# issue #22's mix, by kind of request (pushes of models and datasets are one kind here)
WEIGHTS = {
    "push": 30, "list": 20, "pull": 20, "promote": 10, "get": 10, "bad-token": 5, "forbidden": 5,
}  # fmt: skip
BODY = 100_000


class Client:
    """One keep-alive connection, blocking: as cheap a client as the standard library has."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)

    def send(self, method: str, path: str, token: str, body: bytes | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        if body is not None:
            json_body = path.endswith("/promote")
            headers["Content-Type"] = (
                "application/json" if json_body else "application/octet-stream"
            )
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        response.read()
        return response.status


def requests_of(kind: str, tokens: dict[str, str], rng: random.Random, top: int) -> tuple:
    model = "cost/m"  # 20 versions to read, list, pull and promote; pushes go to another
    good, bob, bad = tokens["alice"], tokens["bob"], "djt_not_a_real_token_" + "x" * 20
    version = rng.randint(1, top)
    return {
        "push": ("POST", "/v1/models/cost/pushed/versions", good, rng.randbytes(BODY)),
        "list": ("GET", f"/v1/models/{model}/versions", good, None),
        "pull": ("GET", f"/v1/models/{model}/versions/{version}/blob", good, None),
        "get": ("GET", f"/v1/models/{model}/versions/{version}", good, None),
        "promote": (
            "POST",
            f"/v1/models/{model}/versions/{version}/promote",
            good,
            json.dumps({"stage": "staging"}).encode(),
        ),
        "forbidden": ("GET", f"/v1/models/{model}/versions", bob, None),
        "bad-token": ("GET", f"/v1/models/{model}/versions", bad, None),
    }[kind]


def measure(replica: Replica, tokens: dict[str, str], args: argparse.Namespace) -> dict:
    client = Client(replica.url)
    rng = random.Random(1)  # noqa: S311 - a workload
    top = 20
    for _ in range(top):  # versions to read, list and promote
        body = rng.randbytes(BODY)
        status = client.send("POST", "/v1/models/cost/m/versions", tokens["alice"], body)
        assert status == 201, status
    costs: dict[str, list[float]] = {kind: [] for kind in WEIGHTS}
    on_loop: dict[str, list[float]] = {kind: [] for kind in WEIGHTS}
    statuses: dict[str, set[int]] = {kind: set() for kind in WEIGHTS}
    kinds = args.kinds.split(",") if args.kinds else list(WEIGHTS)
    for round_ in range(args.rounds):
        for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
            # a bad token every request would trip the limiter: keep them below it
            count = min(args.requests, 15) if kind == "bad-token" else args.requests
            planned = [requests_of(kind, tokens, rng, top) for _ in range(count)]
            before, loop_before = cpu_seconds([replica]), loop_seconds(replica)
            for method, path, token, body in planned:
                statuses[kind].add(client.send(method, path, token, body))
            costs[kind].append(1000 * (cpu_seconds([replica]) - before) / count)
            on_loop[kind].append(1000 * (loop_seconds(replica) - loop_before) / count)
            if kind == "bad-token":
                time.sleep(args.window + 0.5)  # the limiter's window ends
    return {
        kind: {
            "cpu_ms": statistics.median(v),
            "loop_ms": statistics.median(on_loop[kind]),
            "statuses": sorted(statuses[kind]),
        }
        for kind, v in costs.items()
        if v
    }


def loop_seconds(replica: Replica) -> float:
    """CPU time so far of the server's main thread: the event loop (HTTP, routing,
    middleware); the rest of its CPU is worker threads (database, journal) and the relay."""
    import psutil

    assert replica.proc is not None
    for thread in psutil.Process(replica.proc.pid).threads():
        if thread.id == replica.proc.pid:
            return float(thread.user_time + thread.system_time)
    return 0.0


def floor(args: argparse.Namespace) -> float:
    """Server CPU ms per request of a bare ASGI app under uvicorn (``bare_asgi.py``)."""
    import psutil

    port = free_port()
    here = Path(__file__).resolve().parent
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_asgi:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = None
        deadline = time.monotonic() + 30
        while client is None:
            try:
                client = Client(f"http://127.0.0.1:{port}")
                client.send("GET", "/", "x")
            except OSError:
                client = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        process = psutil.Process(server.pid)
        costs = []
        for _ in range(args.rounds):
            times = process.cpu_times()
            before = times.user + times.system
            for _ in range(args.requests):
                client.send("GET", "/v1/models/m/versions", "x")
            times = process.cpu_times()
            costs.append(1000 * (times.user + times.system - before) / args.requests)
        return statistics.median(costs)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--requests", type=int, default=200, help="of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=2.0, help="auth-failure window, s")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--profile", help="py-spy raw stacks of the server (GIL holder)")
    parser.add_argument("--kinds", help="only these kinds, comma-separated (for a profile)")
    parser.add_argument("--src", help="serve another source tree's donjon (its src folder)")
    parser.add_argument(
        "--floor", action="store_true", help="also measure a bare ASGI app (the HTTP floor)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_before, speed_before = os.getloadavg()[0], python_speed()
    with vault_home(args.backend, args.postgres, args.src) as (_, env):
        env["DONJON_VAULT__AUTH_FAILURE_WINDOW"] = str(args.window)
        tokens = prepare(home_of(env), env)
        with servers(env, 1, 1) as running:
            profiler = None
            if args.profile:
                spy = str(Path(sys.executable).parent / "py-spy")
                assert running[0].proc is not None
                profiler = subprocess.Popen(
                    [spy, "record", "-f", "raw", "-o", args.profile, "--gil", "-r", "500",
                     "-p", str(running[0].proc.pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                time.sleep(1)
            rows = measure(running[0], tokens, args)
            if profiler is not None:
                profiler.send_signal(2)
                profiler.wait(timeout=60)
    weights = {k: w for k, w in WEIGHTS.items() if k in rows}
    mix = sum(rows[k]["cpu_ms"] * w for k, w in weights.items()) / sum(weights.values())
    bare = floor(args) if args.floor else None
    if args.json:
        print(json.dumps({"kinds": rows, "mix_cpu_ms": mix, "floor_cpu_ms": bare}, indent=2))
        return
    print(f"1 replica on {args.backend}, {args.requests} requests of each kind per round, "
          f"{args.rounds} rounds (median); load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs; sum(range(1000)) "
          f"took {speed_before:.0f} µs before, {python_speed():.0f} µs after\n")  # fmt: skip
    print(
        "| request | share of the mix | server CPU ms | of which the event loop | statuses |"
        "\n|---|---|---|---|---|"
    )
    for kind, weight in weights.items():
        row = rows[kind]
        print(
            f"| {kind} | {weight} % | {row['cpu_ms']:.2f} | {row['loop_ms']:.2f} "
            f"| {row['statuses']} |"
        )
    print(f"| **mix** | 100 % | **{mix:.2f}** | | |")
    if bare is not None:
        print(f"| bare ASGI app under uvicorn (the floor) | | {bare:.2f} | | [200] |")
    print(
        f"\n2 cores / {mix:.2f} ms = {2000 / mix:.0f} req/s at most for the servers alone "
        "(before the load generator and PostgreSQL take their share)."
    )


if __name__ == "__main__":
    main()
