"""Would marking *regions* instead of inputs beat an attacker who augments? A measurement.

Run from the repository root:
  python benchmarks/watermark_regions.py [--keys 400] [--rate 0.005]

The idea: key the watermark's HMAC on a keyed, locality-sensitive code of the input
(the signs of ``k`` keyed random projections of the standardised input) instead of
the input, so that near-copies of a marked input share its marked answer and the
surrogate learns a region. On the digits victim, with the attacker of
``watermark_bench.py`` (360 natural digits, each augmented by one-pixel shifts and
rotations of up to 12 degrees), this prints for each ``k``:

* how often an augmented copy falls in its seed's cell (the consistency the idea needs);
* how many of the 360 seeds' cells are marked at ``--rate``, on average over ``--keys``
  keys (a surrogate's *independent* evidence: the keyed labels of one cell are one draw);
* the share of benign traffic (augmented held-out digits) that gets a marked answer: its
  mean and the share of keys for which it exceeds the 0.5 % accuracy budget.

No key is needed to read this: it is a property of the partition, measured over keys.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src"), str(ROOT / "benchmarks")]

from tests.gateway.harness import train_victim  # noqa: E402
from watermark_bench import augmented  # noqa: E402


def codes(z: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Each row's cell: the signs of its projections, packed in one integer."""
    bits = (z @ planes > 0).astype(np.int64)
    out: np.ndarray = bits @ (1 << np.arange(planes.shape[1], dtype=np.int64))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=400, help="keys drawn per setting")
    parser.add_argument("--rate", type=float, default=0.005, help="share of cells marked")
    args = parser.parse_args()
    victim = train_victim()
    rng = np.random.default_rng(7)
    order = rng.permutation(len(victim.x_test))
    half = len(order) // 2
    seeds, heldout = victim.x_test[order[:half]], victim.x_test[order[half:]]
    copies = [augmented(row[None], rng, 40) for row in seeds]
    benign = augmented(heldout, np.random.default_rng(8), 6)
    mean = victim.x_train.mean(axis=0)
    scales = {
        "z-scores (the profile's standardisation)": victim.x_train.std(axis=0) + 1e-9,
        "centred only": np.ones(seeds.shape[1]),
    }
    print(
        f"{len(seeds)} seeds, {sum(map(len, copies))} augmented copies; "
        f"{len(benign)} benign inputs; rate {args.rate:.2%}; {args.keys} keys per k"
    )
    for name, scale in scales.items():
        print(f"inputs as {name}:")
        table(seeds, copies, benign, mean, scale, args.keys, args.rate)


def table(
    seeds: np.ndarray,
    copies: list[np.ndarray],
    benign: np.ndarray,
    mean: np.ndarray,
    scale: np.ndarray,
    count: int,
    rate: float,
) -> None:
    print(f"{'k':>3} {'copy in seed cell':>17} {'seed cells':>10} {'marked seeds':>12} "
          f"{'benign marked':>13} {'keys over 0.5 %':>15}")  # fmt: skip
    keys = np.random.default_rng(11)
    for k in (1, 2, 4, 6, 8, 12, 16):
        same, marked_seeds, shares, cells = [], [], [], []
        for _ in range(count):
            planes = keys.standard_normal((seeds.shape[1], k))
            seed_cells = codes((seeds - mean) / scale, planes)
            same.append(
                np.mean(
                    [
                        np.mean(codes((c - mean) / scale, planes) == s)
                        for c, s in zip(copies, seed_cells, strict=True)
                    ]
                )
            )
            cells.append(len(np.unique(seed_cells)))
            # each cell marked with probability rate, by the key (a fresh draw per key)
            universe = np.unique(
                np.concatenate([seed_cells, codes((benign - mean) / scale, planes)])
            )
            chosen = set(universe[keys.random(len(universe)) < rate].tolist())
            marked_seeds.append(sum(int(c) in chosen for c in seed_cells))
            benign_cells = codes((benign - mean) / scale, planes)
            shares.append(np.mean([int(c) in chosen for c in benign_cells]))
        share = np.asarray(shares)
        print(
            f"{k:3d} {np.mean(same):17.3f} {np.mean(cells):10.1f} {np.mean(marked_seeds):12.2f} "
            f"{share.mean():13.4f} {np.mean(share > 0.005):15.2%}"
        )


if __name__ == "__main__":
    main()
