"""OIDC / JWT bearer tokens against a JWKS file and a JWKS URL served on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from donjon.authz import CredentialAuthenticator, JwksSource, JwtAuthenticator
from donjon.core import SecurityEvent
from donjon.errors import AuthenticationError, ConfigError
from tests.support.threads import serving

ISSUER = "https://idp.example.test"
AUDIENCE = "donjon"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        jwt.algorithms.get_default_algorithms()[
            "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        ].to_jwk(key.public_key())
    )
    data["kid"] = kid
    return data


JWKS = {"keys": [jwk(EC_KEY, "ec-1"), jwk(RSA_KEY, "rsa-1")]}


def token(key: Any = EC_KEY, kid: str | None = "ec-1", alg: str = "ES256", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "groups": ["analysts"],
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def forged_payload() -> str:
    """alice's signed token with bob's claims pasted in."""
    header, _, signature = token().split(".")
    return ".".join((header, token(sub="bob").split(".")[1], signature))


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(JWKS))
    return path


@pytest.fixture
def checker(jwks_file: Path) -> JwtAuthenticator:
    return JwtAuthenticator(
        JwksSource(path=jwks_file), issuer=ISSUER, audience=AUDIENCE, algorithms=["ES256", "RS256"]
    )


def test_valid_tokens_become_principals(checker: JwtAuthenticator) -> None:
    principal = checker.authenticate(token(name="Alice", scope="openid dataset.read"))
    assert (principal.id, principal.groups, principal.display_name) == (
        "alice",
        ("analysts",),
        "Alice",
    )
    assert principal.scopes == frozenset({"dataset.read"})
    rsa_principal = checker.authenticate(token(RSA_KEY, "rsa-1", "RS256", scope="openid"))
    assert rsa_principal.scopes is None  # no Donjon scope: policies alone decide


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: token(exp=int(time.time()) - 120), "JWT expired"),
        (lambda: token(aud="someone-else"), "audience"),
        (lambda: token(iss="https://evil.test"), "issuer"),
        (lambda: token(OTHER_KEY), "signature does not verify"),
        (lambda: token(exp=None), "'exp'"),
        (lambda: token(sub=None), "'sub'"),
        (lambda: token(kid="nope"), "not in the JWKS"),
        (lambda: token(kid=None), "several keys"),
        (lambda: token(sub="../x"), "not a usable id"),
        (lambda: token(groups="admins"), "list of names"),
        (lambda: jwt.encode({"sub": "alice"}, None, algorithm="none"), "'none' is not allowed"),
        (lambda: jwt.encode({"sub": "a"}, b"k" * 32, algorithm="HS256"), "'HS256' is not allowed"),
        (lambda: "not.a.jwt", "malformed JWT"),
        (lambda: forged_payload(), "signature does not verify"),
    ],
)
def test_bad_jwts_are_refused_clearly(checker: JwtAuthenticator, make: Any, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        checker.authenticate(make())


def test_the_authenticator_routes_jwts_and_records_attempts(checker: JwtAuthenticator) -> None:
    events: list[SecurityEvent] = []
    auth = CredentialAuthenticator(None, checker, publish=events.append)
    good = token()
    assert auth.authenticate(f"Bearer {good}").id == "alice"
    with pytest.raises(AuthenticationError, match="API tokens are not accepted"):
        auth.authenticate("djt_" + "a" * 43)
    with pytest.raises(AuthenticationError, match="expired"):
        auth.authenticate(token(exp=int(time.time()) - 120))
    assert [e.outcome.value for e in events] == ["success", "failure", "failure"]
    assert all(good not in repr(e.to_dict()) for e in events)


def test_bad_configuration_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="asymmetric"):
        JwtAuthenticator(
            JwksSource(path=tmp_path / "x"), issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"]
        )
    with pytest.raises(ConfigError, match="exactly one"):
        JwksSource()
    with pytest.raises(ConfigError, match="must be https"):
        JwksSource(url="http://idp.example.test/jwks.json")
    (tmp_path / "bad.json").write_text("{not json")
    checker = JwtAuthenticator(
        JwksSource(path=tmp_path / "bad.json"),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["ES256"],
    )
    with pytest.raises(ConfigError, match="cannot read JWKS"):
        checker.authenticate(token())
    events: list[SecurityEvent] = []
    guarded = CredentialAuthenticator(None, checker, publish=events.append)
    with pytest.raises(AuthenticationError, match="cannot check the credential right now"):
        guarded.authenticate(token())
    assert events[-1].outcome.value == "failure"


class _Jwks(BaseHTTPRequestHandler):
    served: dict[str, Any] = JWKS
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(self.served).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)) as url:
        yield f"{url}/jwks.json"


def test_jwks_from_a_url_with_key_rotation(jwks_url: str) -> None:
    _Jwks.served, _Jwks.hits = {"keys": [jwk(EC_KEY, "ec-1")]}, 0
    source = JwksSource(url=jwks_url, min_refresh=0.0)
    checker = JwtAuthenticator(source, issuer=ISSUER, audience=AUDIENCE, algorithms=["ES256"])
    assert checker.authenticate(token()).id == "alice"
    assert checker.authenticate(token()).id == "alice"
    assert _Jwks.hits == 1  # cached
    _Jwks.served = {"keys": [jwk(EC_KEY, "ec-1"), jwk(OTHER_KEY, "ec-2")]}
    assert checker.authenticate(token(OTHER_KEY, "ec-2")).id == "alice"  # refreshed once
    assert _Jwks.hits == 2
