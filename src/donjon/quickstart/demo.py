"""``donjon demo DIR``: the example files the README's tour and the docs use, made by code.

Standard library only (the tour starts before any extra is installed). Everything is
drawn from a seeded generator, so two runs write the same bytes:

- ``train.csv``: 400 rows of a two-class table (four numeric features, ``label``, and
  the ``source`` each row came from: two trusted sources and a scraped one);
- ``sources.toml``: the source policy ``donjon data filter`` applies;
- ``model/``: a tiny model folder (``config.json`` and a safetensors file) to sign,
  scan, verify and describe in an ML-BOM;
- ``policy.toml``: a verification policy (the ``release`` key, a clean scan);
- ``policies.cedar``: a Cedar policy for the vault (user ``alice``);
- ``gateway.toml``: a gateway in front of a model server on 127.0.0.1:8080.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

FEATURES = ("amount", "age_days", "velocity", "distance")
SOURCES = (("vendor-a", 0.55), ("labelling/team-1", 0.35), ("scraped/forum", 0.10))

SOURCE_POLICY = """\
# Which sources a training record may come from (donjon data filter --policy).
[sources]
trusted = ["vendor-a", "labelling/team-*"]   # shell-style globs
denied = ["scraped/*"]                       # denied wins over trusted
allow_unknown = false
"""

VERIFY_POLICY = """\
# What the model must prove (donjon verify MODEL --policy policy.toml ...).
[signature]
public_keys = ["release.pub"]     # written by: donjon keys export-public release -o release.pub

[scan]
required = true                   # a scan result (donjon scan MODEL --format json -o scan.json)
max_severity = "low"
"""

CEDAR = """\
// alice may read and write datasets and models, and promote models to staging.
@id("alice-works-on-datasets-and-models")
permit (
  principal == User::"alice",
  action in [Action::"dataset.read", Action::"dataset.write", Action::"dataset.list",
             Action::"model.read", Action::"model.write", Action::"model.list"],
  resource
);

@id("alice-promotes-to-staging")
permit (
  principal == User::"alice",
  action == Action::"model.promote",
  resource
) when { context has stage && context.stage == "staging" };
"""

GATEWAY = """\
# A gateway in front of the model server on 127.0.0.1:8080 (donjon gateway --config ...).
upstream = "http://127.0.0.1:8080"

[auth]
allow_anonymous = false
vault_identities = true          # the vault's API tokens (donjon access token issue ...)

[[models]]
name = "fraud-clf"
routes = ["/predict"]
allow = ["alice"]                # who may query it (--vault-policies: the Cedar policy decides)
features = 4
max_rows = 64
profile = "profile.json"         # donjon gateway profile train.csv --drop label --drop source

[models.hardening]
top_k = 1
decimals = 2
"""


def _rows(rng: random.Random, count: int) -> list[list[object]]:
    weights = [w for _, w in SOURCES]
    rows: list[list[object]] = []
    for _ in range(count):
        label = int(rng.random() < 0.3)
        centre = (120.0, 900.0, 2.0, 15.0) if label == 0 else (480.0, 120.0, 9.0, 260.0)
        spread = (60.0, 300.0, 1.0, 40.0)
        values = [round(rng.gauss(c, s), 3) for c, s in zip(centre, spread, strict=True)]
        source = rng.choices([name for name, _ in SOURCES], weights)[0]
        rows.append([*values, label, source])
    return rows


def _safetensors(rng: random.Random) -> bytes:
    """A valid safetensors file: one float32 tensor (4 x 2)."""
    data = b"".join(struct.pack("<f", rng.uniform(-1, 1)) for _ in range(8))
    header = {
        "__metadata__": {"format": "pt"},
        "linear.weight": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, len(data)]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def write_demo(folder: Path, seed: int = 7) -> list[Path]:
    """Write the example files into ``folder`` (created if needed); the paths written.

    Refuses (FileExistsError) when any of them already exists: nothing is overwritten.
    """
    rng = random.Random(seed)  # noqa: S311 - example data, not a secret
    rows = _rows(rng, 400)
    table = ",".join([*FEATURES, "label", "source"]) + "\n"
    table += "".join(",".join(str(v) for v in row) + "\n" for row in rows)
    config = {"architecture": "logistic-regression", "features": list(FEATURES), "classes": 2}
    files: dict[str, bytes] = {
        "train.csv": table.encode(),
        "sources.toml": SOURCE_POLICY.encode(),
        "policy.toml": VERIFY_POLICY.encode(),
        "policies.cedar": CEDAR.encode(),
        "gateway.toml": GATEWAY.encode(),
        "model/config.json": (json.dumps(config, indent=2) + "\n").encode(),
        "model/model.safetensors": _safetensors(rng),
    }
    existing = [name for name in files if (folder / name).exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist in {folder}")
    written = []
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written
