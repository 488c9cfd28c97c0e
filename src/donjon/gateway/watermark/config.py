"""``[models.watermark]``: keyed watermarks in one model's answers (see ``docs/watermark.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WatermarkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # share of inputs whose answer is changed (DAWN: under 0.5 %)
    rate: float = Field(default=0.005, gt=0, le=0.05)
    # the rate for a principal the gateway's detectors flag (its queries out of the data's
    # distribution, or a detector's signal): that principal pays it, ordinary users do not;
    # never below ``rate``; None keeps every principal at ``rate``
    suspect_rate: float | None = Field(default=0.06, gt=0, le=0.2)
    # a principal's near-copy of one of its marked inputs gets the same mark (closer than
    # the profile's nearest-neighbour distance at this quantile; None: never), and the
    # last family_memory marks of each principal are remembered for it
    family_quantile: float | None = Field(default=0.1, gt=0, lt=0.5)
    family_memory: int = Field(default=256, ge=1, le=65_536)
    # share of inputs recorded as look-alikes, answered truthfully: the null rate's sample
    control_rate: float = Field(default=0.025, ge=0, le=0.5)
    # "keys:ID" ($DONJON_HOME/keys/ID.hmac, created on first use), "env:VAR" or "file:PATH"
    key: str = Field(default="keys:watermark", min_length=5)
    # "principal": each principal gets its own keyed subset (the mark names the principal);
    # "global": every principal gets the same marked answers
    mode: Literal["principal", "global"] = "principal"
    # the number of classes, needed when the answer holds labels only
    classes: int | None = Field(default=None, ge=2)
    # class names in class order, needed when the answer's labels are strings
    labels: list[str] | None = Field(default=None, min_length=2)
    # where the watermarked inputs are recorded (content-addressed, bounded)
    folder: Path | None = None  # default: $DONJON_HOME/watermarks
    max_records: int = Field(default=200_000, ge=1)

    @property
    def top_rate(self) -> float:
        """The highest rate any principal is marked at."""
        return max(self.rate, self.suspect_rate or 0.0)

    def relative_to(self, base: Path) -> WatermarkSettings:
        """Relative paths (the folder, a ``file:`` key) read from ``base``."""
        update: dict[str, object] = {}
        if self.folder is not None and not self.folder.is_absolute():
            update["folder"] = base / self.folder
        scheme, _, name = self.key.partition(":")
        if scheme == "file" and not Path(name).is_absolute():
            update["key"] = f"file:{base / name}"
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _consistent(self) -> WatermarkSettings:
        if self.top_rate + self.control_rate * self.top_rate / self.rate >= 1:
            raise ValueError(
                "the marked and recorded shares must stay below 1: a flagged principal's "
                "look-alikes are control_rate x suspect_rate / rate; lower one of them"
            )
        if self.labels is not None and self.classes not in (None, len(self.labels)):
            raise ValueError("classes and the number of labels differ")
        return self
