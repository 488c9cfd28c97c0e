"""TorchScript ``code/`` members: file operations, Python escapes and custom operators."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.scan import ScanPolicy, scan_file

torch = pytest.importorskip("torch")
nn = torch.nn


def _rule_ids(path: Path, policy: ScanPolicy | None = None) -> list[str]:
    report = scan_file(str(path), policy or ScanPolicy())
    assert report.error is None
    return sorted(f.rule.id for f in report.findings)


class _Gate(nn.Module):  # type: ignore[misc]
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autograd.profiler.record_function("gate"):
            return torch.relu(x) if bool(x.sum() > 0) else x


@pytest.fixture(autouse=True)
def _jit_is_deprecated() -> Iterator[None]:
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.trace and friends
        warnings.filterwarnings("ignore", r"`torch\.jit\.", DeprecationWarning)
        yield


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.", DeprecationWarning)
        warnings.filterwarnings(
            "ignore", r"torch\.ao\.quantization is deprecated", DeprecationWarning
        )
        yield _save_benign(tmp_path_factory)


def _save_benign(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("torchscript")
    example = torch.randn(2, 4)
    models = {
        "sequential": torch.jit.script(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))),
        "traced": torch.jit.trace(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), example),
        "lstm": torch.jit.script(nn.LSTM(4, 8, 2, batch_first=True)),
        "transformer": torch.jit.script(
            nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2)
        ),
        "conv": torch.jit.script(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))),
        "gate": torch.jit.script(_Gate()),
    }
    paths = []
    for name, module in models.items():
        path = folder / f"{name}.pt"
        module.save(str(path))
        paths.append(path)
    return paths


def test_torchscript_saved_by_torch_gives_no_finding(benign: list[Path]) -> None:
    for path in benign:
        assert _rule_ids(path) == [], path.name


def test_file_operations_in_torchscript_made_by_torch(tmp_path: Path) -> None:
    @torch.jit.script  # type: ignore[misc]
    def leak(x: torch.Tensor) -> torch.Tensor:
        secret = torch.from_file("/etc/hostname", False, 8)
        torch.save(secret, "stolen.bin")
        return x

    path = tmp_path / "leak.pt"
    leak.save(str(path))
    report = scan_file(str(path))
    messages = sorted(f.message for f in report.findings if f.rule.id == "DJ-TSC-001")
    assert len(messages) == 2
    assert "torch.from_file" in messages[0]
    assert "torch.save" in messages[1]
    assert all(f.member and "/code/" in f.member for f in [f.location for f in report.findings])


def _rewrite(source: Path, target: Path, code: bytes) -> Path:
    """Copy a TorchScript archive with the code member of ``_Gate`` replaced."""
    replaced = False
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if "/code/" in info.filename and info.filename.endswith(".py") and b"_Gate" in data:
                data, replaced = code, True
            new.writestr(info, data)
    assert replaced
    return target


_FORWARD = b"""class Gate(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  def forward(self: __torch__.Gate,
    x: Tensor) -> Tensor:
    %s
    return x
"""


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (b"_0 = ops.aten.save(x, 'out.bin')", "DJ-TSC-001"),
        (b"_0 = torch.ops.aten.from_file('/etc/shadow', None, 8)", "DJ-TSC-001"),
        (b"import os", "DJ-TSC-001"),
        (b"from subprocess import run", "DJ-TSC-001"),
        (b"_0 = os.system('id')", "DJ-TSC-001"),
        (b"_0 = __import__('os')", "DJ-TSC-001"),
        (b"_0 = eval('1')", "DJ-TSC-001"),
        (b"_0 = ops.evil.run(x)", "DJ-TSC-002"),
        (b"_0 = torch.ops.c10d.broadcast_(x)", "DJ-TSC-002"),
        (b"_0 = (", "DJ-TSC-003"),
    ],
)
def test_hostile_code_members(benign: list[Path], tmp_path: Path, line: bytes, rule: str) -> None:
    gate = next(p for p in benign if p.stem == "gate")
    path = _rewrite(gate, tmp_path / "hostile.pt", _FORWARD % line)
    assert rule in _rule_ids(path)


def test_undecodable_code_is_a_finding(benign: list[Path], tmp_path: Path) -> None:
    gate = next(p for p in benign if p.stem == "gate")
    path = _rewrite(gate, tmp_path / "bytes.pt", _FORWARD % b"_0 = '\xff\xfe'")
    assert _rule_ids(path) == ["DJ-TSC-003"]


def test_a_trusted_operator_namespace_is_allowed(benign: list[Path], tmp_path: Path) -> None:
    gate = next(p for p in benign if p.stem == "gate")
    path = _rewrite(gate, tmp_path / "custom.pt", _FORWARD % b"_0 = ops.mylib.fused(x)")
    assert _rule_ids(path) == ["DJ-TSC-002"]
    assert _rule_ids(path, ScanPolicy().with_extra(allow=["torch.ops.mylib"])) == []
