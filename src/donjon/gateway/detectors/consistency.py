"""Per answered input: is it typical of the class the model gave it? (DJ-GW-012)

Runs after the model answers, on the labels the gateway read from the answer
(:mod:`..outputs`), with the profile's consistency model (:mod:`..consistency`). An
input scoring above the profile's calibrated ``quantile`` (0.995: about 0.5 % of
natural inputs answered with their true class, at most 0.75 % of benign changes of
them) is flagged (an alert by default); in block mode the answer is withheld.
Stateless: nothing is kept per principal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from donjon.gateway.alignment import Alignment
from donjon.gateway.consistency import ConsistencyModel
from donjon.gateway.detectors import Action, Signal
from donjon.gateway.rules import INCONSISTENT_ANSWER

log = logging.getLogger("donjon.gateway")


@dataclass(frozen=True)
class ConsistencyConfig:
    action: Action = Action.ALERT
    quantile: float = 0.995


class ConsistencyDetector:
    name = "consistency"

    def __init__(
        self,
        model: ConsistencyModel,
        alignment: Alignment,
        config: ConsistencyConfig | None = None,
    ) -> None:
        self.model = model
        self.alignment = alignment
        self.config = config or ConsistencyConfig()
        self.threshold = model.threshold(self.config.quantile)
        self._unknown: set[str] = set()

    def signals(self, rows: npt.NDArray[np.float64], classes: list[str]) -> list[Signal]:
        """A signal per flagged row; ``classes[i]`` the class name the model answered
        (a label the profile does not know is not tested, and said once in the log)."""
        known = [self.model.index(name) for name in classes]
        which = [i for i, k in enumerate(known) if k is not None]
        for name, k in zip(classes, known, strict=True):
            if k is None and name not in self._unknown and len(self._unknown) < 100:
                self._unknown.add(name)
                log.warning("answer-consistency test: the profile has no class %r", name)
        if not which:
            return []
        index = np.asarray([known[i] for i in which], dtype=np.int64)
        scores = self.model.scores(np.asarray(rows)[which], index, self.alignment)
        out = []
        for i, score in zip(which, scores.tolist(), strict=True):
            if score > self.threshold:
                out.append(
                    Signal(
                        detector=self.name,
                        rule=INCONSISTENT_ANSWER,
                        action=self.config.action,
                        score=score / self.threshold,
                        threshold=1.0,
                        message=(
                            f"input atypical of the class the model answered ({classes[i]!r}; "
                            f"score {score / self.threshold:.2f})"
                        ),
                        evidence={
                            "row": i,
                            "answered": classes[i],
                            "consistency_score": round(score / self.threshold, 4),
                        },
                    )
                )
        return out
