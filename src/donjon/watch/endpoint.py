"""A deployed model over HTTP: rows are sent in the request shape its server takes.

Shapes (``format``): ``inputs`` (``{"inputs": rows}``: generic servers, KServe
v1), ``instances`` (TensorFlow Serving, KServe v1), ``kserve`` (the v2 / Triton
protocol, one FP64 tensor) and ``mlflow`` (``dataframe_split``). The answer is
read by the :class:`~donjon.watch.ports.AnswerReader` the app wires (the
gateway's reader). Rows go in chunks of at most ``max_rows`` per request; each
row is one query.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import httpx
import numpy as np

from donjon.errors import WatchError
from donjon.watch.ports import AnswerReader, Answers, Rows


class RequestFormat(enum.StrEnum):
    INPUTS = "inputs"
    INSTANCES = "instances"
    KSERVE = "kserve"
    MLFLOW = "mlflow"


def encode(rows: Rows, fmt: RequestFormat) -> bytes:
    values = np.asarray(rows, dtype=np.float64).tolist()
    doc: dict[str, Any]
    if fmt is RequestFormat.INPUTS:
        doc = {"inputs": values}
    elif fmt is RequestFormat.INSTANCES:
        doc = {"instances": values}
    elif fmt is RequestFormat.KSERVE:
        tensor = {
            "name": "input-0",
            "shape": list(np.shape(rows)),
            "datatype": "FP64",
            "data": np.asarray(rows, dtype=np.float64).ravel().tolist(),
        }
        doc = {"inputs": [tensor]}
    else:
        doc = {"dataframe_split": {"data": values}}
    return json.dumps(doc, allow_nan=False).encode()


class HttpModel:
    """A model endpoint; ``queries`` counts the rows sent (its cost to the endpoint)."""

    def __init__(
        self,
        url: str,
        reader: AnswerReader,
        *,
        fmt: RequestFormat = RequestFormat.INPUTS,
        token: str | None = None,
        max_rows: int = 100,
        timeout: float = 30.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise WatchError(f"the endpoint must be an http(s) URL, not {url!r}")
        self.url = url
        self.reader = reader
        self.fmt = fmt
        self.max_rows = max_rows
        self.queries = 0
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = headers

    def answer(self, rows: Rows) -> Answers:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        parts = [
            self._send(rows[start : start + self.max_rows])
            for start in range(0, len(rows), self.max_rows)
        ]
        return Answers.join(parts)

    def _send(self, rows: Rows) -> Answers:
        try:
            response = self._client.post(
                self.url, content=encode(rows, self.fmt), headers=self._headers
            )
        except httpx.HTTPError as e:
            raise WatchError(f"the endpoint {self.url} did not answer: {e}") from e
        self.queries += len(rows)
        if response.status_code >= 400:
            raise WatchError(
                f"the endpoint {self.url} refused the query: HTTP {response.status_code} "
                f"{response.text[:200]}"
            )
        answers = self.reader.read(response.content)
        if len(answers) != len(rows):
            raise WatchError(f"the endpoint answered {len(answers)} rows for {len(rows)} sent")
        return answers

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
