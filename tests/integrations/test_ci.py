"""The GitHub Action's and the GitLab template's shell steps, run locally as a runner would.

Steps that need GitHub (``uses:`` actions/setup-python, codeql upload-sarif) and the
``pip install`` steps are not run here: Donjon comes from this checkout, on PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from donjon.scan.samples import torch_zip
from donjon.scan.samples_pickle import call, glob0, p2, shell

ROOT = Path(__file__).resolve().parents[2]
EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def _env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT / "src"),
        "DONJON_HOME": str(tmp / "home"),
    }


def _models(tmp: Path) -> tuple[Path, Path]:
    clean, dirty = tmp / "clean", tmp / "dirty"
    clean.mkdir(), dirty.mkdir()
    (clean / "model.pt").write_bytes(torch_zip(p2(b"}")))
    (dirty / "model.pt").write_bytes(torch_zip(p2(call(glob0("os", "system"), shell()))))
    return clean, dirty


class ActionRunner:
    """Runs a composite action's ``run`` steps with bash, resolving ``${{ }}`` expressions."""

    def __init__(self, inputs: dict[str, str], workdir: Path) -> None:
        action = yaml.safe_load((ROOT / "action.yml").read_text())
        self.steps: list[dict[str, Any]] = action["runs"]["steps"]
        self.inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
        self.inputs.update(inputs)
        self.outputs: dict[str, dict[str, str]] = {}
        self.workdir = workdir
        self.skipped: list[str] = []

    def _value(self, expr: str) -> str:
        if expr.startswith("inputs."):
            return self.inputs[expr.removeprefix("inputs.")]
        match = re.fullmatch(r"steps\.(\w+)\.outputs\.([\w-]+)", expr)
        if match:
            return self.outputs.get(match[1], {}).get(match[2], "")
        raise AssertionError(f"expression not supported by this runner: {expr}")

    def _enabled(self, condition: str | None) -> bool:
        if condition is None:
            return True
        match = re.fullmatch(r"inputs\.([\w-]+) == '(.*)'", condition.strip())
        assert match, f"condition not supported by this runner: {condition}"
        return self.inputs[match[1]] == match[2]

    def run(self) -> int:
        for step in self.steps:
            name = step.get("name", step.get("uses", "?"))
            if "uses" in step:
                self.skipped.append(name)
                continue
            if not self._enabled(step.get("if")):
                continue
            output_file = self.workdir / f"output-{len(self.outputs)}"
            output_file.write_text("")
            env = _env(self.workdir) | {"GITHUB_OUTPUT": str(output_file)}
            env |= {
                k: EXPR.sub(lambda m: self._value(m[1]), str(v))
                for k, v in step.get("env", {}).items()
            }
            assert "${{" not in step["run"], "run scripts take inputs through env only"
            done = subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                cwd=self.workdir, env=env, timeout=120, check=False,
            )  # fmt: skip
            if "id" in step:
                lines = output_file.read_text().splitlines()
                self.outputs[step["id"]] = dict(line.split("=", 1) for line in lines if "=" in line)
            if done.returncode != 0:
                return done.returncode
        return 0


def _sarif_results(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    assert document["version"] == "2.1.0"
    return [r for run in document["runs"] for r in run["results"]]


def test_action_passes_a_clean_folder_and_fails_a_malicious_one(tmp_path: Path) -> None:
    clean, dirty = _models(tmp_path)
    ok = ActionRunner({"paths": str(clean), "install": "false"}, tmp_path)
    assert ok.run() == 0
    assert ok.outputs["scan"] == {"exit-code": "0"}
    assert ok.skipped == ["actions/setup-python@v5", "Upload SARIF"]
    assert _sarif_results(tmp_path / "donjon.sarif") == []

    bad = ActionRunner(
        {"paths": f"{clean} {dirty}", "install": "false", "sarif-file": "out.sarif"}, tmp_path
    )
    assert bad.run() == 1
    assert bad.outputs["scan"] == {"exit-code": "1"}
    results = _sarif_results(tmp_path / "out.sarif")
    assert results
    assert {r["level"] for r in results} == {"error"}

    missing = ActionRunner({"paths": str(tmp_path / "nope"), "install": "false"}, tmp_path)
    assert missing.run() == 2


@pytest.mark.parametrize(("folder", "expected"), [("clean", 0), ("dirty", 1)])
def test_gitlab_template_script(tmp_path: Path, folder: str, expected: int) -> None:
    template = yaml.safe_load((ROOT / "ci" / "donjon.gitlab-ci.yml").read_text())
    job = template["donjon-scan"]
    _models(tmp_path)
    env = _env(tmp_path) | {k: str(v) for k, v in template["variables"].items()}
    env["DONJON_PATHS"] = folder
    status = 0
    for line in job["script"]:
        status = subprocess.run(
            ["bash", "-e", "-c", line], cwd=tmp_path, env=env, timeout=120, check=False
        ).returncode
        if status:
            break
    assert status == expected
    assert all((tmp_path / artifact).is_file() for artifact in job["artifacts"]["paths"])
