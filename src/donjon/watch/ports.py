"""What the watch asks of the outside: reading a model server's answer.

The gateway already reads every known answer shape (KServe, MLflow, Triton,
TorchServe, plain JSON); ``donjon.app`` wires :class:`AnswerReader` to it, so
the watch and the firewall never read the same bytes differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Answers:
    """A model's answers to some rows: scores (rows x classes) when it gives them, and labels."""

    labels: tuple[str, ...]
    scores: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: npt.NDArray[np.int64] | list[int]) -> Answers:
        picked = [int(i) for i in index]
        scores = None if self.scores is None else self.scores[picked]
        return Answers(tuple(self.labels[i] for i in picked), scores)

    @staticmethod
    def join(parts: list[Answers]) -> Answers:
        labels = tuple(label for part in parts for label in part.labels)
        if parts and all(p.scores is not None for p in parts):
            widths = {p.scores.shape[1] for p in parts if p.scores is not None}
            if len(widths) == 1:
                stacked = [p.scores for p in parts if p.scores is not None]
                return Answers(labels, np.vstack(stacked))
        return Answers(labels)


class AnswerReader(Protocol):
    """Reads one answer body into :class:`Answers`; raises WatchError when it cannot."""

    def read(self, body: bytes) -> Answers: ...


class Model(Protocol):
    """A deployed model seen from outside: rows in, answers out, queries counted."""

    queries: int

    def answer(self, rows: Rows) -> Answers: ...
