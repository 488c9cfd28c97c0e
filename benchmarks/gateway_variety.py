"""The gateway against victims, encodings and server shapes its own tests do not use.

``python benchmarks/gateway_bench.py --variety [--quick]`` (or this file directly).

For each data encoding of :mod:`gateway_data` (digits at 1/16 steps, the
breast-cancer table) and each server response shape (MLflow's ``/invocations``
answering ``{"predictions": ...}``, KServe v2 tensors, a plain server answering
``{"probabilities": ...}``), a victim (scikit-learn MLP) is served over HTTP and a
gateway (its detectors in *alert* mode, so each attack runs to its end) in front
of it, with a profile built from the training rows by ``build_profile``. Then:

* ART's HopSkipJump and BoundaryAttack, our Jacobian augmentation (10 natural
  seeds, lambda = 0.1 of a feature's range or spread) and ART's KnockoffNets on
  random noise: the query of the first stateful flag, PRADA and the
  nearest-neighbour detector (``gateway_baselines.py``) replaying the same queries;
* benign streams (held-out rows with drift, jitter, noise, gain / offset shifts,
  retries): how many are flagged by each detector;
* per input, with the OOD detector in block mode: the share of benign inputs (each
  variation) and of transfer-attack inputs (FGSM / PGD from a surrogate) refused.

Nothing here was used to choose a threshold: the profile is built from the
training rows alone.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from gateway_baselines import NearestNeighbour, Prada, first_flag  # noqa: E402
from gateway_data import Encoding, benign_variations, load, transfer_attacks  # noqa: E402

from donjon.core import EventBus, MemorySink  # noqa: E402
from donjon.gateway import build_pipeline, build_profile, create_proxy, new_api_key  # noqa: E402
from donjon.gateway.settings import GatewaySettings  # noqa: E402

SHAPES = ("mlflow", "kserve-v2", "probabilities")
ENCODINGS = ("digits/16", "cancer")
STATEFUL = {"DJ-GW-001", "DJ-GW-002", "DJ-GW-005"}
ROUTES = {"mlflow": "/invocations", "kserve-v2": "/v2/models/m/infer", "probabilities": "/predict"}


class Refused(Exception):
    pass


class Cap(Exception):
    pass


def _request(shape: str, rows: np.ndarray) -> dict[str, Any]:
    if shape == "mlflow":
        cols = [f"f{i}" for i in range(rows.shape[1])]
        return {"dataframe_split": {"columns": cols, "data": rows.tolist()}}
    if shape == "kserve-v2":
        tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP64"}
        return {"inputs": [{**tensor, "data": rows.ravel().tolist()}]}
    return {"inputs": rows.tolist()}


def _scores_of(shape: str, doc: dict[str, Any]) -> np.ndarray:
    if shape == "mlflow":
        return np.asarray(doc["predictions"], dtype=np.float64)
    if shape == "kserve-v2":
        t = doc["outputs"][0]
        return np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])
    return np.asarray(doc["probabilities"], dtype=np.float64)


class Client:
    """One principal's view of the model over HTTP, in the server's own shape."""

    def __init__(self, url: str, token: str, shape: str, features: int, cap: int) -> None:
        self.http = httpx.Client(base_url=url, headers={"x-api-key": token}, timeout=30)
        self.shape, self.features, self.cap = shape, features, cap
        self.log: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64)).reshape(-1, self.features)
        if len(self.log) >= self.cap:
            raise Cap
        response = self.http.post(ROUTES[self.shape], json=_request(self.shape, rows))
        if response.status_code != 200:
            raise Refused(response.status_code)
        self.log.extend(rows)
        return _scores_of(self.shape, response.json())

    def close(self) -> None:
        self.http.close()


class Setup:
    """A victim of one encoding and shape behind a gateway, and the principals' keys."""

    def __init__(self, enc: Encoding, shape: str, folder: Path, ood_action: str) -> None:
        self.enc, self.shape, self.folder = enc, shape, folder
        self.keys: dict[str, str] = {}
        entries = []
        for i in range(400):
            token, entry = new_api_key(f"u{i}", f"u{i}")
            self.keys[f"u{i}"] = token
            entries.append(entry)
        (folder / "keys.json").write_text(json.dumps({"keys": entries}))
        self.profile = build_profile(enc.x_train, labels=enc.y_train)
        self.profile.save(folder / "profile.json")
        alert = {"action": "alert"}
        model = {
            "name": "m",
            "routes": [ROUTES[shape]],
            "allow": ["*"],
            "features": enc.features,
            "profile": str(folder / "profile.json"),
            "detectors": {
                "evasion": alert,
                "membership": alert,
                "extraction": alert,
                "scatter": alert,
                "ood": {"action": ood_action},
                "consistency": {"action": ood_action},
            },
        }
        self.settings = GatewaySettings.model_validate(
            {
                "auth": {"api_keys_file": str(folder / "keys.json")},
                "quotas": {"principal_rate": 1e6, "principal_burst": 1e6},
                "event_interval_seconds": 0,
                "log_sample_rate": 0,
                "models": [model],
            }
        )
        self.used = 0

    @contextmanager
    def running(self) -> Iterator[Setup]:
        from tests.gateway.harness import serve_app
        from tests.support.victims import serve as serve_victim

        self.sink = MemorySink()
        pipeline = build_pipeline(self.settings, bus=EventBus([self.sink]))
        with contextlib.ExitStack() as stack:
            upstream = stack.enter_context(serve_victim(self.enc.scores))
            self.url = stack.enter_context(serve_app(create_proxy(pipeline, upstream)))
            yield self

    def client(self, cap: int = 10**9) -> tuple[str, Client]:
        who = f"u{self.used}"
        self.used += 1
        return who, Client(self.url, self.keys[who], self.shape, self.enc.features, cap)

    def first_flag(self, who: str, rules: set[str] = STATEFUL) -> tuple[int | None, str]:
        hits = [
            (e.finding.evidence.get("query_index"), e.finding.rule.id)
            for e in self.sink.events
            if e.finding is not None
            and e.finding.subject.principal == who
            and e.finding.rule.id in rules
        ]
        if not hits:
            return None, "-"
        first = min(q for q, _ in hits)
        return first, ",".join(sorted({r for q, r in hits if q == first}))


def peers(setup: Setup, log: np.ndarray, nn_threshold: float) -> tuple[int | None, int | None]:
    if len(log) == 0:
        return None, None
    scaled = setup.profile.scaled(log)
    labels = setup.enc.labels(log)
    return (
        first_flag(Prada(), scaled, labels),
        first_flag(NearestNeighbour(nn_threshold), scaled, labels),
    )


def attacks(setup: Setup, quick: bool, nn_threshold: float) -> list[dict[str, Any]]:
    from art.attacks.evasion import BoundaryAttack, HopSkipJump
    from art.attacks.extraction import KnockoffNets
    from art.estimators.classification import BlackBoxClassifier
    from sklearn.linear_model import LogisticRegression

    enc = setup.enc
    # the attacker's box: the encoding's range, or (a table) the range its own rows span
    if np.isfinite(enc.high).all():
        clip = (enc.low.astype(np.float32), enc.high.astype(np.float32))
    else:
        clip = (enc.attacker.min(axis=0).astype(np.float32),
                enc.attacker.max(axis=0).astype(np.float32))  # fmt: skip
    rows: list[dict[str, Any]] = []

    def record(name: str, who: str, client: Client, note: str = "") -> None:
        client.close()
        log = np.asarray(client.log)
        at, rule = setup.first_flag(who)
        prada, nn = peers(setup, log, nn_threshold)
        rows.append(
            {"attack": name, "queries": len(log), "donjon": at, "rule": rule,
             "prada": prada, "nn": nn, "note": note}
        )  # fmt: skip

    images = 1 if quick else 2
    cap = 300 if quick else 600
    evasion = {
        "HopSkipJump": lambda c: HopSkipJump(
            c, max_iter=10, max_eval=100, init_eval=10, verbose=False
        ),
        "BoundaryAttack": lambda c: BoundaryAttack(
            c, targeted=False, max_iter=100, num_trial=10, verbose=False
        ),
    }
    for name, make in evasion.items():
        for i in range(images):
            np.random.seed(i)
            who, client = setup.client(cap)
            classifier = BlackBoxClassifier(
                client, input_shape=(enc.features,), nb_classes=enc.classes, clip_values=clip
            )
            with contextlib.suppress(Cap, Refused):
                make(classifier).generate(x=enc.heldout[i : i + 1])
            record(f"{name} #{i}", who, client)
    # Jacobian augmentation from 10 natural seeds (lambda: a tenth of the range or spread)
    who, client = setup.client(cap)
    spread = enc.x_train.std(axis=0)
    lam = 0.1 * (enc.high - enc.low) if enc.image is not None else 0.1 * spread
    data = enc.attacker[:10].copy()
    with contextlib.suppress(Cap, Refused):
        labels = client(data).argmax(axis=1)
        for _ in range(6):
            z = (data - enc.x_train.mean(axis=0)) / np.maximum(spread, 1e-12)
            copy = LogisticRegression(max_iter=1000).fit(z, labels)
            coef = copy.coef_ if len(copy.classes_) > 2 else np.vstack([-copy.coef_, copy.coef_])
            p = copy.predict_proba(z)
            grad = coef[np.searchsorted(copy.classes_, labels)] - p @ coef
            new = enc.clip(data + lam * np.sign(grad / np.maximum(spread, 1e-12)))
            labels = np.concatenate([labels, client(new).argmax(axis=1)])
            data = np.concatenate([data, new])
    record("Jacobian augmentation (10 seeds)", who, client)
    # KnockoffNets, random strategy, over uniform noise in the data's box
    who, client = setup.client(cap)
    rng = np.random.default_rng(11)
    pool = rng.uniform(enc.x_train.min(axis=0), enc.x_train.max(axis=0), (1000, enc.features))
    classifier = BlackBoxClassifier(
        client, input_shape=(enc.features,), nb_classes=enc.classes, clip_values=clip
    )
    from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression

    thief = ScikitlearnLogisticRegression(LogisticRegression(max_iter=200))
    knock = KnockoffNets(
        classifier, batch_size_fit=64, batch_size_query=16, nb_epochs=1,
        nb_stolen=cap - 20, sampling_strategy="random", use_probability=False, verbose=False,
    )  # fmt: skip
    with contextlib.suppress(Cap, Refused, ValueError, AttributeError, TypeError):
        knock.extract(pool, thieved_classifier=thief)
    record("KnockoffNets random (noise)", who, client)
    return rows


def benign(setup: Setup, quick: bool, nn_threshold: float) -> list[dict[str, Any]]:
    enc = setup.enc
    rng = np.random.default_rng(21)
    n = 120 if quick else 300
    out = []
    variations = benign_variations(enc)
    for name, vary in variations.items():
        base = enc.heldout[rng.permutation(len(enc.heldout))[:n]]
        stream = list(vary(base, rng))
        # retries and re-sends: a fifth of the rows sent again a little later
        for i in sorted(rng.choice(len(stream), len(stream) // 5, replace=False), reverse=True):
            stream.insert(min(len(stream), i + int(rng.integers(1, 6))), stream[i].copy())
        who, client = setup.client()
        rows = np.asarray(stream)
        for start in range(0, len(rows), 4 if name == "unmodified" else 1):
            client(rows[start : start + (4 if name == "unmodified" else 1)])
        client.close()
        at, rule = setup.first_flag(who)
        prada, nn = peers(setup, rows, nn_threshold)
        out.append({"stream": name, "queries": len(rows), "donjon": at, "rule": rule,
                    "prada": prada, "nn": nn})  # fmt: skip
    return out


def per_input(setup: Setup, quick: bool) -> list[dict[str, Any]]:
    """Per input, one principal per kind: the share refused in block mode by the OOD
    detector (structure: the split test, off the grid) and the answer-consistency test
    (DJ-GW-012), and the share flagged at all (the distance tests too, which log), of all
    inputs, of those that fool the victim and of those that do not."""
    enc = setup.enc
    rng = np.random.default_rng(31)
    targets = enc.heldout[: 120 if quick else len(enc.heldout)]
    rounds = 1 if quick else 4  # benign variations drawn again: finer rates on small tables
    rows = []

    def send(x: np.ndarray) -> tuple[float, float]:
        who, client = setup.client()
        count = 0
        for row in x:
            try:
                client(row[None])
            except Refused:
                count += 1
        client.close()
        flagged = {  # one row per request
            e.finding.evidence.get("request_id")
            for e in setup.sink.events
            if e.finding is not None
            and e.finding.subject.principal == who
            and e.finding.rule.id in ("DJ-GW-004", "DJ-GW-012")
        }
        return count / max(len(x), 1), len(flagged) / max(len(x), 1)

    for name, vary in benign_variations(enc).items():
        refused, flagged = send(np.concatenate([vary(targets, rng) for _ in range(rounds)]))
        rows.append(
            {"input": f"benign: {name}", "refused": refused, "flagged": flagged, "fooled": None,
             "refused_fooling": None, "refused_not_fooling": None}
        )  # fmt: skip
    labels = enc.labels(targets)
    for name, adv in transfer_attacks(enc, targets).items():
        fooled = enc.labels(adv) != labels
        refused, flagged = send(adv)
        rows.append(
            {
                "input": f"transfer: {name}",
                "refused": refused,
                "flagged": flagged,
                "fooled": float(fooled.mean()),
                "refused_fooling": send(adv[fooled])[0] if fooled.any() else None,
                "refused_not_fooling": send(adv[~fooled])[0] if (~fooled).any() else None,
            }
        )
    return rows


def consistency_cpu(setup: Setup, calls: int = 2000) -> float | None:
    """CPU time of the answer-consistency test per labelled answer of one row (the
    detector in process, the median of five rounds), in microseconds."""
    import time

    from donjon.gateway.detectors.consistency import ConsistencyDetector

    model = setup.profile.consistency
    if model is None:
        return None
    detector = ConsistencyDetector(model, setup.profile.alignment)
    rows = setup.enc.heldout
    answered = [str(v) for v in setup.enc.labels(rows)]
    rounds = []
    for _ in range(5):
        start = time.process_time()
        for i in range(calls):
            detector.signals(rows[i % len(rows)][None], [answered[i % len(rows)]])
        rounds.append((time.process_time() - start) / calls * 1e6)
    cpu = float(np.median(rounds))
    print(f"\nanswer-consistency test: {cpu:.0f} us CPU per labelled answer (one row)")
    return cpu


def run(
    quick: bool,
    folder: Path,
    shapes: tuple[str, ...] = SHAPES,
    encodings: tuple[str, ...] = ENCODINGS,
    per_input_only: bool = False,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for enc_name in encodings:
        enc = load(enc_name)
        nn_threshold = NearestNeighbour.calibrate(build_profile(enc.x_train).scaled(enc.x_train))
        for shape in shapes:
            key = f"{enc_name} / {shape}"
            sub = folder / key.replace("/", "_").replace(" ", "")
            sub.mkdir(parents=True, exist_ok=True)
            accuracy = np.mean(enc.labels(enc.heldout) == enc.heldout_y)
            print(f"\n# {key}: victim accuracy {accuracy:.2f}")
            part: dict[str, Any] = {"attacks": [], "benign": []}
            if not per_input_only:
                setup = Setup(enc, shape, sub, "alert")
                with setup.running():
                    part["attacks"] = attacks(setup, quick, nn_threshold)
                    print_rows("Attacks (query of the first stateful flag)", part["attacks"])
                    part["benign"] = benign(setup, quick, nn_threshold)
                    print_rows("Benign streams (query of the first stateful flag)", part["benign"])
            if shape == shapes[0]:  # per input: the same for every response shape
                block = Setup(enc, shape, sub, "block")
                with block.running():
                    part["per_input"] = per_input(block, quick)
                print_rows("Per input, OOD detector in block mode", part["per_input"])
                part["consistency_cpu_us"] = consistency_cpu(block)
            result[key] = part
    if not per_input_only:
        print_rows("Summary: Donjon / PRADA / nearest neighbour", summary(result))
    return result


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per victim and shape: first flags per attack family and benign streams
    flagged, as ``donjon / prada / nn``; the per-input rates (block mode) beside them."""

    def cell(values: list[Any]) -> str:
        shown = sorted({"-" if v is None else str(v) for v in values})
        return ",".join(shown)

    rows = []
    for key, part in result.items():
        row: dict[str, Any] = {"victim / shape": key}
        for family in ("HopSkipJump", "BoundaryAttack", "Jacobian", "KnockoffNets"):
            hits = [a for a in part["attacks"] if a["attack"].startswith(family)]
            row[family] = " / ".join(cell([a[k] for a in hits]) for k in ("donjon", "prada", "nn"))
        benign = part["benign"]
        row["benign streams flagged"] = " / ".join(
            f"{sum(b[k] is not None for b in benign)} of {len(benign)}"
            for k in ("donjon", "prada", "nn")
        )
        inputs = part.get("per_input")
        row["per input: benign refused (max)"] = row["transfer refused (min-max)"] = None
        if inputs:
            ok = [r["refused"] for r in inputs if r["input"].startswith("benign")]
            bad = [r["refused"] for r in inputs if r["input"].startswith("transfer")]
            row["per input: benign refused (max)"] = max(ok)
            row["transfer refused (min-max)"] = f"{min(bad):.1%}-{max(bad):.1%}"
        rows.append(row)
    return rows


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {title}\n")
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [f"{v:.1%}" if isinstance(v, float) else ("-" if v is None else str(v))
                 for v in r.values()]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    import argparse
    import logging
    import tempfile
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument(
        "--encodings",
        default=",".join(ENCODINGS),
        help="also: wine, synthetic (tables kept apart from the design, gateway_data.py)",
    )
    parser.add_argument(
        "--per-input", action="store_true", help="only the per-input part (block mode)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = run(
            args.quick,
            Path(tmp),
            tuple(args.shapes.split(",")),
            tuple(args.encodings.split(",")),
            args.per_input,
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
