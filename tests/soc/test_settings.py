"""[soc] and [monitor] settings: sinks from the settings file, errors, secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from donjon.app import build_sinks
from donjon.cli.main import main
from donjon.config import load_settings
from donjon.errors import ConfigError
from donjon.soc.elastic import ElasticSink
from donjon.soc.hec import HecSink
from donjon.soc.jsonl import JsonLinesSink
from donjon.soc.nats import NatsSink
from donjon.soc.syslog_sink import SyslogSink
from donjon.soc.webhook import WebhookSink

CONFIG = """
[soc]
jsonl_max_bytes = 1000000
max_attempts = 3

[[soc.sinks]]
type = "syslog"
name = "siem"
host = "127.0.0.1"
port = 6514
protocol = "udp"

[[soc.sinks]]
type = "hec"
url = "https://127.0.0.1:8088"
token = "hec-secret-token-value"

[[soc.sinks]]
type = "elastic"
url = "http://127.0.0.1:9200"
api_key = "es-secret-api-key"

[[soc.sinks]]
type = "webhook"
url = "https://127.0.0.1/hook"
secret = "webhook-secret-0123456789"

[[soc.sinks]]
type = "nats"
stream = "DONJON_CFG"

[[soc.sinks]]
type = "jsonl"
name = "archive"
path = "archive.jsonl"

[[monitor.rules]]
metric = "deny_ratio"
severity = "high"
"""


def test_every_sink_type_is_built_from_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    settings = load_settings(config)
    sinks = build_sinks(settings)
    try:
        assert [type(s) for s in sinks] == [
            JsonLinesSink, SyslogSink, HecSink, ElasticSink, WebhookSink, NatsSink, JsonLinesSink
        ]  # fmt: skip
        assert [s.name for s in sinks] == [
            "jsonl", "siem", "hec", "elastic", "webhook", "nats", "archive"
        ]  # fmt: skip
        assert settings.monitor.rules[0].severity == "high"
    finally:
        for sink in sinks:
            sink.close()  # type: ignore[attr-defined]


def test_secrets_are_not_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    assert main(["--format", "json", "--config", str(config), "config", "show"]) == 0
    out = capsys.readouterr().out
    for secret in ("hec-secret-token-value", "es-secret-api-key", "webhook-secret-0123456789"):
        assert secret not in out
    assert json.loads(out)["settings"]["soc"]["sinks"][0]["name"] == "siem"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[soc.sinks]]\ntype = "kafka"\n', "soc.sinks.0"),
        ('[[soc.sinks]]\ntype = "syslog"\nhost = "h"\nprotocol = "smtp"\n', "protocol"),
        ('[[soc.sinks]]\ntype = "webhook"\nurl = "u"\nsecret = "short"\n', "secret"),
        ('[[soc.sinks]]\ntype = "hec"\nurl = "u"\n', "token"),
        ("[soc]\nmax_attempts = 0\n", "max_attempts"),
        ('[[monitor.rules]]\nmetric = "x"\nwindow = 2\n', "window"),
    ],
)
def test_bad_sink_settings_are_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_settings(config)
    assert main(["--config", str(config), "events", "deliver"]) == 2


def test_without_sqlalchemy_events_still_reach_the_event_file(donjon_home: Path) -> None:
    """The core install (no SQL extra) falls back to best-effort delivery, with a warning."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    script = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "from donjon.app import build\nfrom donjon.config import load_settings\n"
        "from tests.soc.samples import every_kind\n"
        "app = build(load_settings())\nassert app.outbox is None\n"
        "app.bus.publish_all(every_kind())\napp.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
        env={**os.environ, "DONJON_HOME": str(donjon_home)}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "install donjon[soc]" in done.stderr
    from donjon.soc.jsonl import read_all_events

    assert len(list(read_all_events(donjon_home / "events.jsonl"))) == 12
