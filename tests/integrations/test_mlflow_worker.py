"""The gate's worker pool: versions reviewed side by side, deliveries of one version in order.

The registry is a fake of the gate's ``Registry`` port (folders on disk); the
gate, its reviews, the bus and the evidence store are the real ones.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.app import build
from donjon.config import load_settings
from donjon.core.bus import EventBus
from donjon.errors import IntegrationError
from donjon.integrations.mlflow.gate import EvidenceStore, GateSettings, MlflowGate
from donjon.integrations.mlflow.registry import VersionInfo
from donjon.integrations.mlflow.webhook import Delivery
from donjon.integrations.mlflow.worker import GateWorker
from donjon.scan.samples import safetensors
from donjon.scan.samples_pickle import call, glob0, p2, shell
from tests.support.waiting import wait_until

CLEAN = safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)
EVIL = p2(call(glob0("os", "system"), shell()))


class FolderRegistry:
    """Model versions as folders; ``hold[name]`` blocks that version's download until set."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.aliases: dict[tuple[str, str], str] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        self.hold: dict[str, threading.Event] = {}
        self.downloads: list[str] = []
        self.warmed = False

    def add(self, name: str, files: dict[str, bytes]) -> None:
        folder = self.root / name
        folder.mkdir(parents=True)
        for file, data in files.items():
            (folder / file).write_bytes(data)

    def version(self, name: str, version: str) -> VersionInfo:
        aliases = tuple(a for (n, a), v in self.aliases.items() if n == name and v == version)
        return VersionInfo(name, version, "", None, self.tags.get((name, version), {}), aliases)

    def download(self, name: str, version: str, destination: Path) -> Path:
        self.downloads.append(name)
        if name in self.hold:
            assert self.hold[name].wait(30), f"{name}: held too long"
        return Path(shutil.copytree(self.root / name, destination / "model"))

    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None:
        self.tags.setdefault((name, version), {}).update(tags)

    def alias_target(self, name: str, alias: str) -> str | None:
        return self.aliases.get((name, alias))

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop((name, alias), None)

    def warm_up(self) -> None:
        self.warmed = True


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[EventBus]:
    with build(load_settings(None, home=tmp_path / "home")) as app:
        yield app.bus


def _gate(tmp_path: Path, bus: EventBus) -> tuple[MlflowGate, FolderRegistry]:
    registry = FolderRegistry(tmp_path / "versions")
    evidence = EvidenceStore(tmp_path / "evidence", "http://donjon.test")
    return MlflowGate(registry, bus, evidence, GateSettings()), registry


def _created(name: str) -> Delivery:
    return Delivery(f"d-{name}", "model_version", "created", {"name": name, "version": "1"})


def _lanes_apart(count: int) -> tuple[str, str]:
    """Two model names that fall in different lanes of a ``count``-lane worker."""
    lane = {n: zlib.crc32(f"{n}\0{1}".encode()) % count for n in (f"m{i}" for i in range(50))}
    first = next(iter(lane))
    return first, next(n for n in lane if lane[n] != lane[first])


def test_a_slow_version_does_not_hold_up_another(tmp_path: Path, bus: EventBus) -> None:
    gate, registry = _gate(tmp_path, bus)
    slow, quick = _lanes_apart(2)
    registry.add(slow, {"model.safetensors": CLEAN})
    registry.add(quick, {"model.pkl": EVIL})
    registry.hold[slow] = threading.Event()
    worker = GateWorker(gate, workers=2)
    worker.start()
    try:
        worker.submit(_created(slow))
        worker.submit(_created(quick))
        # the quick one is reviewed and tagged while the slow one is still downloading
        wait_until(lambda: (quick, "1") in registry.tags, what="the quick one's verdict")
        assert registry.tags[(quick, "1")]["donjon.verdict"] == "failed"
        assert (slow, "1") not in registry.tags
        registry.hold[slow].set()
    finally:
        worker.stop()
    assert registry.tags[(slow, "1")]["donjon.verdict"] == "passed"


def test_one_thread_reviews_in_arrival_order(tmp_path: Path, bus: EventBus) -> None:
    gate, registry = _gate(tmp_path, bus)
    for name in ("a", "b", "c"):
        registry.add(name, {"model.safetensors": CLEAN})
    worker = GateWorker(gate, workers=1)
    worker.start()
    for name in ("a", "b", "c"):
        assert worker.submit(_created(name))
    worker.stop()
    assert registry.downloads == ["a", "b", "c"]


def test_an_alias_on_a_version_that_failed_goes_without_a_second_review(
    tmp_path: Path, bus: EventBus
) -> None:
    gate, registry = _gate(tmp_path, bus)
    registry.add("evil", {"model.pkl": EVIL})
    worker = GateWorker(gate, workers=2)
    worker.start()
    worker.submit(_created("evil"))
    worker.stop()  # the review is done
    registry.aliases[("evil", "champion")] = "1"
    alias = {"name": "evil", "version": "1", "alias": "champion"}
    outcome = gate.handle(Delivery("d-alias", "model_version_alias", "created", alias))
    assert outcome == "protected alias 'champion' on a version that failed: removed"
    assert ("evil", "champion") not in registry.aliases
    assert registry.downloads == ["evil"]  # reviewed once
    uid = registry.tags[("evil", "1")]["donjon.evidence"].rsplit("/", 1)[1]
    timings = json.loads(gate.evidence.read(uid) or b"{}")["timings"]
    assert timings["received"] <= timings["started"] <= timings["fetched"] <= timings["reviewed"]


def test_the_gate_warms_up_without_publishing_or_tagging(tmp_path: Path, bus: EventBus) -> None:
    gate, registry = _gate(tmp_path, bus)
    gate.warm_up()
    assert registry.warmed
    assert registry.tags == {}
    assert not (tmp_path / "evidence").exists()


def test_the_warm_up_goes_on_when_mlflow_is_not_up_yet(
    tmp_path: Path, bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    gate, registry = _gate(tmp_path, bus)

    def unreachable() -> None:
        raise IntegrationError("MLflow unreachable for a first registry call: refused")

    registry.warm_up = unreachable  # type: ignore[method-assign]
    gate.warm_up()
    assert "warm-up could not reach MLflow" in caplog.text


def test_a_stop_with_a_deadline_hands_back_what_it_did_not_handle(
    tmp_path: Path, bus: EventBus
) -> None:
    gate, registry = _gate(tmp_path, bus)
    for name in ("stuck", "after", "last"):
        registry.add(name, {"model.safetensors": CLEAN})
    registry.hold["stuck"] = threading.Event()  # MLflow not answering
    worker = GateWorker(gate, workers=1)
    worker.start()
    for name in ("stuck", "after", "last"):
        assert worker.submit(_created(name))
    wait_until(lambda: registry.downloads == ["stuck"], what="the lane to take the first delivery")
    left = worker.stop(timeout=0.2)
    assert [d.delivery_id for d in left] == ["d-stuck", "d-after", "d-last"]
    assert not worker.submit(_created("late"))  # stopped: MLflow is told to retry
    registry.hold["stuck"].set()  # the lane finishes its call, then takes nothing more
    time.sleep(0.2)
    assert registry.downloads == ["stuck"]
