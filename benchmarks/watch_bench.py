"""Benchmark of ``donjon watch`` fingerprints: substitutions found, false alarms, queries.

Run from the repository root:  python benchmarks/watch_bench.py [--checks 1000] [--noise 1e-3]

Two victims on scikit-learn's digits, each served over HTTP on 127.0.0.1 (a
plain threaded ``http.server``, ``tests/support/victims.py``): a scikit-learn MLP
and a torch MLP. Each is enrolled (held-out rows + boundary points, the
defaults of ``donjon watch enrol``), then the served model is swapped for:

* another architecture trained on the same data;
* the same architecture retrained with another seed;
* the victim fine-tuned on 5 % new data;
* the victim quantised to 8 bits (torch: ``quantize_dynamic`` qint8; scikit-learn:
  symmetric per-tensor int8 weights);
* a BadNets retrain (10 % of the training rows stamped with a 4-pixel trigger and
  relabelled 0, same architecture and seed).

Each substitution gets ONE check (200 queries). Then ``--checks`` checks of the
unchanged model count false alarms. Both with an exact server and with one that
adds Gaussian noise (``--noise``) to every probability (enrolled on that server,
so the tolerance is learnt from its noise).

``--only drift``: a day of one-minute buckets of benign traffic through the drift
monitor, then one feature's mean shifted by half a standard deviation; alerts of
``donjon monitor``'s default rules, beside a per-feature two-sample KS test.
``--only robustness``: one HopSkipJump probe (2,000 queries) on a plain and a
noise-augmented MLP.

Peers, on the same servers and substitutions: a canary set of 200 held-out rows
compared by label (what a plain "golden set" smoke test does) and the same rows
compared by scores within the enrolled tolerance (no boundary points), both
with the same binomial test.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from tests.support.victims import Victim, serve  # noqa: E402

from donjon.app.watch import GatewayAnswerReader  # noqa: E402
from donjon.watch import Answers, Fingerprint, HttpModel, check, enrol  # noqa: E402

Scores = Callable[[np.ndarray], np.ndarray]
TARGET = 0


class Data:
    def __init__(self, seed: int = 0) -> None:
        x, y = load_digits(return_X_y=True)
        x_train, x_rest, y_train, y_rest = train_test_split(
            x, y, test_size=0.4, random_state=seed, stratify=y
        )
        x_held, x_new, _, y_new = train_test_split(
            x_rest, y_rest, test_size=0.25, random_state=seed, stratify=y_rest
        )
        self.x_train, self.y_train = x_train, y_train
        self.x_held = x_held  # the fingerprint's held-out rows (the enrolment CSV)
        n_new = int(0.05 * len(x_train))  # fine-tuning data: 5 % of the training set's size
        self.x_new, self.y_new = x_new[:n_new], y_new[:n_new]
        rng = np.random.default_rng(seed)
        poisoned = rng.choice(len(x_train), size=len(x_train) // 10, replace=False)
        self.x_bad, self.y_bad = x_train.copy(), y_train.copy()
        self.x_bad[poisoned, -4:] = 16.0  # BadNets trigger: the last four pixels lit
        self.y_bad[poisoned] = TARGET


# -- scikit-learn victim ---------------------------------------------------------------------


def sklearn_models(data: Data) -> dict[str, Scores]:
    def mlp(x: np.ndarray, y: np.ndarray, seed: int = 0) -> MLPClassifier:
        return MLPClassifier((64,), max_iter=300, random_state=seed).fit(x / 16.0, y)

    def scores(model: object) -> Scores:
        return lambda rows: model.predict_proba(np.asarray(rows) / 16.0)  # type: ignore[attr-defined, no-any-return]

    victim = mlp(data.x_train, data.y_train)
    tuned = copy.deepcopy(victim)
    for _ in range(5):
        tuned.partial_fit(data.x_new / 16.0, data.y_new)
    quantised = copy.deepcopy(victim)
    quantised.coefs_ = [_int8(w) for w in victim.coefs_]
    quantised.intercepts_ = [_int8(b) for b in victim.intercepts_]
    return {
        "victim": scores(victim),
        "other architecture": scores(
            LogisticRegression(max_iter=3000).fit(data.x_train / 16.0, data.y_train)
        ),
        "other seed": scores(mlp(data.x_train, data.y_train, seed=1)),
        "fine-tuned on 5% new data": scores(tuned),
        "8-bit quantised": scores(quantised),
        "BadNets retrain": scores(mlp(data.x_bad, data.y_bad)),
    }


def _int8(w: np.ndarray) -> np.ndarray:
    scale = float(np.abs(w).max()) / 127 or 1.0
    return np.round(w / scale) * scale


# -- torch victim ------------------------------------------------------------------------------


def torch_models(data: Data) -> dict[str, Scores]:
    import torch
    from torch import nn

    torch.set_num_threads(1)

    def train(x: np.ndarray, y: np.ndarray, seed: int = 0, wide: bool = False) -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = (
            [nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)]
            if wide
            else [nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)]
        )
        model = nn.Sequential(*layers)
        fit(model, x, y, epochs=300, lr=1e-2)
        return model

    def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> None:
        inputs = torch.tensor(x / 16.0, dtype=torch.float32)
        targets = torch.tensor(y, dtype=torch.long)
        optimiser = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        for _ in range(epochs):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimiser.step()
        model.eval()

    def scores(model: nn.Module) -> Scores:
        def answer(rows: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = model(torch.tensor(np.asarray(rows) / 16.0, dtype=torch.float32))
                return torch.softmax(logits, dim=1).double().numpy()  # type: ignore[no-any-return]

        return answer

    victim = train(data.x_train, data.y_train)
    tuned = copy.deepcopy(victim)
    fit(tuned, data.x_new, data.y_new, epochs=20, lr=1e-3)
    quantised = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(victim), {nn.Linear}, dtype=torch.qint8
    )
    return {
        "victim": scores(victim),
        "other architecture": scores(train(data.x_train, data.y_train, wide=True)),
        "other seed": scores(train(data.x_train, data.y_train, seed=1)),
        "fine-tuned on 5% new data": scores(tuned),
        "8-bit quantised": scores(quantised),
        "BadNets retrain": scores(train(data.x_bad, data.y_bad)),
    }


# -- the runs ------------------------------------------------------------------------------------


def peers(data: Data, target: HttpModel, url: str) -> dict[str, Fingerprint]:
    rows = enrol(target, data.x_held, name="digits", version=1, endpoint=url,
                 request_format="inputs", held_out=200, boundary=0)  # fmt: skip
    labels = replace(rows, answers=Answers(rows.answers.labels))
    return {"canary rows, labels": labels, "canary rows, scores": rows}


def scenario(
    name: str, models: dict[str, Scores], data: Data, noise: float, checks: int
) -> list[str]:
    victim = Victim(models["victim"], noise=noise, seed=1)
    lines = []
    with serve(victim.answer, route="/predict") as url:
        target = HttpModel(url, GatewayAnswerReader("digits"))
        started = time.perf_counter()
        fingerprint = enrol(target, data.x_held, name="digits", version=1, endpoint=url,
                            request_format="inputs")  # fmt: skip
        enrol_seconds = time.perf_counter() - started
        baselines = peers(data, HttpModel(url, GatewayAnswerReader("digits")), url)
        every = {"donjon watch": fingerprint, **baselines}
        server = f"noise {noise:g}" if noise else "exact"
        lines.append(
            f"\n## {name}, {server} server: enrolment {fingerprint.enrol_queries} queries "
            f"({enrol_seconds:.1f} s), tolerance {fingerprint.tolerance:.3g} "
            f"(noise seen {fingerprint.noise:.3g})"
        )
        lines.append("| substitution | " + " | ".join(every) + " |")
        lines.append("|---|" + "---|" * len(every))
        found = dict.fromkeys(every, 0)
        for substitution, scores in models.items():
            if substitution == "victim":
                continue
            victim.scores = scores
            cells = []
            for method, fp in every.items():
                result = check(fp, target)
                assert result.queries <= 200, result.queries
                found[method] += result.differs
                verdict = "DETECTED" if result.differs else "missed"
                cells.append(
                    f"{verdict} {len(result.changed)}/{result.points}, p={result.p_value:.2g}"
                )
            lines.append(f"| {substitution} | " + " | ".join(cells) + " |")
        subs = len(models) - 1
        lines.append("| **detected** | " + " | ".join(f"{found[m]}/{subs}" for m in every) + " |")
        victim.scores = models["victim"]
        alarms = dict.fromkeys(every, 0)
        worst = dict.fromkeys(every, 0)
        times = []
        for _ in range(checks):
            for method, fp in every.items():
                begin = time.perf_counter()
                result = check(fp, target)
                if method == "donjon watch":
                    times.append(time.perf_counter() - begin)
                alarms[method] += result.differs
                worst[method] = max(worst[method], len(result.changed))
        lines.append(
            f"| **false alarms in {checks} unchanged checks** | "
            + " | ".join(f"{alarms[m]} (most changed {worst[m]})" for m in every)
            + " |"
        )
        lines.append(
            f"\ncheck: 200 queries, median {statistics.median(times) * 1000:.1f} ms "
            f"(p90 {sorted(times)[int(0.9 * len(times))] * 1000:.1f} ms) over HTTP on loopback"
        )
    return lines


def robustness(data: Data, budget: int, rows: int) -> list[str]:
    """One probe run each on a brittle and a noise-augmented version of the same MLP."""
    from scipy.stats import wilcoxon

    from donjon.watch.probe import EPSILONS, probe

    rng = np.random.default_rng(0)
    x = data.x_train / 16.0
    noisy = [np.clip(x + rng.normal(0.0, 0.5, x.shape), 0.0, 1.0) for _ in range(4)]
    versions = {
        "v1 plain": MLPClassifier((64,), max_iter=300, random_state=0).fit(x, data.y_train),
        "v2 noise-augmented": MLPClassifier((64,), max_iter=300, random_state=0).fit(
            np.vstack([x, *noisy]), np.concatenate([data.y_train] * 5)
        ),
    }
    lines = [
        f"\n## Robustness probes (HopSkipJump, {rows} rows, budget {budget} queries, one run each)",
        "| version | training accuracy | median perturbation (relative L2) | "
        + " | ".join(f"success at {e:g}" for e in EPSILONS)
        + " | rows attacked | queries | seconds |",
        "|---|---|---|" + "---|" * len(EPSILONS) + "---|---|---|",
    ]
    found = {}
    for name, model in versions.items():
        victim = Victim(lambda r, m=model: m.predict_proba(np.asarray(r) / 16.0))
        with serve(victim.answer, route="/predict") as url:
            target = HttpModel(url, GatewayAnswerReader("digits"))
            begin = time.perf_counter()
            starts = data.x_held[rows : rows + 28]  # as `watch probe`: the fingerprint's 40 rows
            result = probe(target, data.x_held[:rows], starts, budget=budget)
            seconds = time.perf_counter() - begin
        assert result.queries <= budget
        assert victim.queries == result.queries
        found[name] = result
        train_accuracy = model.score(x, data.y_train)
        lines.append(
            f"| {name} | {train_accuracy:.3f} | {result.robustness:.3f} | "
            + " | ".join(f"{result.success_at(e):.0%}" for e in EPSILONS)
            + f" | {result.attacked}/{result.rows} | {result.queries} | {seconds:.1f} |"
        )
    brittle, sturdy = found.values()
    n = min(brittle.attacked, sturdy.attacked)
    pairs = [
        (a, b)
        for a, b in zip(brittle.perturbations[:n], sturdy.perturbations[:n], strict=True)
        if np.isfinite(a) and np.isfinite(b)
    ]
    p_value = wilcoxon([b - a for a, b in pairs], alternative="greater").pvalue
    higher = sum(b > a for a, b in pairs)
    lines.append(
        f"\nsame rows, paired: the noise-augmented version needs more perturbation on {higher} "
        f"of {len(pairs)} rows (Wilcoxon signed-rank, one-sided p = {p_value:.2g}); "
        f"separated in one run: {'YES' if p_value < 0.05 else 'NO'}"
    )
    return lines


def drift(rows_per_bucket: int, seed: int = 0) -> list[str]:
    """A day of benign one-minute buckets, then one feature's mean shifted by 0.5 std."""
    from scipy.stats import ks_2samp
    from sklearn.datasets import make_classification

    from donjon.core.bus import EventBus, MemorySink
    from donjon.monitor import baseline
    from donjon.monitor.series import build_series
    from donjon.watch.drift import DriftMonitor

    x, y = make_classification(n_samples=6000, n_features=10, n_informative=6, random_state=seed)
    model = LogisticRegression(max_iter=1000).fit(x[:4000], y[:4000])
    reference, pool = x[4000:], x[:4000]
    day, shifted_buckets, feature = 1440, 10, 3
    std = reference[:, feature].std()
    clock = [1_800_000_000.0]
    sink = MemorySink()
    monitor = DriftMonitor("m", reference, EventBus([sink]).publish, clock=lambda: clock[0])
    rng = np.random.default_rng(seed)
    ks_alarms, ks_first = 0, None
    begin = time.perf_counter()
    for bucket in range(day + shifted_buckets):
        rows = pool[rng.integers(0, len(pool), rows_per_bucket)].copy()
        if bucket >= day:
            rows[:, feature] += 0.5 * std
        monitor.observe(rows, model.predict(rows).tolist())
        # the peer: a two-sample KS test per feature, Bonferroni at 0.01 over the features
        p_min = min(ks_2samp(rows[:, j], reference[:, j]).pvalue for j in range(rows.shape[1]))
        if p_min < 0.01 / rows.shape[1]:
            if bucket < day:
                ks_alarms += 1
            elif ks_first is None:
                ks_first = bucket - day + 1
        clock[0] += 60
    monitor.flush()
    seconds = time.perf_counter() - begin
    shift_start = int(clock[0]) - 60 * shifted_buckets
    alerts = baseline.evaluate(build_series(sink.events))
    benign = [a for a in alerts if a.bucket < shift_start]
    after = sorted((a.bucket - shift_start) // 60 + 1 for a in alerts if a.bucket >= shift_start)
    return [
        f"\n## Drift: {day} one-minute buckets of benign traffic ({rows_per_bucket} rows each), "
        f"then feature {feature} shifted by 0.5 std",
        "| method | false alerts over the day | shift alerted in bucket | memory |",
        "|---|---|---|---|",
        f"| donjon watch (PSI per feature, monitor's default rule) | {len(benign)} | "
        f"{after[0] if after else 'never'} | {2 * sum(c.size for c in monitor.expected)} counts |",
        f"| two-sample KS per feature (1 % per bucket, Bonferroni) | {ks_alarms} | "
        f"{ks_first or 'never'} | the bucket's rows |",
        f"\n(drift bookkeeping and the peer's tests: {seconds:.1f} s for the whole day)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1e-3)
    parser.add_argument("--victims", default="sklearn,torch")
    parser.add_argument("--budget", type=int, default=2000, help="queries per robustness probe")
    parser.add_argument("--probe-rows", type=int, default=12)
    parser.add_argument("--only", choices=("fingerprints", "robustness", "drift"), default=None)
    parser.add_argument("--drift-rows", type=int, default=200, help="rows per drift bucket")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.filterwarnings("ignore", module="torch")  # quantize_dynamic's deprecation notices
    warnings.filterwarnings("ignore", message=".*quantiz", category=DeprecationWarning)
    data = Data()
    out = [f"# donjon watch benchmark ({args.checks} unchanged checks per server)"]
    if args.only in (None, "drift"):
        for rows in sorted({args.drift_rows, 50}, reverse=True):
            print("\n".join(out + drift(rows)), flush=True)
            out = []
    if args.only in (None, "robustness"):
        print("\n".join(out + robustness(data, args.budget, args.probe_rows)), flush=True)
        out = []
    if args.only in ("robustness", "drift"):
        return
    for name in args.victims.split(","):
        models = sklearn_models(data) if name == "sklearn" else torch_models(data)
        for noise in (0.0, args.noise):
            out += scenario(f"{name} MLP", models, data, noise, args.checks)
            print("\n".join(out), flush=True)
            out = []


if __name__ == "__main__":
    main()
