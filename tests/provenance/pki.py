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


@dataclass
class Ca:
    """A certificate authority (root or intermediate) for validity and revocation tests."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _at(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


def make_ca(cn: str, *, issuer: Ca | None = None, days: tuple[float, float] = (-30, 30)) -> Ca:
    """A root CA (``issuer`` None) or an intermediate, valid from/to ``days`` around now."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject if issuer else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_at(days[0]))
        .not_valid_after(_at(days[1]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                (issuer.key if issuer else key).public_key()
            ),
            False,
        )
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Ca(key, cert)


def make_leaf(
    folder: Path, issuer: Ca, *, days: tuple[float, float] = (-1, 10), cn: str = "model-release"
) -> tuple[Path, x509.Certificate]:
    """A code-signing leaf issued by ``issuer``: its key file and certificate."""
    key_path = folder / f"{cn}-{x509.random_serial_number()}.key"
    key = write_key(key_path)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_at(days[0]))
        .not_valid_after(_at(days[1]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .sign(issuer.key, hashes.SHA256())
    )
    return key_path, cert


def make_crl(
    issuer: Ca,
    revoked: tuple[x509.Certificate, ...] = (),
    *,
    days: tuple[float, float] = (-1, 7),
    reason: x509.ReasonFlags | None = None,
    signed_by: ec.EllipticCurvePrivateKey | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` listing ``revoked``, issued/next update ``days`` around now."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(_at(days[0]))
        .next_update(_at(days[1]))
    )
    for cert in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
        entry = entry.revocation_date(_at(-0.5))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(signed_by or issuer.key, hashes.SHA256())


def write_pem(path: Path, *items: x509.Certificate | x509.CertificateRevocationList) -> Path:
    path.write_bytes(b"".join(item.public_bytes(serialization.Encoding.PEM) for item in items))
    return path
