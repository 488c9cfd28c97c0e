"""A real rsyslogd shared by the SOC tests of one session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.soc.rsyslog import Rsyslog, start_rsyslog


@pytest.fixture(scope="session")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    server = start_rsyslog(tmp_path_factory.mktemp("rsyslog"))
    yield server
    server.stop()
