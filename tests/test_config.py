from pathlib import Path

import pytest

from donjon.config import load_settings
from donjon.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_live_under_donjon_home(donjon_home: Path) -> None:
    settings = load_settings()
    assert settings.home == donjon_home
    assert settings.events_path == donjon_home / "events.jsonl"
    assert settings.database_path == donjon_home / "donjon.db"
    assert settings.events.fsync is False


def test_precedence_flags_over_env_over_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "c.toml",
        'log_level = "info"\n[events]\nfsync = true\njsonl_path = "/from/file.jsonl"\n',
    )
    settings = load_settings(config)
    assert (settings.log_level, settings.events.fsync) == ("info", True)

    monkeypatch.setenv("DONJON_LOG_LEVEL", "error")
    monkeypatch.setenv("DONJON_EVENTS__FSYNC", "false")
    settings = load_settings(config)
    assert (settings.log_level, settings.events.fsync) == ("error", False)
    assert settings.events_path == Path("/from/file.jsonl")

    settings = load_settings(config, log_level="debug")
    assert settings.log_level == "debug"


def test_config_toml_in_home_is_read_when_present(donjon_home: Path) -> None:
    donjon_home.mkdir()
    write(donjon_home / "config.toml", 'log_level = "info"\n')
    assert load_settings().log_level == "info"


def test_donjon_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DONJON_CONFIG", str(write(tmp_path / "x.toml", 'log_level="error"\n')))
    assert load_settings().log_level == "error"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1\n", r"bogus: Extra inputs are not permitted"),
        ("[events]\nfsink = true\n", r"events.fsink: Extra inputs"),
        ('log_level = "loud"\n', r"log_level: Input should be"),
        ("log_level = \n", r"cannot read settings file"),
    ],
)
def test_bad_settings_files_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path / "bad.toml", text))


def test_a_named_but_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_database_url_defaults_to_sqlite_in_home(donjon_home: Path) -> None:
    assert load_settings().sql_url == f"sqlite+pysqlite:///{donjon_home / 'donjon.db'}"
    url = "postgresql://postgres@127.0.0.1/test"
    assert load_settings(database_url=url).sql_url == url
