"""Suspect models queried on the recorded inputs: an HTTP endpoint, or an ONNX file.

:class:`HttpSuspect` posts the rows in any request shape the gateway validates
(generic, KServe v2, MLflow) and reads any answer shape it reads
(:class:`~donjon.gateway.outputs.ResponseReader`): the answer per row is the
top class (its index, or its name for ``{class: score}`` records) or the label,
with the row's scores by class when the answer has them (for the score test,
:mod:`.ranks`).
:class:`OnnxSuspect` runs the model in a separate process (``python -m
donjon_runners.onnx``): Donjon's own process never loads onnxruntime nor parses
a model file with it, so a hostile file can crash or exploit only that child,
which gets nothing but the file and the rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from donjon.errors import GatewayError, InputError
from donjon.gateway.outputs import Layout, ModelOutput, OutputKind, ResponseReader
from donjon.gateway.validation import ApiFormat
from donjon.gateway.watermark.records import Label

Rows = Sequence[Sequence[float]]
RUNNER = "donjon_runners.onnx"


class SuspectError(GatewayError):
    """The suspect model could not be queried or its answers read."""


@dataclass(frozen=True)
class Answer:
    label: Label | None  # the top class or the label (None: unreadable)
    scores: Mapping[Label, float] | None = None  # by class, when the suspect gives scores


class Suspect(Protocol):
    description: str

    def answers(self, rows: Rows) -> list[Answer]:
        """The suspect's answer to each row."""
        ...


def answers_of(output: ModelOutput, rows: int) -> list[Answer]:
    """Each row's answer in one read answer: top class (index or name) or label, and scores."""
    scored = [p for p in output.parts if p.kind is not OutputKind.LABELS]
    if scored:
        part = scored[0]
        if part.layout in (Layout.RECORDS, Layout.MAPPING):
            table = part.ragged if part.ragged is not None else _rows(part.scores)
            found = [
                Answer(names[int(np.argmax(row))], dict(zip(names, row, strict=True)))
                for names, row in zip(part.names, table, strict=True)
            ]
        elif part.scores is not None and part.scores.shape[1] == 1:
            cut = 0.5 if part.kind is OutputKind.PROBABILITIES else 0.0
            found = [Answer(int(v >= cut)) for v in part.scores[:, 0]]
        elif part.scores is not None:
            found = [scored_answer(row) for row in part.scores.tolist()]
        else:
            found = []
    else:
        value: Any = output.doc
        for step in output.parts[0].path:
            value = value[step]
        cells = value["data"] if output.parts[0].layout is Layout.TENSOR else value
        found = [Answer(_label(c[0] if isinstance(c, list) else c)) for c in cells]
    if len(found) != rows:
        raise SuspectError(f"the suspect answered {len(found)} rows for {rows}")
    return found


def scored_answer(row: Sequence[float]) -> Answer:
    """A row of scores by class index: its top class, and the scores."""
    return Answer(int(np.argmax(row)), {i: float(v) for i, v in enumerate(row)})


def _rows(scores: Any) -> list[list[float]]:
    return scores.tolist() if scores is not None else []


def _label(value: Any) -> Label | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else None
    return None


def request_body(rows: Rows, api: ApiFormat) -> bytes:
    table = [list(map(float, r)) for r in rows]
    doc: Any
    if api is ApiFormat.KSERVE:
        width = len(table[0]) if table else 0
        flat = [v for r in table for v in r]
        shape = [len(table), width]
        doc = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP64", "data": flat}]}
    elif api is ApiFormat.MLFLOW:
        doc = {"dataframe_split": {"data": table}}
    else:
        doc = {"inputs": table}
    return json.dumps(doc, separators=(",", ":")).encode()


class HttpSuspect:
    def __init__(
        self,
        url: str,
        *,
        api: ApiFormat = ApiFormat.GENERIC,
        headers: Mapping[str, str] | None = None,
        output: str | None = None,
        output_kind: OutputKind = OutputKind.AUTO,
        batch: int = 64,
        timeout: float = 30.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InputError(f"the suspect URL must be http(s): {url!r}")
        self.url = url
        self.description = url
        self.api = ApiFormat.GENERIC if api is ApiFormat.AUTO else api
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.reader = ResponseReader("suspect", output, output_kind)
        self.batch = batch
        self.timeout = timeout

    def answers(self, rows: Rows) -> list[Answer]:
        import httpx

        found: list[Answer] = []
        with httpx.Client(timeout=self.timeout) as client:
            for start in range(0, len(rows), self.batch):
                chunk = rows[start : start + self.batch]
                try:
                    reply = client.post(
                        self.url, content=request_body(chunk, self.api), headers=self.headers
                    )
                except httpx.HTTPError as e:
                    raise SuspectError(f"cannot query the suspect at {self.url}: {e}") from e
                if reply.status_code >= 400:
                    raise SuspectError(f"the suspect answered HTTP {reply.status_code}")
                found.extend(answers_of(self.reader.read(reply.content), len(chunk)))
        return found


class OnnxSuspect:
    """An ONNX model file run by onnxruntime in a child process (see the module doc)."""

    def __init__(self, path: Path, *, timeout: float = 300.0, python: str | None = None) -> None:
        if not path.is_file():
            raise InputError(f"no ONNX file at {path}")
        self.path = path
        self.description = str(path)
        self.timeout = timeout
        self.python = python or sys.executable

    def answers(self, rows: Rows) -> list[Answer]:
        request = json.dumps({"rows": [list(map(float, r)) for r in rows]}).encode()
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, the file path as one argument
                [self.python, "-m", RUNNER, str(self.path)],
                input=request,
                capture_output=True,
                timeout=self.timeout,
                check=False,
                env={**os.environ, "PYTHONSAFEPATH": "1"},
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SuspectError(f"the ONNX runner failed: {e}") from e
        if done.returncode != 0:
            problem = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise SuspectError(f"the ONNX runner failed on {self.path.name}: {problem[0]}")
        try:
            reply = json.loads(done.stdout)
            labels, scores = reply["labels"], reply.get("scores")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SuspectError(f"the ONNX runner's answer is unreadable: {e}") from e
        if not isinstance(labels, list) or len(labels) != len(rows):
            raise SuspectError("the ONNX runner answered another number of rows")
        if not _score_table(scores, len(rows)):
            return [Answer(_label(v)) for v in labels]
        return [
            Answer(_label(v), scored_answer(row).scores)
            for v, row in zip(labels, scores, strict=True)
        ]


def _score_table(scores: Any, rows: int) -> bool:
    """A list of one list of numbers per row, of one width of at least 3 classes."""
    if not isinstance(scores, list) or len(scores) != rows or not scores:
        return False
    width = len(scores[0]) if isinstance(scores[0], list) else 0
    return width >= 3 and all(
        isinstance(row, list)
        and len(row) == width
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row)
        for row in scores
    )
