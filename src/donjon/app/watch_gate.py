"""Enrolment at promotion: the vault fingerprints a version when it enters a watched stage.

A promotion gate of the registry (it runs after the stage's other gates passed,
``after_others``): for a model listed in ``[[watch.models]]`` whose target
stage is one of its ``stages``, it enrols the version on its endpoint (held-out
rows from ``data``, boundary points), signs the fingerprint with the
``watch.key`` and attaches it to the version as the promoting principal (so the
attach is authorised and ledgered like any other), then adds it to the watch
list that ``donjon up`` checks.

Fail closed: an endpoint that does not answer, refuses the prober or answers
unreadably blocks the promotion (the gate fails, the version stays where it
was) and raises a DJ-WT-002 finding. A version promoted to a watched stage
therefore always has a signed fingerprint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.core.bus import EventBus
from donjon.errors import DonjonError
from donjon.registry import (
    Attachment,
    AttachmentKind,
    BlobReader,
    GateContext,
    GateResult,
    Stage,
    Version,
)

if TYPE_CHECKING:
    from donjon.config import Settings, WatchModelSettings
    from donjon.core.identity import Principal
    from donjon.provenance.dsse import Signer
    from donjon.storage.sql import Database
    from donjon.watch.watchlist import Imported, WatchList

GATE = "watch-enrolment"
OLD_FILE = Path("watch", "watched.json")  # where older versions kept a home's watch list

log = logging.getLogger(__name__)
Attach = Callable[["Principal", str, int, AttachmentKind, bytes], Attachment]


class WatchEnrolmentGate:
    """Enrols a version of a watched model as it enters one of its watched stages."""

    name = GATE
    after_others = True  # acts (queries, attaches): only once every other gate passed

    def __init__(
        self,
        models: Mapping[str, WatchModelSettings],
        signer: Signer,
        watchlist: WatchList,
        bus: EventBus,
        token: str | None = None,
    ) -> None:
        self.models = dict(models)
        self.signer = signer
        self.watchlist = watchlist
        self.bus = bus
        self.token = token
        self.attach: Attach | None = None  # the registry's, bound once it is built

    def stages(self) -> set[Stage]:
        return {Stage(s) for m in self.models.values() for s in m.stages}

    def check(
        self, version: Version, target: Stage, open_blob: BlobReader, context: GateContext
    ) -> GateResult:
        watched = self.models.get(version.name)
        if watched is None or target.value not in watched.stages:
            return GateResult(self.name, True, target.value, ("not a watched stage",))
        try:
            details = self._enrol(version, watched, context)
        except DonjonError as e:
            from donjon.watch.findings import failed_finding, finding_event

            reason = f"enrolment at {watched.endpoint} failed: {e}"
            finding = failed_finding(version.name, version.number, watched.endpoint, reason)
            self.bus.publish(finding_event(finding))
            return GateResult(self.name, False, target.value, (f"DJ-WT-002: {reason}",))
        reason = f"enrolled: {details['points']} points, fingerprint {details['fingerprint']}"
        return GateResult(self.name, True, target.value, (reason,), details)

    def _enrol(
        self, version: Version, watched: WatchModelSettings, context: GateContext
    ) -> dict[str, Any]:
        from donjon.app.watch import seal
        from donjon.app.watch_runs import http_model
        from donjon.errors import ConfigError
        from donjon.watch import enrol
        from donjon.watch.data import read_rows
        from donjon.watch.findings import activity
        from donjon.watch.watchlist import Watched

        if self.attach is None or context.principal is None:
            raise ConfigError("the watch gate is not bound to the registry")
        rows = read_rows(watched.data, watched.drop_columns)
        with http_model(
            watched.endpoint, version.name, watched.format, watched.output, self.token
        ) as target:
            fingerprint = enrol(
                target, rows, name=version.name, version=version.number,
                endpoint=watched.endpoint, request_format=watched.format,
            )  # fmt: skip
        attached = self.attach(
            context.principal, version.name, version.number, AttachmentKind.FINGERPRINT,
            seal(fingerprint, self.signer),
        )  # fmt: skip
        self.watchlist.enrolled(
            Watched(
                version.name,
                version.number,
                watched.endpoint,
                str(attached.digest),
                fingerprint.size,
                datetime.now(UTC).isoformat(),
            )
        )  # fmt: skip - as enrol_on_attach did: here its failure fails the gate
        details: dict[str, Any] = {
            "model": version.name,
            "version": version.number,
            "endpoint": watched.endpoint,
            "points": fingerprint.size,
            "tolerance": fingerprint.tolerance,
            "noise": fingerprint.noise,
            "enrol_queries": fingerprint.enrol_queries,
            "fingerprint": str(attached.digest),
        }
        message = f"{version.ref} enrolled at {watched.endpoint} on promotion"
        self.bus.publish(activity("enrol", message, **details))
        return details


def watch_gate(settings: Settings, bus: EventBus, database: Database) -> WatchEnrolmentGate | None:
    """The enrolment gate of ``[watch]``, or None when no model is watched.

    Watched models without a signing key (``watch.key``) are a ConfigError: the
    vault does not start rather than promote versions it cannot fingerprint.
    """
    from donjon.app.watch_runs import token_from
    from donjon.errors import ConfigError
    from donjon.provenance.keys import LocalKeyProvider, ProviderSigner

    watch = settings.watch
    if not watch.models:
        return None
    if watch.key is None:
        raise ConfigError("watch.models needs watch.key: the key that signs the fingerprints")
    names = [m.name for m in watch.models]
    if len(set(names)) != len(names):
        raise ConfigError("watch.models lists a model twice")
    for model in watch.models:
        if not model.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"watch.models: {model.name}'s endpoint must be an http(s) URL")
    home = settings.home
    models = {
        m.name: m.model_copy(update={"data": m.data if m.data.is_absolute() else home / m.data})
        for m in watch.models
    }
    passphrase = token_from(watch.passphrase_env) if watch.passphrase_env else None
    secret = passphrase.encode() if passphrase else None
    signer = ProviderSigner(LocalKeyProvider(settings.keys_dir, lambda _id: secret), watch.key)
    return WatchEnrolmentGate(
        models,
        signer,
        watch_list(settings, database),
        bus,
        token_from(watch.token_env),
    )


def watch_list(settings: Settings, database: Database) -> WatchList:
    """The vault's watch list, in ``database``, once this home's older file is imported."""
    from donjon.storage.watchlist import SqlWatchRows
    from donjon.watch.watchlist import WatchList

    watchlist = WatchList(SqlWatchRows(database))
    import_old_file(settings, watchlist)
    return watchlist


def import_old_file(settings: Settings, watchlist: WatchList) -> Imported | None:
    """Import ``$DONJON_HOME/watch/watched.json`` (the watch list of older versions) once.

    Entries already in the database are left as they are, so importing twice (or
    from two replicas sharing the home) adds nothing; the file is then renamed
    ``watched.json.imported`` and kept. Logs what it did; None when there is no file.
    """
    path = settings.home / OLD_FILE
    if not path.exists():
        return None
    from donjon.watch.watchlist import read_json_file

    done = watchlist.import_entries(read_json_file(path), str(path))
    with suppress(FileNotFoundError):  # another replica sharing this home renamed it first
        os.replace(path, path.with_name(f"{path.name}.imported"))
    log.warning("watch list: %s (the file is kept as %s.imported)", done, path.name)
    return done


def enrol_on_attach(watchlist: WatchList) -> Callable[[Version, Attachment], None]:
    """Add a model version to the watch list when a fingerprint is attached to it, whoever
    attached it (``donjon watch enrol`` does over the vault's HTTP API): the vault's database
    then holds the entry, whatever database that client's settings name. The fingerprint's
    summary (checked well formed at attach) gives the endpoint and the points; its signature
    is checked by every check, as before."""

    def enrolled(version: Version, attachment: Attachment) -> None:
        from donjon.watch.watchlist import Watched

        summary = attachment.summary
        if attachment.kind is not AttachmentKind.FINGERPRINT or "endpoint" not in summary:
            return
        watchlist.enrolled(
            Watched(version.name, version.number, str(summary["endpoint"]),
                    str(attachment.digest), int(summary["points"]), datetime.now(UTC).isoformat())
        )  # fmt: skip

    return enrolled
