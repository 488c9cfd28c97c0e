"""A real rsyslogd for the tests: UDP, TCP and TLS inputs on free loopback ports.

Each received message is written as one JSON line with rsyslog's own parse of
the RFC 5424 fields, so the tests check what the daemon understood.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.soc.tlsutil import TlsFiles, make_tls_files

FIELDS = ("inputname", "pri", "timereported", "hostname", "app-name", "procid", "msgid",
          "structured-data", "msg")  # fmt: skip


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rsyslog:
    folder: Path
    udp_port: int
    tcp_port: int
    tls_port: int
    tls: TlsFiles
    output: Path
    process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        props = "\n".join(f'  property(outname="{f}" name="{f}" format="jsonf")' for f in FIELDS)
        return f"""
global(workDirectory="{self.folder}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="{self.tls.ca}"
       defaultNetstreamDriverCertFile="{self.tls.cert}"
       defaultNetstreamDriverKeyFile="{self.tls.key}")
module(load="imudp")
module(load="imtcp" maxSessions="200")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" name="udp")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" name="tcp")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" name="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="donjonjson" type="list" option.jsonf="on") {{
{props}
}}
*.* action(type="omfile" file="{self.output}" template="donjonjson")
"""

    def start(self) -> None:
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        conf = self.folder / "rsyslog.conf"
        conf.write_text(self.config())
        with (self.folder / "rsyslogd.log").open("wb") as log:
            self.process = subprocess.Popen(
                [binary, "-n", "-f", str(conf), "-i", str(self.folder / "rsyslogd.pid")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"rsyslogd exited: {(self.folder / 'rsyslogd.log').read_text()[-2000:]}"
                )
            if all(_listening(p) for p in (self.tcp_port, self.tls_port)):
                return
            time.sleep(0.05)
        raise RuntimeError("rsyslogd did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def received(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        text = self.output.read_text()
        complete = text[: text.rfind("\n") + 1]  # rsyslogd may be writing the last line
        return [json.loads(line) for line in complete.splitlines() if line]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return self.received()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_rsyslog(folder: Path) -> Rsyslog:
    folder.mkdir(parents=True, exist_ok=True)
    server = Rsyslog(
        folder,
        free_port(socket.SOCK_DGRAM),
        free_port(),
        free_port(),
        make_tls_files(folder / "tls"),
        folder / "received.jsonl",
    )
    server.start()
    return server
