"""The loaders the guard wraps, and where each finds the file it is about to read.

Each target names a module and an attribute (``Class.method`` for class
methods) and the argument that carries the file: a path, bytes or an open
stream. Modules are never imported here: the guard patches one when it is
already imported, and otherwise as soon as something imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def _always(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    return True


def _numpy_pickles(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    """``numpy.load`` only unpickles with ``allow_pickle=True`` (third positional)."""
    return bool(kwargs["allow_pickle"] if "allow_pickle" in kwargs else len(args) > 2 and args[2])


@dataclass(frozen=True, slots=True)
class Target:
    module: str
    attribute: str
    argument: str  # the keyword name of the file argument (always positional index 0 too)
    applies: Callable[[tuple[Any, ...], Mapping[str, Any]], bool] = _always
    bytes_only: bool = False  # pickle.loads: the argument is the payload itself
    hub_ids: bool = False  # the argument may be a Hugging Face repository id

    @property
    def label(self) -> str:
        return f"{self.module}.{self.attribute}"

    @property
    def is_method(self) -> bool:
        return "." in self.attribute


TARGETS: tuple[Target, ...] = (
    Target("pickle", "load", "file"),
    Target("pickle", "loads", "data", bytes_only=True),
    Target("torch", "load", "f"),
    Target("torch.serialization", "load", "f"),
    Target("joblib", "load", "filename"),
    Target("joblib.numpy_pickle", "load", "filename"),
    Target("numpy", "load", "file", applies=_numpy_pickles),
    Target("keras.models", "load_model", "filepath"),
    Target("keras.saving", "load_model", "filepath"),
    Target("transformers.modeling_utils", "PreTrainedModel.from_pretrained",
           "pretrained_model_name_or_path", hub_ids=True),
)  # fmt: skip
