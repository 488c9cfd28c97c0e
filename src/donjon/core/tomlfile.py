"""Reading a user's TOML file into a pydantic model: one clear error naming file and field.

The core imports no third-party package: the model class brings pydantic with it, and its
``ValidationError`` is a ``ValueError`` with an ``errors()`` list.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar, cast

from donjon.core.textfile import read_text
from donjon.errors import InputError

Model = TypeVar("Model")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML document at ``path``; InputError (naming ``what`` it is) when unreadable."""
    text = read_text(path, what)  # with Notepad's byte-order mark too
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{what} {path} is not valid TOML: {e}") from e


def validate(model: type[Model], data: object, where: str) -> Model:
    """``data`` as the pydantic ``model``, strictly (no string is taken for a list);
    InputError listing every problem by its dotted field."""
    try:
        return cast(Model, model.model_validate(data, strict=True))  # type: ignore[attr-defined]
    except ValueError as e:
        errors = getattr(e, "errors", None)
        if not callable(errors):
            raise InputError(f"{where}: {e}") from e
        problems = "; ".join(_problem(err["loc"], err["type"], err["msg"]) for err in errors())
        raise InputError(f"{where}: {problems}") from e


def _problem(loc: tuple[int | str, ...], kind: str, message: str) -> str:
    field = ".".join(str(p) for p in loc) or "document"
    return f"{field}: {'unknown key' if kind == 'extra_forbidden' else message}"
