"""What the HTTP sinks share: one httpx client and the error classes of a response."""

from __future__ import annotations

import httpx

from donjon.errors import ExportError
from donjon.soc.outbox import SinkUnavailable

# Responses that say "not now" (retry with back-off) rather than "never this event".
RETRY_STATUS = frozenset({401, 403, 404, 408, 425, 429, 500, 502, 503, 504})


class HttpPoster:
    """POSTs bodies to one collector and maps failures onto the outbox's error classes."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        timeout: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self.url = url
        self._client = httpx.Client(headers=headers, timeout=timeout, verify=verify)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise SinkUnavailable(f"{self.url}: {type(e).__name__}: {e}") from e
        if response.status_code in RETRY_STATUS:
            raise SinkUnavailable(f"{self.url} answered {response.status_code}")
        if response.status_code >= 400:
            raise ExportError(
                f"{self.url} rejected the events: {response.status_code} {response.text[:300]}"
            )
        return response

    def close(self) -> None:
        self._client.close()
