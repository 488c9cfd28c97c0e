"""The provenance capability's errors, all under :class:`donjon.errors.VerificationError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from donjon.errors import InputError, VerificationError


class SigningError(InputError):
    """Signing could not start: a bad key, certificate or model path. Nothing was written."""


class MalformedSignature(VerificationError):
    """The signature file is not a well-formed OMS / Sigstore bundle."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a verification failed.

    ``code`` is stable and machine-readable: ``changed``, ``missing``, ``extra``,
    ``wrong-key``, ``bad-signature``, ``untrusted-certificate``,
    ``malformed-certificate``, ``malformed-signature``, ``unsupported``,
    ``subject-mismatch`` (a provenance about another model),
    ``expired-certificate`` (outside its validity period at verification time),
    ``revoked-certificate``, ``revocation-unchecked`` (no usable CRL for a
    certificate while CRLs were given).
    ``path`` names the model file concerned, when there is one.
    """

    code: str
    message: str
    path: str | None = None

    def __str__(self) -> str:
        return self.message


class SignatureMismatch(VerificationError):
    """The signature is not valid for this model; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


class MalformedCertificate(MalformedSignature):
    """A certificate carried in the bundle cannot be parsed."""
