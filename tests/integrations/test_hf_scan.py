"""``donjon scan hf://ORG/NAME[@REV]`` and ``--hf-cache`` over a real cache, offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from donjon.cli.main import main
from donjon.scan.samples import safetensors, torch_zip
from donjon.scan.samples_pickle import call, glob0, p2, shell
from tests.integrations.hfcache import add_snapshot

GOOD, BAD = "a" * 40, "b" * 40
EVIL = torch_zip(p2(call(glob0("os", "system"), shell())))
CLEAN = safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "hub"
    add_snapshot(root, "acme/clean", GOOD, {"model.safetensors": CLEAN, "config.json": b"{}"})
    add_snapshot(root, "acme/mixed", GOOD, {"model.safetensors": CLEAN}, ref=None)
    add_snapshot(
        root, "acme/mixed", BAD, {"pytorch_model.bin": EVIL, "sub/model.safetensors": CLEAN}
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return root


def test_the_cache_is_one_huggingface_hub_reads_back(cache: Path) -> None:
    info = scan_cache_dir(cache)
    assert not info.warnings
    assert {(r.repo_id, len(r.revisions)) for r in info.repos} == {
        ("acme/clean", 1),
        ("acme/mixed", 2),
    }


def test_hf_cache_scans_every_snapshot_and_names_repo_and_revision(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--format", "json", "scan", "--hf-cache", str(cache)]) == 1
    report = json.loads(capsys.readouterr().out)
    by_path = {f["path"]: f for f in report["files"]}
    assert set(by_path) == {
        f"hf://acme/clean@{GOOD}/config.json",
        f"hf://acme/clean@{GOOD}/model.safetensors",
        f"hf://acme/mixed@{GOOD}/model.safetensors",
        f"hf://acme/mixed@{BAD}/pytorch_model.bin",
        f"hf://acme/mixed@{BAD}/sub/model.safetensors",
    }
    bad = by_path[f"hf://acme/mixed@{BAD}/pytorch_model.bin"]
    assert bad["max_severity"] == "critical"
    assert all(f["subject"]["artifact"]["uri"] == bad["path"] for f in bad["findings"])
    assert report["roots"] == [str(cache)]
    assert sum(1 for f in report["files"] if f["findings"]) == 1


def test_hf_reference_resolves_a_revision_from_the_cache(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "hf://acme/clean"]) == 0  # refs/main
    assert "files 2" in capsys.readouterr().out
    assert main(["--format", "json", "scan", f"hf://acme/mixed@{GOOD}"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["path"].startswith(
        f"hf://acme/mixed@{GOOD}/"
    )
    assert main(["--format", "json", "scan", f"hf://acme/mixed@{BAD}"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["roots"] == [f"hf://acme/mixed@{BAD}"]
    assert [f["path"] for f in report["files"] if f["findings"]] == [
        f"hf://acme/mixed@{BAD}/pytorch_model.bin"
    ]


def test_missing_repository_offline_is_an_error(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", "hf://acme/absent"]) == 2
    assert "not in the Hugging Face cache" in capsys.readouterr().err
    assert main(["scan", "hf://../etc"]) == 2


def test_a_snapshot_link_leaving_the_blobs_is_refused(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"not part of the cache")
    entry = cache / "models--acme--clean" / "snapshots" / GOOD / "escape.bin"
    entry.symlink_to(outside)
    assert main(["scan", "--hf-cache", str(cache)]) == 2
    assert "links outside the cache's blobs" in capsys.readouterr().err
    assert main(["scan", "hf://acme/clean"]) == 2


def test_plain_scans_still_need_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan"]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--format", "json", "scan", "--hf-cache", "{cache}"],
        ["scan", "--hf-cache", "--fail-on", "critical", "{cache}"],
        ["-q", "scan", "-f", "sarif", "--hf-cache", "{cache}"],
    ],
    ids=lambda a: " ".join(a),
)
def test_hf_cache_takes_the_fast_path_and_answers_as_typer_does(
    argv: list[str], cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from donjon.cli import fastscan
    from donjon.cli.root import run_app

    args = [a.format(cache=cache) for a in argv]
    fast = fastscan.try_scan(args)
    assert fast is not None, "the fast path declined a plain --hf-cache scan"
    fast_out = capsys.readouterr()
    typer = run_app(args)
    typer_out = capsys.readouterr()
    assert (fast, fast_out.err) == (typer, typer_out.err)
    seconds = re.compile(r'"seconds": [0-9.e-]+|\b\d+\.\d\d\b')
    assert seconds.sub("0", fast_out.out) == seconds.sub("0", typer_out.out)
    assert f"hf://acme/mixed@{BAD}/pytorch_model.bin" in fast_out.out


def test_a_link_leaving_the_blobs_is_refused_on_the_fast_path_too(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from donjon.cli import fastscan

    (tmp_path / "secret.bin").write_bytes(b"outside")
    entry = cache / "models--acme--clean" / "snapshots" / GOOD / "escape.bin"
    entry.symlink_to(tmp_path / "secret.bin")
    assert fastscan.try_scan(["scan", "--hf-cache", str(cache)]) == 2
    assert "links outside the cache's blobs" in capsys.readouterr().err
