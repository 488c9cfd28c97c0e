"""Benchmark of the gateway's watermarks against ART's extraction attacks over HTTP.

Run from the repository root:
  python benchmarks/watermark_bench.py [--quick] [--scenario tabular|digits|all] [--rate 0.005]

Two victims, each behind the gateway (uvicorn, in this process) with
``[models.watermark]`` at ``--rate``:

* ``tabular``: an MLP on 10 classes x 20 features (scikit-learn's
  make_classification); the attacker has 12,000 distinct natural rows;
* ``digits``: the gateway's digits MLP; the attacker augments the 360 natural
  digits it has (one-pixel shifts, rotations of a few degrees, on the 0..16 grid)
  into some 14,000 queries: the hard case, near-copies of every marked input.

The attackers run ART's CopycatCNN and KnockoffNets (random and adaptive) with
PyTorch surrogates trained to convergence. Each surrogate and each independent
model (several architectures, trained on the victim's training data or on the
attacker's very inputs labelled by the victim *without* the gateway, never on the
gateway's answers) is served over HTTP and tested with
``donjon.app.watermark.verify_suspect`` (the code behind ``donjon gateway
verify-suspect``) against every principal's records, by label (binomial and Fisher's
tests) and by score (the rank test of ``donjon.gateway.watermark.ranks``). Targets:
every surrogate with fidelity >= 0.8 identified at p < 1e-6, as its own principal only;
no independent model identified; benign accuracy drop <= 0.5 %. The gateway's added CPU
time per one-row request (in process, median of rounds, alternating order) is printed.

``--strip`` adds a stripping attack: the first CopycatCNN thief re-labels (or drops)
every answer that the majority of its 10 nearest neighbours in its own query set
contradicts, trains the same surrogate again, and is verified again (fidelity cost
against watermark survival).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import httpx  # noqa: E402
import torch  # noqa: E402
from art.attacks.extraction import CopycatCNN, KnockoffNets  # noqa: E402
from art.estimators.classification import BlackBoxClassifier, PyTorchClassifier  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.discriminant_analysis import (  # noqa: E402
    LinearDiscriminantAnalysis,
    QuadraticDiscriminantAnalysis,
)
from sklearn.ensemble import (  # noqa: E402
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402
from tests.gateway.harness import serve_gateway, serve_victim, train_victim, victim_scores  # noqa: E402

from donjon.app.watermark import verify_suspect  # noqa: E402
from donjon.config import Settings  # noqa: E402
from donjon.gateway import build_pipeline, build_profile, new_api_key  # noqa: E402
from donjon.gateway.pipeline import GatewayRequest  # noqa: E402
from donjon.gateway.replies import Reply  # noqa: E402
from donjon.gateway.settings import GatewaySettings  # noqa: E402
from donjon.gateway.watermark import FolderMarks  # noqa: E402
from donjon.gateway.watermark.suspect import HttpSuspect  # noqa: E402

CLASSES = 10
ALPHA = 1e-6


# -- data ------------------------------------------------------------------------------------


def augmented(rows: np.ndarray, rng: np.random.Generator, per_row: int) -> np.ndarray:
    """Natural variations of 8x8 digits: one-pixel shifts and small rotations, on the grid."""
    out = []
    for row in rows:
        image = row.reshape(8, 8)
        for _ in range(per_row):
            dy, dx = rng.integers(-1, 2, size=2)
            angle = rng.uniform(-12, 12)
            moved = ndimage.shift(image, (dy, dx), order=1, mode="constant")
            turned = ndimage.rotate(moved, angle, reshape=False, order=1, mode="constant")
            out.append(np.clip(np.rint(turned), 0, 16).ravel())
    unique = np.unique(np.asarray(out), axis=0)
    return unique[rng.permutation(len(unique))]


# -- surrogates --------------------------------------------------------------------------------


def cnn(width: int = 16) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(width, 2 * width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(2 * width * 16, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, CLASSES),
    )


def mlp(hidden: int = 256, inputs: int = 64) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, CLASSES),
    )


def art_model(
    network: torch.nn.Module,
    seed: int,
    features: int = 64,
    clip: tuple[float, float] | None = (0.0, 16.0),
) -> PyTorchClassifier:
    torch.manual_seed(seed)
    for layer in network.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    return PyTorchClassifier(
        model=network,
        loss=torch.nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
        input_shape=(features,),
        nb_classes=CLASSES,
        clip_values=clip,
        preprocessing=(0.0, 16.0) if clip is not None else None,
    )


def torch_scores(classifier: PyTorchClassifier) -> Callable[[np.ndarray], np.ndarray]:
    def scores(rows: np.ndarray) -> np.ndarray:
        logits = classifier.predict(rows.astype(np.float32), batch_size=512)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out

    return scores


def sklearn_scores(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    def scores(rows: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows), CLASSES))
        out[:, model.classes_] = model.predict_proba(rows)
        return out

    return scores


# -- scenarios ---------------------------------------------------------------------------------


class Scenario:
    """A victim, the attacker's pool of natural inputs, benign traffic and surrogates."""

    name: str
    features: int
    victim: Any  # has predict_proba on raw rows
    pool: np.ndarray  # the attacker's natural inputs (distinct rows)
    seed_rows: np.ndarray  # a few the attacker labelled itself (KnockoffNets adaptive)
    benign: np.ndarray  # a benign user's traffic, drawn like the attacker's
    natural: np.ndarray  # an ordinary user's: distinct natural inputs
    heldout: np.ndarray  # for fidelity
    train_x: np.ndarray
    train_y: np.ndarray
    clip: tuple[float, float] | None = None

    def labels(self, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.victim.predict_proba(np.asarray(rows)).argmax(axis=1)
        return out

    def networks(self) -> dict[str, Callable[[], torch.nn.Module]]:
        raise NotImplementedError


class Tabular(Scenario):
    """10 classes, 20 features (scikit-learn's make_classification): distinct natural rows."""

    name = "tabular"
    features = 20

    def __init__(self, quick: bool) -> None:
        x, y = make_classification(
            n_samples=40_000, n_features=20, n_informative=12, n_classes=CLASSES,
            n_clusters_per_class=2, class_sep=1.5, random_state=0,
        )  # fmt: skip
        self.train_x, self.train_y = x[:10_000], y[:10_000]
        self.victim = MLPClassifier((64,), max_iter=300, random_state=0).fit(
            self.train_x, self.train_y
        )
        self.pool = x[10_000:22_000]
        self.seed_rows = x[22_000:22_500]
        self.benign = x[25_000 : 27_000 if quick else 30_000]
        self.natural = self.benign
        self.heldout = x[30_000:32_000]

    def networks(self) -> dict[str, Callable[[], torch.nn.Module]]:
        return {"MLP 256": lambda: mlp(256, 20), "MLP 512": lambda: mlp(512, 20)}


class Digits(Scenario):
    """The gateway's digits victim; the attacker augments a few hundred natural digits."""

    name = "digits (augmented)"
    features = 64
    clip = (0.0, 16.0)

    def __init__(self, quick: bool) -> None:
        victim = train_victim()
        self.victim = Served(lambda rows: victim_scores(victim.model, rows))
        self.train_x, self.train_y = victim.x_train, victim.y_train
        rng = np.random.default_rng(7)
        order = rng.permutation(len(victim.x_test))
        half = len(order) // 2
        self.seed_rows = victim.x_test[order[:half]]
        self.heldout = victim.x_test[order[half:]]
        self.pool = augmented(self.seed_rows, rng, 40)
        self.benign = augmented(self.heldout, np.random.default_rng(8), 6 if quick else 12)
        self.natural = np.concatenate([self.heldout, self.train_x])

    def networks(self) -> dict[str, Callable[[], torch.nn.Module]]:
        return {"CNN": cnn, "MLP 256": lambda: mlp(256, 64)}


class Served:
    """Rows in, scores out, from any scoring function (the harness's server divides by 16)."""

    def __init__(self, scores: Callable[[np.ndarray], np.ndarray], scale: float = 1.0) -> None:
        self.scores = scores
        self.scale = scale

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.scores(np.asarray(rows) * self.scale)


# -- the benchmark ---------------------------------------------------------------------------


class Bench:
    def __init__(
        self,
        scenario: Scenario,
        quick: bool,
        rate: float,
        queries: int,
        folder: Path,
        strip: bool = False,
        suspect_rate: float | None = None,
    ) -> None:
        self.s = scenario
        self.strip = strip
        self.seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # each thief's training data
        self.nets: dict[str, Callable[[], torch.nn.Module]] = {}
        self.quick = quick
        self.rate = rate
        self.queries = min(queries, len(scenario.pool))
        self.folder = folder / scenario.name.split()[0]
        self.folder.mkdir()
        self.epochs = 30 if quick else 60
        key = self.folder / "wm.key"
        key.write_text(np.random.default_rng(99).bytes(32).hex())
        key.chmod(0o600)
        self.watermark: dict[str, Any] = {
            "rate": rate, "key": f"file:{key}", "folder": str(self.folder / "m"),
        }  # fmt: skip
        if suspect_rate is not None:
            self.watermark["suspect_rate"] = suspect_rate
        self.surrogates: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray], int]] = {}
        self.principals = [
            "copycat-0", "copycat-1", "knockoff-2", "knockoff-3", "benign", "ordinary",
        ]  # fmt: skip

    def fidelity(self, scores: Callable[[np.ndarray], np.ndarray]) -> float:
        heldout = self.s.heldout
        return float((scores(heldout).argmax(axis=1) == self.s.labels(heldout)).mean())

    def art(self, network: torch.nn.Module, seed: int) -> PyTorchClassifier:
        return art_model(network, seed, self.s.features, self.s.clip)

    def settings(self) -> tuple[GatewaySettings, dict[str, str]]:
        keys, entries = {}, []
        for who in self.principals:
            token, entry = new_api_key(who.replace("-", ""), who)
            keys[who] = token
            entries.append(entry)
        (self.folder / "keys.json").write_text(json.dumps({"keys": entries}))
        build_profile(self.s.train_x).save(self.folder / "profile.json")
        # the detectors report (and flag principals for the watermark's suspect rate), but
        # the attacks run to the end
        detectors = ("evasion", "membership", "ood", "extraction", "scatter")
        model = {
            "name": "victim", "routes": ["/predict"], "allow": ["*"],
            "features": self.s.features, "watermark": self.watermark,
            "profile": str(self.folder / "profile.json"),
            "detectors": {name: {"action": "alert"} for name in detectors},
        }  # fmt: skip
        settings = GatewaySettings.model_validate(
            {
                "auth": {"api_keys_file": str(self.folder / "keys.json")},
                "quotas": {"principal_rate": 1e6, "principal_burst": 1e6},
                "event_interval_seconds": 0,
                "log_sample_rate": 0,
                "models": [model],
            }
        )
        return settings, keys

    # -- attacks through the gateway ---------------------------------------------------------

    def attack(
        self, url: str, who: str, name: str, run: Callable[[BlackBoxClassifier], Any]
    ) -> None:
        client = Client(url, self.keys[who], self.s.features)
        classifier = BlackBoxClassifier(
            client, input_shape=(self.s.features,), nb_classes=CLASSES, clip_values=self.s.clip
        )
        started = time.time()
        thief = run(classifier)
        client.close()
        scores = torch_scores(thief)
        self.surrogates[name] = (who, scores, client.queries)
        self.seen[name] = client.seen()
        print(
            f"  {name}: {client.queries} queries as {who}, fidelity "
            f"{self.fidelity(scores):.3f} ({time.time() - started:.0f} s)",
            flush=True,
        )

    def attacks(self, url: str) -> None:
        n = self.queries
        pool = self.s.pool.astype(np.float32)
        nets = list(self.s.networks().items())

        def copycat(network: torch.nn.Module, seed: int) -> Callable[[Any], Any]:
            def run(classifier: BlackBoxClassifier) -> Any:
                np.random.seed(seed)
                attack = CopycatCNN(
                    classifier, batch_size_fit=64, batch_size_query=64,
                    nb_epochs=self.epochs, nb_stolen=n, use_probability=False,
                )  # fmt: skip
                return attack.extract(pool, thieved_classifier=self.art(network, seed))

            return run

        def knockoff(strategy: str, network: torch.nn.Module, seed: int) -> Callable[[Any], Any]:
            def run(classifier: BlackBoxClassifier) -> Any:
                np.random.seed(seed)
                attack = KnockoffNets(
                    classifier, batch_size_fit=64, batch_size_query=64,
                    nb_epochs=self.epochs, nb_stolen=n, sampling_strategy=strategy,
                    use_probability=False, verbose=False,
                )  # fmt: skip
                y = None
                if strategy == "adaptive":  # the attacker's own coarse labels of its pool
                    seed_y = self.s.labels(self.s.seed_rows)
                    own = LogisticRegression(max_iter=2000).fit(self.s.seed_rows, seed_y)
                    y = own.predict(pool)
                return attack.extract(pool, y=y, thieved_classifier=self.art(network, seed))

            return run

        self.nets[f"CopycatCNN ({nets[0][0]})"] = nets[0][1]
        self.attack(url, "copycat-0", f"CopycatCNN ({nets[0][0]})", copycat(nets[0][1](), 1))
        self.attack(url, "copycat-1", f"CopycatCNN ({nets[1][0]})", copycat(nets[1][1](), 2))
        self.attack(
            url, "knockoff-2", f"KnockoffNets random ({nets[0][0]})",
            knockoff("random", nets[0][1](), 3),
        )  # fmt: skip
        self.attack(
            url, "knockoff-3", f"KnockoffNets adaptive ({nets[0][0]})",
            knockoff("adaptive", nets[0][1](), 4),
        )  # fmt: skip

    def benign_accuracy(self, url: str, token: str | None, rows: np.ndarray) -> float:
        """Agreement with the model's own answers seen by a benign user."""
        client = Client(url, token, self.s.features)
        answers = np.concatenate([client(rows[i : i + 64]) for i in range(0, len(rows), 64)])
        client.close()
        return float((answers.argmax(axis=1) == self.s.labels(rows)).mean())

    # -- independent models ------------------------------------------------------------------

    def independent(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Models that never saw the gateway's answers, several architectures."""
        x, y = self.s.train_x, self.s.train_y
        few = slice(0, self.queries)  # torch models: as many training rows as the thieves had
        same_x = self.s.pool[: self.queries]
        same_y = self.s.labels(same_x)  # the attacker's inputs, the model's own answers
        models: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        nets = self.s.networks()
        sets = (("train", (x[few], y[few])), ("same inputs", (same_x, same_y)))
        for seed, (kind, data) in enumerate(sets):
            for name, make in nets.items():
                net = self.art(make(), 100 + seed)
                net.fit(data[0].astype(np.float32), np.eye(CLASSES)[data[1]],
                        nb_epochs=self.epochs, batch_size=64, verbose=False)  # fmt: skip
                models[f"torch {name} ({kind})"] = torch_scores(net)
        sk: dict[str, Any] = {
            "sklearn MLP 32": MLPClassifier((32,), max_iter=200, random_state=1),
            "sklearn MLP 128x64": MLPClassifier((128, 64), max_iter=200, random_state=2),
            "logistic regression": LogisticRegression(max_iter=3000),
            "random forest": RandomForestClassifier(100, random_state=1, n_jobs=1),
            "extra trees": ExtraTreesClassifier(100, random_state=3, n_jobs=1),
            "hist gradient boosting": HistGradientBoostingClassifier(random_state=1),
            "1-NN": KNeighborsClassifier(1),
            "15-NN": KNeighborsClassifier(15),
            "gaussian naive Bayes": GaussianNB(),
            "QDA": QuadraticDiscriminantAnalysis(reg_param=0.1),
            "LDA": LinearDiscriminantAnalysis(),
            "5-NN": KNeighborsClassifier(5),
            "SVC rbf": SVC(probability=True, random_state=1),
            "sklearn MLP 64 (seed 5)": MLPClassifier((64,), max_iter=300, random_state=5),
            "sklearn MLP 64 (seed 6)": MLPClassifier((64,), max_iter=300, random_state=6),
        }
        for name, model in sk.items():
            models[f"{name} (train)"] = sklearn_scores(clone(model).fit(x, y))
        models["decision tree (train)"] = sklearn_scores(
            DecisionTreeClassifier(random_state=4).fit(x, y)
        )
        for name in (
            "1-NN", "15-NN", "random forest", "extra trees", "sklearn MLP 128x64",
            "hist gradient boosting", "logistic regression", "gaussian naive Bayes",
            "LDA", "5-NN", "SVC rbf", "sklearn MLP 32",
        ):  # fmt: skip
            models[f"{name} (same inputs)"] = sklearn_scores(clone(sk[name]).fit(same_x, same_y))
        return models

    # -- stripping -----------------------------------------------------------------------------

    def stripped(self, name: str) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """The thief's data cleaned by a neighbourhood vote, then its surrogate trained again."""
        x, given = self.seen[name]
        labels = given.argmax(axis=1)
        scale = x.std(axis=0) + 1e-9
        z = (x - x.mean(axis=0)) / scale
        _, near = NearestNeighbors(n_neighbors=11).fit(z).kneighbors(z)
        votes = np.apply_along_axis(
            lambda r: np.bincount(r, minlength=CLASSES), 1, labels[near[:, 1:]]
        )
        majority = votes.argmax(axis=1)
        outvoted = majority != labels  # the plurality of the neighbours says otherwise
        doubted = outvoted & (votes.max(axis=1) >= 6)  # ... and 6 of 10 agree
        print(
            f"  neighbourhood vote (10 nearest) contradicts {outvoted.sum()} of {len(x)} "
            f"answers, {doubted.sum()} with 6 or more neighbours agreeing",
            flush=True,
        )
        out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        variants = {
            "relabelled (6 of 10)": (x, np.where(doubted, majority, labels)),
            "dropped (6 of 10)": (x[~doubted], labels[~doubted]),
            "relabelled (plurality)": (x, np.where(outvoted, majority, labels)),
        }
        for variant, (rows, y) in variants.items():
            net = self.art(self.nets[name](), 1)
            net.fit(rows.astype(np.float32), np.eye(CLASSES)[y],
                    nb_epochs=self.epochs, batch_size=64, verbose=False)  # fmt: skip
            out[f"{name}, stripped: {variant}"] = torch_scores(net)
        return out

    # -- verification ------------------------------------------------------------------------

    def verify(
        self, scores: Callable[[np.ndarray], np.ndarray], config: GatewaySettings
    ) -> dict[str, Any]:
        with serve_victim(Served(scores, 16.0)) as url:  # type: ignore[arg-type]
            report = verify_suspect(
                Settings(home=self.folder / "home"),
                config,
                "victim",
                HttpSuspect(f"{url}/predict", batch=256),
                alpha=ALPHA,
            )
        return {v.principal: v for v in report.verdicts}

    # -- overhead ----------------------------------------------------------------------------

    def overhead(
        self, settings: GatewaySettings, token: str, rounds: int, pool: np.ndarray
    ) -> dict[str, float]:
        """The gateway's CPU time per one-row request (admit + complete), in process, for
        one principal sending the first 2,000 rows of ``pool``."""
        off = settings.model_copy(
            update={"models": [settings.models[0].model_copy(update={"watermark": None})]}
        )
        pipelines = {"off": build_pipeline(off), "on": build_pipeline(settings)}
        rows = pool[:2000]
        bodies = [json.dumps({"inputs": [r.tolist()]}).encode() for r in rows]
        answers = [
            json.dumps({"outputs": self.s.victim.predict_proba(r[None]).tolist()}).encode()
            for r in rows
        ]
        times: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                pipeline = pipelines[mode]
                start = time.process_time()
                for body, answer in zip(bodies, answers, strict=True):
                    request = GatewayRequest("POST", "/predict", {"x-api-key": token}, body)
                    admitted = pipeline.admit(request)
                    if isinstance(admitted, Reply):
                        raise RuntimeError(f"refused: {admitted.body()}")
                    pipeline.complete(admitted, 200, answer)
                times[mode].append((time.process_time() - start) / len(bodies))
        return {mode: float(np.median(t)) for mode, t in times.items()}

    # -- run ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.time()
        print(
            f"\n== {self.s.name}: watermark rate {self.rate:.2%}; {self.queries} queries per "
            f"attack from a pool of {len(self.s.pool)} natural inputs; surrogates trained "
            f"{self.epochs} epochs"
        )
        settings, self.keys = self.settings()
        result: dict[str, Any] = {"scenario": self.s.name, "rate": self.rate}
        with serve_victim(Served(self.s.victim.predict_proba, 16.0)) as upstream:  # type: ignore[arg-type]
            plain = self.benign_accuracy(upstream, None, self.s.benign)
            natural = self.benign_accuracy(upstream, None, self.s.natural)
            with serve_gateway(settings, self.keys, upstream) as gw:
                print("attacks through the gateway (HTTP):", flush=True)
                self.attacks(gw.url)
                marked = self.benign_accuracy(gw.url, self.keys["benign"], self.s.benign)
                ordinary = self.benign_accuracy(gw.url, self.keys["ordinary"], self.s.natural)
        result["benign"] = {"direct": plain, "watermarked": marked, "drop": plain - marked}
        result["ordinary"] = {"direct": natural, "watermarked": ordinary,
                              "drop": natural - ordinary}  # fmt: skip
        print(
            f"benign agreement with the model on {len(self.s.benign)} inputs drawn like the "
            f"attacker's: {plain:.4f} direct, {marked:.4f} through the watermarking gateway "
            f"(drop {plain - marked:+.4f}); ordinary user, {len(self.s.natural)} distinct "
            f"natural inputs: {natural:.4f} direct, {ordinary:.4f} (drop {natural - ordinary:+.4f})"
        )
        marks = FolderMarks(self.folder / "m").records("victim")
        given = {who: sum(r.principal == who and r.kind == "mark" for r in marks)
                 for who in self.principals}  # fmt: skip
        carried = {who: sum(r.principal == who and r.family != "" for r in marks)
                   for who in self.principals}  # fmt: skip
        result["marks_given"] = given
        print("marked answers given (carried to near-copies): " + ", ".join(
            f"{who} {given[who]} ({carried[who]})" for who in self.principals))  # fmt: skip
        rows = []
        print("surrogates (verify-suspect over HTTP, all principals' records):")
        print(f"  {'attack':56} {'fid.':>5} {'marks':>5} {'repr.':>5} {'ctl':>4} {'hit':>3} "
              f"{'p binomial':>10} {'p exact':>9} {'rank sum':>8} {'p score':>9}  "
              f"identified")  # fmt: skip
        suspects = [(n, who, sc, q) for n, (who, sc, q) in self.surrogates.items()]
        if self.strip:
            name = next(iter(self.nets))
            who, _, queries = self.surrogates[name]
            suspects += [(n, who, sc, queries) for n, sc in self.stripped(name).items()]
        for name, who, scores, queries in suspects:
            verdicts = self.verify(scores, settings)
            own = verdicts[who]
            others = sorted(p for p, v in verdicts.items() if v.identified and p != who)
            fidelity = self.fidelity(scores)
            rows.append(
                {"attack": name, "principal": who, "queries": queries, "fidelity": fidelity,
                 "marks": own.marks, "reproduced": own.reproduced, "controls": own.controls,
                 "control_hits": own.control_hits, "p_binomial": own.p_binomial,
                 "p_exact": own.p_exact, "rank_sum": own.rank_sum, "p_rank": own.p_rank,
                 "identified": own.identified, "others_identified": others}
            )  # fmt: skip
            exact = own.p_exact if own.p_exact is not None else 1.0
            score = own.p_rank if own.p_rank is not None else 1.0
            print(
                f"  {name:56} {fidelity:5.3f} {own.marks:5d} {own.reproduced:5d} "
                f"{own.controls:4d} {own.control_hits:3d} {own.p_binomial:10.2e} {exact:9.2e} "
                f"{own.rank_sum:4d}/{own.ranked:<3d} {score:9.2e}  "
                + ("YES" if own.identified else "no")
                + (f" (+ wrongly {', '.join(others)})" if others else "")
            )
        result["surrogates"] = rows
        print("independent models (never saw the gateway's answers), against every principal:")
        independent = []
        hits = marks = 0
        smallest = 1.0
        for name, scores in self.independent().items():
            verdicts = self.verify(scores, settings)
            wrong = sorted(p for p, v in verdicts.items() if v.identified)
            best = min(verdicts.values(), key=lambda v: v.p_value)
            smallest = min(smallest, best.p_value)
            hits += sum(v.reproduced for v in verdicts.values())
            marks += sum(v.marks for v in verdicts.values())
            fidelity = self.fidelity(scores)
            ranked = [v.p_rank for v in verdicts.values() if v.p_rank is not None]
            independent.append({"model": name, "fidelity": fidelity, "identified": wrong,
                                "min_p": best.p_value,
                                "min_p_rank": min(ranked, default=None)})  # fmt: skip
            print(
                f"  {name:40} fidelity {fidelity:.3f}; smallest p {best.p_value:.2e} "
                f"({best.principal}: {best.reproduced}/{best.marks}, p score "
                f"{best.p_rank if best.p_rank is not None else 1.0:.2e}); "
                f"identified: {', '.join(wrong) or 'none'}",
                flush=True,
            )
        result["independent"] = independent
        result["null_rate_independent"] = hits / marks if marks else None
        rounds = 3 if self.quick else 5
        o = self.overhead(settings, self.keys["benign"], rounds, self.s.benign)
        plain_o = self.overhead(settings, self.keys["ordinary"], rounds, self.s.natural)
        result["overhead"] = {"flagged": o, "ordinary": plain_o}
        result["seconds"] = time.time() - started
        fid = [r for r in rows if r["fidelity"] >= 0.8 and ", stripped" not in r["attack"]]
        good = sum(r["identified"] and not r["others_identified"] for r in fid)
        wrong = sum(bool(m["identified"]) for m in independent)
        print(
            f"keyed labels given by independent models on marks: {hits}/{marks}\n"
            f"gateway CPU time per one-row request, median of rounds: ordinary user "
            f"{plain_o['off'] * 1e6:.0f} us without, {plain_o['on'] * 1e6:.0f} us with the "
            f"watermark (+{(plain_o['on'] - plain_o['off']) * 1e6:.0f} us); a principal the "
            f"detectors flag (marked at the suspect rate) {o['off'] * 1e6:.0f} / "
            f"{o['on'] * 1e6:.0f} us (+{(o['on'] - o['off']) * 1e6:.0f} us)\n"
            f"TARGETS ({self.s.name}): surrogates with fidelity >= 0.8 identified {good}/"
            f"{len(fid)}; independent models identified {wrong}/{len(independent)} (smallest p "
            f"{smallest:.1e}); ordinary user's drop {natural - ordinary:+.4f} (target <= 0.005), "
            f"benign drawn like the attacker {plain - marked:+.4f}  [{result['seconds']:.0f} s]",
            flush=True,
        )
        return result


class Client:
    """An HTTP client of the model: rows in, scores out (what ART's black box calls)."""

    def __init__(self, url: str, token: str | None, features: int) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)
        self.features = features
        self.queries = 0
        self._rows: list[np.ndarray] = []
        self._answers: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64)).reshape(-1, self.features)
        reply = self.http.post("/predict", json={"inputs": rows.tolist()})
        reply.raise_for_status()
        self.queries += len(rows)
        answers = np.asarray(reply.json()["outputs"], dtype=np.float64)
        self._rows.append(rows)
        self._answers.append(answers)
        return answers

    def seen(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row queried and the answer given (what a thief trains on)."""
        return np.concatenate(self._rows), np.concatenate(self._answers)

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="donjon-wm-") as folder:
        yield Path(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries and epochs")
    parser.add_argument("--rate", type=float, default=0.005, help="watermark rate")
    parser.add_argument("--queries", type=int, default=None, help="queries per attack")
    parser.add_argument(
        "--scenario", choices=["tabular", "digits", "all"], default="all", help="which victim"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--strip", action="store_true", help="add the stripping attack")
    parser.add_argument(
        "--suspect-rate", type=float, default=None, help="the rate for flagged principals"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    with workspace() as folder:
        for make, default in ((Tabular, 8000), (Digits, 3000)):
            if args.scenario not in ("all", make.__name__.lower()):
                continue
            queries = args.queries or (default // 2 if args.quick else default)
            scenario = make(args.quick)
            bench = Bench(
                scenario, args.quick, args.rate, queries, folder, args.strip, args.suspect_rate
            )
            results.append(bench.run())
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
