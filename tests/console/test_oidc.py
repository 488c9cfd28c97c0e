"""Console sign-in through a real OpenID Connect provider process (oidc-provider-mock,
a Flask/Authlib provider from PyPI, on a loopback port): code flow with PKCE, state and
nonce, groups to Cedar, refusal of another issuer's token."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from donjon.app import build
from donjon.config import load_settings
from donjon.server.factory import vault_app
from donjon.server.ui.oidc import Pending
from donjon.server.ui.wiring import ConsoleOptions
from tests.server.conftest import serve

pytestmark = [
    pytest.mark.integration,
    # the provider's own use of Authlib APIs that Authlib deprecates (not Donjon's code)
    pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated"),
    pytest.mark.filterwarnings("ignore:get_jwt_config.self, grant. is deprecated"),
]
oidc_mock = pytest.importorskip("oidc_provider_mock")

POLICY = """
@id("auditors-view")
permit(principal in Group::"auditors", action == Action::"ui.view", resource);
"""
CLIENT = "donjon-console"


@contextmanager
def provider(*users: Any) -> Iterator[str]:
    """An OIDC provider on a loopback port; its issuer URL."""
    with oidc_mock.run_server_in_thread(require_nonce=True, user_claims=users) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@contextmanager
def console(home: Path, issuer: str) -> Iterator[str]:
    settings = load_settings(
        home=home,
        vault={
            "console_oidc_issuer": issuer,
            "console_oidc_client_id": CLIENT,
            "console_oidc_client_secret": "console-secret",  # a confidential client, plus PKCE
        },
        authz={"jwt_issuer": issuer, "jwt_audience": CLIENT, "jwks_url": issuer + "/jwks"},
    )
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    donjon = build(settings)
    try:
        with serve(
            vault_app(settings, donjon, ConsoleOptions.from_settings(settings.vault))
        ) as url:
            yield url
    finally:
        donjon.close()


def sign_in(browser: httpx.Client, who: str) -> tuple[httpx.Response, dict[str, list[str]]]:
    """Start at the console, choose ``who`` at the provider, follow back to the callback."""
    start = browser.get("/ui/oidc/start")
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    chosen = httpx.post(authorize, data={"sub": who}, follow_redirects=False, timeout=30)
    assert chosen.status_code in (302, 303), chosen.text
    back = chosen.headers["location"]
    return browser.get(back.removeprefix(str(browser.base_url).rstrip("/"))), query


def test_the_code_flow_signs_in_a_group_member_and_cedar_decides(tmp_path: Path) -> None:
    olga = oidc_mock.User(sub="olga", claims={"groups": ["auditors"], "name": "Olga"})
    mallory = oidc_mock.User(sub="mallory", claims={"groups": ["outsiders"]})
    with provider(olga, mallory) as issuer, console(tmp_path / "home", issuer) as url:
        with httpx.Client(base_url=url, timeout=30) as browser:
            assert 'href="/ui/oidc/start"' in browser.get("/ui/login").text
            done, query = sign_in(browser, "olga")
            assert done.status_code == 200, done.text
            assert 'http-equiv="refresh"' in done.text
            assert query["code_challenge_method"] == ["S256"]
            assert query["client_id"] == [CLIENT]
            assert query["nonce"]
            assert query["state"]
            cookie = next(c for c in done.headers.get_list("set-cookie") if "donjon_session=" in c)
            assert "HttpOnly" in cookie
            assert "SameSite=strict" in cookie
            page = browser.get("/ui/events")
            assert page.status_code == 200
            assert ">olga<" in page.text  # the ID token's subject is the principal
        with httpx.Client(base_url=url, timeout=30) as other:
            refused, _ = sign_in(other, "mallory")
            assert refused.status_code == 200  # signed in, but no policy lets outsiders view
            assert other.get("/ui/events").status_code == 403


def test_the_challenge_is_the_verifiers_and_a_wrong_state_is_refused(tmp_path: Path) -> None:
    olga = oidc_mock.User(sub="olga", claims={"groups": ["auditors"]})
    with provider(olga) as issuer, console(tmp_path / "home", issuer) as url:
        with httpx.Client(base_url=url, timeout=30) as browser:
            start = browser.get("/ui/oidc/start")
            query = parse_qs(urlsplit(start.headers["location"]).query)
            pending = Pending.decode(browser.cookies["donjon_oidc"])
            assert pending is not None
            digest = hashlib.sha256(pending.verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            assert query["code_challenge"] == [challenge]
            chosen = httpx.post(start.headers["location"], data={"sub": "olga"}, timeout=30)
            code = parse_qs(urlsplit(chosen.headers["location"]).query)["code"][0]
            forged = browser.get("/ui/oidc/callback", params={"state": "x" * 43, "code": code})
            assert forged.status_code == 401
            assert "donjon_session" not in forged.headers.get("set-cookie", "")
        with httpx.Client(base_url=url, timeout=30) as stranger:  # no pending cookie at all
            lost = stranger.get("/ui/oidc/callback", params={"state": query["state"][0]})
            assert lost.status_code == 401


def test_a_token_from_another_issuer_is_refused(tmp_path: Path) -> None:
    olga = oidc_mock.User(sub="olga", claims={"groups": ["auditors"]})
    with provider(olga) as issuer, provider(olga) as elsewhere:
        with (
            console(tmp_path / "other", elsewhere) as other_url,
            httpx.Client(base_url=other_url, timeout=30) as browser,
        ):
            done, _ = sign_in(browser, "olga")
            assert done.status_code == 200
            foreign = browser.cookies["donjon_session"]
            assert browser.get("/ui/events").status_code == 200
        with console(tmp_path / "home", issuer) as url:
            token = _id_token(elsewhere, "olga")
            assert json.loads(_claims(token))["iss"] == elsewhere
            api = httpx.get(url + "/v1/whoami", headers={"Authorization": f"Bearer {token}"})
            assert api.status_code == 401  # the API trusts only its issuer
            with httpx.Client(base_url=url, timeout=30) as browser:
                form = browser.get("/ui/login")
                csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert csrf is not None
                pasted = browser.post("/ui/login", data={"csrf": csrf.group(1), "token": token})
                assert pasted.status_code == 401
                browser.cookies.set("donjon_session", foreign, path="/ui")
                assert browser.get("/ui/events").status_code == 303  # another server's session


def _id_token(issuer: str, who: str) -> str:
    """An ID token of ``issuer`` for ``who``, obtained as any client would."""
    authorize = httpx.get(
        issuer + "/oauth2/authorize",
        params={"response_type": "code", "client_id": CLIENT, "scope": "openid",
                "redirect_uri": "http://127.0.0.1/cb", "nonce": "n", "state": "s"},
        timeout=30,
    )  # fmt: skip
    assert authorize.status_code == 200
    chosen = httpx.post(str(authorize.request.url), data={"sub": who}, timeout=30)
    code = parse_qs(urlsplit(chosen.headers["location"]).query)["code"][0]
    tokens = httpx.post(
        issuer + "/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": CLIENT,
              "redirect_uri": "http://127.0.0.1/cb"},
        auth=(CLIENT, "any"),
        timeout=30,
    )  # fmt: skip
    assert tokens.status_code == 200, tokens.text
    token: str = tokens.json()["id_token"]
    return token


def _claims(token: str) -> str:
    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
