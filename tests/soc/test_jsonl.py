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
