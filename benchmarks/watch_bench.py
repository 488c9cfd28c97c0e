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

``--only drift``: a day of one-minute traffic (50, 100, 200 and 1,000 rows a
minute) through the drift monitor, then one feature's mean shifted by half a
standard deviation; alerts of ``donjon monitor``'s default rules, beside the
PSI band rule that was the default before and a per-minute two-sample KS test.
``--only robustness`` (``--quick``: 2 seeds): pairs whose true robustness is measured
white-box on all held-out rows: logistic regressions (each row's exact L2 distance to
the decision boundary), plain vs noise-augmented and weak vs strong L2 regularisation;
a torch MLP plain vs noise-augmented (ART's DeepFool in process); and a control (one
model probed twice, for both victims, over ``--control-seeds``, served with Gaussian
noise ``--noise`` on every probability so the labels near the boundary are not
deterministic). Each version gets ONE black-box probe over HTTP (2,000 queries: random
rays from 40 rows and a surrogate's transfer attack); the paired test's verdict is
printed beside the ground-truth gap, per seed (``--seeds``).

Peers, on the same servers and substitutions: a canary set of 200 held-out rows
compared by label (what a plain "golden set" smoke test does) and the same rows
compared by scores within the enrolled tolerance (no boundary points), both
with the same binomial test.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

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


def linear(data: Data, c: float, sigma: float, seed: int) -> LogisticRegression:
    """Logistic regression on pixels / 16, optionally on 4 Gaussian-noised copies as well."""
    x = data.x_train / 16.0
    rng = np.random.default_rng(seed)
    copies = [x] + [x + rng.normal(0.0, sigma, x.shape) for _ in range(4 if sigma else 0)]
    y = np.concatenate([data.y_train] * len(copies))
    return LogisticRegression(C=c, max_iter=3000).fit(np.vstack(copies), y)


def boundary_distance(model: LogisticRegression, rows: np.ndarray) -> np.ndarray:
    """Ground truth, white-box: each row's exact L2 distance to the linear model's decision
    boundary (in pixel units, unclipped), relative to the row's norm as the probe measures."""
    weights, bias = model.coef_ / 16.0, model.intercept_
    scores = rows @ weights.T + bias
    label = scores.argmax(axis=1)
    out = np.empty(len(rows))
    for i, y in enumerate(label):
        others = np.arange(len(weights)) != y
        gaps = (scores[i, y] - scores[i, others]) / np.linalg.norm(
            weights[y] - weights[others], axis=1
        )
        out[i] = gaps.min() / (np.linalg.norm(rows[i]) or 1.0)
    return out


def torch_mlp(data: Data, sigma: float, seed: int) -> Any:
    """The torch victim's architecture (64-64-10) on pixels, optionally noise-augmented."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x = data.x_train / 16.0
    rng = np.random.default_rng(seed)
    copies = [x] + [x + rng.normal(0.0, sigma, x.shape) for _ in range(4 if sigma else 0)]
    inputs = torch.tensor(np.vstack(copies), dtype=torch.float32)
    targets = torch.tensor(np.concatenate([data.y_train] * len(copies)), dtype=torch.long)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(inputs), targets).backward()
        optimiser.step()
    model.eval()

    class Pixels(nn.Module):  # the server gets raw pixels
        def forward(self, x: Any) -> Any:
            return x / 16.0

    return nn.Sequential(Pixels(), model)


def deepfool_distance(model: Any, rows: np.ndarray) -> np.ndarray:
    """Ground truth, white-box: ART's DeepFool on the torch model in process (unclipped: an
    upper bound of each row's minimal L2 distance), relative to the row's norm."""
    import torch
    from art.attacks.evasion import DeepFool
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model, loss=torch.nn.CrossEntropyLoss(), input_shape=(64,), nb_classes=10
    )
    x = rows.astype(np.float32)
    adversarial = DeepFool(classifier, max_iter=50, epsilon=0.02, verbose=False).generate(x)
    moved = classifier.predict(adversarial).argmax(1) != classifier.predict(x).argmax(1)
    distance = np.linalg.norm(adversarial - x, axis=1) / np.linalg.norm(x, axis=1)
    return np.where(moved, distance, np.inf)


def version(kind: str, params: tuple[float, ...], data: Data, seed: int) -> tuple[Scores, Any]:
    """A served model's scores and its ground-truth distances over all held-out rows."""
    if kind == "linear":  # params: C, sigma and (optional) which noise draw
        draw = int(params[2]) if len(params) > 2 else 0
        model = linear(data, params[0], params[1], seed + 1000 * draw)
        truth = boundary_distance(model, data.x_held)
        return lambda r: model.predict_proba(np.asarray(r) / 16.0), truth
    import torch

    net = torch_mlp(data, params[0], seed + 1000 * int(params[1]) if len(params) > 1 else seed)

    def scores(r: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = net(torch.tensor(np.asarray(r), dtype=torch.float32))
            return torch.softmax(logits, dim=1).double().numpy()  # type: ignore[no-any-return]

    return scores, deepfool_distance(net, data.x_held)


# (brittle, robust) by the ground truth; a control probes one model twice (attack seeds differ)
# or two models trained alike (another noise draw or training seed: as robust, other weights)
PAIRS: dict[str, tuple[str, tuple[float, ...], tuple[float, ...]]] = {
    "noise augmentation (linear, C 100; sigma 0 vs 1)": ("linear", (100.0, 0.0), (100.0, 1.0)),
    "L2 regularisation (linear, C 100 vs 0.01)": ("linear", (100.0, 0.0), (0.01, 0.0)),
    "noise augmentation (torch MLP; sigma 0 vs 0.5)": ("mlp", (0.0,), (0.5,)),
    "control: one model (linear, C 100) probed twice": ("linear", (100.0, 0.0), (100.0, 0.0)),
    "control: one model (torch MLP) probed twice": ("mlp", (0.0,), (0.0,)),
    "control: noise-augmented linear, two noise draws": ("linear", (100.0, 1.0), (100.0, 1.0, 1)),
    "control: torch MLP, two training seeds": ("mlp", (0.0,), (0.0, 1)),
}


def _probe_served(
    scores: Scores, data: Data, rows: int, budget: int, seed: int, noise: float = 0.0
) -> Any:
    """As `watch probe`: the fingerprint's held-out rows are the probe rows and references."""
    from donjon.watch.probe import probe

    victim = Victim(scores, noise=noise, seed=seed)
    with serve(victim.answer, route="/predict") as url:
        target = HttpModel(url, GatewayAnswerReader("digits"))
        held = data.x_held[:rows]
        result = probe(target, held, held, budget=budget, seed=seed)
    assert result.queries <= budget == result.budget
    assert victim.queries == result.queries
    return result


def _spearman(estimate: tuple[float, ...], truth: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(estimate, truth[: len(estimate)]).statistic)


def robustness(
    budget: int, rows: int, seeds: int, control_seeds: int, first: int = 0, noise: float = 1e-3
) -> list[str]:
    """Per pair and seed: the white-box ground truth, then ONE black-box probe of each version.

    A seed draws another train / held-out split (so other probe rows), another noise
    draw and another attack seed. Both versions are probed over HTTP on the same rows
    (paired), in alternated order; a control's second run uses another attack seed and
    both its runs a server with ``noise`` on its probabilities (each its own draws).
    Seeds from ``seeds`` to ``control_seeds`` run the controls only; ``first``: the
    first seed (to split a run over processes).
    """
    from scipy.stats import wilcoxon

    from donjon.watch.pairing import MIN_DROP, against_previous, paired

    lines = [
        f"\n## Robustness probes against white-box ground truth ({rows} probe rows, budget "
        f"{budget} queries, {seeds} seeds; controls over {max(seeds, control_seeds)} seeds)",
        "| pair | seed | true median distance, all held-out rows: brittle / robust (ratio) | "
        "true, probe rows: median brittle / robust, robust farther, oracle paired p | "
        "probe median: brittle / robust | rows attacked | queries | rays a row | "
        "probe vs truth per row (Spearman): brittle, robust | probe: robust needs "
        "more, median ratio | paired p (one-sided) | separated | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tally: dict[str, list[float]] = {name: [] for name in PAIRS}
    alerts: dict[str, list[bool]] = {name: [] for name in PAIRS}  # DJ-WT-003 itself
    for seed in range(first, max(seeds, control_seeds)):
        data = Data(seed)
        made: dict[tuple[str, tuple[float, ...]], tuple[Scores, Any]] = {}  # per seed
        for name, (kind, weak, strong) in PAIRS.items():
            control = name.startswith("control")
            if seed >= seeds and not control:
                continue
            begin = time.process_time()
            for params in (weak, strong):
                if (kind, params) not in made:
                    made[kind, params] = version(kind, params, data, seed)
            (brittle, brittle_truth), (sturdy, sturdy_truth) = made[kind, weak], made[kind, strong]
            truth = [brittle_truth, sturdy_truth]
            near, far = (t[:rows] for t in truth)
            oracle = (
                float(wilcoxon(far - near, alternative="greater").pvalue)
                if weak != strong
                else math.nan
            )
            runs = [(brittle, seed), (sturdy, seed + 1000 if weak == strong else seed)]
            order = runs if seed % 2 == 0 else runs[::-1]  # alternate which is probed first
            found = {
                id(run): _probe_served(run[0], data, rows, budget, run[1], noise * control)
                for run in order
            }
            a, b = (found[id(run)] for run in runs)
            cpu = time.process_time() - begin
            pair = paired(a.perturbations, b.perturbations)
            apart = pair["p_value"] < 0.05
            tally[name].append(pair["p_value"])
            previous = {"perturbations": list(b.perturbations)}
            alerts[name].append(against_previous(a.perturbations, 0, previous)["less_robust"])
            ratio = np.median(truth[1]) / np.median(truth[0])
            print(f"  seed {seed}, {name}: p={pair['p_value']:.2g} ({cpu:.1f} s CPU)", flush=True)
            lines.append(
                f"| {name} | {seed} | {np.median(truth[0]):.3f} / {np.median(truth[1]):.3f} "
                f"({ratio:.2f}x, {len(data.x_held)} rows) | {np.median(near):.3f} / "
                f"{np.median(far):.3f}, {int((far > near).sum())}/{rows}, {oracle:.2g} | "
                f"{a.robustness:.3f} / {b.robustness:.3f} | "
                f"{a.attacked}/{b.attacked} of {rows} | {a.queries}/{b.queries} | "
                f"{a.rays}/{b.rays} | {_spearman(a.perturbations, near):.2f}, "
                f"{_spearman(b.perturbations, far):.2f} | "
                f"{pair['higher']}/{pair['rows']}, {pair['ratio']:.2f} | {pair['p_value']:.2g} | "
                f"{'yes' if apart else 'no'} | {cpu:.1f} |"
            )
    lines.append(
        "\n| pair | separated in one probe run: paired p < 0.05 | p < 0.01 | DJ-WT-003 "
        f"(p < 0.01, ratio <= {1 - MIN_DROP:.2g}) |"
    )
    lines.append("|---|---|---|---|")
    for name, p_values in tally.items():
        label = "falsely separated" if name.startswith("control: one") else "separated"
        hits = [sum(p < alpha for p in p_values) for alpha in (0.05, 0.01)]
        lines.append(
            f"| {name} | {label} in {hits[0]} of {len(p_values)} seeds | {hits[1]} of "
            f"{len(p_values)} | {sum(alerts[name])} of {len(p_values)} |"
        )
    return lines


def drift(rows_per_minute: int, seed: int = 0) -> dict[str, object]:
    """A day of benign one-minute traffic, then one feature's mean shifted by 0.5 std."""
    from scipy.stats import ks_2samp
    from sklearn.datasets import make_classification

    from donjon.core.bus import EventBus, MemorySink
    from donjon.monitor import baseline
    from donjon.monitor.series import build_series
    from donjon.watch.drift import DriftMonitor

    x, y = make_classification(n_samples=6000, n_features=10, n_informative=6, random_state=seed)
    model = LogisticRegression(max_iter=1000).fit(x[:4000], y[:4000])
    reference, pool = x[4000:], x[:4000]
    day, shifted_minutes, feature = 1440, 60, 3
    std = reference[:, feature].std()
    clock = [1_800_000_000.0]
    sink = MemorySink()
    monitor = DriftMonitor("m", reference, EventBus([sink]).publish, clock=lambda: clock[0])
    rng = np.random.default_rng(seed)
    ks_alarms, ks_first = 0, None
    begin = time.process_time()
    for minute in range(day + shifted_minutes):
        rows = pool[rng.integers(0, len(pool), rows_per_minute)].copy()
        if minute >= day:
            rows[:, feature] += 0.5 * std
        monitor.observe(rows, model.predict(rows).tolist())
        # the peer: a two-sample KS test per feature of the minute's rows, Bonferroni at 1e-5
        p_min = min(ks_2samp(rows[:, j], reference[:, j]).pvalue for j in range(rows.shape[1]))
        if p_min < 1e-5 / rows.shape[1]:
            if minute < day:
                ks_alarms += 1
            elif ks_first is None:
                ks_first = minute - day + 1
        clock[0] += 60
    cpu = time.process_time() - begin
    shift_start = int(clock[0]) - 60 * shifted_minutes
    drift_events = [e for e in sink.events if e.action == "watch.drift"]
    buckets_after = [e for e in drift_events if e.time.timestamp() >= shift_start]
    series = build_series(sink.events)
    new = baseline.evaluate(series)
    old_rule = baseline.AlertRule("psi:*", min_width=0.1, upper_only=True)  # the old default
    old = baseline.evaluate({k: v for k, v in series.items() if k.startswith("psi:")}, [old_rule])

    def detection(alerts: list[baseline.Alert]) -> tuple[int, int | None, int | None]:
        benign = sum(a.bucket < shift_start for a in alerts)
        after = sorted(a.bucket for a in alerts if a.bucket >= shift_start)
        if not after:
            return benign, None, None
        closed = [e for e in buckets_after if e.time.timestamp() <= after[0]]
        ends = closed[-1].time.timestamp() + closed[-1].attributes["seconds"]
        return benign, len(closed), int(ends - shift_start) // 60  # drift bucket, minutes

    return {
        "rows": rows_per_minute,
        "bucket_rows": drift_events[0].attributes["rows"] if drift_events else 0,
        "bucket_minutes": drift_events[0].attributes["seconds"] / 60 if drift_events else 0,
        "new": detection([a for a in new if a.metric == "drift:m"]),
        "old": detection(old),
        "ks": (ks_alarms, ks_first),
        "cpu": cpu,
    }


def drift_table(seeds: int, sizes: tuple[int, ...]) -> list[str]:
    lines = [
        "\n## Drift: a day of one-minute traffic, then feature 3's mean shifted by 0.5 std "
        f"({seeds} seeds each)",
        "| rows per minute | drift bucket | donjon watch (p < 1e-5): false alerts over the day | "
        "shift alerted in drift bucket (minutes after the shift) | PSI band rule (the old "
        "default): false alerts | shift alerted | KS per minute (Bonferroni 1e-5): false "
        "alerts | shift alerted in minute | CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def when(found: tuple[int, int | None, int | None]) -> str:
        return "never" if found[1] is None else f"{found[1]} ({found[2]})"

    for size in sizes:
        for seed in range(seeds):
            r = drift(size, seed)
            new, old, ks = r["new"], r["old"], r["ks"]
            lines.append(
                f"| {size} (seed {seed}) | {r['bucket_rows']} rows, {r['bucket_minutes']:g} min | "
                f"{new[0]} | {when(new)} | {old[0]} | {when(old)} | {ks[0]} | "
                f"{ks[1] or 'never'} | {r['cpu']:.1f} |"  # type: ignore[index]
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1e-3)
    parser.add_argument("--victims", default="sklearn,torch")
    parser.add_argument("--budget", type=int, default=2000, help="queries per robustness probe")
    parser.add_argument("--probe-rows", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the robustness pairs")
    parser.add_argument("--control-seeds", type=int, default=20, help="seeds of the controls")
    parser.add_argument("--first-seed", type=int, default=0, help="robustness: start here")
    parser.add_argument("--drift-seeds", type=int, default=2, help="seeds per drift bucket size")
    parser.add_argument("--drift-rows", default="50,100,200,1000", help="rows per minute")
    parser.add_argument("--quick", action="store_true", help="robustness: 2 seeds")
    parser.add_argument("--only", choices=("fingerprints", "robustness", "drift"), default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.filterwarnings("ignore", module="torch")  # quantize_dynamic's deprecation notices
    warnings.filterwarnings("ignore", message=".*quantiz", category=DeprecationWarning)
    data = Data()
    seeds = 2 if args.quick else args.seeds
    controls = 2 if args.quick else args.control_seeds
    out = [f"# donjon watch benchmark ({args.checks} unchanged checks per server)"]
    if args.only in (None, "drift"):
        sizes = tuple(int(v) for v in args.drift_rows.split(","))
        print("\n".join(out + drift_table(args.drift_seeds, sizes)), flush=True)
        out = []
    if args.only in (None, "robustness"):
        found = robustness(
            args.budget, args.probe_rows, seeds, controls, args.first_seed, args.noise
        )
        print("\n".join(out + found))
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
