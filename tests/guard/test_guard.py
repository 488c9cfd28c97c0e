"""donjon.guard end to end: real torch / joblib / numpy / pickle files through the real loaders.

Malicious files are built from opcodes (donjon.scan.samples_pickle); the payload
would touch a canary file in the working folder, so "refused" also means "never ran".
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

import donjon.guard
from donjon.core.severity import Severity
from donjon.errors import ModelRefused, ScanError
from donjon.guard import GuardPolicy
from donjon.scan import ScanPolicy
from donjon.scan.samples import torch_zip
from donjon.scan.samples_pickle import call, glob0, p2, shell

CANARY = "donjon-guard-canary"


def evil_pickle() -> bytes:
    return p2(call(glob0("os", "system"), shell(CANARY)))


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # the canary would land here
    yield
    donjon.guard.uninstall()
    assert not (tmp_path / CANARY).exists(), "a malicious payload ran"


def test_benign_files_load_through_every_wrapped_loader(tmp_path: Path) -> None:
    torch.save({"w": torch.arange(4.0)}, tmp_path / "m.pt")
    joblib.dump({"coef": np.ones(3)}, tmp_path / "m.joblib")
    np.save(tmp_path / "objects.npy", np.array([{"k": 1}], dtype=object))
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    donjon.guard.install()
    assert torch.load(tmp_path / "m.pt")["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    with open(tmp_path / "m.pt", "rb") as fh:  # an open file, rewound after the scan
        assert torch.load(fh)["w"].shape == (4,)
    assert joblib.load(tmp_path / "m.joblib")["coef"].sum() == 3.0
    assert np.load(tmp_path / "objects.npy", allow_pickle=True)[0] == {"k": 1}
    with open(tmp_path / "plain.pkl", "rb") as fh:
        assert pickle.load(fh) == {"a": [1, 2]}
    assert pickle.loads(pickle.dumps((1, "x"))) == (1, "x")


def test_malicious_files_are_refused_before_the_loader_runs(tmp_path: Path) -> None:
    (tmp_path / "evil.pt").write_bytes(torch_zip(evil_pickle()))
    (tmp_path / "evil.joblib").write_bytes(evil_pickle())
    (tmp_path / "evil.pkl").write_bytes(evil_pickle())
    donjon.guard.install()
    refused = r"torch\.load: refused .*evil\.pt: DJ-PKL-\d+ \[critical\]"
    with pytest.raises(ModelRefused, match=refused):
        torch.load(tmp_path / "evil.pt", weights_only=False)
    with pytest.raises(ModelRefused, match=r"joblib\.load"):
        joblib.load(str(tmp_path / "evil.joblib"))
    with pytest.raises(ModelRefused, match=r"os\.system"):
        pickle.loads(evil_pickle())
    with open(tmp_path / "evil.pkl", "rb") as fh, pytest.raises(ModelRefused) as caught:
        pickle.load(fh)
    assert isinstance(caught.value, ScanError)
    assert caught.value.report is not None


def test_numpy_is_scanned_only_when_it_may_unpickle(tmp_path: Path) -> None:
    (tmp_path / "evil.npy").write_bytes(evil_pickle())
    np.save(tmp_path / "plain.npy", np.arange(3))
    donjon.guard.install()
    assert np.load(tmp_path / "plain.npy").tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="allow_pickle"):  # numpy's own refusal, unchanged
        np.load(tmp_path / "evil.npy")
    with pytest.raises(ModelRefused, match=r"numpy\.load"):
        np.load(tmp_path / "evil.npy", allow_pickle=True)


class Net:
    """A user's own class: outside the scanner's allow list (a low finding when restored)."""

    def __init__(self) -> None:
        self.layers = [1, 2]


def test_threshold_and_allow_list_follow_the_policy() -> None:
    data = pickle.dumps(Net())
    donjon.guard.install()  # default: refuse at medium; an unknown class is low
    assert pickle.loads(data).layers == [1, 2]
    donjon.guard.install(GuardPolicy(fail_on=Severity.LOW))
    with pytest.raises(ModelRefused, match=r"DJ-PKL-002 \[low\].*test_guard\.Net"):
        pickle.loads(data)
    allowed = ScanPolicy().with_extra(allow=[f"{__name__}.Net"])
    donjon.guard.install(GuardPolicy(fail_on=Severity.LOW, scan=allowed))
    assert pickle.loads(data).layers == [1, 2]
    # calling an unknown callable on load is medium: refused by the default policy
    donjon.guard.install()
    with pytest.raises(ModelRefused, match=r"\[medium\]"):
        pickle.loads(p2(glob0("mypkg.models", "build") + b")R"))


def test_unscannable_argument_fails_closed() -> None:
    donjon.guard.install()
    with pytest.raises(ModelRefused, match="cannot scan"):
        torch.load(12345)


def test_uninstall_restores_the_original_loaders() -> None:
    before = (torch.load, joblib.load, np.load, pickle.loads)
    donjon.guard.install()
    assert torch.load is not before[0]
    donjon.guard.uninstall()
    assert (torch.load, joblib.load, np.load, pickle.loads) == before
    assert not hasattr(pickle.loads, "__wrapped__")


def test_context_manager_restores_the_previous_state(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(evil_pickle())
    with donjon.guard.guarded(GuardPolicy(fail_on=Severity.HIGH)) as policy:
        assert policy.fail_on is Severity.HIGH
        with pytest.raises(ModelRefused):
            joblib.load(tmp_path / "evil.pkl")
    assert donjon.guard.installed() is None
    assert getattr(joblib.load, "__donjon_guard__", False) is False


def test_a_module_imported_after_install_is_patched_on_import(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(evil_pickle())
    saved = {k: v for k, v in sys.modules.items() if k == "joblib" or k.startswith("joblib.")}
    for name in saved:
        del sys.modules[name]
    try:
        donjon.guard.install()
        import joblib as fresh

        assert fresh is not joblib
        with pytest.raises(ModelRefused):
            fresh.load(tmp_path / "evil.pkl")
    finally:
        donjon.guard.uninstall()
        sys.modules.update(saved)


def test_a_non_seekable_stream_is_replaced_by_the_bytes_read() -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            chunk = self.inner.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    donjon.guard.install()
    assert pickle.load(Pipe(pickle.dumps([7]))) == [7]
    with pytest.raises(ModelRefused):
        pickle.load(Pipe(evil_pickle()))
