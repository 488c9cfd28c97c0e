"""The Audit page's Sigma panel: Donjon's shipped rules run over the ledger's events.

Each ledger event is turned into the OCSF document the SOC sinks receive and
fed once, in order, to :class:`donjon.soc.sigma_match.SigmaTally`; later views
read only the entries written since. The board starts where the console's event
index starts (the ledger's newest entries), so both pages speak of the same
events. Without pySigma (the ``sigma`` extra) the panel says so.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from donjon.core.events import SecurityEvent
from donjon.server.ui.events import Rows

if TYPE_CHECKING:
    from sigma.collection import SigmaCollection

    from donjon.soc.sigma_match import RuleState, SigmaTally

log = logging.getLogger(__name__)
MISSING = "pySigma is not installed on this server: pip install 'donjon[sigma]'"


class SigmaBoard:
    """Hits of every shipped rule over the ledger entries from ``start()`` on."""

    def __init__(
        self,
        rows: Rows,
        start: Callable[[], int],
        rules: Callable[[], SigmaCollection] | None = None,
    ) -> None:
        self._rows = rows
        self._start = start
        self._rules = rules  # default: the shipped rules
        self._last: int | None = None
        self._tally: SigmaTally | None = None
        self.error = ""
        self.first_seq = 0
        self.evaluated = 0
        self._lock = threading.Lock()

    def refresh(self, stop: threading.Event | None = None) -> None:
        """Feed the entries written since the last call to the rules (until ``stop``)."""
        from donjon.soc.ocsf import to_ocsf

        with self._lock:
            tally = self._load()
            if tally is None:
                return
            if self._last is None:
                self.first_seq = self._start()
                self._last = self.first_seq - 1
            for seq, _prev, _hash, body in self._rows(self._last + 1):
                if stop is not None and stop.is_set():
                    break
                self._last = seq
                try:
                    event = SecurityEvent.from_dict(json.loads(body)["event"])
                except (ValueError, KeyError, TypeError):  # not an event: a checkpoint
                    continue
                tally.feed(seq, event.time, to_ocsf(event))
                self.evaluated += 1

    def _load(self) -> SigmaTally | None:
        if self._tally is None and not self.error:
            try:
                import yaml
                from sigma.exceptions import SigmaError

                from donjon.soc.sigma_match import SigmaTally, shipped_rules
            except ImportError:
                self.error = MISSING
                return None
            try:  # a rule that does not load or compile is listed with its error, not raised
                self._tally = SigmaTally((self._rules or shipped_rules)())
            except (SigmaError, yaml.YAMLError) as e:  # a file that is not even YAML
                self.error = f"the Sigma rules did not load: {e}"
                log.warning("%s", self.error)
        return self._tally

    def view(self) -> dict[str, Any]:
        """What the Audit page shows: each rule, fired ones first."""
        with self._lock:
            states: list[RuleState] = list(self._tally.states) if self._tally else []
        ordered = sorted(states, key=lambda s: (-s.hits, s.kind, s.title))
        return {
            "rules": ordered,
            "fired": sum(1 for s in states if s.hits),
            "error": self.error,
            "first_seq": self.first_seq,
            "evaluated": self.evaluated,
        }
