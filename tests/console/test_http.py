"""The console over plain HTTP (no browser): headers, cookies, login CSRF, revocation, ledger."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from donjon.app import build, build_identity
from donjon.config import load_settings
from donjon.server.factory import vault_app
from donjon.server.ui.wiring import ConsoleOptions
from tests.console.site import POLICY, Site, log_in

pytestmark = pytest.mark.integration


@contextmanager
def logged_in(site: Site, who: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        log_in(client, site.tokens[who])
        yield client


def ledgered(site: Site, start: int) -> list[dict[str, object]]:
    assert site.donjon.ledger is not None
    out = io.StringIO()
    site.donjon.ledger.export(out, start)
    return [json.loads(line)["entry"]["event"] for line in out.getvalue().splitlines()]


def test_every_console_response_carries_the_security_headers(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=30) as anonymous:
        for path in ("/ui/login", "/ui/static/console.css", "/ui/posture"):
            response = anonymous.get(path)
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp, path
            assert "script-src 'self'" in csp, path
            assert "'unsafe-inline'" not in csp, path
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["x-content-type-options"] == "nosniff", path
        assert "content-security-policy" not in anonymous.get("/health").headers  # API untouched


def test_the_session_cookie_is_httponly_strict_and_scoped(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        token = site.tokens["vic"]
        done = client.post("/ui/login", data={"csrf": csrf.group(1), "token": token})
    cookie = next(c for c in done.headers.get_list("set-cookie") if "donjon_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert site.tokens["vic"] not in cookie
    assert "Max-Age=900" in cookie


def test_login_needs_its_csrf_cookie(site: Site) -> None:
    refused = httpx.post(
        f"{site.url}/ui/login", data={"csrf": "x", "token": site.tokens["vic"]}, timeout=30
    )
    assert refused.status_code == 403
    assert "donjon_session" not in refused.headers.get("set-cookie", "")


def test_a_revoked_token_ends_its_session_at_once(site: Site) -> None:
    settings = site.donjon.settings
    identity = build_identity(settings, site.donjon.bus)
    secret = identity.issue_token("vic", description="to revoke").secret
    site.tokens["vic-short"] = secret
    with logged_in(site, "vic-short") as client:
        assert client.get("/ui/events").status_code == 200
        token_id = next(t.id for t in identity.tokens("vic") if t.description == "to revoke")
        identity.revoke_token(token_id)
        after = client.get("/ui/events")
    assert after.status_code == 303
    assert after.headers["location"] == "/ui/login"


def test_page_views_are_authorised_as_ui_view_and_ledgered(site: Site) -> None:
    assert site.donjon.ledger is not None
    start = site.donjon.ledger.head()[0] + 1
    with logged_in(site, "vic") as viewer, logged_in(site, "dana") as outsider:
        assert viewer.get("/ui/posture").status_code == 200
        assert outsider.get("/ui/posture").status_code == 403
    views = [e for e in ledgered(site, start) if e["action"] == "ui.view"]
    seen = {(e["principal"]["id"], e["outcome"]) for e in views}  # type: ignore[index]
    assert ("vic", "success") in seen
    assert ("dana", "failure") in seen
    for event in views:
        assert event["decision"]["resource"] == "ui/posture"  # type: ignore[index]


def test_the_session_lifetime_and_poll_period_come_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, vault={"console_session_seconds": 120, "console_poll_seconds": 5}
    )
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    with build(settings) as donjon:
        identity = build_identity(settings, donjon.bus)
        identity.create_user("vic")
        token = identity.issue_token("vic").secret
        with TestClient(vault_app(settings, donjon), base_url="http://testserver") as client:
            form = client.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            done = client.post(
                "/ui/login",
                data={"csrf": csrf.group(1), "token": token},
                follow_redirects=False,
            )
            assert done.status_code == 303
            assert "Max-Age=120" in done.headers["set-cookie"]
            page = client.get("/ui/events")
            assert page.status_code == 200
            assert 'data-period="5000"' in page.text


def test_a_crafted_notice_is_not_shown(site: Site) -> None:
    with logged_in(site, "vic") as client:
        crafted = client.get("/ui/datasets", params={"notice": "Session expired: mail your token"})
        assert crafted.status_code == 200
        assert "mail your token" not in crafted.text
        genuine = client.get("/ui/datasets", params={"notice": "released digits@2"})
        assert "released digits@2" in genuine.text


def test_a_form_with_too_many_fields_is_refused(site: Site) -> None:
    with logged_in(site, "ada") as client:
        fields = "&".join(f"f{i}=x" for i in range(50))
        refused = client.post(
            "/ui/quarantine/model/downloaded-clf/1",
            content=fields,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert refused.status_code == 403


def test_background_polls_are_not_ledgered_but_views_and_refusals_are(site: Site) -> None:
    assert site.donjon.ledger is not None
    start = site.donjon.ledger.head()[0] + 1
    refresh = {"X-Donjon-Refresh": "1"}
    with logged_in(site, "vic") as viewer, logged_in(site, "dana") as outsider:
        assert viewer.get("/ui/audit", headers=refresh).status_code == 200  # never seen: kept
        assert viewer.get("/ui/events").status_code == 200
        for _ in range(5):
            assert viewer.get("/ui/pulse").status_code == 200
            assert viewer.get("/ui/events", headers=refresh).status_code == 200
        assert viewer.get("/ui/events").status_code == 200  # a navigation: kept
        for _ in range(3):
            assert outsider.get("/ui/pulse").status_code == 403
            assert outsider.get("/ui/events", headers=refresh).status_code == 403
    views = [e for e in ledgered(site, start) if e["action"] == "ui.view"]
    seen = [(e["principal"]["id"], e["decision"]["resource"]) for e in views]  # type: ignore[index]
    assert seen.count(("vic", "ui/audit")) == 1
    assert seen.count(("vic", "ui/events")) == 2  # two navigations, no refresh
    assert seen.count(("vic", "ui/pulse")) == 1  # the first poll of the session only
    assert seen.count(("dana", "ui/pulse")) == 3  # every refusal
    assert seen.count(("dana", "ui/events")) == 3


def fired(page: str) -> dict[str, str]:
    rows = re.findall(
        r"<tr[^>]*><td>(Donjon - [^<]+)</td>.*?</td><td>[a-z]+</td>\s*<td>([^<]+)</td>", page
    )
    return dict(rows)


def test_the_audit_page_shows_which_sigma_rules_fired(site: Site) -> None:
    with logged_in(site, "vic") as viewer:
        page = viewer.get("/ui/audit").text
        before = fired(page)
        assert len(before) == 10  # every shipped rule, correlations included
        assert int(before["Donjon - Malicious Model Artifact Pushed"]) >= 1  # the pickle
        assert int(before["Donjon - Access Denied"]) >= 1  # dana's refused promotion
        assert before["Donjon - Audit Ledger Verification Failed"] == "0"
        for _ in range(3):
            site.gateway_finding("DJ-GW-003", "scraper-7", "digits-clf")  # extraction
        after = fired(viewer.get("/ui/audit").text)
    extraction = "Donjon - Model Extraction Finding"
    assert int(after[extraction]) == int(before[extraction]) + 3
    repeated = "Donjon - Repeated Model Extraction Findings From One Principal"
    assert int(after[repeated]) >= int(before[repeated]) + 1


def test_the_gateway_page_shows_the_watch_data(site: Site) -> None:
    with logged_in(site, "vic") as viewer:
        page = viewer.get("/ui/gateway").text
    watch = page.split('id="h-watch"')[1]
    assert "No watch data" not in watch
    row = re.search(r"<td>digits-clf@1</td>.*?</tr>", watch, re.S)
    assert row is not None
    assert "5 (2 not passed)" in row.group(0)  # three passed, one swap, one failure
    assert "could not run" in row.group(0)  # the newest check
    assert "Robustness: median perturbation" in watch
    assert "last 0.22" in watch  # the newest probe
    assert "digits-clf input: last 0.41" in watch
    assert "digits-clf classes: last 0.22" in watch
    assert watch.count("<polyline") == 3  # robustness, input PSI, class PSI


def test_without_watch_data_the_section_says_so(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    with build(settings) as donjon:
        identity = build_identity(settings, donjon.bus)
        identity.create_user("vic")
        token = identity.issue_token("vic").secret
        options = ConsoleOptions(warm=False)
        with TestClient(
            vault_app(settings, donjon, options), base_url="http://testserver"
        ) as client:
            log_in(client, token)
            page = client.get("/ui/gateway")
    assert page.status_code == 200
    assert 'id="no-watch"' in page.text
    assert "<polyline" not in page.text
