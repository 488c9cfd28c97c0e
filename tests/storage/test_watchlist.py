"""The watch list on SQL (SQLite and PostgreSQL): enrol, remember, replicas at once, import."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.storage.sql import Database, open_database
from donjon.storage.watchlist import SqlWatchRows
from donjon.watch.watchlist import MAX_HISTORY, Watched, WatchList, read_json_file


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


def _entry(model: str, version: int = 1, **history: list[dict[str, object]]) -> Watched:
    return Watched(model, version, f"http://127.0.0.1:9/{model}", "sha256:" + "ab" * 32, 200,
                   "2026-12-06T10:00:00+00:00", **history)  # fmt: skip


def test_enrol_remember_and_replace(database: Database) -> None:
    watchlist = WatchList(SqlWatchRows(database))
    watchlist.enrolled(_entry("a"))
    watchlist.enrolled(_entry("b", 2))
    watchlist.checked("a@1", {"status": "same", "p_value": 0.5})
    watchlist.checked("a@1", {"status": "done", "robustness": 0.3}, "probes")
    watchlist.checked("nobody@1", {"status": "same"})  # not watched: nothing to remember
    a, b = watchlist.load()
    assert (a.key, a.checks, a.probes) == (
        "a@1", [{"status": "same", "p_value": 0.5}], [{"status": "done", "robustness": 0.3}]
    )  # fmt: skip
    assert (b.key, b.endpoint, b.checks) == ("b@2", "http://127.0.0.1:9/b", [])


def test_a_new_enrolment_replaces_the_entry_and_its_history(database: Database) -> None:
    watchlist = WatchList(SqlWatchRows(database))
    watchlist.enrolled(_entry("a"))
    watchlist.checked("a@1", {"status": "differs"})
    again = _entry("a")
    again.endpoint, again.fingerprint = "http://127.0.0.1:9/new", "sha256:" + "cd" * 32
    watchlist.enrolled(again)
    (entry,) = watchlist.load()
    assert (entry.endpoint, entry.fingerprint, entry.checks) == (
        again.endpoint,
        again.fingerprint,
        [],
    )


def test_only_the_newest_results_are_kept(database: Database) -> None:
    watchlist = WatchList(SqlWatchRows(database))
    watchlist.enrolled(_entry("a"))
    for i in range(MAX_HISTORY + 7):
        watchlist.checked("a@1", {"n": i})
    watchlist.checked("a@1", {"n": "probe"}, "probes")
    (entry,) = watchlist.load()
    assert [c["n"] for c in entry.checks] == list(range(7, MAX_HISTORY + 7))
    assert entry.probes == [{"n": "probe"}]


def test_replicas_enrolling_and_checking_at_once_lose_nothing(database_url: str) -> None:
    replicas = [open_database(database_url) for _ in range(2)]  # two engines, two pools
    lists = [WatchList(SqlWatchRows(db)) for db in replicas]
    lists[0].enrolled(_entry("shared"))
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for n in range(10):
                lists[i].enrolled(_entry(f"r{i}-{n}"))
                lists[i].checked("shared@1", {"replica": i, "n": n})
                lists[i].enrolled(_entry("both", n))  # the same versions from each replica
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        loaded = {e.key: e for e in lists[1].load()}
        expected = {f"r{i}-{n}@1" for i in range(2) for n in range(10)}
        assert expected | {f"both@{n}" for n in range(10)} | {"shared@1"} == set(loaded)
        assert len(loaded["shared@1"].checks) == 20
    finally:
        for db in replicas:
            db.dispose()


def test_an_old_file_is_imported_once_without_loss(database: Database, tmp_path: Path) -> None:
    checks = [{"status": "same", "time": f"2026-12-0{d}T00:00:00+00:00"} for d in (1, 2, 3)]
    probes = [{"status": "done", "robustness": 0.25, "perturbations": [0.1, None]}]
    old = [_entry("a", checks=checks, probes=probes), _entry("b", 4)]
    path = tmp_path / "watched.json"
    path.write_text(json.dumps({"watched": [vars(e) for e in old]}))
    watchlist = WatchList(SqlWatchRows(database))
    watchlist.enrolled(_entry("c"))  # enrolled in the database before the import

    first = watchlist.import_entries(read_json_file(path), str(path))
    assert (first.added, first.present, first.results) == (2, 0, 4)
    assert str(first).startswith(
        f"imported 2 watched version(s) with 4 check/probe result(s) from {path}"
    )
    again = watchlist.import_entries(read_json_file(path), str(path))
    assert (again.added, again.present, again.results) == (0, 2, 0)
    loaded = {e.key: e for e in watchlist.load()}
    assert set(loaded) == {"a@1", "b@4", "c@1"}
    assert vars(loaded["a@1"]) == vars(old[0])
    assert vars(loaded["b@4"]) == vars(old[1])
