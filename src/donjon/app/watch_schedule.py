"""The watch inside ``donjon up``: fingerprint checks and robustness probes on schedules.

A background thread wakes every ``tick`` seconds and, for every version in the
watch list, runs a fingerprint check when the last one (remembered in the watch
list, so a restart does not reset the clock) is ``watch.check_seconds`` old or
missing, and a probe when the last probe is ``watch.probe_seconds`` old or
missing. Fingerprints are read from the vault in the same process (digest
checked) and verified against ``vault.trusted_keys`` and the ``watch.key``;
outcomes go to the bus (DJ-WT-001 / DJ-WT-002 findings, ``watch.check`` and
``watch.probe`` events) and the watch list, as with ``donjon watch run``.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from donjon.app.watch_runs import WatchRunner
    from donjon.config import Settings
    from donjon.core.bus import EventBus
    from donjon.registry import Registry
    from donjon.storage.sql import Database
    from donjon.watch.watchlist import Watched

log = logging.getLogger(__name__)


class WatchScheduler:
    """Runs what is due, then sleeps ``tick`` seconds; :meth:`stop` ends it."""

    def __init__(
        self,
        runner: WatchRunner,
        *,
        check_seconds: float,
        probe_seconds: float,
        probe_rows: int = 40,
        probe_budget: int = 2000,
        tick: float = 1.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runner = runner
        self.check_seconds = check_seconds
        self.probe_seconds = probe_seconds if importlib.util.find_spec("art") else 0.0
        if probe_seconds and not self.probe_seconds:
            log.warning("watch probes need the 'watch' extra (adversarial-robustness-toolbox)")
        self.probe_rows = probe_rows
        self.probe_budget = probe_budget
        self.tick = tick
        self.now = now
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="donjon-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def run_due(self) -> list[dict[str, Any]]:
        """One pass: every check and probe that is due, in watch-list order."""
        done = []
        for entry in self.runner.watchlist.load():
            if self._stop.is_set():
                break
            if self._due(entry.checks, self.check_seconds):
                done.append(self.runner.check(entry))
            if self._due(entry.probes, self.probe_seconds):
                done.append(self._probe(entry))
        return done

    def _probe(self, entry: Watched) -> dict[str, Any]:
        rows, budget = self.probe_rows, self.probe_budget
        return self.runner.probe(entry, rows=rows, budget=budget, seed=len(entry.probes))

    def _due(self, history: list[dict[str, Any]], every: float) -> bool:
        if every <= 0:
            return False
        if not history:
            return True
        try:
            last = datetime.fromisoformat(str(history[-1]["time"]))
        except (KeyError, ValueError):
            return True
        return (self.now() - last).total_seconds() >= every

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # the stack keeps running; the next pass retries
                log.exception("watch pass failed")
            self._stop.wait(self.tick)


def up_scheduler(
    settings: Settings, registry: Registry, bus: EventBus, database: Database
) -> WatchScheduler | None:
    """The scheduler ``donjon up`` runs beside the vault, or None when it has nothing to do."""
    from donjon.app.watch_gate import watch_list
    from donjon.app.watch_runs import WatchRunner, token_from
    from donjon.core.artifacts import Digest
    from donjon.provenance.keys import LocalKeyProvider, load_public_key

    watch = settings.watch
    if not (watch.check_seconds or watch.probe_seconds):
        return None
    home = settings.home
    trusted = settings.vault.trusted_keys
    keys = [load_public_key(p if p.is_absolute() else home / p) for p in trusted]
    if watch.key is not None:
        keys.append(LocalKeyProvider(settings.keys_dir).public_key(watch.key))

    def read(entry: Watched) -> bytes:
        return registry.attached_document(
            entry.model, entry.version, Digest.parse(entry.fingerprint)
        )

    runner = WatchRunner(
        watch_list(settings, database),
        bus,
        read,
        keys,
        token_from(watch.token_env),
        min_drop=watch.probe_min_drop,
    )
    return WatchScheduler(
        runner,
        check_seconds=watch.check_seconds,
        probe_seconds=watch.probe_seconds,
        probe_rows=watch.probe_rows,
        probe_budget=watch.probe_budget,
    )
