"""The class-method path (how ``from_pretrained`` is wrapped) and the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import donjon.guard
from donjon.errors import ModelRefused
from donjon.guard.check import GuardPolicy
from donjon.guard.hooks import Patcher
from donjon.guard.targets import Target
from donjon.scan.samples_pickle import call, glob0, p2, shell
from tests.integrations.hfcache import add_snapshot

SRC = Path(__file__).resolve().parents[2] / "src"


def test_a_from_pretrained_style_classmethod_scans_the_model_folder(tmp_path: Path) -> None:
    # transformers is not installed here: a module shaped like transformers.modeling_utils
    module = types.ModuleType("fake_modeling_utils")

    class PreTrainedModel:
        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path: str) -> str:
            return f"{cls.__name__} from {pretrained_model_name_or_path}"

    module.PreTrainedModel = PreTrainedModel  # type: ignore[attr-defined]
    method, argument = "PreTrainedModel.from_pretrained", "pretrained_model_name_or_path"
    target = Target(module.__name__, method, argument)
    patcher = Patcher((target,), GuardPolicy)
    patcher.patch_module(module)
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir(), dirty.mkdir()
    (clean / "config.json").write_text('{"model_type": "bert"}')
    (dirty / "pytorch_model.bin").write_bytes(p2(call(glob0("os", "system"), shell())))

    class Bert(PreTrainedModel):
        pass

    assert Bert.from_pretrained(str(clean)) == f"Bert from {clean}"
    with pytest.raises(ModelRefused, match=r"pytorch_model\.bin"):
        Bert.from_pretrained(pretrained_model_name_or_path=str(dirty))
    patcher.unpatch_all()
    assert Bert.from_pretrained(str(dirty)) == f"Bert from {dirty}"  # restored, unguarded


def _run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(folder)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_pytest_plugin_refuses_an_unsafe_load_in_a_test_suite(tmp_path: Path) -> None:
    evil = p2(call(glob0("os", "system"), shell()))
    (tmp_path / "evil.pkl").write_bytes(evil)
    (tmp_path / "test_loads.py").write_text(
        "import pickle\n"
        "def test_load():\n"
        "    with open('evil.pkl', 'rb') as fh:\n"
        "        pickle.load(fh)\n"
    )
    unguarded = _run_pytest(tmp_path)  # plain pytest: the plugin stays off, the pickle runs
    assert unguarded.returncode == 0, unguarded.stdout
    (tmp_path / "donjon-canary").unlink()  # proof the payload runs without the guard
    guarded = _run_pytest(tmp_path, "-p", "donjon.guard.pytest_plugin")
    assert guarded.returncode == 1, guarded.stdout
    assert "ModelRefused" in guarded.stdout
    assert not (tmp_path / "donjon-canary").exists()
    # loaded but not named (as the pytest11 entry point loads it): the ini option turns it on
    (tmp_path / "conftest.py").write_text("pytest_plugins = ['donjon.guard.pytest_plugin']\n")
    loaded_only = _run_pytest(tmp_path)
    assert loaded_only.returncode == 0, loaded_only.stdout
    (tmp_path / "donjon-canary").unlink()
    ini = "[pytest]\ndonjon_guard = true\ndonjon_guard_fail_on = critical\n"
    (tmp_path / "pytest.ini").write_text(ini)
    by_ini = _run_pytest(tmp_path)
    assert by_ini.returncode == 1, by_ini.stdout
    assert "ModelRefused" in by_ini.stdout
    assert not (tmp_path / "donjon-canary").exists()
    assert donjon.guard.installed() is None  # nothing leaked into this process


def test_from_pretrained_with_a_repository_id_scans_its_cached_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    evil = p2(call(glob0("os", "system"), shell()))
    add_snapshot(cache, "acme/clean", "a" * 40, {"config.json": b"{}"})
    add_snapshot(cache, "acme/tricky", "b" * 40, {"config.json": b"{}"})
    add_snapshot(cache, "acme/tricky", "c" * 40, {"pytorch_model.bin": evil}, ref="v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)

    class PreTrainedModel:
        @classmethod
        def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: str) -> str:
            return pretrained_model_name_or_path

    module = types.ModuleType("fake_transformers")
    module.PreTrainedModel = PreTrainedModel  # type: ignore[attr-defined]
    method, argument = "PreTrainedModel.from_pretrained", "pretrained_model_name_or_path"
    patcher = Patcher((Target(module.__name__, method, argument, hub_ids=True),), GuardPolicy)
    patcher.patch_module(module)
    try:
        assert PreTrainedModel.from_pretrained("acme/clean") == "acme/clean"
        assert PreTrainedModel.from_pretrained("acme/tricky") == "acme/tricky"  # main: clean
        with pytest.raises(ModelRefused, match=r"hf://acme/tricky@c{40}/pytorch_model\.bin"):
            PreTrainedModel.from_pretrained("acme/tricky", revision="v2")
        # not in the cache: transformers downloads it; its pickles meet the guarded torch.load
        assert PreTrainedModel.from_pretrained("acme/absent") == "acme/absent"
    finally:
        patcher.unpatch_all()
