"""HTTP/1.1 clients from the reverse proxy to the model server.

:class:`UpstreamPool` is the default: a keep-alive connection pool on asyncio
protocols with the ``httptools`` response parser (the C parser uvicorn uses). On
the proxy's hot path it costs a fraction of ``httpx.AsyncClient``'s per-request
object building (URL merging, header models, cookies, auth and redirect hooks),
which profiling showed to be the largest single cost of a proxied request.
:class:`HttpxUpstream` (httpx, the house client) is used when ``httptools`` is
not installed or when a caller hands the proxy an httpx transport.

Both send exactly the request they are given (``target`` is an already encoded
path and query) and read the whole answer into memory, up to ``max_body`` bytes.
An exchange that does not complete within ``timeout`` raises
:class:`UpstreamTimeout`; any other failure :class:`UpstreamUnavailable`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httpx

from donjon.errors import GatewayError

Headers = Sequence[tuple[bytes, bytes]]
MAX_BODY = 64 * 1024 * 1024


class UpstreamUnavailable(GatewayError):
    """The model server could not be reached or gave no readable answer (502)."""


class UpstreamTimeout(UpstreamUnavailable):
    """The model server did not answer in time (504)."""


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    content_type: bytes | None
    body: bytes


class Upstream(Protocol):
    async def request(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _Exchange(asyncio.Protocol):
    """One keep-alive connection; one request/response at a time."""

    def __init__(self, max_body: int) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._error_type = httptools.HttpParserError
        self._max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = False
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._reset()

    def _reset(self) -> None:
        self._content_type: bytes | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._received = False  # any byte of the answer
        self._framed = False  # the answer says where it ends (length or chunks)
        self._headers_done = False

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self._waiter is None or self._waiter.done():
            self._close()  # an answer nobody asked for: the connection cannot be trusted
            return
        try:
            self._parser.feed_data(data)
        except self._error_type as e:
            self._fail(UpstreamUnavailable(f"unreadable answer from the model server: {e}"))
        except UpstreamUnavailable as e:
            self._fail(e)

    def eof_received(self) -> bool | None:
        if self._headers_done and not self._framed and self._waiter is not None:
            self.on_message_complete()  # a body delimited by the end of the connection
        self._fail(UpstreamUnavailable("the model server closed the connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamUnavailable("the model server closed the connection"))

    # -- httptools callbacks -----------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self._content_type = value
        elif name in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._parser.get_status_code() in (204, 304):
            self._framed = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            raise UpstreamUnavailable(f"the model's answer exceeds {self._max_body} bytes")
        self._chunks.append(body)

    def on_message_begin(self) -> None:
        if self._waiter is None:
            # a second answer to one request: the next request on this connection would
            # read it as its own (another caller's answer); never reuse the connection
            self._close()

    def on_message_complete(self) -> None:
        waiter = self._waiter
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:  # we never ask to switch protocols
                self._fail(UpstreamUnavailable("the model server switched protocols"))
            else:
                self._reset()  # an interim answer (103 Early Hints): the final one follows
            return
        response = UpstreamResponse(status, self._content_type, b"".join(self._chunks))
        if not self._parser.should_keep_alive():
            self._close()
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # -- use ------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None  # noqa: S101 - set by connection_made
        self._reset()
        self.used = True
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    @property
    def received(self) -> bool:
        return self._received

    def _fail(self, error: Exception) -> None:
        self._close()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Keep-alive HTTP/1.1 connections to one origin, at most ``max_connections`` at once."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_connections: int = 256,
        max_idle: int = 128,
        max_body: int = MAX_BODY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        import httptools  # noqa: F401 - fail now, not on the first request

        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise GatewayError(f"upstream must be an http(s) URL, not {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/").encode()
        default_port = self.port == (443 if url.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = (host if default_port else f"{host}:{self.port}").encode("idna")
        self.ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self.timeout = timeout
        self.max_idle = max_idle
        self.max_body = max_body
        self._idle: list[_Exchange] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> UpstreamResponse:
        head = [
            f"{method} ".encode(),
            self.prefix,
            target,
            b" HTTP/1.1\r\nhost: ",
            self.authority,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for name, value in headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        raw = b"".join(head) + body
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            if task is not None:
                task.cancel()

        timer = loop.call_later(self.timeout, expire)  # cheaper than asyncio.timeout()
        try:
            async with self._slots:
                return await self._exchange(raw)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            if task is not None:
                task.uncancel()
            raise UpstreamTimeout(
                f"the model server did not answer within {self.timeout:g} s"
            ) from None
        finally:
            timer.cancel()

    async def _exchange(self, raw: bytes) -> UpstreamResponse:
        while True:
            conn = self._checkout()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                response = await conn.send(raw)
            except UpstreamUnavailable:
                conn._close()
                # a kept-alive connection the server closed before answering: once more, afresh
                if reused and not conn.received:
                    continue
                raise
            except BaseException:
                conn._close()  # cancelled or timed out mid-exchange: the connection is unusable
                raise
            self._checkin(conn)
            return response

    def _checkout(self) -> _Exchange | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def _checkin(self, conn: _Exchange) -> None:
        if conn.closed or len(self._idle) >= self.max_idle:
            conn._close()
        else:
            self._idle.append(conn)

    async def _connect(self) -> _Exchange:
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await loop.create_connection(
                lambda: _Exchange(self.max_body),
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl else None,
            )
        except OSError as e:
            raise UpstreamUnavailable(f"cannot connect to the model server: {e}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn._close()


class HttpxUpstream:
    """The same exchange through ``httpx.AsyncClient`` (keep-alive, Nagle off)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=128)
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        self.max_body = max_body
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            limits=limits,
            transport=transport or httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay),
        )

    async def request(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> UpstreamResponse:
        forward: list[tuple[bytes, bytes]] = list(headers)
        url = httpx.URL(str(self._client.base_url).rstrip("/") + target.decode("ascii"))
        try:
            async with self._client.stream(method, url, content=body, headers=forward) as answer:
                chunks: list[bytes] = []
                size = 0
                async for chunk in answer.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_body:
                        raise UpstreamUnavailable(
                            f"the model's answer exceeds {self.max_body} bytes"
                        )
                    chunks.append(chunk)
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"the model server did not answer in time: {e}") from None
        except httpx.HTTPError as e:
            raise UpstreamUnavailable(f"cannot reach the model server: {e}") from None
        content_type = answer.headers.get("content-type")
        return UpstreamResponse(
            answer.status_code,
            content_type.encode("latin-1") if content_type is not None else None,
            b"".join(chunks),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def make_upstream(
    base_url: str, *, timeout: float, transport: Any = None, client: str = "auto"
) -> Upstream:
    """The pool when ``httptools`` is installed (``client="auto"``), else httpx."""
    if client not in ("auto", "pool", "httpx"):
        raise GatewayError(f"unknown upstream client {client!r}")
    if transport is None and client != "httpx":
        try:
            return UpstreamPool(base_url, timeout=timeout)
        except ImportError:
            if client == "pool":
                raise GatewayError("the pooled upstream client needs httptools") from None
    return HttpxUpstream(base_url, timeout=timeout, transport=transport)
