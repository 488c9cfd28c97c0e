"""A lean HTTP/1.1 client for load generation: asyncio streams and httptools' C parser.

httpx costs about 2-5 ms of CPU per request of the vault's mix; on a 2-core machine the
load generator then takes a large share of the cores it is measuring. This one keeps one
keep-alive connection per (address, server), writes the request in one call and parses
the answer with httptools (the parser uvicorn itself uses): a few tens of microseconds.
It is made for benchmarks against a server on this machine, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import httptools


class HTTPError(Exception):
    """The connection failed or the answer was not HTTP/1.1."""


@dataclass
class Response:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Parsed:
    """httptools callbacks: collects one response."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class Connection:
    """One keep-alive connection from ``local_address`` to ``host:port``; reconnects on
    the next request after a failure."""

    def __init__(self, host: str, port: int, local_address: str | None = None) -> None:
        self.host, self.port, self.local_address = host, port, local_address
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> Response:
        try:
            return await self._exchange(method, path, headers, body)
        except (OSError, EOFError, httptools.HttpParserError, asyncio.IncompleteReadError) as e:
            await self.close()
            raise HTTPError(f"{type(e).__name__}: {e}") from e

    async def _exchange(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Response:
        if self._writer is None:
            local = (self.local_address, 0) if self.local_address else None
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, local_addr=local, limit=1 << 20
            )
        assert self._reader is not None
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if body:
            self._writer.write(body)
        await self._writer.drain()
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        while not parsed.done:
            data = await self._reader.read(1 << 20)
            if not data:
                raise EOFError("the server closed the connection")
            parser.feed_data(data)
        if not parser.should_keep_alive():
            await self.close()
        return Response(parser.get_status_code(), parsed.headers, b"".join(parsed.body))

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Client:
    """Connections from one local address to several servers (``http://host:port``)."""

    def __init__(self, local_address: str | None = None) -> None:
        self.local_address = local_address
        self._connections: dict[str, Connection] = {}

    def _to(self, url: str) -> tuple[Connection, str]:
        base, _, path = url.removeprefix("http://").partition("/")
        connection = self._connections.get(base)
        if connection is None:
            host, _, port = base.partition(":")
            connection = Connection(host, int(port), self.local_address)
            self._connections[base] = connection
        return connection, "/" + path

    async def get(self, url: str, headers: dict[str, str]) -> Response:
        connection, path = self._to(url)
        return await connection.request("GET", path, headers)

    async def post(
        self,
        url: str,
        headers: dict[str, str],
        content: bytes = b"",
        json_body: Any = None,
    ) -> Response:
        connection, path = self._to(url)
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        return await connection.request("POST", path, headers, content)

    async def close(self) -> None:
        for connection in self._connections.values():
            await connection.close()
