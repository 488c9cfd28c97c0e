"""API keys from a key file and JWTs verified against a JWKS file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.core import PrincipalKind
from donjon.errors import AuthenticationError, ConfigError
from donjon.gateway.auth import (
    ApiKeyAuthenticator,
    ChainAuthenticator,
    JwtAuthenticator,
    new_api_key,
)


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    token, entry = new_api_key("svc-1", "scorer", groups=["analysts"], kind="service")
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [entry]}))
    return path, token


def test_api_key_file_stores_only_a_hash_and_authenticates(key_file: tuple[Path, str]) -> None:
    path, token = key_file
    assert token not in path.read_text()
    auth = ApiKeyAuthenticator.from_file(path)
    principal = auth.authenticate({"authorization": f"Bearer {token}"})
    assert (principal.id, principal.kind, principal.groups) == (
        "scorer",
        PrincipalKind.SERVICE,
        ("analysts",),
    )
    assert auth.authenticate({"x-api-key": token}) == principal


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Basic abc"},
        {"authorization": "Bearer djk_svc-1_" + "A" * 43},  # right id, wrong secret
        {"authorization": "Bearer djk_nobody_" + "A" * 43},
        {"authorization": "Bearer not-a-key"},
    ],
)
def test_bad_api_keys_are_refused(key_file: tuple[Path, str], headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError):
        ApiKeyAuthenticator.from_file(key_file[0]).authenticate(headers)


def test_a_malformed_key_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text('{"keys": [{"id": "x"}]}')
    with pytest.raises(ConfigError, match="API key file"):
        ApiKeyAuthenticator.from_file(bad)


@pytest.fixture
def signer(tmp_path: Path) -> tuple[Any, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "ES256"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return private, path


def token(private: Any, **claims: Any) -> str:
    body = {"sub": "alice", "aud": "donjon", "iss": "idp", "exp": time.time() + 60}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private, "ES256",
                      headers={"kid": "k1"})  # fmt: skip


def test_jwt_verified_against_the_jwks(signer: tuple[Any, Path]) -> None:
    private, path = signer
    auth = JwtAuthenticator.from_file(path, audience="donjon", issuer="idp")
    principal = auth.verify(token(private, groups=["ml"]))
    assert (principal.id, principal.groups) == ("alice", ("ml",))


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": time.time() - 3600}, "expired"),
        ({"aud": "other"}, "(?i)audience"),
        ({"iss": "evil"}, "(?i)issuer"),
        ({"exp": None}, "exp"),
    ],
)
def test_bad_jwts_are_refused(
    signer: tuple[Any, Path], claims: dict[str, Any], message: str
) -> None:
    private, path = signer
    auth = JwtAuthenticator.from_file(path, audience="donjon", issuer="idp")
    with pytest.raises(AuthenticationError, match=message):
        auth.verify(token(private, **claims))


def test_jwt_from_another_key_or_symmetric_alg_is_refused(signer: tuple[Any, Path]) -> None:
    _, path = signer
    auth = JwtAuthenticator.from_file(path, audience="donjon", issuer="idp")
    stranger = token(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AuthenticationError, match="invalid JWT"):
        auth.verify(stranger)
    secret = b"k" * 40  # an HMAC token must never pass an asymmetric verifier
    forged = jwt.encode({"sub": "root", "exp": time.time() + 60}, secret, "HS256",
                        headers={"kid": "k1"})  # fmt: skip
    with pytest.raises(AuthenticationError):
        auth.verify(forged)
    with pytest.raises(ConfigError, match="asymmetric"):
        JwtAuthenticator.from_file(path, audience=None, issuer=None, algorithms=["HS256"])


def test_chain_routes_keys_and_jwts_and_refuses_anonymous(
    key_file: tuple[Path, str], signer: tuple[Any, Path]
) -> None:
    chain = ChainAuthenticator(
        ApiKeyAuthenticator.from_file(key_file[0]),
        JwtAuthenticator.from_file(signer[1], audience="donjon", issuer="idp"),
    )
    assert chain.authenticate({"authorization": f"Bearer {key_file[1]}"}).id == "scorer"
    assert chain.authenticate({"authorization": f"Bearer {token(signer[0])}"}).id == "alice"
    with pytest.raises(AuthenticationError, match="no credentials"):
        chain.authenticate({})
    anonymous = ChainAuthenticator(allow_anonymous=True).authenticate({})
    assert anonymous.kind is PrincipalKind.ANONYMOUS
