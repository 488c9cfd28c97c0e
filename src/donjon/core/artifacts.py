"""Content digests and references to artifacts (model files, datasets, bundles)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX = re.compile(r"^[0-9a-f]+$")
DIGEST_SIZES = {"sha256": 64, "sha384": 96, "sha512": 128, "blake3": 64}


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A content digest such as ``sha256:9f86d0...``; lower-case hex, length checked."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        size = DIGEST_SIZES.get(self.algorithm)
        if size is None:
            known = ", ".join(sorted(DIGEST_SIZES))
            raise ValueError(f"unsupported digest algorithm {self.algorithm!r}; use one of {known}")
        if len(self.hex) != size or not _HEX.match(self.hex):
            raise ValueError(
                f"malformed {self.algorithm} digest: expected {size} lower-case hex characters"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``."""
        algorithm, sep, value = text.partition(":")
        if not sep:
            raise ValueError(f"digest {text!r} must look like 'sha256:<hex>'")
        return cls(algorithm.lower(), value.lower())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What a finding or event is about: a file, a dataset, a model version.

    ``uri`` is a path or URI as the user named it; ``digest`` is set when the
    content was hashed; ``member`` names a part inside a container (an archive
    member, a dataset record range).
    """

    uri: str
    digest: Digest | None = None
    kind: str = "file"
    media_type: str | None = None
    version: str | None = None
