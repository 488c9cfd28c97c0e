"""Benchmark of ``donjon gateway`` against ART's attacks, benign streams and two peers.

Run from the repository root:  python benchmarks/gateway_bench.py [--quick]
(``--variety``: other encodings, victims and server shapes, see ``gateway_variety.py``;
``--overhead-only --state redis``: also throughput and CPU per request with the
detectors' state and quotas in Redis against in-process, and the detection counts
of two replicas sharing Redis against one process; ``--state-only`` for that
comparison alone, ``--baseline DIR`` to run another checkout's Redis state in the
same alternated rounds, old against new.)

Every attack talks HTTP to a gateway (uvicorn, in this process) in front of a
victim (scikit-learn MLP on scikit-learn's digits, plain http.server). The
gateway's detectors run in *alert* mode so each attack runs to its end; we
record the query at which each detector first fired and what the attacker had
achieved by then. PRADA and a nearest-neighbour stateful detector (see
``gateway_baselines.py``) replay the same queries in the same run. Overhead is
measured with the victim and the gateway in their own processes (the gateway
started by the real CLI) and a load generator here.

``--overhead-only`` also prints, at 64 clients, medians over rounds whose order
(direct first or proxied first) alternates: the CPU microseconds per request of
the gateway and of the victim, and the throughput ratio proxied / direct, twice:

* *shared cores*: the load generator, the victim and the gateway share every core
  (on a 2-core machine the gateway's CPU is taken from the victim's: the ratio is
  about ``victim / (victim + gateway)`` of CPU per request, whatever the gateway
  does besides);
* *gateway core*: the gateway pinned alone on one core, the victim and the load
  generator on the other, and so are they in the direct runs -- the ratio a
  deployment that gives the gateway a core of its own would see (1.0 while the
  gateway's CPU per request stays below the victim's).

``--replay``: the detectors' verdicts on the recorded query stream of
``tests/gateway/replay.py``, compared with its record (same signals at the same
requests, or the differences).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]  # this checkout first
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from art.attacks.evasion import (  # noqa: E402
    BoundaryAttack,
    FastGradientMethod,
    HopSkipJump,
    ProjectedGradientDescent,
)
from art.attacks.extraction import CopycatCNN, KnockoffNets  # noqa: E402
from art.attacks.inference.membership_inference import (  # noqa: E402
    LabelOnlyDecisionBoundary,
    MembershipInferenceBlackBox,
)
from art.estimators.classification import BlackBoxClassifier  # noqa: E402
from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression  # noqa: E402
from gateway_baselines import NearestNeighbour, Prada, first_flag  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import pairwise_distances  # noqa: E402
from tests.gateway.harness import (  # noqa: E402
    Blocked,
    Gateway,
    HttpModel,
    Victim,
    serve_gateway,
    serve_victim,
    train_victim,
    victim_scores,
    write_setup,
)

from donjon.gateway import ReferenceProfile, build_pipeline  # noqa: E402
from donjon.gateway.pipeline import GatewayRequest  # noqa: E402
from donjon.gateway.replies import Reply  # noqa: E402

STATEFUL = {"DJ-GW-001", "DJ-GW-002", "DJ-GW-005"}
ALERT = {
    "detectors": {
        "evasion": {"action": "alert"},
        "membership": {"action": "alert"},
        "extraction": {"action": "alert"},
        "scatter": {"action": "alert"},
        "ood": {"action": "log"},
    }
}


class Cap(Exception):
    """The attack used up its query budget in this benchmark."""


class Capped(HttpModel):
    def __init__(self, url: str, token: str, cap: int, rounded: bool = False) -> None:
        super().__init__(url, token)
        self.cap = cap
        self.rounded = rounded

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.queries >= self.cap:
            raise Cap
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64)).reshape(-1, 64)
        if self.rounded:  # an adaptive attacker that stays on the data's value grid
            rows = np.clip(np.rint(rows), 0, 16)
        return super().__call__(rows)


class Thief(ScikitlearnLogisticRegression):
    """ART's extraction attacks train their copy with (batch_size, nb_epochs); sklearn's
    logistic regression cannot, so the copy refits on everything it has seen so far."""

    def __init__(self) -> None:
        super().__init__(LogisticRegression(max_iter=500), clip_values=(0, 16))
        self.seen_x: list[np.ndarray] = []
        self.seen_y: list[np.ndarray] = []

    def fit(self, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> None:
        self.seen_x.append(np.asarray(x))
        self.seen_y.append(np.asarray(y).argmax(axis=1) if np.ndim(y) == 2 else np.asarray(y))
        xs, ys = np.concatenate(self.seen_x), np.concatenate(self.seen_y)
        if len(set(ys.tolist())) > 1:
            self._model.fit(xs, ys)
            self.fitted = True

    def predict(self, x: np.ndarray, **kwargs: Any) -> np.ndarray:
        """Scores over all 10 classes (uniform before the copy has seen two classes)."""
        out = np.full((len(x), 10), 0.1)
        if getattr(self, "fitted", False):
            out[:] = 0.0
            out[:, self._model.classes_] = self._model.predict_proba(x)
        return out


class Bench:
    def __init__(self, quick: bool, folder: Path) -> None:
        self.quick = quick
        self.folder = folder
        self.victim: Victim = train_victim()
        self.profile: ReferenceProfile
        rng = np.random.default_rng(7)
        order = rng.permutation(len(self.victim.x_test))
        half = len(order) // 2
        self.attacker_pool = self.victim.x_test[order[:half]]  # the attacker's own data
        self.attacker_labels = self.victim.y_test[order[:half]]
        self.heldout = self.victim.x_test[order[half:]]  # benign users' data, evaluation
        self.heldout_y = self.victim.y_test[order[half:]]
        d = pairwise_distances(self.heldout, self.victim.x_train)
        other = np.where(self.heldout_y[:, None] != self.victim.y_train[None, :], d, np.inf)
        self.epsilon = 0.5 * float(np.median(other.min(axis=1)))
        self.rows: list[dict[str, Any]] = []
        self.benign_rows: list[dict[str, Any]] = []
        self.counter = 0

    # -- helpers --------------------------------------------------------------

    def labels(self, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.victim.model.predict(np.asarray(rows) / 16.0)
        return out

    def gateway_flag(self, gw: Gateway, who: str) -> tuple[int | None, str]:
        hits = [
            (e.finding.evidence.get("query_index"), e.finding.rule.id)
            for e in gw.findings(who)
            if e.finding.rule.id in STATEFUL
        ]
        if not hits:
            return None, "-"
        first = min(q for q, _ in hits)
        return first, ",".join(sorted({r for q, r in hits if q == first}))

    def baselines(self, log: np.ndarray) -> tuple[int | None, int | None]:
        if len(log) == 0:
            return None, None
        scaled = self.profile.scaled(log)
        labels = self.labels(log)
        return (
            first_flag(Prada(), scaled, labels),
            first_flag(NearestNeighbour(self.nn_threshold), scaled, labels),
        )

    def principal(self, gw: Gateway) -> str:
        self.counter += 1
        return f"user{self.counter}"

    def fidelity(self, rows: np.ndarray, upto: int | None) -> float | None:
        """Agreement with the victim of a copy trained on the first ``upto`` answers."""
        part = rows[: upto if upto else len(rows)]
        y = self.labels(part)
        if len(set(y.tolist())) < 2:
            return 0.0 if len(part) else None
        copy = LogisticRegression(max_iter=1000).fit(part / 16.0, y)
        return float((copy.predict(self.heldout / 16.0) == self.labels(self.heldout)).mean())

    def add(
        self,
        family: str,
        attack: str,
        gw_flag: tuple[int | None, str],
        log: np.ndarray,
        success_at: Any,
        baseline: tuple[int | None, int | None],
        extra: str = "",
    ) -> None:
        self.rows.append(
            {
                "family": family,
                "attack": attack,
                "queries": len(log),
                "gateway_at": gw_flag[0],
                "gateway_rules": gw_flag[1],
                "success_at_flag": success_at,
                "prada_at": baseline[0],
                "nn_at": baseline[1],
                "note": extra,
            }
        )

    # -- evasion ----------------------------------------------------------------

    def evasion(self, gw: Gateway) -> None:
        images = 2 if self.quick else 3
        cap = 600 if self.quick else 2000
        attacks = {
            "HopSkipJump": lambda c: HopSkipJump(
                c, max_iter=10, max_eval=200, init_eval=20, verbose=False
            ),
            "BoundaryAttack": lambda c: BoundaryAttack(
                c, targeted=False, max_iter=200, num_trial=10, verbose=False
            ),
        }
        for name, make in attacks.items():
            for rounded in (False, True):
                for i in range(images):
                    x0 = self.heldout[i : i + 1]
                    who = self.principal(gw)
                    model = Capped(gw.url, gw.keys[who], cap, rounded)
                    classifier = BlackBoxClassifier(
                        model, input_shape=(64,), nb_classes=10, clip_values=(0, 16)
                    )
                    with contextlib.suppress(Cap, Blocked):
                        make(classifier).generate(x=x0)
                    model.close()
                    log = np.asarray(model.log)
                    flag = self.gateway_flag(gw, who)
                    y0 = self.labels(x0)[0]
                    dist = np.linalg.norm(log - x0, axis=1)
                    success = (self.labels(log) != y0) & (dist <= self.epsilon)
                    first_success = int(np.argmax(success)) + 1 if success.any() else None
                    # answered before the flag: in block mode the flagged query itself
                    # is refused (403), so its answer never reaches the attacker
                    upto = flag[0] - 1 if flag[0] else len(log)
                    before = success[:upto].any()
                    self.add(
                        "evasion",
                        f"{name}{' rounded' if rounded else ''} #{i}",
                        flag,
                        log,
                        f"{'YES' if before else 'no'} (first success q{first_success})",
                        self.baselines(log),
                    )

    # -- extraction ---------------------------------------------------------------

    def jacobian(self, gw: Gateway, rounded: bool) -> None:
        """Papernot et al.'s Jacobian-based augmentation with a logistic-regression copy."""
        who = self.principal(gw)
        model = Capped(gw.url, gw.keys[who], 400 if self.quick else 1200, rounded)
        seed = self.attacker_pool[:10]
        data = seed.copy()
        lam = 0.1 * 16
        try:
            labels = model(data).argmax(axis=1)
            for _ in range(6):
                copy = LogisticRegression(max_iter=1000).fit(data / 16.0, labels)
                p = copy.predict_proba(data / 16.0)
                w = copy.coef_  # classes x features (on the 0..1 scale)
                cols = np.searchsorted(copy.classes_, labels)
                mean_w = p @ w
                grad = w[cols] - mean_w  # d log p_label / dx
                new = np.clip(data + lam * np.sign(grad), 0, 16)
                new_labels = model(new).argmax(axis=1)
                data = np.concatenate([data, new])
                labels = np.concatenate([labels, new_labels])
        except (Cap, Blocked):
            pass
        model.close()
        self.extraction_row(gw, who, model, f"Jacobian augmentation{' rounded' if rounded else ''}")

    def knockoff(self, gw: Gateway, strategy: str, surrogate: str) -> None:
        who = self.principal(gw)
        n = 300 if self.quick else 800
        model = Capped(gw.url, gw.keys[who], n + 50)
        rng = np.random.default_rng(11)
        if surrogate == "noise":
            pool = rng.integers(0, 17, size=(2000, 64)).astype(float)
        else:  # smooth synthetic blobs: a generic image prior, no digits
            raw = rng.random((2000, 10, 10))
            blur = sum(raw[:, i : i + 8, j : j + 8] for i in range(3) for j in range(3)) / 9
            pool = np.rint(16 * (blur - blur.min()) / np.ptp(blur)).reshape(-1, 64)
        classifier = BlackBoxClassifier(
            model, input_shape=(64,), nb_classes=10, clip_values=(0, 16)
        )
        attack = KnockoffNets(
            classifier,
            batch_size_fit=64,
            batch_size_query=16,
            nb_epochs=1,
            nb_stolen=n,
            sampling_strategy=strategy,
            use_probability=False,
            verbose=False,
        )
        y = np.eye(10)[rng.integers(0, 10, len(pool))] if strategy == "adaptive" else None
        with contextlib.suppress(Cap, Blocked, ValueError):
            attack.extract(pool, y=y, thieved_classifier=Thief())
        model.close()
        self.extraction_row(gw, who, model, f"KnockoffNets {strategy} ({surrogate})")

    def copycat(self, gw: Gateway) -> None:
        """Extraction with natural data: the open problem."""
        who = self.principal(gw)
        n = len(self.attacker_pool)
        model = Capped(gw.url, gw.keys[who], n + 10)
        classifier = BlackBoxClassifier(
            model, input_shape=(64,), nb_classes=10, clip_values=(0, 16)
        )
        attack = CopycatCNN(
            classifier,
            batch_size_fit=64,
            batch_size_query=16,
            nb_epochs=1,
            nb_stolen=n,
            use_probability=False,
        )
        with contextlib.suppress(Cap, Blocked):
            attack.extract(self.attacker_pool.astype(float), thieved_classifier=Thief())
        model.close()
        self.extraction_row(gw, who, model, "CopycatCNN (natural digits)")

    def extraction_row(self, gw: Gateway, who: str, model: HttpModel, name: str) -> None:
        log = np.asarray(model.log)
        flag = self.gateway_flag(gw, who)
        at = self.fidelity(log, flag[0])
        final = self.fidelity(log, None)
        self.add(
            "extraction",
            name,
            flag,
            log,
            f"fidelity {at:.2f} (final {final:.2f})" if at is not None else "-",
            self.baselines(log),
        )

    # -- membership ---------------------------------------------------------------------

    def membership(self, gw: Gateway) -> None:
        records = 2 if self.quick else 4
        who = self.principal(gw)
        model = Capped(gw.url, gw.keys[who], 3000)
        classifier = BlackBoxClassifier(
            model, input_shape=(64,), nb_classes=10, clip_values=(0, 16)
        )
        attack = LabelOnlyDecisionBoundary(classifier, distance_threshold_tau=4.0)
        with contextlib.suppress(Cap, Blocked):
            attack.infer(
                self.victim.x_train[:records].astype(float),
                np.eye(10)[self.victim.y_train[:records]],
                max_iter=2,
                max_eval=100,
                init_eval=10,
                verbose=False,
            )
        model.close()
        log = np.asarray(model.log)
        self.add(
            "membership",
            "LabelOnlyDecisionBoundary",
            self.gateway_flag(gw, who),
            log,
            "-",
            self.baselines(log),
        )
        # black-box (confidence) membership inference: each record queried once
        who = self.principal(gw)
        model = Capped(gw.url, gw.keys[who], 5000)
        classifier = BlackBoxClassifier(
            model, input_shape=(64,), nb_classes=10, clip_values=(0, 16)
        )
        attack_bb = MembershipInferenceBlackBox(classifier, attack_model_type="rf")
        n = 100 if self.quick else 200
        xtr, ytr = self.victim.x_train[:n].astype(float), self.victim.y_train[:n]
        xte, yte = self.attacker_pool[:n].astype(float), self.attacker_labels[:n]
        attack_bb.fit(xtr[: n // 2], ytr[: n // 2], xte[: n // 2], yte[: n // 2])
        inferred_in = attack_bb.infer(xtr[n // 2 :], ytr[n // 2 :])
        inferred_out = attack_bb.infer(xte[n // 2 :], yte[n // 2 :])
        accuracy = (inferred_in.sum() + (1 - inferred_out).sum()) / (2 * len(inferred_in))
        model.close()
        log = np.asarray(model.log)
        self.add(
            "membership",
            "MembershipInferenceBlackBox",
            self.gateway_flag(gw, who),
            log,
            f"attack accuracy {accuracy:.2f}",
            self.baselines(log),
        )
        # noise-robustness probing of one record (our own client)
        who = self.principal(gw)
        model = Capped(gw.url, gw.keys[who], 200)
        rng = np.random.default_rng(5)
        record = self.victim.x_train[11]
        try:
            for _ in range(100):
                noise = rng.integers(-1, 2, 64) * (rng.random(64) < 0.15)
                model(np.clip(record + noise, 0, 16)[None])
        except (Cap, Blocked):
            pass
        model.close()
        log = np.asarray(model.log)
        self.add(
            "membership",
            "noise-robustness probe (1 record)",
            self.gateway_flag(gw, who),
            log,
            "-",
            self.baselines(log),
        )

    # -- transfer -------------------------------------------------------------------------

    def transfer(self, upstream: str) -> list[dict[str, Any]]:
        extra = {
            "detectors": {
                "evasion": {"enabled": False},
                "membership": {"enabled": False},
                "extraction": {"enabled": False},
                "ood": {"action": "block"},
            }
        }
        settings, keys = write_setup(self.folder, self.victim, ["t"], extra)
        surrogate = ScikitlearnLogisticRegression(
            LogisticRegression(max_iter=1000).fit(self.attacker_pool, self.attacker_labels),
            clip_values=(0, 16),
        )
        targets = self.heldout[: 100 if self.quick else 300]
        rows = []
        with serve_gateway(settings, keys, upstream) as gw:
            benign = self.per_input(gw, self.heldout)
            rows.append({"input": "benign held-out digits", "flagged": benign, "success": None})
            for eps in (2.0, 4.0):
                for name, attack in (
                    ("FGSM", FastGradientMethod(surrogate, eps=eps)),
                    (
                        "PGD",
                        ProjectedGradientDescent(
                            surrogate, eps=eps, eps_step=eps / 4, max_iter=20, verbose=False
                        ),
                    ),
                ):
                    adv = attack.generate(x=targets.astype(float))
                    for rounded in (False, True):
                        x = np.clip(np.rint(adv), 0, 16) if rounded else adv
                        ok = self.labels(x) != self.labels(targets)
                        rows.append(
                            {
                                "input": f"{name} eps={eps:g}{' rounded' if rounded else ''}",
                                "flagged": self.per_input(gw, x),
                                "success": float(ok.mean()),
                                "flagged_successful": self.per_input(gw, x[ok])
                                if ok.any()
                                else None,
                            }
                        )
        return rows

    def per_input(self, gw: Gateway, rows: np.ndarray) -> float:
        client = httpx.Client(base_url=gw.url, headers={"x-api-key": gw.keys["t"]})
        refused = sum(
            client.post("/predict", json={"inputs": [row.tolist()]}).status_code == 403
            for row in rows
        )
        client.close()
        return refused / len(rows)

    # -- benign -------------------------------------------------------------------------------

    def benign_streams(self) -> dict[str, list[np.ndarray]]:
        rng = np.random.default_rng(21)
        n = 150 if self.quick else 400
        data = self.heldout
        pick = lambda: data[rng.integers(len(data))].copy()  # noqa: E731
        base = [data[i].copy() for i in rng.permutation(len(data))[:n]]
        s: dict[str, list[np.ndarray]] = {"shuffled held-out": base}
        dup = []
        for x in base:
            dup.append(x)
            if dup and rng.random() < 0.3:
                dup.append(dup[rng.integers(len(dup))].copy())
        s["natural duplicates"] = dup
        s["retries"] = [
            y for x in base for y in [x] * (1 + (rng.random() < 0.25) * rng.integers(1, 4))
        ]
        s["slow brightness drift"] = [
            np.clip(x + round(3 * i / n), 0, 16) for i, x in enumerate(base)
        ]
        low = [x for x, y in zip(data, self.heldout_y, strict=True) if y < 5]
        high = [x for x, y in zip(data, self.heldout_y, strict=True) if y >= 5]
        s["class-mix drift"] = [_draw(rng, high if rng.random() < i / n else low) for i in range(n)]
        s["bursts of 32"] = base  # sent in batches, below
        jitter = []
        for x in base:
            jitter.append(x)
            if rng.random() < 0.3:
                j = jitter[-1 - rng.integers(min(5, len(jitter)))].copy()
                k = rng.integers(64)
                j[k] = np.clip(j[k] + rng.choice([-3, -2, -1, 1, 2, 3]), 0, 16)
                jitter.append(j)
        s["one-pixel jitter"] = jitter
        s["single class (all 3s)"] = [
            x for x, y in zip(data, self.heldout_y, strict=True) if y == 3
        ][:n]
        s["training members"] = [self.victim.x_train[i].copy() for i in rng.permutation(n)]
        s["sensor noise"] = [np.clip(np.rint(x + rng.normal(0, 0.5, 64)), 0, 16) for x in base]
        s["one-pixel shift"] = [
            np.roll(x.reshape(8, 8), rng.choice([-1, 1]), axis=1).ravel() for x in base
        ]
        combo = []
        for x in jitter:
            combo.append(x)
            if rng.random() < 0.2:
                combo.append(pick())
        s["mixed: duplicates, jitter, bursts"] = combo
        return s

    def benign(self, gw: Gateway) -> None:
        for name, stream in self.benign_streams().items():
            batch = 32 if "burst" in name else 1
            who = self.principal(gw)
            model = HttpModel(gw.url, gw.keys[who])
            rows = np.asarray(stream, dtype=float)
            for start in range(0, len(rows), batch):
                model(rows[start : start + batch])
            model.close()
            flag = self.gateway_flag(gw, who)
            prada, nn = self.baselines(rows)
            self.benign_rows.append(
                {
                    "stream": name,
                    "queries": len(rows),
                    "gateway": flag[0],
                    "rules": flag[1],
                    "prada": prada,
                    "nn": nn,
                }
            )
        # many users at once: 20 principals interleaved
        users = [self.principal(gw) for _ in range(20)]
        models = {u: HttpModel(gw.url, gw.keys[u]) for u in users}
        streams = {
            u: [
                self.heldout[j]
                for j in np.random.default_rng(k).permutation(len(self.heldout))[:30]
            ]
            for k, u in enumerate(users)
        }
        for i in range(30):
            for u in users:
                models[u](streams[u][i][None])
        flags = [self.gateway_flag(gw, u)[0] for u in users]
        base = [self.baselines(np.asarray(streams[u])) for u in users]
        self.benign_rows.append(
            {
                "stream": "many users (20 x 30)",
                "queries": 600,
                "gateway": sum(f is not None for f in flags) or None,
                "rules": "-",
                "prada": sum(b[0] is not None for b in base) or None,
                "nn": sum(b[1] is not None for b in base) or None,
            }
        )
        for model in models.values():
            model.close()

    # -- overhead -------------------------------------------------------------------------------

    def overhead(self) -> dict[str, float]:
        env = {
            **os.environ,
            # this checkout's sources, not whatever ``donjon`` the interpreter has installed
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        victim = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.harness", "0", "--asgi"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        gateway = None
        try:
            assert victim.stdout is not None
            upstream = victim.stdout.readline().strip()
            _settings, keys = write_setup(self.folder, self.victim, ["load"])
            config = self.folder / "gateway.toml"
            config.write_text(
                '[auth]\napi_keys_file = "keys.json"\n[quotas]\nprincipal_rate = 1e9\n'
                "principal_burst = 1e9\nglobal_rate = 1e9\nglobal_burst = 1e9\n"
                '[[models]]\nname = "digits"\nroutes = ["/predict"]\nallow = ["*"]\n'
                'features = 64\nmin_value = 0\nmax_value = 16\nprofile = "profile.json"\n'
                "[models.detectors.extraction]\nbudget = 100000000\n"
            )
            port = _free_port()
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "donjon",
                    "--home",
                    str(self.folder / "home"),
                    "gateway",
                    "--config",
                    str(config),
                    "--upstream",
                    upstream,
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            proxied = f"http://127.0.0.1:{port}"
            _wait(proxied + "/healthz")
            headers = {"x-api-key": keys["load"]}
            body = {"inputs": [self.heldout[0].tolist()]}
            n = 300 if self.quick else 1500
            seconds = 3.0 if self.quick else 8.0
            generator = "wrk" if shutil.which("wrk") else "python"
            # warm both paths (connections, caches) with the same generator
            _load(upstream, body, {}, 8, 1.0)
            _load(proxied, body, headers, 8, 1.0)
            lat_direct = _latencies(upstream, body, {}, n, seconds)
            cpu = _Cpu(gateway.pid)
            lat_proxy = _latencies(proxied, body, headers, n, seconds)
            one_client_cpu = cpu.per_request(lat_proxy[2])[0]
            rps8_direct, _ = _load(upstream, body, {}, 8, seconds)
            rps8_proxy, _ = _load(proxied, body, headers, 8, seconds)
            cpu = _Cpu(victim.pid, 0)  # 0: this process's children, i.e. wrk
            rps_direct, errors_direct = _load(upstream, body, {}, 64, seconds)
            direct_cpu = cpu.per_request(rps_direct * seconds)
            cpu = _Cpu(victim.pid, gateway.pid, 0)
            rps_proxy, errors_proxy = _load(proxied, body, headers, 64, seconds)
            proxy_cpu = cpu.per_request(rps_proxy * seconds)
            own = self.pipeline_time(body, headers, n)
            rounds = 3 if self.quick else 5
            shared = _alternate(upstream, proxied, body, headers, victim.pid, gateway.pid,
                                seconds, rounds)  # fmt: skip
            split = None
            if generator == "wrk" and len(os.sched_getaffinity(0)) >= 2:
                split = _alternate(upstream, proxied, body, headers, victim.pid, gateway.pid,
                                   seconds, rounds, split=True)  # fmt: skip
            return {
                "generator": generator,
                "loadavg": os.getloadavg()[0],
                "pipeline_p50_ms": float(np.median(own)) * 1000,
                "pipeline_p99_ms": float(np.quantile(own, 0.99)) * 1000,
                "direct_p50_ms": lat_direct[0],
                "direct_p99_ms": lat_direct[1],
                "proxy_p50_ms": lat_proxy[0],
                "proxy_p99_ms": lat_proxy[1],
                "direct_rps": rps_direct,
                "proxy_rps": rps_proxy,
                "direct_rps_8": rps8_direct,
                "proxy_rps_8": rps8_proxy,
                "direct_errors": errors_direct,
                "proxy_errors": errors_proxy,
                "victim_cpu_us_direct": direct_cpu[0],
                "victim_cpu_us_proxied": proxy_cpu[0],
                "gateway_cpu_us": proxy_cpu[1],
                "generator_cpu_us_direct": direct_cpu[1],
                "generator_cpu_us_proxied": proxy_cpu[2],
                "gateway_cpu_us_1_client": one_client_cpu,
                "shared": shared,
                "split": split,
            }
        finally:
            for process in (gateway, victim):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=10)

    def state_comparison(
        self, rounds: int = 3, baseline: Path | None = None, replicas: bool = True
    ) -> dict[str, Any]:
        """Detector state and quotas in Redis against in-process: the real CLI gateway,
        the order of the two alternated each round, the same load; throughput at 8 and
        64 clients, CPU per request of the gateway and of Redis (a private
        ``redis-server``, so that its CPU is the gateway's alone), cold (the first
        second of a fresh gateway) and warm; then the replicas' detection counts.

        ``baseline``: another checkout (its ``src/``) whose Redis state runs too, as
        ``redis-base``, in the same rounds (the order of the three rotates)."""
        from tests.support.redis_server import redis_server

        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        envs = {"memory": env, "redis": env}
        if baseline is not None:
            envs["redis-base"] = env | {
                "PYTHONPATH": os.pathsep.join([str(baseline.resolve() / "src"), str(ROOT)])
            }
        victim = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.harness", "0", "--asgi"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in envs}
        seconds = 3.0 if self.quick else 6.0
        try:
            assert victim.stdout is not None
            upstream = victim.stdout.readline().strip()
            body = {"inputs": [self.heldout[0].tolist()]}
            with redis_server(self.folder) as server:
                redis_pid = int(_redis_info(server.url)["process_id"])
                names = list(envs)
                for turn in range(rounds):
                    order = names[turn % len(names) :] + names[: turn % len(names)]
                    if turn % 2:  # each one first, last and in between
                        order.reverse()
                    for backend in order:
                        run = self._state_run(
                            backend, server.url, redis_pid, upstream, body, envs[backend],
                            seconds,
                        )  # fmt: skip
                        runs[backend].append(run)
                        print(f"  round {turn + 1}, {backend}: " + ", ".join(
                            f"{k} {v:.0f}" for k, v in run.items()), flush=True)  # fmt: skip
        finally:
            victim.terminate()
            victim.wait(timeout=10)

        def median(backend: str, key: str) -> float:
            return float(np.median([r.get(key, 0.0) for r in runs[backend]]))

        keys = runs["redis"][0].keys()
        summary = {key: {b: median(b, key) for b in runs} for key in keys}
        return {
            "loadavg": os.getloadavg()[0],
            "runs": runs,
            "median": summary,
            "replicas": self.replica_counts() if replicas else None,
        }

    def _state_run(
        self,
        backend: str,
        redis_url: str,
        redis_pid: int,
        upstream: str,
        body: Any,
        env: dict[str, str],
        seconds: float,
    ) -> dict[str, float]:
        """One fresh CLI gateway with its state (and quotas) in ``backend`` (``redis-base``:
        Redis, the baseline checkout's sources from ``env``)."""
        name, backend = backend, backend.removesuffix("-base")
        many = [f"p{i}" for i in range(64)]
        # distinct held-out rows in turn: each query adds a row to its principal's window
        # and has its label written back, as real traffic does (one body, repeated, would
        # be a duplicate after the first)
        bodies = [{"inputs": [row.tolist()]} for row in self.heldout[:257]]
        _settings, keys = write_setup(self.folder, self.victim, ["load", *many])
        headers = {"x-api-key": keys["load"]}
        config = self.folder / f"gateway-{name}.toml"
        config.write_text(
            f'[auth]\napi_keys_file = "keys.json"\n[quotas]\nbackend = "{backend}"\n'
            f'redis_url = "{redis_url}"\nprincipal_rate = 1e9\nprincipal_burst = 1e9\n'
            "global_rate = 1e9\nglobal_burst = 1e9\n"
            f'[state]\nbackend = "{backend}"\nredis_url = "{redis_url}"\n'
            # each run starts from empty windows, not from the previous run's (whose
            # repeated bodies would be duplicates, pushing fewer rows and saving less)
            f'redis_prefix = "bench:{os.urandom(8).hex()}:"\n'
            '[[models]]\nname = "digits"\nroutes = ["/predict"]\nallow = ["*"]\n'
            'features = 64\nmin_value = 0\nmax_value = 16\nprofile = "profile.json"\n'
            "[models.detectors.extraction]\nbudget = 100000000\n"
        )
        port = _free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "donjon", "--home", str(self.folder / "home"),
             "gateway", "--config", str(config), "--upstream", upstream,
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            _wait(url + "/healthz")
            cold, _ = _load(url, body, headers, 8, 1.0, bodies=bodies)  # a fresh process
            out = {"rps_cold_8": cold}
            for clients in (8, 64):
                cpu = _Cpu(gateway.pid, redis_pid)
                served = _served(url)
                rps, errors = _load(url, body, headers, clients, seconds, bodies=bodies)
                gateway_us, redis_us = cpu.per_request(_served(url) - served)
                out[f"rps_{clients}"] = rps
                out[f"errors_{clients}"] = errors
                out[f"gateway_cpu_us_{clients}"] = gateway_us
                out[f"redis_cpu_us_{clients}"] = redis_us if backend == "redis" else 0.0
            # 64 principals, the load's usual shape (one principal's requests serialise)
            cpu = _Cpu(gateway.pid, redis_pid)
            counters = _RedisCounters(redis_url)
            served = _served(url)
            rps, errors = _load(url, body, {}, 64, seconds, [keys[p] for p in many], bodies)
            n = _served(url) - served
            gateway_us, redis_us = cpu.per_request(n)
            out |= {"rps_64p": rps, "errors_64p": errors, "gateway_cpu_us_64p": gateway_us,
                    "redis_cpu_us_64p": redis_us if backend == "redis" else 0.0}  # fmt: skip
            if backend == "redis":
                out |= counters.per_request(n)
            out["refused"] = _served(url, refused=True)
            out["unavailable_503"] = _served(url, status="503")
        finally:
            gateway.terminate()
            gateway.wait(timeout=10)
        if name == backend:  # in this process: this checkout's sources only
            times = self.pipeline_time(body, headers, 300, backend, redis_url)
            out["own_p50_us"] = float(np.median(times)) * 1e6
        return out

    def replica_counts(self) -> dict[str, Any]:
        """The query of the first flag of HopSkipJump and Jacobian extraction through one
        gateway, and through two replicas sharing Redis behind a round-robin split."""
        import uuid
        from contextlib import ExitStack

        from tests.gateway.test_shared_state import run_attacks, with_state

        alert = {"action": "alert"}
        extra = {"detectors": {"evasion": alert, "membership": alert, "extraction": alert}}
        folder = self.folder / "replicas"
        folder.mkdir(exist_ok=True)
        settings, keys = write_setup(folder, self.victim, ["mallory", "trudy"], extra)
        prefix = f"bench:{uuid.uuid4().hex}:"
        with serve_victim(self.victim.model) as upstream:
            with serve_gateway(settings, keys, upstream) as one:
                alone = run_attacks([one], self.victim)
            shared = with_state(settings, redis_prefix=prefix)
            with ExitStack() as stack:
                replicas = [
                    stack.enter_context(serve_gateway(shared, keys, upstream)) for _ in range(2)
                ]
                spread = run_attacks(replicas, self.victim)
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()
        return {"one process": alone, "two replicas": spread}

    def pipeline_time(
        self,
        body: Any,
        headers: dict[str, str],
        n: int,
        backend: str = "memory",
        redis_url: str = "redis://127.0.0.1:6379/0",
    ) -> np.ndarray:
        """The gateway's own time per request (admit + complete), in process, no HTTP."""
        import asyncio

        settings, keys = write_setup(self.folder, self.victim, ["load"])
        shared = {"backend": backend, "redis_url": redis_url}
        settings = settings.model_copy(
            update={"state": settings.state.model_copy(update=shared),
                    "quotas": settings.quotas.model_copy(update=shared)}
        )  # fmt: skip
        pipeline = build_pipeline(settings)
        raw = json.dumps(body).encode()
        answer = json.dumps(
            {"outputs": victim_scores(self.victim.model, [body["inputs"][0]]).tolist()}
        ).encode()
        request = GatewayRequest("POST", "/predict", {"x-api-key": keys["load"]}, raw)

        async def measure() -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                admitted = await pipeline.admit_async(request)
                assert not isinstance(admitted, Reply), admitted
                await pipeline.complete_async(admitted, 200, answer)
                out.append(time.perf_counter() - t)
            await pipeline.aclose()
            return out

        return np.asarray(asyncio.run(measure()))

    # -- run ---------------------------------------------------------------------------------------

    def run(self, overhead: bool) -> dict[str, Any]:
        started = time.time()
        principals = [f"user{i}" for i in range(1, 200)] + ["t", "load"]
        settings, keys = write_setup(self.folder, self.victim, principals, ALERT)
        self.profile = ReferenceProfile.load(self.folder / "profile.json")
        self.nn_threshold = NearestNeighbour.calibrate(self.profile.scaled(self.victim.x_train))
        result: dict[str, Any] = {"epsilon_l2": self.epsilon}
        print(f"success = misclassified within L2 <= {self.epsilon:.1f} (0..16 pixels)")
        with serve_victim(self.victim.model) as upstream:
            with serve_gateway(settings, keys, upstream) as gw:
                self.benign(gw)
                result["benign"] = self.benign_rows
                print_benign(self.benign_rows)
                self.evasion(gw)
                self.jacobian(gw, rounded=False)
                self.jacobian(gw, rounded=True)
                for strategy in ("random", "adaptive"):
                    for surrogate in ("noise", "blobs"):
                        self.knockoff(gw, strategy, surrogate)
                self.copycat(gw)
                self.membership(gw)
            result["attacks"] = self.rows
            print_attacks(self.rows)
            result["transfer"] = self.transfer(upstream)
            print_transfer(result["transfer"])
            result["natural_extraction"] = self.natural_extraction(upstream)
            print_natural(result["natural_extraction"])
        if overhead:
            result["overhead"] = self.overhead()
            print_overhead(result["overhead"])
        result["seconds"] = time.time() - started
        print(f"\n(run took {result['seconds']:.0f} s)")
        return result

    def natural_extraction(self, upstream: str) -> list[dict[str, Any]]:
        """Fidelity of a copy trained on natural queries, per output hardening and budget."""
        rows = []
        for label, hardening in (
            ("full scores", {}),
            ("top-1, 1 decimal", {"top_k": 1, "decimals": 1}),
            ("label only", {"label_only": True}),
        ):
            settings, keys = write_setup(
                self.folder, self.victim, ["n"], {**ALERT, "hardening": hardening}
            )
            with serve_gateway(settings, keys, upstream) as gw:
                model = gw.client("n")
                pool = self.attacker_pool
                scores = np.concatenate([model(pool[i : i + 64]) for i in range(0, len(pool), 64)])
                flagged = self.gateway_flag(gw, "n")[0]
            row: dict[str, Any] = {"hardening": label, "flagged": flagged}
            for budget in (50, 100, 200, len(self.attacker_pool)):
                x, s = self.attacker_pool[:budget] / 16.0, scores[:budget]
                hard = LogisticRegression(max_iter=1000).fit(x, s.argmax(axis=1))
                row[f"labels@{budget}"] = float(
                    (hard.predict(self.heldout / 16.0) == self.labels(self.heldout)).mean()
                )
                # a soft-label copy: regress the returned scores (distillation) via sample weights
                xs = np.repeat(x, 10, axis=0)
                ys = np.tile(np.arange(10), len(x))
                ws = s.ravel() + 1e-6
                soft = LogisticRegression(max_iter=1000).fit(xs, ys, sample_weight=ws)
                row[f"scores@{budget}"] = float(
                    (soft.predict(self.heldout / 16.0) == self.labels(self.heldout)).mean()
                )
            rows.append(row)
        return rows


def _draw(rng: np.random.Generator, pool: list[np.ndarray]) -> np.ndarray:
    return pool[rng.integers(len(pool))].copy()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class _Cpu:
    """CPU seconds (user + system) of some processes from now on, read from /proc (Linux)."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = [self._seconds(pid) for pid in pids]

    @staticmethod
    def _seconds(pid: int) -> float:
        if pid == 0:  # the finished children of this process (wrk runs)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            return usage.ru_utime + usage.ru_stime
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def per_request(self, requests: float) -> list[float]:
        """Microseconds of CPU per request, per process."""
        return [
            (self._seconds(pid) - start) / max(requests, 1.0) * 1e6
            for pid, start in zip(self.pids, self.start, strict=True)
        ]


def _served(url: str, *, refused: bool = False, status: str = "") -> float:
    """Requests the gateway answered so far (its ``/metrics``); only refusals: ``refused``;
    only those answered with ``status``: ``status``."""
    text = httpx.get(url + "/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("donjon_gateway_requests_total{"):
            if refused and 'decision="allow"' in line:
                continue
            if status and f'status="{status}"' not in line:
                continue
            total += float(line.rsplit(" ", 1)[1])
    return total


class _RedisCounters:
    """Commands (those scripts run included) and bytes a Redis served from now on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            stats = client.info("stats")
            commands = client.info("commandstats")
        finally:
            client.close()
        out = {"in": float(stats["total_net_input_bytes"])}
        out["out"] = float(stats["total_net_output_bytes"])
        for name, values in commands.items():
            out[name.removeprefix("cmdstat_")] = float(values["calls"])
        return out

    def per_request(self, requests: float) -> dict[str, float]:
        end = self._read()
        delta = {k: v - self.start.get(k, 0.0) for k, v in end.items()}
        n = max(requests, 1.0)
        calls = {k: v / n for k, v in delta.items() if k not in ("in", "out", "info") and v}
        top = sorted(calls.items(), key=lambda kv: -kv[1])
        print("    Redis commands per request: "
              + ", ".join(f"{k} {v:.2f}" for k, v in top), flush=True)  # fmt: skip
        return {
            "redis_commands_64p": sum(calls.values()),
            "redis_in_bytes_64p": delta["in"] / n,
            "redis_out_bytes_64p": delta["out"] / n,
        }


def _alternate(
    direct: str,
    proxied: str,
    body: Any,
    headers: dict[str, str],
    victim: int,
    gateway: int,
    seconds: float,
    rounds: int,
    *,
    split: bool = False,
) -> dict[str, Any]:
    """Direct and proxied runs at 64 clients, their order alternated each round: the
    medians of throughput, of the victim's and the gateway's CPU microseconds per
    request and of the proxied / direct ratio of each round.

    ``split``: the gateway on a core of its own (the second of this process's CPUs),
    the victim and the load generator on the first, direct runs too (the victim on
    one core either way), as a deployment with a dedicated gateway core would run."""
    everywhere = os.sched_getaffinity(0)
    first, second = sorted(everywhere)[:2]
    one = {first} if split else None
    runs: dict[str, list[float]] = {k: [] for k in ("direct", "proxied", "ratio", "victim",
                                                     "victim_proxied", "gateway")}  # fmt: skip
    try:
        if split:
            os.sched_setaffinity(victim, {first})
            os.sched_setaffinity(gateway, {second})
        for turn in range(rounds):
            got: dict[str, float] = {}
            for kind in ("direct", "proxied") if turn % 2 == 0 else ("proxied", "direct"):
                url, extra = (direct, {}) if kind == "direct" else (proxied, headers)
                cpu = _Cpu(victim, gateway)
                if shutil.which("wrk"):
                    run = _wrk(url, body, extra, 64, seconds, cpus=one)
                    rps = run["rps"]
                else:
                    rps, _ = _load(url, body, extra, 64, seconds)
                victim_us, gateway_us = cpu.per_request(rps * seconds)
                got[kind] = rps
                if kind == "direct":
                    runs["victim"].append(victim_us)
                else:
                    runs["victim_proxied"].append(victim_us)
                    runs["gateway"].append(gateway_us)
            runs["direct"].append(got["direct"])
            runs["proxied"].append(got["proxied"])
            runs["ratio"].append(got["proxied"] / max(got["direct"], 1e-9))
    finally:
        for pid in (victim, gateway):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, everywhere)
    return {
        "rounds": rounds,
        "cores": "gateway alone on one core" if split else "shared",
        "runs": runs,
        "median": {k: float(np.median(v)) for k, v in runs.items()},
    }


def _wrk(
    url: str,
    body: Any,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    keys: list[str] | None = None,
    bodies: list[Any] | None = None,
    cpus: set[int] | None = None,
) -> dict[str, float]:
    """One wrk run (keep-alive POSTs): requests/s, errors, p50 and p99 latency in ms.

    ``keys``: API keys taken in turn, one per request (many principals); ``bodies``:
    bodies taken in turn (distinct queries), instead of ``body``."""
    turns = []
    if keys or bodies:
        keyed = [json.dumps(k) for k in keys or []]
        texts = [json.dumps(json.dumps(b)) for b in bodies or []]
        turns = [
            f"local keys = {{{', '.join(keyed)}}}",
            f"local bodies = {{{', '.join(texts)}}}",
            "local turn = math.random(1000)",
            "request = function()",
            "  turn = turn + 1",
            '  if #keys > 0 then wrk.headers["x-api-key"] = keys[turn % #keys + 1] end',
            "  if #bodies > 0 then wrk.body = bodies[turn % #bodies + 1] end",
            "  return wrk.format()",
            "end",
        ]
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(json.dumps(body))}",
        'wrk.headers["content-type"] = "application/json"',
        *[f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()],
        *turns,
        # wrk prints percentiles only in its summary: print ours in microseconds
        "done = function(summary, latency, requests)",
        '  io.write(string.format("DJ %d %d %d %d %d\\n", summary.requests,',
        "    summary.errors.connect + summary.errors.read + summary.errors.write +",
        "    summary.errors.timeout + summary.errors.status,",
        "    summary.duration, latency:percentile(50), latency:percentile(99)))",
        "end",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        threads = "1" if clients < 8 else "2"
        out = subprocess.run(
            ["wrk", "-t", threads, "-c", str(clients), "-d", f"{seconds:g}s", "-s", script.name,
             url + "/predict"],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("DJ "))
    requests, errors, duration, p50, p99 = (int(v) for v in line.split()[1:])
    return {
        "rps": (requests - errors) / (duration / 1e6),
        "errors": errors,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
    }


def _latencies(
    url: str, body: Any, headers: dict[str, str], n: int, seconds: float
) -> tuple[float, float, float]:
    """p50 and p99 (ms) of one client's sequential keep-alive requests, and their number."""
    if shutil.which("wrk"):
        run = _wrk(url, body, headers, 1, seconds)
        return run["p50_ms"], run["p99_ms"], run["rps"] * seconds
    out = []
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # no Nagle stall on the client
    transport = httpx.HTTPTransport(socket_options=nodelay)
    with httpx.Client(base_url=url, headers=headers, transport=transport) as client:
        for _ in range(50):
            client.post("/predict", json=body)
        for _ in range(n):
            t = time.perf_counter()
            response = client.post("/predict", json=body)
            out.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text
    lat = np.asarray(out)
    return float(np.median(lat)) * 1000, float(np.quantile(lat, 0.99)) * 1000, float(n + 50)


def _load(
    url: str,
    body: Any,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    keys: list[str] | None = None,
    bodies: list[Any] | None = None,
) -> tuple[float, int]:
    """Successful requests per second with ``clients`` keep-alive clients, and errors.

    wrk when installed (a C load generator: it leaves the CPU to the servers); else
    8 processes of ``clients / 8`` threads each, so the Python generator is not held
    back by one interpreter's lock. ``keys``: API keys in turn, ``bodies``: bodies
    in turn (wrk only)."""
    if shutil.which("wrk"):
        run = _wrk(url, body, headers, clients, seconds, keys, bodies)
        return run["rps"], int(run["errors"])
    if keys or bodies:
        raise RuntimeError("many principals or bodies need wrk")
    processes = 8
    context = multiprocessing.get_context("fork")
    with context.Pool(processes) as pool:
        parts = pool.starmap(
            _load_threads, [(url, body, headers, max(clients // processes, 1), seconds)] * processes
        )
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _load_threads(
    url: str, body: Any, headers: dict[str, str], clients: int, seconds: float
) -> tuple[float, int]:
    done = [0] * clients
    errors = [0] * clients
    stop = time.perf_counter() + seconds
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]

    def worker(i: int) -> None:
        transport = httpx.HTTPTransport(socket_options=nodelay)
        with httpx.Client(base_url=url, headers=headers, transport=transport, timeout=30) as c:
            while time.perf_counter() < stop:
                try:
                    ok = c.post("/predict", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                done[i] += ok
                errors[i] += not ok

    begin = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - begin), sum(errors)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def print_attacks(rows: list[dict[str, Any]]) -> None:
    print("\n## Attacks (query index of the first flag; '-' = never flagged)\n")
    print(
        "| family | attack | queries | Donjon | rule | attacker had at Donjon's flag | PRADA | NN |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['family']} | {r['attack']} | {r['queries']} | {_fmt(r['gateway_at'])} | "
            f"{r['gateway_rules']} | {r['success_at_flag']} | {_fmt(r['prada_at'])} | "
            f"{_fmt(r['nn_at'])} |"
        )
    sys.stdout.flush()


def print_benign(rows: list[dict[str, Any]]) -> None:
    print("\n## Benign streams (query of the first false alarm; '-' = none)\n")
    print("| stream | queries | Donjon | PRADA | NN |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stream']} | {r['queries']} | {_fmt(r['gateway'])} | {_fmt(r['prada'])} | "
            f"{_fmt(r['nn'])} |"
        )
    fa = {k: sum(r[k] is not None for r in rows) for k in ("gateway", "prada", "nn")}
    print(
        f"\nstreams with a false alarm: Donjon {fa['gateway']}, PRADA {fa['prada']}, "
        f"NN {fa['nn']} of {len(rows)}"
    )
    sys.stdout.flush()


def print_transfer(rows: list[dict[str, Any]]) -> None:
    print("\n## Transfer attacks, per input (OOD detector in block mode)\n")
    print("| input | flagged | victim fooled | flagged among those that fool |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['input']} | {r['flagged']:.1%} | {_pct(r['success'])} | "
            f"{_pct(r.get('flagged_successful'))} |"
        )
    sys.stdout.flush()


def print_natural(rows: list[dict[str, Any]]) -> None:
    print("\n## Natural-data extraction: copy fidelity by answered queries and hardening\n")
    keys = [k for k in rows[0] if "@" in k]
    print("| hardening | flagged | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for r in rows:
        cells = " | ".join(f"{r[k]:.2f}" for k in keys)
        print(f"| {r['hardening']} | {_fmt(r['flagged'])} | {cells} |")
    sys.stdout.flush()


def print_overhead(o: dict[str, Any]) -> None:
    print("\n## Overhead (single-row requests, loopback, gateway and victim in own processes)\n")
    print(f"load generator: {o['generator']}; load average (1 min) {o['loadavg']:.2f}")
    print(
        f"gateway's own time per request (in process): p50 {o['pipeline_p50_ms']:.3f} ms, "
        f"p99 {o['pipeline_p99_ms']:.3f} ms"
    )
    print(
        f"latency direct p50 {o['direct_p50_ms']:.2f} ms p99 {o['direct_p99_ms']:.2f} ms; "
        f"proxied p50 {o['proxy_p50_ms']:.2f} ms p99 {o['proxy_p99_ms']:.2f} ms; "
        f"added p50 {o['proxy_p50_ms'] - o['direct_p50_ms']:.2f} ms; proxied p99 minus direct "
        f"p99 {o['proxy_p99_ms'] - o['direct_p99_ms']:.2f} ms (two tails, not one request's)"
    )
    print(
        f"throughput at 8 clients: direct {o['direct_rps_8']:.0f} req/s, proxied "
        f"{o['proxy_rps_8']:.0f} req/s, ratio {o['proxy_rps_8'] / max(o['direct_rps_8'], 1e-9):.2f}"
    )
    print(
        f"throughput at 64 clients: direct {o['direct_rps']:.0f} req/s "
        f"({o['direct_errors']} errors), proxied {o['proxy_rps']:.0f} req/s "
        f"({o['proxy_errors']} errors), ratio {o['proxy_rps'] / max(o['direct_rps'], 1e-9):.2f}"
    )
    print(
        f"CPU per request at 64 clients: victim {o['victim_cpu_us_direct']:.0f} us direct, "
        f"{o['victim_cpu_us_proxied']:.0f} us proxied; gateway {o['gateway_cpu_us']:.0f} us "
        f"(gateway / victim {o['gateway_cpu_us'] / max(o['victim_cpu_us_direct'], 1e-9):.2f}); "
        f"load generator {o['generator_cpu_us_direct']:.0f} / "
        f"{o['generator_cpu_us_proxied']:.0f} us; gateway at 1 client "
        f"{o['gateway_cpu_us_1_client']:.0f} us"
    )
    ratio = projected_ratio(o)
    print(
        f"projected 64-client throughput ratio on an idle 2-core machine, from the CPU per "
        f"request above (a model, not a measurement): {ratio:.2f}"
    )
    for mode in (o.get("shared"), o.get("split")):
        if mode is None:
            continue
        m = mode["median"]
        print(
            f"\n64 clients, {mode['cores']}, medians of {mode['rounds']} alternated rounds: "
            f"CPU per request: gateway {m['gateway']:.0f} us, victim {m['victim']:.0f} us "
            f"direct / {m['victim_proxied']:.0f} us proxied; throughput direct "
            f"{m['direct']:.0f} req/s, proxied {m['proxied']:.0f} req/s, "
            f"proxied / direct {m['ratio']:.2f}"
        )
    sys.stdout.flush()


def print_state(o: dict[str, Any]) -> None:
    print("\n## Detector state and quotas in Redis against in-process (real CLI gateway)\n")
    rounds = len(o["runs"]["memory"])
    print(f"load average (1 min) {o['loadavg']:.2f}; medians of {rounds} alternated rounds\n")
    m = o["median"]
    names = list(o["runs"])  # memory, redis, and redis-base with --baseline
    base = "redis-base" in names
    heads = {"memory": "in-process", "redis": "Redis", "redis-base": "Redis (baseline)"}
    ratios = [("redis", "memory", "Redis / in-process")]
    if base:
        ratios += [("redis-base", "memory", "baseline / in-process"),
                   ("redis", "redis-base", "Redis / baseline")]  # fmt: skip
    print("| | " + " | ".join(heads[n] for n in names) + " | "
          + " | ".join(r[2] for r in ratios) + " |")  # fmt: skip
    print("|---|" + "---|" * (len(names) + len(ratios)))
    rows = [
        ("req/s, 1 principal, 8 clients, cold (first second)", "rps_cold_8"),
        ("req/s, 1 principal, 8 clients", "rps_8"),
        ("req/s, 1 principal, 64 clients", "rps_64"),
        ("req/s, 64 principals, 64 clients", "rps_64p"),
        ("failed requests (8 / 64 clients / 64 principals)", None),
        ("gateway CPU per request, 1 principal, 8 clients (us)", "gateway_cpu_us_8"),
        ("gateway CPU per request, 1 principal, 64 clients (us)", "gateway_cpu_us_64"),
        ("gateway CPU per request, 64 principals (us)", "gateway_cpu_us_64p"),
        ("Redis CPU per request, 64 principals (us)", "redis_cpu_us_64p"),
        ("gateway + Redis CPU per request, 1 principal, 8 clients (us)", "total_8"),
        ("gateway + Redis CPU per request, 1 principal, 64 clients (us)", "total_64"),
        ("gateway + Redis CPU per request, 64 principals (us)", "total_64p"),
        ("Redis commands per request (scripts' own included), 64 principals", "redis_commands_64p"),
        ("bytes to / from Redis per request, 64 principals", "bytes"),
        ("gateway's own time per request, in process, p50 (us)", "own_p50_us"),
    ]
    redis_names = [n for n in names if n != "memory"]
    for title, key in rows:
        if key is None:
            cells = [
                " / ".join(f"{m[e][b]:.0f}" for e in ("errors_8", "errors_64", "errors_64p"))
                for b in names
            ]
            print(f"| {title} | " + " | ".join(cells) + " |" + " |" * len(ratios))
            continue
        if key in ("bytes", "redis_commands_64p"):
            cells = [
                f"{m['redis_in_bytes_64p'][n]:.0f} / {m['redis_out_bytes_64p'][n]:.0f}"
                if key == "bytes" else f"{m[key][n]:.1f}"
                for n in redis_names
            ]  # fmt: skip
            print(f"| {title} | | " + " | ".join(cells) + " |" + " |" * len(ratios))
            continue
        if key.startswith("total_"):
            at = key.removeprefix("total_")
            pair = {b: m[f"gateway_cpu_us_{at}"][b] + m[f"redis_cpu_us_{at}"][b] for b in names}
        else:
            pair = m[key]
        shown = [f"{pair[n]:.0f}" if pair[n] else "-" for n in names]
        quotients = [
            f"{pair[a] / pair[b]:.2f}" if pair[a] and pair[b] else "-" for a, b, _ in ratios
        ]
        print(f"| {title} | " + " | ".join(shown + quotients) + " |")
    print("\nThroughput target: Redis >= 0.70 of in-process; from CPU per request (gateway +")
    cpu = m["gateway_cpu_us_64p"]["memory"] / (
        m["gateway_cpu_us_64p"]["redis"] + m["redis_cpu_us_64p"]["redis"]
    )
    print(f"Redis, 64 principals), the ratio a CPU-bound gateway would reach: {cpu:.2f}")
    if o["replicas"] is None:
        sys.stdout.flush()
        return
    print("\n### First flag (query index): one process against two replicas, round-robin\n")
    print("| attack | rule | one process | two replicas sharing Redis |")
    print("|---|---|---|---|")
    one, two = o["replicas"]["one process"], o["replicas"]["two replicas"]
    for attack in ("hopskipjump", "jacobian"):
        for rule in sorted(set(one[attack]) | set(two[attack])):
            print(f"| {attack} | {rule} | {one[attack].get(rule, '-')} | "
                  f"{two[attack].get(rule, '-')} |")  # fmt: skip
    print(f"\nevery replica answered part of each attack: {two['answered']}")
    sys.stdout.flush()


def _redis_info(url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return dict(client.info("server"))
    finally:
        client.close()


def projected_ratio(o: dict[str, Any], cores: int = 2) -> float:
    """Proxied / direct throughput if the processes had ``cores`` cores to themselves.

    Each server is one single-threaded process (at most one core); the load
    generator and the servers share the cores. Direct: min(1 / V, cores / (V + W));
    proxied: min(1 / G, 1 / V', cores / (V' + G + W')), with V, V' the victim's, G
    the gateway's and W, W' the generator's CPU seconds per request."""
    us = 1e-6
    victim, generator = o["victim_cpu_us_direct"] * us, o["generator_cpu_us_direct"] * us
    direct = min(1 / victim, cores / (victim + generator))
    victim_p, gateway = o["victim_cpu_us_proxied"] * us, o["gateway_cpu_us"] * us
    total = victim_p + gateway + o["generator_cpu_us_proxied"] * us
    proxied = min(1 / gateway, 1 / victim_p, cores / total)
    return proxied / direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images, shorter streams")
    parser.add_argument("--no-overhead", action="store_true", help="skip the load test")
    parser.add_argument("--overhead-only", action="store_true", help="only the load test")
    parser.add_argument(
        "--state",
        choices=("memory", "redis"),
        default="memory",
        help="with --overhead-only: redis also compares Redis state with in-process state",
    )
    parser.add_argument(
        "--state-only",
        action="store_true",
        help="with --state redis: only the state comparison, without the replicas' counts",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="with --state redis: another checkout whose Redis state runs in the same rounds",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the state comparison")
    parser.add_argument(
        "--variety", action="store_true", help="other encodings, victims and server shapes"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--replay", action="store_true", help="only the recorded stream's verdicts, compared"
    )
    args = parser.parse_args()
    if args.replay:
        from tests.gateway.replay import main as replay

        sys.argv = sys.argv[:1]
        replay()
        return
    if args.variety:
        from gateway_variety import run as run_variety

        with tempfile.TemporaryDirectory() as folder:
            result = run_variety(args.quick, Path(folder))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
        return
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(args.quick, Path(folder))
        if args.overhead_only:
            result = {}
            if not args.state_only:
                result["overhead"] = bench.overhead()
                print_overhead(result["overhead"])
            if args.state == "redis":
                result["state"] = bench.state_comparison(
                    args.rounds, args.baseline, replicas=not args.state_only
                )
                print_state(result["state"])
        else:
            result = bench.run(overhead=not args.no_overhead)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
