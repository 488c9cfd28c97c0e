"""The console in Chromium: pages, access, the quarantine queue, CSRF, expiry, live refresh.

One server and one browser for the module; each test opens its own context
(its own cookies). The order matters where noted: the queue tests change data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.site import Site

pytestmark = pytest.mark.integration

PAGES = (
    "posture",
    "models",
    "models/digits-clf",
    "datasets",
    "datasets/wine",  # manifests, the diff of versions 1 and 2, the check report of 2
    "gateway",
    "events",
    "events/1",  # one ledger entry, in OCSF
    "audit",
)
SERIOUS = {"serious", "critical"}


class Tab:
    """One browser context and page, with the console messages and errors it saw."""

    def __init__(self, browser: Any, site: Site) -> None:
        self.site = site
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.requests: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))

    def go(self, path: str) -> Any:
        return self.page.goto(f"{self.site.url}/ui/{path}")

    def login(self, who: str) -> None:
        self.go("login")
        self.page.fill("#token", self.site.tokens[who])
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r"/ui/posture$"))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:
    opened = Tab(browser, site)
    try:
        yield opened
    finally:
        opened.close()


def version_status(site: Site, kind: str, ref: str) -> str:
    name, number = ref.rsplit("@", 1)
    found = site.call("ada", "GET", f"/v1/{kind}s/{name}/versions/{number}")
    assert found.status_code == 200, found.text
    status: str = found.json()["status"]
    return status


def test_every_page_renders_without_errors_and_passes_axe(
    tab: Tab, site: Site, shots: Path
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    tab.login("ada")
    for path in PAGES:
        response = tab.go(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert tab.page.locator("h1").count() == 1, path
        result = axe.run(tab.page)
        serious = [
            f"{v['id']}: {v['help']}"
            for v in result.response["violations"]
            if v.get("impact") in SERIOUS
        ]
        assert serious == [], (path, serious)
        tab.page.screenshot(path=str(shots / f"{path.replace('/', '-')}.png"), full_page=True)
    assert tab.errors == []
    assert all(url.startswith(site.url) for url in tab.requests), tab.requests
    tab.go("posture")
    text = tab.page.inner_text("main")
    assert "digits-clf@1" in text  # staging, with its gates
    assert "downloaded-clf@1" in text
    tab.go("gateway")
    gateway = tab.page.inner_text("main")
    assert "mallory" in gateway  # top principals by detections, with their rules
    assert "DJ-GW-002" in gateway
    tab.go("events/1")
    assert '"class_uid"' in tab.page.inner_text("main")
    alarm = tab.page.locator("#alarm")
    assert alarm.is_visible()
    assert "high-severity finding" in alarm.inner_text()


def test_unauthenticated_and_unauthorised_users_see_nothing(tab: Tab, site: Site) -> None:
    tab.go("posture")
    assert tab.page.url.endswith("/ui/login")  # no session: the login page
    tab.page.fill("#token", "djt_" + "x" * 43)
    tab.page.click("button[type=submit]")
    assert "Invalid credentials" in tab.page.inner_text("main")
    assert not [c for c in tab.context.cookies() if c["name"] == "donjon_session"]
    tab.login("dana")  # a valid token, but no policy grants her ui.view
    for path in PAGES:
        response = tab.go(path)
        assert response.status == 403, path
        text = tab.page.inner_text("body")
        assert "Not allowed" in text
        assert "digits" not in text.replace("ui/models/digits-clf", "")
    pulse = tab.page.request.get(f"{site.url}/ui/pulse")
    assert pulse.status == 403


def test_read_only_user_sees_the_queue_but_cannot_act(tab: Tab, site: Site) -> None:
    tab.login("vic")
    tab.go("datasets")
    row = tab.page.locator("tr", has_text="digits@2")
    row.locator("input[name=reason]").fill("looks fine to me")
    row.locator("button[value=approve]").click()
    assert "Not allowed" in tab.page.inner_text("main")
    assert version_status(site, "dataset", "digits@2") == "quarantined"


def test_approve_and_reject_in_the_quarantine_queue(tab: Tab, site: Site) -> None:
    tab.login("ada")
    tab.go("datasets")
    before = site.donjon.ledger.head()[0] if site.donjon.ledger else 0
    row = tab.page.locator("tr", has_text="digits@2")
    row.locator("input[name=reason]").fill("label issues reviewed: false positives")
    row.locator("button[value=approve]").click()
    assert "released digits@2" in tab.page.inner_text("main")
    row = tab.page.locator("tr", has_text="scraped/batch@1")
    row.locator("input[name=reason]").fill("unknown source")
    row.locator("button[value=reject]").click()
    assert "rejected scraped/batch@1" in tab.page.inner_text("main")
    assert version_status(site, "dataset", "digits@2") == "active"
    assert version_status(site, "dataset", "scraped/batch@1") == "tombstoned"
    assert tab.page.locator("tr", has_text="digits@2").locator("form").count() == 0
    assert site.donjon.ledger is not None
    bodies = [body for _s, _p, _h, body in site.donjon.ledger.entries(before + 1)]
    assert any("label issues reviewed: false positives" in b and '"ada"' in b for b in bodies)
    assert any("unknown source" in b for b in bodies)


def test_csrf_and_origin_are_enforced(tab: Tab, site: Site) -> None:
    tab.login("ada")
    target = f"{site.url}/ui/quarantine/model/downloaded-clf/1"
    form = {"reason": "no token", "verdict": "approve"}
    forged = tab.page.request.post(target, form={**form, "csrf": "guessed"})
    assert forged.status == 403
    missing = tab.page.request.post(target, form=form)
    assert missing.status == 403
    tab.go("datasets")
    token = tab.page.locator("input[name=csrf]").first.get_attribute("value")
    other_origin = tab.page.request.post(
        target, form={**form, "csrf": token}, headers={"Origin": "http://evil.example"}
    )
    assert other_origin.status == 403
    assert version_status(site, "model", "downloaded-clf@1") == "quarantined"
    # outside the browser: a session cookie without the session's token does nothing
    cookies = {c["name"]: c["value"] for c in tab.context.cookies()}
    plain = httpx.post(target, data=form, cookies=cookies, follow_redirects=False)
    assert plain.status_code == 403
    assert version_status(site, "model", "downloaded-clf@1") == "quarantined"


def test_session_expires(tab: Tab, site: Site) -> None:
    tab.login("vic")
    assert tab.go("events").status == 200
    ttl = site.app.state.console.sessions.ttl.total_seconds()
    site.clock.advance(ttl + 1)
    tab.go("events")
    assert tab.page.url.endswith("/ui/login")


def test_pages_refresh_live_and_raise_the_alarm(tab: Tab, site: Site) -> None:
    tab.login("vic")
    tab.go("events")
    tab.page.evaluate("window.notReloaded = true")
    site.gateway_finding("DJ-GW-001", "trudy", "digits-clf")
    tab.page.locator("main", has_text="trudy blocked by DJ-GW-001").wait_for(timeout=15_000)
    assert tab.page.evaluate("window.notReloaded") is True  # swapped in, not reloaded
    assert "trudy" in tab.page.inner_text("#alarm")
    assert tab.errors == []


def test_the_verify_button_verifies_the_ledger(tab: Tab, site: Site) -> None:
    tab.login("ada")
    tab.go("audit")
    tab.page.click("text=Verify the ledger now")
    verdict = tab.page.inner_text("main")
    assert "Verdict: intact" in verdict
    assert site.donjon.ledger is not None
    entries = site.donjon.ledger.head()[0]
    checked = int(re.search(r"Checked (\d+) entries", verdict).group(1))  # type: ignore[union-attr]
    assert 0 < checked <= entries
    tab.go("audit")  # the verification is itself recorded
    assert "ledger verified" in tab.page.inner_text("main")


def test_the_model_page_offers_its_ml_bom(tab: Tab, site: Site) -> None:
    tab.login("vic")
    tab.go("models/digits-clf")
    text = tab.page.inner_text("main")
    assert "signature" in text
    assert "provenance" in text
    with tab.page.expect_download() as download:
        tab.page.click("text=Download the ML-BOM of version 1")
    bom = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.6"
    model = next(c for c in bom["components"] if c["type"] == "machine-learning-model")
    assert model["version"] == "1"
    datasets = [c["name"] for c in bom["components"] if c["type"] == "data"]
    assert datasets == ["digits"]
