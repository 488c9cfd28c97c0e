"""What one vault command writes, the next reads: a data manifest verifies the pulled copy of
the file it was made of, a signature verifies the pulled model, whatever the files are
called (spaces, accents, a leading dash) and wherever the download goes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from donjon.cli.main import main
from tests.server.conftest import Served

pytestmark = pytest.mark.integration


@pytest.fixture
def alice(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Served:
    """Logged in as alice, who may read, write and list datasets and models; in tmp_path."""
    auth = served.vault.authorizer
    for verb in ("read", "write", "list"):
        auth.allow("alice", f"dataset.{verb}", "datasets/fraud")
        auth.allow("alice", f"model.{verb}", "models/fraud-clf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(served.token("alice") + "\n"))
    assert main(["login", "--server", served.url, "--token-stdin"]) == 0
    return served


def test_a_manifest_verifies_the_pulled_copy(
    alice: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Excel's "Unicode text": UTF-16 with a byte-order mark, CRLF
    rows = ["amount,label"] + [f"{i}.50,{i % 2}" for i in range(30)]
    data = tmp_path / "-relevé de compte.csv"
    data.write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-16"))
    assert main(["data", "manifest", f"./{data.name}", "-o", "tx.manifest.json"]) == 0
    assert main(["datasets", "push", "fraud/tx", f"./{data.name}"]) == 0
    assert "manifest attached: 30 records" in capsys.readouterr().err

    # into a folder that does not exist yet, under the same awkward name
    pulled = tmp_path / "pulled copies" / "ünï" / data.name
    assert main(["datasets", "pull", "fraud/tx", str(pulled)]) == 0
    assert pulled.read_bytes() == data.read_bytes()
    capsys.readouterr()
    assert main(["data", "verify", "tx.manifest.json", "--data", str(pulled)]) == 0
    assert f"verified: {pulled} matches" in capsys.readouterr().out
    pulled.write_bytes(pulled.read_bytes().replace("1.50".encode("utf-16-le"), b"9\x005\x00"))
    assert main(["data", "verify", "tx.manifest.json", "--data", str(pulled)]) == 1
    assert main(["datasets", "pull", "fraud/tx", str(pulled), "--force"]) == 0

    # a destination that names a folder is refused before anything is downloaded
    capsys.readouterr()
    assert main(["datasets", "pull", "fraud/tx", "new-folder/"]) == 2
    assert "is a folder: name the file" in capsys.readouterr().err
    assert not (tmp_path / "new-folder").exists()
    assert main(["datasets", "pull", "fraud/tx", "pulled copies"]) == 2
    assert main(["datasets", "pull", "fraud/tx", str(pulled)]) == 2  # exists: needs --force
    assert pulled.read_bytes() == data.read_bytes()

    # a table no manifest can be built of says how to push it anyway, and stores nothing
    empty = tmp_path / "empty.CSV"
    empty.write_bytes(b"")
    capsys.readouterr()
    assert main(["datasets", "push", "fraud/empty", str(empty)]) == 2
    assert "--no-manifest" in capsys.readouterr().err
    assert main(["datasets", "push", "fraud/empty", str(empty), "--no-manifest"]) == 0


def test_a_signature_verifies_the_pulled_model(
    alice: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m dir" / "-Modèle Final.SAFETENSORS"
    model.parent.mkdir()
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    model.write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    assert main(["keys", "generate", "release"]) == 0
    assert main(["keys", "export-public", "release", "-o", "release.pub"]) == 0
    signature = tmp_path / "m dir" / "sig ü.sig"
    assert main(["sign", str(model), "--key", "release", "--signature", str(signature)]) == 0
    assert main(["models", "push", "fraud-clf", str(model)]) == 0
    assert main(["models", "attach", "fraud-clf", "1", "--signature", str(signature)]) == 0
    pulled = tmp_path / "downloads" / "-modèle.safetensors"
    assert main(["models", "pull", "fraud-clf", str(pulled)]) == 0
    capsys.readouterr()
    verify = ["verify", str(pulled), "--signature", str(signature), "--public-key", "release.pub"]
    assert main(verify) == 0
    assert "Verification succeeded" in capsys.readouterr().out
    assert main(["models", "pull", "fraud-clf", "downloads/"]) == 2


@pytest.mark.parametrize(
    ("saved", "accepted"),
    [("{token}\r\n", True), ("\ufeff{token}\n", True), ("{token} junk\n", False)],
    ids=["crlf", "notepad-bom", "two-words"],
)
def test_login_reads_a_token_file_as_editors_save_it(
    saved: str,
    accepted: bool,
    served: Served,
    donjon_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`donjon access token issue alice > token.txt`, opened and saved in an editor."""
    token = served.token("alice")
    monkeypatch.setattr("sys.stdin", io.StringIO(saved.format(token=token)))
    code = main(["login", "--server", served.url, "--token-stdin"])
    err = capsys.readouterr().err
    assert code == (0 if accepted else 2)
    assert token not in err
    assert (donjon_home / "credentials.json").exists() == accepted
    if not accepted:
        assert "no token has" in err
