"""Syslog sink: RFC 5424 over UDP, TCP (RFC 6587 octet counting) or TLS (RFC 5425)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError
from donjon.soc.outbox import SinkUnavailable
from donjon.soc.syslog import Payload, format_syslog, octet_frame

Protocol = Literal["udp", "tcp", "tls"]
UDP_MAX = 65_000


class SyslogSink:
    """Sends each event as one RFC 5424 message; one connection, re-opened on failure.

    A failed send raises :class:`SinkUnavailable`, so the outbox retries the
    whole batch later (delivery is at least once).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        protocol: Protocol = "tcp",
        name: str = "syslog",
        payload: Payload = "ocsf",
        facility: str = "authpriv",
        app_name: str = "donjon",
        hostname: str | None = None,
        enterprise_number: int | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        server_name: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if protocol not in ("udp", "tcp", "tls"):
            raise ExportError(f"unknown syslog protocol {protocol!r}; use udp, tcp or tls")
        self.name = name
        self.host, self.port, self.protocol = host, port, protocol
        self._format = {
            "payload": payload,
            "facility": facility,
            "app_name": app_name,
            "hostname": hostname or socket.gethostname(),
            "enterprise_number": enterprise_number,
        }
        self._timeout = timeout
        self._server_name = server_name or host
        self._ssl: ssl.SSLContext | None = None
        if protocol == "tls":
            context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if cert_file is not None:
                context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
            self._ssl = context
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def render(self, event: SecurityEvent) -> str:
        return format_syslog(event, **self._format)  # type: ignore[arg-type]

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        messages = [self.render(e) for e in events]
        with self._lock:
            try:
                if self.protocol == "udp":
                    self._send_udp(messages)
                else:
                    self._connect().sendall(b"".join(octet_frame(m) for m in messages))
            except (OSError, ssl.SSLError) as e:
                self._close()
                raise SinkUnavailable(
                    f"syslog {self.protocol}://{self.host}:{self.port}: {e}"
                ) from e

    def _send_udp(self, messages: list[str]) -> None:
        sock = self._sock
        if sock is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = self._sock = socket.socket(family, socket.SOCK_DGRAM)
        for message in messages:
            data = message.encode("utf-8")
            if len(data) > UDP_MAX:
                raise ExportError(f"syslog message of {len(data)} bytes does not fit in UDP")
            sock.sendto(data, (self.host, self.port))

    def _connect(self) -> socket.socket:
        if self._sock is None:
            raw = socket.create_connection((self.host, self.port), timeout=self._timeout)
            if self._ssl is not None:
                try:
                    raw = self._ssl.wrap_socket(raw, server_hostname=self._server_name)
                except (OSError, ssl.SSLError):
                    raw.close()
                    raise
            self._sock = raw
        return self._sock

    def _close(self) -> None:
        if self._sock is not None:
            try:
                if isinstance(self._sock, ssl.SSLSocket):
                    with contextlib.suppress(OSError, ssl.SSLError):
                        self._sock.unwrap()  # close_notify: a clean end for the server
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()
