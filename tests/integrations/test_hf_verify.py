"""``donjon verify hf://ORG/NAME[@REV]``: a signed repository snapshot in a real cache.

The publisher signs the model folder (``model.sig`` inside it) and uploads both; the
cache holds every file as a link into ``blobs/``. Verification hashes what the links
point at, after the hub's link check, and names the snapshot ``hf://ORG/NAME@COMMIT``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from donjon.cli.main import main
from donjon.provenance.keys import FileKeySigner, generate_private_key, public_pem
from donjon.provenance.sign import sign_model
from donjon.scan.samples import safetensors
from tests.integrations.hfcache import add_snapshot

SIGNED, TAMPERED, OTHER_KEY = "c" * 40, "d" * 40, "e" * 40
WEIGHTS = safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key, other = generate_private_key(), generate_private_key()
    (tmp_path / "release.pub").write_bytes(public_pem(key.public_key()))
    (tmp_path / "policy.toml").write_text('[signature]\npublic_keys = ["release.pub"]\n')
    root = tmp_path / "hub"
    for commit, signer in ((SIGNED, key), (OTHER_KEY, other)):
        folder = tmp_path / f"model-{commit[:4]}"
        _write_model(folder)
        sign_model(folder, FileKeySigner(signer), folder / "model.sig")
        add_snapshot(root, "acme/signed", commit, _bytes_of(folder), ref=None)
    files = _bytes_of(tmp_path / f"model-{SIGNED[:4]}")
    files["config.json"] = b'{"layers": 3}'  # changed after signing
    add_snapshot(root, "acme/signed", TAMPERED, files)  # refs/main
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return root


def _write_model(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(WEIGHTS)
    (folder / "config.json").write_bytes(b'{"layers": 2}')
    (folder / "sub" / "tokenizer.json").write_bytes(b'{"vocab": {}}')


def _bytes_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_a_signed_snapshot_verifies_through_its_cache_links(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not scan_cache_dir(cache).warnings  # huggingface_hub reads the cache back
    entry = cache / "models--acme--signed" / "snapshots" / SIGNED / "config.json"
    assert entry.is_symlink()
    pub = str(tmp_path / "release.pub")
    assert main(["-f", "json", "verify", f"hf://acme/signed@{SIGNED}", "--public-key", pub]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] is True
    assert result["model"] == f"hf://acme/signed@{SIGNED}"
    assert result["files"] == 3  # model.sig itself is left out

    policy = str(tmp_path / "policy.toml")
    assert main(["verify", f"hf://acme/signed@{SIGNED}", "--policy", policy]) == 0
    assert f"Policy passed: hf://acme/signed@{SIGNED}" in capsys.readouterr().out


def test_a_changed_file_or_another_signer_fails_naming_the_revision(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pub = str(tmp_path / "release.pub")
    assert main(["-f", "json", "verify", "hf://acme/signed", "--public-key", pub]) == 1  # main
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == f"hf://acme/signed@{TAMPERED}"
    assert [(p["code"], p["path"]) for p in result["problems"]] == [("changed", "config.json")]
    assert main(["verify", f"hf://acme/signed@{OTHER_KEY}", "--public-key", pub]) == 1
    assert "different public key" in capsys.readouterr().err
    events = (tmp_path / "donjon-home" / "events.jsonl").read_text().splitlines()
    failed = [json.loads(line) for line in events if '"provenance.finding"' in line]
    assert {e["finding"]["subject"]["artifact"]["uri"] for e in failed} == {
        f"hf://acme/signed@{TAMPERED}",
        f"hf://acme/signed@{OTHER_KEY}",
    }


def test_a_link_leaving_the_blobs_is_refused_before_hashing(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"not part of the cache")
    entry = cache / "models--acme--signed" / "snapshots" / SIGNED / "extra.bin"
    entry.symlink_to(outside)
    pub = str(tmp_path / "release.pub")
    assert main(["verify", f"hf://acme/signed@{SIGNED}", "--public-key", pub]) == 2
    assert "links outside the cache's blobs" in capsys.readouterr().err
    assert main(["verify", "hf://acme/absent", "--public-key", pub]) == 2


@pytest.mark.parametrize("scan_format", ["json", "sarif"])
def test_the_scan_of_a_reference_gates_the_policy_of_that_snapshot(
    scan_format: str, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`donjon scan hf://ORG/NAME -o R` then `donjon verify hf://ORG/NAME --policy
    --scan-result R`: the scan names the snapshot it resolved, and that is what covers it."""
    policy = tmp_path / "policy.toml"
    policy.write_text(policy.read_text() + '[scan]\nrequired = true\nmax_severity = "low"\n')
    report = tmp_path / f"scan.{scan_format}"
    assert main(["scan", f"hf://acme/signed@{SIGNED}", "-f", scan_format, "-o", str(report)]) == 0
    verify = ["-f", "json", "verify", f"hf://acme/signed@{SIGNED}", "--policy", str(policy)]
    capsys.readouterr()
    assert main([*verify, "--scan-result", str(report)]) == 0
    assert "scan: clean" in json.loads(capsys.readouterr().out)["met"]
    # another snapshot of the same repository is not covered by this scan
    other = ["-f", "json", "verify", f"hf://acme/signed@{OTHER_KEY}", "--policy", str(policy)]
    assert main([*other, "--scan-result", str(report)]) == 1
    unmet = json.loads(capsys.readouterr().out)["unmet"]
    assert {"section": "scan", "message": "no scan result for this model"} in unmet
