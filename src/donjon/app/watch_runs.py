"""One fingerprint check or robustness probe of a watched version, as the CLI and
``donjon up`` run them: fingerprint read and verified, endpoint asked, outcome
published on the bus and remembered in the watch list.

Where the fingerprint comes from is the caller's: the vault's HTTP API for
``donjon watch run``, the registry in the same process for ``donjon up``. A
check or probe that cannot run publishes DJ-WT-002 and is remembered as
``failed`` (fail closed: never a pass). The outcome dictionaries are the stored
shapes documented in docs/watch.md ("Stored data").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from donjon.core.bus import EventBus
from donjon.errors import ConfigError, DonjonError, InputError, VerificationError
from donjon.watch.pairing import MIN_DROP

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.watch import Fingerprint, HttpModel
    from donjon.watch.watchlist import Watched, WatchList

ReadFingerprint = Callable[["Watched"], bytes]  # the sealed fingerprint of an entry


def http_model(
    url: str, model: str, fmt: str, output: str | None = None, token: str | None = None
) -> HttpModel:
    """The endpoint as the watch asks it, answers read by the gateway's reader."""
    from donjon.app.watch import GatewayAnswerReader
    from donjon.watch import HttpModel, RequestFormat

    try:
        request_format = RequestFormat(fmt)
    except ValueError:
        formats = ", ".join(f.value for f in RequestFormat)
        raise InputError(f"request format must be one of {formats}, not {fmt!r}") from None
    return HttpModel(url, GatewayAnswerReader(model, output), fmt=request_format, token=token)


def token_from(variable: str) -> str | None:
    return os.environ.get(variable) or None


@dataclass
class WatchRunner:
    """Checks and probes of watched versions, their outcomes published and remembered."""

    watchlist: WatchList
    bus: EventBus
    read_fingerprint: ReadFingerprint
    keys: Sequence[ec.EllipticCurvePublicKey]
    token: str | None = None
    min_drop: float = MIN_DROP  # DJ-WT-003's smallest drop (watch.probe_min_drop)

    def fingerprint(self, entry: Watched) -> Fingerprint:
        """The enrolled fingerprint, signature checked, of exactly this model version."""
        from donjon.app.watch import unseal

        fingerprint = unseal(self.read_fingerprint(entry), self.keys)
        if (fingerprint.model, fingerprint.version) != (entry.model, entry.version):
            raise VerificationError(
                f"the fingerprint is of {fingerprint.model}@{fingerprint.version}, not {entry.key}"
            )
        return fingerprint

    def check(
        self,
        entry: Watched,
        endpoint: str | None = None,
        fmt: str | None = None,
        output: str | None = None,
    ) -> dict[str, Any]:
        """One check: ``status`` is ``same``, ``differs`` (DJ-WT-001) or ``failed`` (DJ-WT-002)."""
        from donjon.watch import check
        from donjon.watch.findings import activity, changed_finding, finding_event

        url = endpoint or entry.endpoint
        now = datetime.now(UTC).isoformat()
        try:
            fingerprint = self.fingerprint(entry)
            url = endpoint or fingerprint.endpoint  # the signed one, not the local list's
            with http_model(
                url, entry.model, fmt or fingerprint.request_format, output, self.token
            ) as target:
                result = check(fingerprint, target)
        except DonjonError as e:
            return self._failed(entry, url, "check", e, now)
        if result.differs:
            self.bus.publish(finding_event(changed_finding(result)))
            status = "differs"
        else:
            message = f"{entry.key} at {url} answers as enrolled"
            self.bus.publish(activity("check", message, **result.to_dict()))
            status = "same"
        outcome = {**result.to_dict(), "status": status, "time": now}
        self.watchlist.checked(entry.key, outcome)
        return outcome

    def probe(
        self,
        entry: Watched,
        *,
        rows: int = 40,
        budget: int = 2000,
        endpoint: str | None = None,
        output: str | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """One robustness probe (random rays and a surrogate's transfer attack), recorded and
        compared row by row with the last probe of the version before (DJ-WT-003)."""
        from donjon.watch.findings import activity, finding_event, less_robust_finding
        from donjon.watch.pairing import against_previous, previous_probe
        from donjon.watch.probe import probe as attack

        url = endpoint or entry.endpoint
        now = datetime.now(UTC).isoformat()
        try:
            fingerprint = self.fingerprint(entry)
            url = endpoint or fingerprint.endpoint
            held = fingerprint.points[[k == "row" for k in fingerprint.kinds]]
            if len(held) < 2:
                raise InputError(f"the fingerprint of {entry.key} has too few held-out rows")
            with http_model(
                url, entry.model, fingerprint.request_format, output, self.token
            ) as target:
                result = attack(target, held[:rows], held, budget=budget, seed=seed)
        except DonjonError as e:
            return self._failed(entry, url, "probe", e, now)
        outcome = {
            "model": entry.model,
            "version": entry.version,
            "endpoint": url,
            "status": "done",
            "summary": result.summary(),
            **result.to_dict(),
            "time": now,
        }
        history = {e.version: e.probes for e in self.watchlist.load() if e.model == entry.model}
        previous = previous_probe(history, entry.version, result.digest, outcome["method"])
        if previous is not None:
            outcome.update(against_previous(result.perturbations, *previous, self.min_drop))
        if outcome.get("less_robust"):
            self.bus.publish(finding_event(less_robust_finding(outcome)))
        attributes = {k: v for k, v in outcome.items() if k not in ("perturbations", "pairs")}
        message = f"{entry.key} at {url}: {result.summary()}"
        self.bus.publish(activity("probe", message, **attributes))
        self.watchlist.checked(entry.key, outcome, "probes")
        return outcome

    def _failed(
        self, entry: Watched, url: str, what: str, error: DonjonError, now: str
    ) -> dict[str, Any]:
        from donjon.watch.findings import failed_finding, finding_event

        if isinstance(error, ConfigError):
            raise error
        finding = failed_finding(entry.model, entry.version, url, f"{what}: {error}")
        self.bus.publish(finding_event(finding))
        outcome = {
            "model": entry.model,
            "version": entry.version,
            "endpoint": url,
            "status": "failed",
            "reason": str(error),
            "time": now,
        }
        self.watchlist.checked(entry.key, outcome, "checks" if what == "check" else "probes")
        return outcome
