"""One implementation of tokens, key files and JWTs for the vault and the gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.authz.jwt import JwtAuthenticator as VaultJwt
from donjon.authz.tokens import hash_token, new_token
from donjon.credentials import JwksSource, JwtVerifier, KeyFile, hash_secret, new_api_key
from donjon.errors import AuthenticationError, ConfigError
from donjon.gateway.auth import ApiKeyAuthenticator
from donjon.gateway.auth import JwtAuthenticator as GatewayJwt
from donjon.gateway.build import build_authenticator
from donjon.gateway.settings import GatewaySettings
from tests.support.threads import serving

KEY = ec.generate_private_key(ec.SECP256R1())


def jwks() -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    return {"keys": [jwk]}


def token(**claims: Any) -> str:
    body = {"sub": "alice", "aud": "donjon", "iss": "idp", "exp": time.time() + 60}
    return jwt.encode({**body, **claims}, KEY, "ES256", headers={"kid": "k1"})


class _Jwks(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = json.dumps(jwks()).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)) as url:
        yield f"{url}/jwks.json"


def test_the_vault_and_the_gateway_verify_with_one_implementation(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()))
    vault = VaultJwt(JwksSource(path=path), issuer="idp", audience="donjon", algorithms=["ES256"])
    gateway = GatewayJwt.from_file(path, audience="donjon", issuer="idp")
    assert isinstance(vault, JwtVerifier)
    assert isinstance(gateway._verifier, JwtVerifier)
    scoped = token(scope="openid model.predict", groups=["ml"])
    assert vault.authenticate(scoped) == gateway.verify(scoped)  # same principal, same scopes
    assert gateway.verify(scoped).scopes == frozenset({"model.predict"})
    for bad in (token(exp=time.time() - 3600), token(aud="other"), token(sub="bad id")):
        with pytest.raises(AuthenticationError):
            vault.authenticate(bad)
        with pytest.raises(AuthenticationError):
            gateway.verify(bad)


def test_the_gateway_fetches_a_jwks_url_with_pyjwkclient(tmp_path: Path, jwks_url: str) -> None:
    _Jwks.hits = 0
    settings = GatewaySettings.model_validate(
        {
            "auth": {"jwks_url": jwks_url, "jwt_audience": "donjon", "jwt_issuer": "idp"},
            "models": [{"name": "m", "routes": ["/p"]}],
        }
    )
    chain = build_authenticator(settings)
    for _ in range(3):
        assert chain.authenticate({"authorization": f"Bearer {token()}"}).id == "alice"
    assert _Jwks.hits == 1  # cached by PyJWKClient
    both = settings.auth.model_copy(update={"jwks_file": tmp_path / "x.json"})
    with pytest.raises(ConfigError, match="not both"):
        build_authenticator(settings.model_copy(update={"auth": both}))


def test_key_files_and_vault_tokens_share_the_secret_primitives(tmp_path: Path) -> None:
    key, entry = new_api_key("svc", "scorer")
    assert entry["sha256"] == hash_secret(key)
    secret = new_token()
    assert hash_token(secret) == hash_secret(secret)
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [entry]}))
    assert ApiKeyAuthenticator.from_file(path).verify(key).id == "scorer"
    assert KeyFile.load(path).verify(key).id == "scorer"
    path.write_text(json.dumps({"keys": [{**entry, "sha256": "not-a-hash"}]}))
    with pytest.raises(ConfigError, match="not a hex SHA-256"):
        KeyFile.load(path)
