"""Deployed models seen from outside: fingerprints that reveal a swapped model.

``enrol`` picks a version's fingerprint on the endpoint that serves it (held-out
rows and black-box boundary points) and records its answers; ``check`` asks the
endpoint again and tests, with a documented tolerance, whether it is still the
same model. The app signs the fingerprint and keeps it in the vault.

The names below load on first use, so ``donjon.watch.rules`` (read by the rule
catalogue) works on a core install without the ``watch`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.core.lazy import lazy_exports

if TYPE_CHECKING:
    from donjon.watch.endpoint import HttpModel, RequestFormat
    from donjon.watch.fingerprint import PAYLOAD_TYPE, Fingerprint, enrol
    from donjon.watch.ports import AnswerReader, Answers, Model
    from donjon.watch.verdict import CheckResult, binomial_tail, check, compare

_WHERE = {
    "CheckResult": "verdict",
    "binomial_tail": "verdict",
    "check": "verdict",
    "compare": "verdict",
    "HttpModel": "endpoint",
    "RequestFormat": "endpoint",
    "PAYLOAD_TYPE": "fingerprint",
    "Fingerprint": "fingerprint",
    "enrol": "fingerprint",
    "AnswerReader": "ports",
    "Answers": "ports",
    "Model": "ports",
}

__all__ = [
    "PAYLOAD_TYPE",
    "AnswerReader",
    "Answers",
    "CheckResult",
    "Fingerprint",
    "HttpModel",
    "Model",
    "RequestFormat",
    "binomial_tail",
    "check",
    "compare",
    "enrol",
]
__getattr__ = lazy_exports(__name__, _WHERE, globals())
