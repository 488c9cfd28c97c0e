"""Syslog sink: RFC 5424 over UDP, TCP (RFC 6587 octet counting) or TLS (RFC 5425).

Syslog over TCP has no application acknowledgement, so "delivered" means: the
receiver's TCP stack acknowledged every byte of the batch (the socket's send
queue is empty, read with ``SIOCOUTQ`` on Linux) on a connection that the
receiver had not closed before or while the batch was written. A connection the
receiver closed (a restart) is noticed before it is reused, by a non-blocking
check for its end (EOF, reset, TLS close_notify), and after each write; either
way the batch is sent again on a new connection (at least once: a duplicate
carries the same uid, never a loss). UDP has no acknowledgement at all: a
datagram the receiver drops is gone, so a UDP sink is lossy (``guarantee``).
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import socket
import ssl
import termios
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError
from donjon.soc.outbox import SinkUnavailable
from donjon.soc.syslog import Payload, format_syslog, octet_frame

Protocol = Literal["udp", "tcp", "tls"]
UDP_MAX = 65_000
SIOCOUTQ = termios.TIOCOUTQ  # bytes in the send queue not yet acknowledged by the peer


class PeerClosed(OSError):
    """The receiver closed the connection (or reset it): what was written may be lost."""


def peer_closed(sock: socket.socket) -> bool:
    """Whether the receiver has ended the connection (EOF, a reset, a TLS close_notify or
    alert), checked without blocking. A syslog receiver sends nothing else, but TLS 1.3
    session tickets arrive after the handshake: those are read and the check goes on."""
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        while True:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
            if not pending and not select.select([sock], [], [], 0)[0]:
                return False
            try:
                if not sock.recv(4096):
                    return True  # EOF
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return False  # a TLS record that carried no data (a session ticket)
    except (OSError, ValueError):
        return True  # reset, TLS alert, closed socket
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


def unacknowledged(sock: socket.socket) -> int:
    """Bytes written but not yet acknowledged by the receiver's TCP stack."""
    try:
        packed = fcntl.ioctl(sock.fileno(), SIOCOUTQ, b"\0\0\0\0")
    except OSError:  # not Linux: no way to tell, the peer checks still hold
        return 0
    return int.from_bytes(packed, "little", signed=True)


class SyslogSink:
    """Sends each event as one RFC 5424 message; one connection, re-opened on failure.

    A failed send raises :class:`SinkUnavailable`, so the outbox retries the
    whole batch later (delivery is at least once over TCP and TLS; see the module
    docstring for what "delivered" means, and why UDP is lossy).
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

    @property
    def guarantee(self) -> str:
        """``lossy`` over UDP (no acknowledgement), else ``at-least-once``."""
        return "lossy" if self.protocol == "udp" else "at-least-once"

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
                    self._send_stream(b"".join(octet_frame(m) for m in messages))
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

    def _send_stream(self, data: bytes) -> None:
        sock = self._connect()
        sock.sendall(data)
        self._confirm(sock)

    def _confirm(self, sock: socket.socket) -> None:
        """Wait until the receiver's TCP stack has acknowledged every byte written, and
        fail if it closed the connection meanwhile (the batch is then sent again)."""
        deadline = time.monotonic() + self._timeout
        while True:
            if peer_closed(sock):
                raise PeerClosed("the receiver closed the connection during the write")
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, "the connection failed during the write")
            if unacknowledged(sock) <= 0:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError("the receiver did not acknowledge the batch in time")
            select.select([sock], [], [], 0.002)

    def _connect(self) -> socket.socket:
        if self._sock is not None and peer_closed(self._sock):
            self._close()  # the receiver went away (a restart): a new connection
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
