"""Names of datasets and models, and the resource paths the authorizer sees.

A name is one or more ``/``-separated segments of lower-case letters, digits,
``.``, ``_`` and ``-``, each starting with a letter or digit: ``fraud/transactions``,
``fraud-clf``. No empty, ``.`` or ``..`` segment, no leading ``/``, no
backslash, no segment named ``versions`` (it is a word of the HTTP API), at
most 200 characters. Names never reach the filesystem (blobs are keyed by
digest) but they do reach URLs, logs and policies, so they are kept boring.
"""

from __future__ import annotations

import enum
import re

from donjon.errors import InputError

MAX_NAME_LENGTH = 200
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RESERVED = frozenset({"versions"})
# The same rules as a regular expression, for the OpenAPI document (check_name decides).
NAME_PATTERN = (
    r"^(?!versions(/|$))[a-z0-9][a-z0-9._-]{0,63}(?<!\.)"
    r"(/(?!versions(/|$))[a-z0-9][a-z0-9._-]{0,63}(?<!\.))*$"
)
# a listing's prefix: empty, or a name with any slashes around it (they are stripped)
PREFIX_PATTERN = r"^/*(?:" + NAME_PATTERN[1:-1] + r")?/*$"
# Version numbers are stored in an INTEGER column: 32-bit signed on PostgreSQL.
MAX_VERSION = 2**31 - 1
# 1 to 2**31 - 1 without leading zeros, digit by digit, so the published schema
# admits exactly the numbers ``check_version`` accepts
VERSION_PATTERN = (
    r"^(?:[1-9][0-9]{0,8}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}"
    r"|2147[0-3][0-9]{5}|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}"
    r"|21474836[0-3][0-9]|214748364[0-7])$"
)
_VERSION = re.compile(r"[0-9]{1,10}")


class Kind(enum.StrEnum):
    """What the vault keeps."""

    DATASET = "dataset"
    MODEL = "model"

    @property
    def collection(self) -> str:
        """The first segment of resource paths: ``datasets`` or ``models``."""
        return f"{self.value}s"


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset or model name; InputError otherwise."""
    if not isinstance(name, str) or not name:
        raise InputError("a name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"name is longer than {MAX_NAME_LENGTH} characters")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InputError(f"invalid name {name!r}: empty, '.' or '..' segment")
        if segment in _RESERVED:
            raise InputError(f"invalid name {name!r}: {segment!r} is a reserved word")
        if not _SEGMENT.match(segment) or segment.endswith("."):
            raise InputError(
                f"invalid name {name!r}: use lower-case letters, digits, '.', '_' and '-' "
                "in '/'-separated segments that start with a letter or digit"
            )
    return name


def check_version(text: str) -> int:
    """A version number written in ASCII digits, 1 to :data:`MAX_VERSION`; InputError otherwise.

    ``str.isdigit`` and ``int`` accept other scripts' digits and superscripts
    (``²``); the database column accepts at most 32-bit integers.
    """
    if not isinstance(text, str) or not _VERSION.fullmatch(text):
        raise InputError(f"version {text!r:.40} must be a number written in ASCII digits")
    number = int(text)
    if text.startswith("0") and number:
        raise InputError(f"version {text!r} must be written without leading zeros")
    if not 1 <= number <= MAX_VERSION:
        raise InputError(f"version {number} is out of range (1 to {MAX_VERSION})")
    return number


def resource(kind: Kind, name: str | None = None, version: int | None = None) -> str:
    """The authorizer's resource path: ``datasets/fraud/tx``, ``models/fraud-clf@3``."""
    if name is None:
        return kind.collection
    path = f"{kind.collection}/{name}"
    return path if version is None else f"{path}@{version}"


def action(kind: Kind, verb: str) -> str:
    """``dataset.read``, ``model.promote``..."""
    return f"{kind.value}.{verb}"
