"""The outbox relay: one per outbox among processes, and running inside every service.

The services are started as real processes (``python -m donjon server|up|gateway``)
with a HEC sink pointing at a real loopback collector; the events of their
requests must reach the event file and the collector while they run, and what
is left must go out when they stop (SIGTERM / SIGINT).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import donjon
from donjon.core import EventKind, SecurityEvent, Severity
from donjon.soc.jsonl import read_all_events
from donjon.soc.outbox import Dispatcher, Outbox
from donjon.storage.outbox import SqlOutboxStore, advisory_key
from donjon.storage.sql import open_database
from tests.conftest import REPO_ROOT
from tests.soc.collector import Collector, parse_concatenated_json
from tests.soc.rsyslog import free_port

HEC_OK = {"text": "Success", "code": 0}
STOPPED = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown


class Recorder:
    """A sink that remembers what it got, shared by name across dispatchers."""

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    def emit(self, event: SecurityEvent) -> None:
        self.seen.append(event.uid)


def _event(n: int) -> SecurityEvent:
    return SecurityEvent(EventKind.ACCESS, "gateway", "model.infer", f"request {n}", Severity.INFO)


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_one_relay_per_outbox_and_the_other_takes_over(database_url: str) -> None:
    """Two processes' dispatchers on one outbox: one delivers, the other waits its turn."""
    databases = [open_database(database_url) for _ in range(2)]
    seen: list[str] = []
    relays = [
        Dispatcher(SqlOutboxStore(db), [Recorder("siem", seen)], idle_wait=0.01,
                   standby_wait=0.05, lease_ttl=2.0)
        for db in databases
    ]  # fmt: skip
    outbox = Outbox(SqlOutboxStore(databases[0]))
    try:
        for relay in relays:
            relay.start()
        first = [_event(n) for n in range(60)]
        for event in first:
            outbox.append(event)
        assert _wait(lambda: len(seen) >= 60)
        active = [r for r in relays if r.states["siem"].delivered]
        assert len(active) == 1  # one relay delivered everything
        assert active[0].is_relay
        active[0].stop()  # gives the lease up
        second = [_event(n) for n in range(60, 90)]
        for event in second:
            outbox.append(event)
        assert _wait(lambda: len(seen) >= 90)
        standby = next(r for r in relays if r is not active[0])
        assert standby.states["siem"].delivered == 30
        assert seen == [e.uid for e in first + second]  # in order, each once
    finally:
        outbox.close()
        for relay in relays:
            relay.stop()
        for db in databases:
            db.dispose()


def test_a_manual_drain_waits_for_the_running_relay(database_url: str) -> None:
    """``donjon events deliver`` while a service delivers: it does not send the same
    events a second time, it waits until the service's relay has caught up."""
    databases = [open_database(database_url) for _ in range(2)]
    seen: list[str] = []
    service = Dispatcher(SqlOutboxStore(databases[0]), [Recorder("siem", seen)], idle_wait=0.01)
    manual = Dispatcher(SqlOutboxStore(databases[1]), [Recorder("siem", seen)], idle_wait=0.01)
    outbox = Outbox(SqlOutboxStore(databases[0]))
    try:
        service.start()
        assert _wait(lambda: service.is_relay)
        events = [_event(n) for n in range(40)]
        for event in events:
            outbox.append(event)
        assert manual.drain(20) is True
        assert manual.states["siem"].delivered == 0
        assert seen == [e.uid for e in events]
    finally:
        outbox.close()
        service.stop()
        for db in databases:
            db.dispose()


def test_a_relay_that_died_is_replaced_when_its_lease_runs_out(database_url: str) -> None:
    db = open_database(database_url)
    try:
        store = SqlOutboxStore(db)
        assert store.acquire_lease("relay", "dead-process", 1.0)  # and never renewed
        seen: list[str] = []
        relay = Dispatcher(store, [Recorder("siem", seen)], idle_wait=0.01, standby_wait=0.05)
        store.append_many([(e.uid, e.kind.value, e.time, _payload(e)) for e in [_event(1)]])
        assert relay.drain(0.3) is False  # the dead process still holds the lease
        assert seen == []
        assert relay.drain(5) is True  # it ran out: this one took over
        assert len(seen) == 1
        assert store.lease_holder("relay") is None  # drain gave it back
    finally:
        db.dispose()


def _payload(event: SecurityEvent) -> str:
    from donjon.soc import jsonfast

    return jsonfast.dumps(event.to_dict())


def test_advisory_keys_differ_by_schema() -> None:
    base = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D"
    assert advisory_key("outbox", base + "a") != advisory_key("outbox", base + "b")
    assert advisory_key("outbox", base + "a") == advisory_key("outbox", base + "a")


# -- the services, as real processes -----------------------------------------


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    source = Path(donjon.__file__).resolve().parents[1]  # this checkout's code, not another
    env["PYTHONPATH"] = os.pathsep.join([str(source), str(REPO_ROOT)])
    env["DONJON_HOME"] = str(home)
    return env


@pytest.fixture
def hec() -> Iterator[Collector]:
    collector = Collector(answer=lambda r: (200, HEC_OK)).start()
    yield collector
    collector.stop()


def _settings(home: Path, hec: Collector) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "policies.cedar").write_text('@id("none")\nforbid (principal, action, resource);\n')
    config = home / "config.toml"
    config.write_text(
        "[soc]\ndrain_on_close = 10\nbackoff_base = 0.05\nbackoff_max = 0.2\n"
        f'[[soc.sinks]]\ntype = "hec"\nname = "hec"\nurl = "{hec.url}"\ntoken = "t0k"\n'
    )
    return config


def _collected(hec: Collector) -> list[str]:
    return [
        doc["event"]["metadata"]["uid"]
        for request in list(hec.requests)
        for doc in parse_concatenated_json(request.body)
    ]


def _file_uids(home: Path) -> list[str]:
    path = home / "events.jsonl"
    return [e.uid for e in read_all_events(path)] if path.exists() else []


class Service:
    def __init__(self, argv: list[str], home: Path) -> None:
        self.log = home.parent / f"{argv[2]}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "donjon", *argv], env=_env(home), cwd=home.parent,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def wait_listening(self, url: str) -> None:
        def up() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                httpx.get(url, timeout=1)
            except httpx.TransportError:
                return False
            return True

        assert _wait(up, 60), self.output()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _poke(http: httpx.Client, url: str) -> int:
    """An unauthenticated call: refused with 401, and an authentication event."""
    if url.endswith("/predict"):
        return http.post(url, json={"inputs": [[1.0]]}).status_code
    return http.get(url).status_code


def _delivers_while_running(service: Service, home: Path, hec: Collector, poke: str) -> None:
    """Requests make events; they reach the file and HEC while the service runs.

    Five refused calls from one address make one event at once (the vault and the
    gateway sum up repeated failures of one client per interval)."""
    events = 1
    with httpx.Client(timeout=5) as http:
        for _ in range(5):
            assert _poke(http, poke) == 401
    assert _wait(lambda: len(_collected(hec)) >= events), service.output()
    assert service.process.poll() is None  # delivered by the running service, not at exit
    assert _wait(lambda: set(_collected(hec)) <= set(_file_uids(home)))
    with httpx.Client(timeout=5) as http:  # more, then stop at once: the drain sends them
        for _ in range(3):
            assert _poke(http, poke) == 401
    assert service.stop() in STOPPED, service.output()
    stored = _file_uids(home)
    assert len(stored) >= events
    collected = _collected(hec)
    assert set(collected) == set(stored)
    assert len(collected) == len(set(collected))  # one relay: nothing sent twice


@pytest.mark.parametrize("workers", ["1", "2"])
def test_server_delivers_in_the_background(tmp_path: Path, hec: Collector, workers: str) -> None:
    """With --workers 2, the workers share the outbox and one of them is the relay."""
    home = tmp_path / "home"
    config = _settings(home, hec)
    port = free_port()
    argv = ["--config", str(config), "server", "--port", str(port), "--workers", workers]
    service = Service(argv, home)
    try:
        service.wait_listening(f"http://127.0.0.1:{port}/health")
        _delivers_while_running(service, home, hec, f"http://127.0.0.1:{port}/v1/whoami")
    finally:
        service.stop(signal.SIGKILL)


def test_up_delivers_in_the_background(tmp_path: Path, hec: Collector) -> None:
    home = tmp_path / "home"
    config = _settings(home, hec)
    vault, metrics = free_port(), free_port()
    argv = ["--config", str(config), "up", "--vault-port", str(vault)]
    service = Service([*argv, "--metrics-port", str(metrics)], home)
    try:
        service.wait_listening(f"http://127.0.0.1:{metrics}/metrics")
        _delivers_while_running(service, home, hec, f"http://127.0.0.1:{vault}/v1/whoami")
    finally:
        service.stop(signal.SIGKILL)


def test_gateway_delivers_in_the_background(tmp_path: Path, hec: Collector) -> None:
    home = tmp_path / "home"
    config = _settings(home, hec)
    (tmp_path / "keys.json").write_text('{"keys": []}')
    gateway_toml = tmp_path / "gateway.toml"
    gateway_toml.write_text(
        'upstream = "http://127.0.0.1:9"\n[auth]\napi_keys_file = "keys.json"\n'
        '[[models]]\nname = "m"\nroutes = ["/predict"]\nallow = ["*"]\n'
    )
    port = free_port()
    argv = ["--config", str(config), "gateway", "--config", str(gateway_toml)]
    service = Service([*argv, "--port", str(port)], home)
    try:
        service.wait_listening(f"http://127.0.0.1:{port}/")
        _delivers_while_running(service, home, hec, f"http://127.0.0.1:{port}/predict")
    finally:
        service.stop(signal.SIGKILL)


def test_two_services_on_one_outbox_deliver_each_event_once(tmp_path: Path, hec: Collector) -> None:
    """A vault server and a gateway sharing one home: one relay, no event sent twice."""
    home = tmp_path / "home"
    config = _settings(home, hec)
    (tmp_path / "keys.json").write_text('{"keys": []}')
    gateway_toml = tmp_path / "gateway.toml"
    gateway_toml.write_text(
        'upstream = "http://127.0.0.1:9"\n[auth]\napi_keys_file = "keys.json"\n'
        '[[models]]\nname = "m"\nroutes = ["/predict"]\nallow = ["*"]\n'
    )
    vault, gateway = free_port(), free_port()
    server = Service(["--config", str(config), "server", "--port", str(vault)], home)
    proxy: Service | None = None
    try:
        server.wait_listening(f"http://127.0.0.1:{vault}/health")  # it creates the database
        argv = ["--config", str(config), "gateway", "--config", str(gateway_toml)]
        proxy = Service([*argv, "--port", str(gateway)], home)
        proxy.wait_listening(f"http://127.0.0.1:{gateway}/")
        errors: list[BaseException] = []

        def hammer(url: str) -> None:
            try:
                with httpx.Client(timeout=5) as http:
                    for _ in range(15):
                        assert _poke(http, url) == 401
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [
            threading.Thread(target=hammer, args=(f"http://127.0.0.1:{vault}/v1/whoami",)),
            threading.Thread(target=hammer, args=(f"http://127.0.0.1:{gateway}/predict",)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert _wait(lambda: len(_collected(hec)) >= 2), server.output() + proxy.output()
        assert server.stop() in STOPPED, server.output()
        assert proxy.stop() in STOPPED, proxy.output()
        collected = _collected(hec)
        assert len(collected) == len(set(collected))  # one relay: nothing sent twice
        assert collected == _file_uids(home)  # the same events, in the same order
    finally:
        server.stop(signal.SIGKILL)
        if proxy is not None:
            proxy.stop(signal.SIGKILL)
