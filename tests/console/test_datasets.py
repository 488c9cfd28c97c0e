"""Dataset documents end to end: the real CLI pushes manifests and a check report to the
vault, the Datasets pages show them, and the page's diff equals ``donjon data diff``'s."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import pytest

from donjon.cli.main import main
from tests.console.site import Site, log_in, wine_versions

pytestmark = pytest.mark.integration


def cli_login(site: Site, who: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(site.tokens[who] + "\n"))
    assert main(["login", "--server", site.url, "--token-stdin"]) == 0


def cells(page: str, element: str) -> str:
    found = re.search(rf'<p id="{element}">(.*?)</p>', page, re.S)
    assert found is not None, element
    return re.sub(r"<[^>]+>", "", found.group(1))


def documents(site: Site, number: int) -> list[dict[str, object]]:
    response = site.call("ada", "GET", f"/v1/datasets/cellar/versions/{number}/attestations")
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()["attachments"]
    return found


@pytest.fixture
def wine(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Two versions of the wine table on disk, and the CLI logged in as dana."""
    cli_login(site, "dana", monkeypatch)
    return wine_versions(tmp_path)


def test_pushed_manifests_and_check_report_show_on_the_datasets_pages(
    site: Site, wine: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = wine
    for path in (old, new):
        pushed = ["datasets", "push", "cellar", str(path), "--label-column", "label"]
        assert main(["-f", "json", *pushed, "--id-column", "id"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert record["manifest"]["record_digests"] is True
        assert record["manifest"]["count"] == (178 if path == old else 179)
    report = tmp_path / "check.json"
    checked = main(
        ["data", "check", str(new), "-l", "label", "--exclude", "id",
         "--detector", "near_duplicates", "--format", "json", "--out", str(report),
         "--push", "cellar@2"]
    )  # fmt: skip
    assert checked in (0, 1)  # findings or not, the report is attached
    assert "check report attached to cellar@2" in capsys.readouterr().err
    expected = json.loads(report.read_text())
    assert expected["flagged"], "the four copied rows are near duplicates"
    assert main(["-f", "json", "data", "diff", str(old), str(new),
                 "--label-column", "label", "--id-column", "id"]) in (0, 1)  # fmt: skip
    diffed = json.loads(capsys.readouterr().out)

    with httpx.Client(base_url=site.url, timeout=60) as viewer:
        log_in(viewer, site.tokens["vic"])
        overview = viewer.get("/ui/datasets").text
        assert "179 records, 15 columns" in overview
        assert f"{len(expected['flagged'])} flagged of 179" in overview
        page = viewer.get("/ui/datasets/cellar", params={"old": 1, "new": 2, "version": 2})
    assert page.status_code == 200, page.text
    summary = cells(page.text, "diff-summary")
    for word in ("unchanged", "added", "removed", "changed", "relabelled"):
        assert f"{diffed[word]} {word}" in summary, (word, summary)
    assert (diffed["added"], diffed["removed"], diffed["relabelled"]) == (4, 3, 6)
    assert "0 -&gt; 2" in page.text or "0 -> 2" in page.text  # the label change
    check = cells(page.text, "check-summary")
    assert f"{len(expected['flagged'])} flagged" in check
    flagged_rows = re.findall(
        r"<tr><td>(\d+)</td><td>[^<]*</td><td>[0-9.]+</td>",
        page.text.split('id="flagged"')[1],
    )
    assert sorted(map(int, flagged_rows)) == sorted(v["row"] for v in expected["flagged"])


def test_documents_about_other_bytes_or_of_the_wrong_kind_are_refused_and_not_stored(
    site: Site, wine: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = wine
    if not site.call("ada", "GET", "/v1/datasets/cellar/versions/2").is_success:
        for path in (old, new):
            assert main(["datasets", "push", "cellar", str(path), "--id-column", "id"]) == 0
    before = [documents(site, n) for n in (1, 2)]
    # the check report of version 1's bytes, pushed to version 2: refused
    refused = main(["data", "check", str(old), "-l", "label", "--exclude", "id",
                    "--detector", "near_duplicates", "--push", "cellar@2"])  # fmt: skip
    assert refused == 2
    assert "not this version's bytes" in capsys.readouterr().err
    model_kind = site.call(
        "dana", "POST", "/v1/datasets/cellar/versions/1/attestations?kind=signature", {}
    )
    assert model_kind.status_code == 400
    unknown = site.call(
        "dana", "POST", "/v1/datasets/cellar/versions/1/attestations?kind=bogus", {}
    )
    assert unknown.status_code == 400
    dataset_kind = site.call(
        "dana", "POST", "/v1/models/digits-clf/versions/1/attestations?kind=manifest", {}
    )
    assert dataset_kind.status_code == 400
    from donjon.data.documents import manifest_document_of

    forged = manifest_document_of(old, id_column="id")
    forged["records"]["row"][0] = "00" * 16  # a record digest that is not the data's
    response = site.call(
        "dana", "POST", "/v1/datasets/cellar/versions/1/attestations?kind=manifest", forged
    )
    assert response.status_code == 400
    assert "Merkle root" in response.text
    assert [documents(site, n) for n in (1, 2)] == before  # nothing stored
