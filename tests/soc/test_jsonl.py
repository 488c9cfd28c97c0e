import json
from pathlib import Path

import pytest

from donjon.core import EventBus, SecurityEvent
from donjon.errors import ExportError
from donjon.soc import JsonLinesSink, read_events
from tests.factories import finding


def test_events_written_are_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "events.jsonl"
    sink = JsonLinesSink(path, fsync=True)
    events = [SecurityEvent.of_finding(finding(), "scan") for _ in range(3)]
    EventBus([sink]).publish_all(events)
    sink.close()
    assert list(read_events(path)) == events
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["finding"]["rule"]["atlas"] == ["AML.T0011.000"]


def test_appends_across_sink_instances(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for _ in range(2):
        sink = JsonLinesSink(path)
        sink.emit(SecurityEvent.of_finding(finding(), "scan"))
        sink.close()
    assert len(list(read_events(path))) == 2


def test_unwritable_path_is_an_export_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sink = JsonLinesSink(blocker / "events.jsonl")
    with pytest.raises(ExportError, match="cannot write events"):
        sink.emit(SecurityEvent.of_finding(finding(), "scan"))


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps(SecurityEvent.of_finding(finding(), "scan").to_dict())
    path.write_text(good + "\n\n" + '{"schema": 1}\n')
    with pytest.raises(ExportError, match=r"events.jsonl:3: not a Donjon event"):
        list(read_events(path))


def test_rotation_keeps_backups_and_reading_sees_every_event_once(tmp_path: Path) -> None:
    from donjon.soc.jsonl import event_files, read_all_events

    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(path, max_bytes=2500, backups=3)
    events = [SecurityEvent.of_finding(finding(), "scan") for _ in range(12)]
    for event in events[:6]:
        sink.emit(event)
    sink.emit_batch(events[6:])
    sink.close()
    files = event_files(path)
    assert files[-1] == path
    assert [f.name for f in files[:-1]] == ["events.jsonl.3", "events.jsonl.2", "events.jsonl.1"]
    assert all(f.stat().st_size <= 2500 for f in files)
    kept = list(read_all_events(path))
    assert kept == events[-len(kept) :]  # the oldest rotated away, the rest in order
    assert len(kept) < len(events)
    sink = JsonLinesSink(path, max_bytes=10**6)
    sink.emit(events[0])  # a re-delivered event: read once
    sink.close()
    assert [e.uid for e in read_all_events(path)].count(events[0].uid) <= 1


def test_rotation_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="positive"):
        JsonLinesSink(tmp_path / "e.jsonl", max_bytes=0)
