"""The vault under a realistic mix of clients: 1 replica on SQLite, 1 and 2 on PostgreSQL.

    python benchmarks/vault_scale.py                       # 20 s per setup, 16 clients
    python benchmarks/vault_scale.py --seconds 90 --clients 16
    python benchmarks/vault_scale.py --setups sqlite-1 --profile profile.svg   # py-spy
    python benchmarks/vault_scale.py --setups postgres-2 --src OTHER/src       # code before

Each setup starts real ``donjon server`` processes (``--workers`` each) on a fresh
home and, for PostgreSQL, a fresh schema in ``--postgres`` (dropped afterwards);
two replicas share the database and the blob folder and the clients alternate
between them (no proxy). The load generator (this process: asyncio and a lean
HTTP/1.1 client on httptools, ``loadgen.py``; ``--client httpx`` for httpx) runs
``--clients`` concurrent clients, each repeating the mix of issue #22:

    model pushes 20 %, dataset pushes 10 % (10-500 KB), version lists 20 %, pulls 20 %,
    promotions 10 %, reads of a version 10 %, bad tokens 5 %, forbidden actions 5 %

Bad tokens are sent from loopback addresses of their own (attackers), as the vault's
failed-authentication limiter counts per source address: sent from the clients' own
addresses they would soon lock those clients out (429).

It prints requests/s, p50 and p99 latency per setup, the status codes seen and any
5xx (there must be none), then checks the ledger (``donjon audit verify``) and the
writes: every acknowledged push stored once with its digest, version numbers without
gaps, every version with its "stored" (and scan-gate) event in the ledger. With
``--kill-every 20`` replica 0 is SIGKILLed (workers and all) every 20 s and restarted:
the issue's fault target (connection errors while it is down are expected; the checks
must still all be 0). Nothing
here is a peer: the issue's figures for the code before this work are printed beside
(same mix, same machine class) so the ratio can be read off. The load generator
shares the machine with the servers, as in the issue's measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen

REPO = Path(__file__).resolve().parents[1]
POLICY = """\
@id("alice-all")
permit (principal == User::"alice", action, resource in Collection::"models");
@id("alice-datasets")
permit (principal == User::"alice", action, resource in Collection::"datasets");
@id("bob-reads-datasets")
permit (
  principal == User::"bob", action == Action::"dataset.read", resource in Collection::"datasets"
);
"""
ISSUE = {  # issue #22's table: the vault before this work (req/s, p50 ms, p99 ms)
    "sqlite-1": ("98-101", "78", "498-531"),
    "postgres-1": ("59-64", "173-179", "658-767"),
    "postgres-2": ("80", "151", "650"),
}
MIX = [
    ("push-model", 20), ("push-dataset", 10), ("list", 20), ("pull", 20),
    ("promote", 10), ("get", 10), ("bad-token", 5), ("forbidden", 5),
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_for(home: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env.update(DONJON_HOME=str(home), DONJON_DATABASE_URL=database_url)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def donjon(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "donjon", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"donjon {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def prepare(home: Path, env: dict[str, str]) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "policies.cedar").write_text(POLICY)
    tokens = {}
    for user in ("alice", "bob"):
        donjon(env, "-f", "json", "access", "user", "add", user)
        tokens[user] = json.loads(donjon(env, "-f", "json", "access", "token", "issue", user))[
            "token"
        ]
    donjon(env, "audit", "checkpoint")  # the one ledger key, before any replica starts
    return tokens


class Replica:
    """One ``donjon server`` (its own process group, so a SIGKILL takes its workers too)."""

    def __init__(self, env: dict[str, str], index: int, workers: int) -> None:
        self.env, self.index, self.workers = env, index, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        log = open(Path(self.env["DONJON_HOME"]) / f"server-{self.index}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "server", "--host", "127.0.0.1",
             "--port", str(self.port),
             *(["--workers", str(self.workers)] if self.workers > 1 else [])],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.proc is None or self.proc.poll() is not None:
                log = Path(self.env["DONJON_HOME"]) / f"server-{self.index}.log"
                raise RuntimeError(f"replica {self.index} exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.index} did not become ready")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def servers(env: dict[str, str], replicas: int, workers: int) -> Iterator[list[Replica]]:
    started = [Replica(env, i, workers) for i in range(replicas)]
    try:
        for replica in started:
            replica.start()
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def cpu_seconds(replicas: list[Replica]) -> float:
    """User + system CPU time of the replicas' processes and their workers, so far.

    Independent of the machine's load (unlike req/s): divided by the requests
    served, it is what one request costs the servers.
    """
    import psutil

    total = 0.0
    for replica in replicas:
        if replica.proc is None or replica.proc.poll() is not None:
            continue
        try:
            root = psutil.Process(replica.proc.pid)
            for proc in (root, *root.children(recursive=True)):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def python_speed() -> float:
    """Microseconds this machine takes for ``sum(range(1000))`` right now (best of 5): a
    shared or virtual machine's CPU time per request grows as this does."""
    import timeit

    return 1e6 * min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000


def postgres_cpu_seconds() -> float:
    """User + system CPU time of every PostgreSQL process on this machine, so far (other
    users of the database count too: an upper bound of what the vault's queries cost)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def killer(replica: Replica, every: float, until: float) -> None:
    """SIGKILL ``replica`` every ``every`` seconds and start it again, until ``until``."""
    while time.monotonic() + every < until:
        time.sleep(every)
        replica.kill()
        replica.start()
        try:
            replica.wait_ready()
        except RuntimeError:
            return


@dataclass
class Results:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    acknowledged: list[tuple[str, str, int, str]] = field(default_factory=list)  # kind name n sha


class _HttpxClient:
    """httpx behind the same three calls as :class:`loadgen.Client` (``--client httpx``)."""

    def __init__(self, local_address: str) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=local_address)
        self.http = httpx.AsyncClient(timeout=60, transport=transport)

    async def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        return await self.http.get(url, headers=headers)

    async def post(
        self, url: str, headers: dict[str, str], content: bytes = b"", json_body: object = None
    ) -> httpx.Response:
        if json_body is not None:
            return await self.http.post(url, json=json_body, headers=headers)
        return await self.http.post(url, content=content, headers=headers)

    async def close(self) -> None:
        await self.http.aclose()


def http_client(kind: str, local_address: str) -> loadgen.Client | _HttpxClient:
    return loadgen.Client(local_address) if kind == "lean" else _HttpxClient(local_address)


async def client(
    n: int, urls: list[str], tokens: dict[str, str], until: float, results: Results, kind: str
) -> None:
    rng = random.Random(n)  # noqa: S311 - a workload, not a secret
    good = {"Authorization": f"Bearer {tokens['alice']}"}
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    bad = {"Authorization": "Bearer djt_not_a_real_token_" + "x" * 20}
    model, dataset = f"scale/m{n % 4}", f"scale/d{n % 4}"
    pushed = {"models": 0, "datasets": 0}
    ops = [op for op, weight in MIX for _ in range(weight)]
    # Each client has its own loopback address, and bad tokens come from addresses of their
    # own (attackers): the vault's failed-authentication limiter is per source address.
    http = http_client(kind, f"127.0.1.{n + 1}")
    attacker = http_client(kind, f"127.0.2.{n + 1}")
    errors = (httpx.HTTPError, loadgen.HTTPError)
    try:
        i = 0
        while time.monotonic() < until:
            base = urls[i % len(urls)]
            i += 1
            op = rng.choice(ops)
            kind_, name = ("datasets", dataset) if op == "push-dataset" else ("models", model)
            if op in ("pull", "get", "promote", "list") and not pushed["models"]:
                op = "push-model"
            started = time.perf_counter()
            try:
                if op in ("push-model", "push-dataset"):
                    body = rng.randbytes(rng.randint(10_000, 500_000))
                    r = await http.post(f"{base}/v1/{kind_}/{name}/versions", good, body)
                    if r.status_code == 201:
                        number = int(r.json()["version"])
                        pushed[kind_] = max(pushed[kind_], number)
                        sha = "sha256:" + hashlib.sha256(body).hexdigest()
                        results.acknowledged.append((kind_[:-1], name, number, sha))
                elif op == "list":
                    r = await http.get(f"{base}/v1/models/{model}/versions", good)
                elif op == "pull":
                    v = rng.randint(1, pushed["models"])
                    r = await http.get(f"{base}/v1/models/{model}/versions/{v}/blob", good)
                elif op == "get":
                    v = rng.randint(1, pushed["models"])
                    r = await http.get(f"{base}/v1/models/{model}/versions/{v}", good)
                elif op == "promote":
                    v = rng.randint(1, pushed["models"])
                    r = await http.post(
                        f"{base}/v1/models/{model}/versions/{v}/promote",
                        good, json_body={"stage": "staging"},
                    )  # fmt: skip
                elif op == "bad-token":
                    r = await attacker.get(f"{base}/v1/models/{model}/versions", bad)
                else:  # forbidden: bob may read datasets only
                    r = await http.get(f"{base}/v1/models/{model}/versions", bob)
            except errors as e:
                results.errors.append(f"{op}: {type(e).__name__}")
                continue
            results.latencies.append(time.perf_counter() - started)
            results.statuses[f"{op} {r.status_code}"] += 1
            if r.status_code >= 500:
                results.errors.append(f"{op}: {r.status_code} {r.text[:200]}")
    finally:
        await http.close()
        await attacker.close()


def run_load(
    urls: list[str], tokens: dict[str, str], clients: int, seconds: float, kind: str = "lean"
) -> Results:
    results = Results()
    until = time.monotonic() + seconds

    async def main() -> None:
        await asyncio.gather(
            *(client(n, urls, tokens, until, results, kind) for n in range(clients))
        )

    asyncio.run(main())
    return results


def pg_schema(admin_url: str) -> tuple[str, str]:
    import psycopg

    schema = f"donjon_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    base = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    return schema, f"{base}?options=-csearch_path%3D{schema}"


def drop_schema(admin_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def home_of(env: dict[str, str]) -> Path:
    return Path(env["DONJON_HOME"])


@contextmanager
def vault_home(
    backend: str, postgres: str, src: str | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh home folder and database (SQLite in the home, or a fresh PostgreSQL schema
    dropped afterwards): the database URL and the servers' environment. ``src``: serve
    another tree's sources (the code before a change, for the ratio)."""
    with tempfile.TemporaryDirectory(prefix="donjon-scale-") as tmp:
        home = Path(tmp) / "home"
        schema = None
        if backend == "sqlite":
            url = f"sqlite+pysqlite:///{home / 'donjon.db'}"
        else:
            schema, url = pg_schema(postgres)
        try:
            env = env_for(home, url)
            if src:
                env["PYTHONPATH"] = str(Path(src).resolve())
            yield url, env
        finally:
            if schema is not None:
                drop_schema(postgres, schema)


def run_setup(name: str, args: argparse.Namespace) -> dict[str, object]:
    backend, replicas = name.split("-")
    with vault_home(backend, args.postgres, args.src) as (url, env):
        tokens = prepare(home_of(env), env)
        with servers(env, int(replicas), args.workers) as running:
            urls = [r.url for r in running]
            profiler = None
            if args.profile:
                spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
                fmt = "flamegraph" if args.profile.endswith(".svg") else "raw"
                assert running[0].proc is not None
                profiler = subprocess.Popen(
                    [spy, "record", "--subprocesses", "-f", fmt, "-o", args.profile,
                     "-d", str(int(args.seconds)), "-r", "250", "-p", str(running[0].proc.pid),
                     *(["--gil"] if args.profile_cpu else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            started = time.monotonic()
            cpu_before, own_before = cpu_seconds(running), time.process_time()
            pg_before = postgres_cpu_seconds()
            chaos = None
            if args.kill_every:
                until = started + args.seconds
                chaos = threading.Thread(
                    target=killer, args=(running[0], args.kill_every, until), daemon=True
                )
                chaos.start()
            results = run_load(urls, tokens, args.clients, args.seconds, args.client)
            elapsed = time.monotonic() - started
            server_cpu = cpu_seconds(running) - cpu_before
            client_cpu = time.process_time() - own_before
            pg_cpu = postgres_cpu_seconds() - pg_before
            if chaos is not None:
                chaos.join(timeout=120)
            kills = running[0].kills
            if profiler is not None:
                profiler.wait(timeout=120)
        verify = subprocess.run(
            [sys.executable, "-m", "donjon", "audit", "verify"], env=env, capture_output=True
        )
        faults = check_writes(url, results.acknowledged)
    lat = sorted(results.latencies)
    return {
        "setup": name,
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        # server CPU per request (a killed replica's time is lost: meaningless with kills)
        "server_cpu_ms": 1000 * server_cpu / len(lat) if lat else float("nan"),
        "client_cpu_ms": 1000 * client_cpu / len(lat) if lat else float("nan"),
        "postgres_cpu_ms": 1000 * pg_cpu / len(lat) if lat else float("nan"),
        "errors": results.errors[:10],
        "error_count": len(results.errors),
        "statuses": dict(sorted(results.statuses.items())),
        "server_errors": sum(n for k, n in results.statuses.items() if int(k.split()[-1]) >= 500),
        "audit_verify": verify.returncode,
        "kills": kills,
        "acknowledged_pushes": len(results.acknowledged),
        **faults,
    }


def check_writes(url: str, acknowledged: list[tuple[str, str, int, str]]) -> dict[str, int]:
    """Every acknowledged push stored once with its digest, numbers contiguous, and every
    version with its "stored" (and, for models, scan-gate) event in the ledger."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT kind, name, number, digest FROM registry_versions")
            ).all()
            bodies = connection.execute(text("SELECT body FROM audit_ledger")).scalars().all()
    finally:
        engine.dispose()
    stored = {(str(k), str(n), int(v)): str(d) for k, n, v, d in rows}
    lost = sum(1 for k, n, v, d in acknowledged if stored.get((k, n, v)) != d)
    twice = len(acknowledged) - len({(k, n, v) for k, n, v, _ in acknowledged})
    by_name: dict[tuple[str, str], list[int]] = {}
    for k, n, v in stored:
        by_name.setdefault((k, n), []).append(v)
    gaps = sum(
        1 for numbers in by_name.values() if sorted(numbers) != list(range(1, len(numbers) + 1))
    )
    events = [json.loads(b)["event"] for b in bodies]
    evidence = {  # a successful write; a scan-gate verdict, clean or not
        (e["attributes"].get("resource"), e["action"].rsplit(".", 1)[-1])
        for e in events
        if e["source"] == "registry"
        and (e["outcome"] == "success" or e["action"].endswith(".scan"))
    }
    unevidenced = 0
    for k, n, v in stored:
        where = f"{k}s/{n}@{v}"
        if (where, "write") not in evidence or (k == "model" and (where, "scan") not in evidence):
            unevidenced += 1
    return {"lost": lost, "acknowledged_twice": twice, "gaps": gaps, "unevidenced": unevidenced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers per replica")
    parser.add_argument("--setups", default="sqlite-1,postgres-1,postgres-2")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--profile", help="py-spy profile of the first replica: .svg flame graph, else raw stacks"
    )
    parser.add_argument(
        "--profile-cpu", action="store_true",
        help="profile only the thread holding the GIL (where the CPU goes, not the waits)",
    )  # fmt: skip
    parser.add_argument(
        "--kill-every", type=float, default=0, help="SIGKILL (and restart) replica 0 every S s"
    )
    parser.add_argument(
        "--client", choices=("lean", "httpx"), default="lean",
        help="the load generator's HTTP client: lean (asyncio + httptools) or httpx",
    )  # fmt: skip
    parser.add_argument("--src", help="serve another source tree's donjon (its src folder)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # the machine's load without this benchmark
    speed_before = python_speed()
    rows = [run_setup(name, args) for name in args.setups.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.clients} clients, {args.seconds:.0f} s per setup, {args.workers} worker(s)")
    print(
        f"load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} at its end, "
        f"on {os.cpu_count()} CPUs; sum(range(1000)) took {speed_before:.0f} µs before, "
        f"{python_speed():.0f} µs after\n"
    )
    print(
        "| setup | req/s | p50 ms | p99 ms | server CPU ms/req | 5xx | audit verify | kills "
        "| acknowledged pushes | lost | gaps | without events | before (issue): req/s, p50, p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        before = ISSUE.get(str(row["setup"]), ("?", "?", "?"))
        print(
            f"| {row['setup']} | {row['rps']:.0f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} "
            f"| {row['server_cpu_ms']:.2f} "
            f"| {row['server_errors']} | {'ok' if row['audit_verify'] == 0 else 'FAILED'} "
            f"| {row['kills']} | {row['acknowledged_pushes']} | {row['lost']} | {row['gaps']} "
            f"| {row['unevidenced']} | {before[0]}, {before[1]} ms, {before[2]} ms |"
        )
    print(
        "\nserver CPU ms/req: user + system time of the replicas (all workers) per request "
        "served, independent of the machine's load. What the 2 cores could serve at most:\n"
    )
    print(
        "| setup | servers ms/req | load generator | PostgreSQL (all users) | total "
        "| 2 cores / servers alone | 2 cores / total |\n|---|---|---|---|---|---|---|"
    )
    for row in rows:
        server, gen, pg = row["server_cpu_ms"], row["client_cpu_ms"], row["postgres_cpu_ms"]
        total = server + gen + pg
        print(
            f"| {row['setup']} | {server:.2f} | {gen:.2f} | {pg:.2f} | {total:.2f} "
            f"| {2000 / server:.0f} req/s | {2000 / total:.0f} req/s |"
        )
    for row in rows:
        if row["errors"]:
            print(f"\n{row['setup']}: {row['error_count']} errors, the first: {row['errors']}")
        print(f"\n{row['setup']} statuses: {row['statuses']}")


if __name__ == "__main__":
    main()
