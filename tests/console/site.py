"""A vault served as ``donjon server`` serves it (console included), with quickstart-like data.

Identities, tokens and the Cedar policy in the SQL store and the policy file; the
signed ledger as the bus's journal; data pushed through the HTTP API: a clean
dataset, a quarantined one, a clean model built from it and promoted to staging,
and a "downloaded" pickle whose ``os.system`` payload the push-time scan catches.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from donjon.app import Donjon, build, build_identity
from donjon.catalog import rule_registry
from donjon.config import load_settings
from donjon.core.clock import ManualClock
from donjon.core.events import SecurityEvent
from donjon.core.findings import Finding, Subject
from donjon.core.identity import Principal
from donjon.provenance import LocalKeyProvider, ProviderSigner, sign_model
from donjon.provenance.attest import training_run
from donjon.server.factory import vault_app
from donjon.server.ui.wiring import ConsoleOptions
from tests.server.conftest import serve

POLICY = """
@id("admin-all")
permit(principal == User::"ada", action, resource);

@id("auditor-views-and-reads")
permit(principal == User::"vic",
       action in [Action::"ui.view", Action::"dataset.read", Action::"dataset.list",
                  Action::"model.read", Action::"model.list"],
       resource);

@id("scientist-pushes")
permit(principal == User::"dana",
       action in [Action::"dataset.read", Action::"dataset.list", Action::"dataset.write",
                  Action::"model.read", Action::"model.list", Action::"model.write"],
       resource);

@id("scientist-promotes-to-staging")
permit(principal == User::"dana", action == Action::"model.promote", resource)
when { context has stage && context.stage == "staging" };
"""
# ada: administrator (everything, the console included); vic: a read-only viewer;
# dana: API only (no ui.view), so the console shows her nothing.
USERS = ("ada", "vic", "dana")
DIGITS_V1 = b"label,pixels\n" * 50
PICKLE_PAYLOAD = b"cos\nsystem\n(S'echo pwned'\ntR."  # protocol 0: never loaded


def wine_versions(folder: Path) -> tuple[Path, Path]:
    """Two versions of scikit-learn's wine table (with an ``id`` column): the second
    relabels rows 0-5 (class 0 -> 2), drops rows 10-12, changes row 20's features and
    adds four exact copies of rows 30-33 with new ids."""
    import pandas as pd
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.rename(columns={"target": "label"})
    frame.insert(0, "id", [f"w{i:03d}" for i in range(len(frame))])
    old = folder / "wine-v1.csv"
    frame.to_csv(old, index=False)
    new_frame = frame.copy()
    new_frame.loc[0:5, "label"] = 2
    new_frame.loc[20, "alcohol"] = 99.0
    copies = frame.iloc[30:34].copy()
    copies["id"] = [f"x{i}" for i in range(4)]
    new_frame = pd.concat([new_frame.drop(index=[10, 11, 12]), copies], ignore_index=True)
    new = folder / "wine-v2.csv"
    new_frame.to_csv(new, index=False)
    return old, new


def safetensors(values: int = 4) -> bytes:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}
    ).encode()
    return struct.pack("<Q", len(header)) + header + struct.pack(f"<{values}f", *range(values))


def log_in(client: httpx.Client, token: str) -> None:
    """Log ``client`` in to the console at its base URL, through the login form."""
    page = client.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    done = client.post(
        "/ui/login", data={"csrf": csrf.group(1), "token": token}, follow_redirects=False
    )
    assert done.status_code == 303, done.text


@dataclass
class Site:
    url: str
    app: FastAPI
    donjon: Donjon
    tokens: dict[str, str]
    clock: ManualClock
    home: Path

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def push(self, who: str, kind: str, name: str, data: bytes, **headers: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/v1/{kind}s/{name}/versions",
            content=data,
            headers={**self.auth(who), **headers},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def attach(self, who: str, kind: str, version: str, what: str, document: Any) -> Any:
        """Attach ``document`` (JSON) as a ``what`` document of ``kind`` version ``version``
        (``NAME/versions/N``); returns the attachment record."""
        response = httpx.post(
            f"{self.url}/v1/{kind}s/{version}/attestations",
            params={"kind": what},
            content=json.dumps(document, default=str).encode(),
            headers=self.auth(who),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def call(self, who: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(method, self.url + path, json=body, headers=self.auth(who), timeout=30)

    def gateway_finding(self, rule_id: str, principal: str, model: str) -> None:
        """A blocking detection as the gateway's pipeline records it."""
        finding = Finding(
            rule=rule_registry().get(rule_id),
            subject=Subject(model=model, principal=principal),
            message=f"{principal} blocked by {rule_id}",
            evidence={"detector": "test", "action": "block"},
        )
        self.donjon.bus.publish(
            SecurityEvent.of_finding(finding, "gateway", principal=Principal(principal))
        )


def signed_and_attested(home: Path, model: Path) -> dict[str, Path]:
    """The model's signature (OpenSSF Model Signing) and its training run's SLSA provenance."""
    keys = LocalKeyProvider(home / "release-keys")
    keys.generate("release")
    signer = ProviderSigner(keys, "release")
    signature = sign_model(model, signer, model.with_name("model.sig")).signature
    data = home / "digits.csv"
    data.write_bytes(DIGITS_V1)
    provenance = model.with_name("model.provenance.json")
    with training_run(
        "digits-clf", "https://ci.example/trainer", signer=signer, output=provenance, workdir=home
    ) as run:
        run.input_dataset(data, name="digits")
        run.metric("accuracy", 0.96)
        run.output_model(model)
    return {"signature": signature, "provenance": provenance}


def populate(site: Site) -> None:
    site.push("dana", "dataset", "digits", DIGITS_V1)
    site.push("dana", "dataset", "digits", b"label,pixels\n" * 60)
    site.push("dana", "dataset", "scraped/batch", b"scraped\n" * 10)
    for name, number in (("digits", 2), ("scraped/batch", 1)):
        reason = {"reason": "flagged by donjon data check: label issues"}
        response = site.call(
            "ada", "POST", f"/v1/datasets/{name}/versions/{number}/quarantine", reason
        )
        assert response.status_code == 200, response.text
    model = site.home / "model.safetensors"
    model.write_bytes(safetensors())
    site.push(
        "dana",
        "model",
        "digits-clf",
        model.read_bytes(),
        **{"X-Donjon-Lineage": "digits@1", "X-Donjon-Filename": "model.safetensors"},
    )
    for kind, document in signed_and_attested(site.home, model).items():
        attached = httpx.post(
            f"{site.url}/v1/models/digits-clf/versions/1/attestations",
            params={"kind": kind},
            content=document.read_bytes(),
            headers=site.auth("dana"),
            timeout=30,
        )
        assert attached.status_code == 201, attached.text
    promoted = site.call(
        "dana", "POST", "/v1/models/digits-clf/versions/1/promote", {"stage": "staging"}
    )
    assert promoted.status_code == 200, promoted.text
    refused = site.call(
        "dana", "POST", "/v1/models/digits-clf/versions/1/promote", {"stage": "prod"}
    )
    assert refused.status_code == 403, refused.text
    pickled = site.push(
        "dana", "model", "downloaded-clf", PICKLE_PAYLOAD, **{"X-Donjon-Filename": "model.pkl"}
    )
    assert pickled["status"] == "quarantined", pickled
    site.gateway_finding("DJ-GW-001", "mallory", "digits-clf")
    site.gateway_finding("DJ-GW-002", "eve", "digits-clf")
    documented_wine(site)
    watched(site)


def watched(site: Site) -> None:
    """What ``donjon watch`` records for digits-clf@1 over a day: its enrolment, checks
    (three passed, one that found another model, one that could not run), robustness
    probes and drift buckets, made by the watch's own event constructors."""
    from dataclasses import replace
    from datetime import timedelta

    from donjon.watch.findings import activity, changed_finding, failed_finding, finding_event
    from donjon.watch.verdict import CheckResult

    start = site.clock.now() - timedelta(hours=20)
    url = "http://127.0.0.1:8080/predict"
    same = CheckResult("digits-clf", 1, url, 200, (), 0, 0.0, 1.0, 1e-3, 200)
    swapped = replace(same, changed=tuple(range(37)), changed_boundary=30, p_value=1e-40)
    events = [activity("enrol", "digits-clf@1 enrolled", model="digits-clf", version=1,
                       endpoint=url, points=200)]  # fmt: skip
    events += [activity("check", "digits-clf@1 answers as enrolled", **same.to_dict())] * 3
    events.append(finding_event(changed_finding(swapped)))
    events.append(finding_event(failed_finding("digits-clf", 1, url, "connection refused")))
    for value in (0.31, 0.29, 0.22):
        events.append(activity("probe", "probed", model="digits-clf", version=1,
                               robustness=value, robustness_low=value - 0.05))  # fmt: skip
    for psi, class_psi in ((0.02, None), (0.03, 0.01), (0.41, 0.22)):
        events.append(activity("drift", "drift", model="digits-clf", psi=psi,
                               psi_feature=3, class_psi=class_psi))  # fmt: skip
    for i, event in enumerate(events):
        site.donjon.bus.publish(replace(event, time=start + timedelta(hours=i)))


def documented_wine(site: Site) -> None:
    """Dataset ``wine``: two versions, each with its manifest, the second with a check
    report: the documents ``donjon datasets push`` and ``donjon data check --push`` attach."""
    from donjon.data.checks import check
    from donjon.data.documents import check_document, file_digest, manifest_document_of

    for number, path in enumerate(wine_versions(site.home), 1):
        site.push("dana", "dataset", "wine", path.read_bytes())
        document = manifest_document_of(path, label_column="label", id_column="id")
        site.attach("dana", "dataset", f"wine/versions/{number}", "manifest", document)
    report = check(path, label_column="label", exclude=("id",), detectors=["near_duplicates"])
    site.attach(
        "dana", "dataset", "wine/versions/2", "check",
        check_document(report.to_dict(), file_digest(path)),
    )  # fmt: skip


@contextmanager
def console_site(home: Path, *, session_ttl: float = 900.0) -> Iterator[Site]:
    """The vault with its console on 127.0.0.1, populated; stopped and closed after."""
    settings = load_settings(home=home)
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    donjon = build(settings)
    try:
        identity = build_identity(settings, donjon.bus)
        tokens = {}
        for who in USERS:
            identity.create_user(who)
            tokens[who] = identity.issue_token(who, description="console test").secret
        clock = ManualClock(datetime.now(UTC))
        options = ConsoleOptions(session_ttl=session_ttl, poll_seconds=0.5, clock=clock)
        app = vault_app(settings, donjon, options)
        donjon.start_delivery()  # the outbox relay, as the server's startup runs it
        with serve(app) as url:
            site = Site(url, app, donjon, tokens, clock, home)
            populate(site)
            yield site
    finally:
        donjon.close()
