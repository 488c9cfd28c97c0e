"""Authorisation decisions per second: Donjon's Cedar authorizer against Casbin.

    python benchmarks/authz_bench.py [--decisions 20000]

The workload cycles over 6 principals x 12 resources x 11 actions of the example
policy (docs/access.md). Donjon is measured warm (entity handles cached, the
steady state of a server) and cold (no cache: entities built for every
request). The peer is Casbin (pip install casbin) with an RBAC model using
keyMatch and deny-overrides, the closest Casbin gets to the same policy; it
cannot express the context conditions (stage, signed), so it runs the cells
without context, and its agreement with Donjon on those cells is printed.
Target: >= 10,000 decisions/s in-process.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.authz.example import EXAMPLE_POLICY

from donjon.authz import ACTIONS, CedarAuthorizer, load_policies
from donjon.core import MemorySink, Principal, PrincipalKind

PRINCIPALS = [
    Principal("alice", PrincipalKind.USER, groups=("analysts",)),
    Principal("bob", PrincipalKind.USER, groups=("ml-engineers",)),
    Principal("carol", PrincipalKind.USER, groups=("contractors", "ml-engineers")),
    Principal("dave", PrincipalKind.USER),
    Principal("ci-bot", PrincipalKind.SERVICE),
]
RESOURCES = [
    "datasets/fraud/transactions",
    "datasets/fraud/2026/q1",
    "datasets/fraud/pii/cards",
    "datasets/marketing/clicks",
    "models/fraud-clf@3",
    "models/churn",
]

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act, eft
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = g(r.sub, p.sub) && (keyMatch(r.obj, p.obj) || r.obj == p.obj) \
    && (r.act == p.act || p.act == "*")
"""
CASBIN_POLICY = """
p, user:alice, datasets/fraud/*, dataset.read, allow
p, user:alice, datasets/fraud/*, dataset.list, allow
p, user:alice, datasets/fraud/pii, *, deny
p, user:alice, datasets/fraud/pii/*, *, deny
p, ml-engineers, models/*, model.read, allow
p, ml-engineers, datasets/*, dataset.read, allow
p, contractors, datasets/fraud/pii, *, deny
p, contractors, datasets/fraud/pii/*, *, deny
p, service:ci-bot, models/*, model.write, allow
"""


def workload(n: int) -> list[tuple[Principal, str, str]]:
    cells = list(itertools.product(PRINCIPALS, ACTIONS, RESOURCES))
    return [cells[i % len(cells)] for i in range(n)]


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def bench_donjon(requests: list[tuple[Principal, str, str]], cache: int, publish: bool) -> float:
    sink = MemorySink()
    authorizer = CedarAuthorizer(
        load_policies(EXAMPLE_POLICY), cache_size=cache, publish=sink.emit if publish else None
    )
    for p, a, r in requests[:200]:
        authorizer.authorize(p, a, r)
    start = time.perf_counter()
    for p, a, r in requests:
        authorizer.authorize(p, a, r)
    return rate(len(requests), time.perf_counter() - start)


def bench_casbin(requests: list[tuple[Principal, str, str]], tmp: Path) -> tuple[float, float]:
    import casbin

    (tmp / "model.conf").write_text(CASBIN_MODEL)
    groups = {f"g, {p}, {g}" for p in PRINCIPALS for g in p.groups}
    (tmp / "policy.csv").write_text(CASBIN_POLICY + "\n".join(sorted(groups)) + "\n")
    enforcer = casbin.Enforcer(str(tmp / "model.conf"), str(tmp / "policy.csv"))
    donjon = CedarAuthorizer(load_policies(EXAMPLE_POLICY))
    cells = set(requests)
    agree = sum(
        enforcer.enforce(str(p), r, a) == donjon.authorize(p, a, r).allowed for p, a, r in cells
    )
    start = time.perf_counter()
    for p, a, r in requests:
        enforcer.enforce(str(p), r, a)
    return rate(len(requests), time.perf_counter() - start), agree / len(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    args = parser.parse_args()
    requests = workload(args.decisions)
    rows = [
        ("donjon cedar, warm cache", bench_donjon(requests, 4096, False)),
        ("donjon cedar, warm + event per decision", bench_donjon(requests, 4096, True)),
        ("donjon cedar, cold (no entity cache)", bench_donjon(requests, 0, False)),
    ]
    peer_note = "casbin not installed: peer none"
    try:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            casbin_rate, agreement = bench_casbin(requests, Path(tmp))
        rows.append(("casbin (keyMatch RBAC, no context)", casbin_rate))
        peer_note = f"casbin agrees with donjon on {agreement:.1%} of the context-free cells"
    except ImportError:
        pass
    print(
        f"{args.decisions} decisions, {len(PRINCIPALS)} principals x {len(ACTIONS)} actions "
        f"x {len(RESOURCES)} resources"
    )
    print(f"{'engine':45} {'decisions/s':>12} {'vs target 10k':>14}")
    for name, value in rows:
        print(f"{name:45} {value:12,.0f} {value / 10_000:13.2f}x")
    if len(rows) == 4:
        print(f"donjon warm / casbin: {rows[0][1] / rows[3][1]:.2f}x")
    print(peer_note)


if __name__ == "__main__":
    main()
