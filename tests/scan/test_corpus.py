"""The whole corpus: every malicious file caught at medium or above, no benign file flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.core import Severity
from donjon.scan import scan_file, scan_path
from donjon.scan.samples import families


def test_every_malicious_sample_is_detected_at_medium_or_above(
    malicious_corpus: dict[Path, str],
) -> None:
    missed = []
    for path in malicious_corpus:
        report = scan_file(str(path))
        assert report.error is None, report.error
        worst = report.max_severity
        if worst is None or worst < Severity.MEDIUM:
            missed.append((path.name, [f.message for f in report.findings]))
    assert not missed
    assert len(malicious_corpus) >= len(families())


def test_no_benign_file_is_flagged_and_none_errors(benign_corpus: list[Path]) -> None:
    report = scan_path(*benign_corpus, workers=1)
    assert len(report.files) == len(benign_corpus) >= 30
    assert report.errors == []
    flagged = [(f.subject.artifact, f.message) for f in report.at_or_above(Severity.MEDIUM)]
    assert flagged == []


def test_benign_formats_are_recognised_by_content(benign_corpus: list[Path]) -> None:
    formats = {Path(r.path).name: r.format for r in scan_path(*benign_corpus, workers=1).files}
    assert formats["state_dict.pt"] == "zip"
    assert formats["legacy.pt"] == "pickle"
    assert formats["pipe_xz.joblib"] == "xz"
    assert formats["model.safetensors"] == "safetensors"
    assert formats["keras_dense.h5"] == "hdf5"
    assert formats["weights.7z"] == "7z"


def test_a_full_model_save_reports_its_own_class_below_medium(benign_corpus: list[Path]) -> None:
    full = next(p for p in benign_corpus if p.name == "full_model.pt")
    report = scan_file(str(full))
    assert all(f.level < Severity.MEDIUM for f in report.findings)


@pytest.mark.parametrize(
    "family",
    sorted(set(families().values()) | {"7z", "keras"}),
)
def test_each_technique_family_has_samples(family: str, malicious_corpus: dict[Path, str]) -> None:
    assert family in malicious_corpus.values()


def test_parallel_and_serial_folder_scans_agree(malicious_corpus: dict[Path, str]) -> None:
    folder = next(iter(malicious_corpus)).parent
    serial = scan_path(folder, workers=1)
    parallel = scan_path(folder, workers=2)
    assert [(r.path, len(r.findings)) for r in serial.files] == [
        (r.path, len(r.findings)) for r in parallel.files
    ]
    assert {f.fingerprint for f in serial.findings} == {f.fingerprint for f in parallel.findings}
