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
        if self.rate + self.control_rate >= 1:
            raise ValueError("rate + control_rate must stay below 1")
        if self.labels is not None and self.classes not in (None, len(self.labels)):
            raise ValueError("classes and the number of labels differ")
        return self
