"""Builders for test keys, certificate authorities and model folders (generated, no blobs)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write_key(path: Path, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def write_public(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    """A root CA and a code-signing leaf, written as PEM files in ``folder``."""

    ca_pem: Path
    leaf_key: Path
    leaf_pem: Path
    leaf: x509.Certificate


def make_pki(
    folder: Path, name: str = "ca", *, leaf_can_sign: bool = True, email: str = "ml@example.com"
) -> Pki:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Donjon Test {name}"))
        .issuer_name(_name(f"Donjon Test {name}"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key_path = folder / f"{name}-leaf.key"
    leaf_key = write_key(leaf_key_path)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("model-release"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), False)
    )
    if leaf_can_sign:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, True, False, False, False, False, False, False),
            critical=True,
        )
    leaf = builder.sign(ca_key, hashes.SHA256())
    ca_pem = folder / f"{name}.pem"
    ca_pem.write_bytes(_pem(ca))
    leaf_pem = folder / f"{name}-leaf.pem"
    leaf_pem.write_bytes(_pem(leaf))
    return Pki(ca_pem, leaf_key_path, leaf_pem, leaf)


def make_model(folder: Path, *, big: int = 300_000) -> Path:
    """A small model folder: weights, a nested config, a tokenizer and a .git folder."""
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(os.urandom(big))
    (folder / "sub").mkdir()
    (folder / "sub" / "config.json").write_text('{"layers": 2}')
    (folder / "tokenizer.txt").write_text("a b c\n")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return folder
