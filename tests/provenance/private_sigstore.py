"""A private Sigstore instance made in code: Fulcio CA, CT log and Rekor log keys.

It issues what the public instance issues for a keyless signature, offline:

- a short-lived Fulcio leaf certificate for an ephemeral P-256 key, naming the
  signer's OIDC identity (e-mail SAN) and issuer (Fulcio's extensions
  1.3.6.1.4.1.57264.1.1 and .1.8), with an embedded precertificate SCT signed by
  the CT log key over the certificate's TBS without the SCT list (RFC 6962);
- one Rekor ``dsse/0.0.1`` entry: its body, an integrated time, a signed entry
  timestamp (the inclusion promise) and an inclusion proof in a one-leaf tree
  whose checkpoint is a signed note, all signed by the Rekor key;
- the matching ``trusted_root.json`` (and a ``ClientTrustConfig`` for
  model_signing's verifier, whose signing services point nowhere).

The bundle is a Sigstore bundle v0.3 around the DSSE envelope, as
sigstore-python and model_signing write keylessly.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from donjon.provenance.dsse import IN_TOTO_PAYLOAD_TYPE, pae
from tests.support import threads

OIDC_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ORIGIN = "rekor.private.test - 1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_der(key)).digest()


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _octet_string(data: bytes) -> bytes:
    """DER OCTET STRING (long-form length as needed)."""
    if len(data) < 0x80:
        return b"\x04" + bytes([len(data)]) + data
    size = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return b"\x04" + bytes([0x80 | len(size)]) + size + data


def _utf8_string(text: str) -> bytes:
    data = text.encode()
    return b"\x0c" + bytes([len(data)]) + data


def _sct(ct_key: ec.EllipticCurvePrivateKey, tbs: bytes, issuer_key_hash: bytes, ms: int) -> bytes:
    """One RFC 6962 SCT (v1, precert entry) over ``tbs`` issued by the key ``issuer_key_hash``."""
    entry = issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
    signed = struct.pack("!BBQH", 0, 0, ms, 1) + entry + b"\x00\x00"  # no extensions
    signature = _sign(ct_key, signed)
    return (
        b"\x00"  # v1
        + _key_id(ct_key.public_key())
        + struct.pack("!Q", ms)
        + b"\x00\x00"  # extensions
        + b"\x04\x03"  # sha256, ecdsa
        + struct.pack("!H", len(signature))
        + signature
    )


def _usage(**allowed: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    names += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: allowed.get(name, False) for name in names})


def _validity(start: dt.datetime, end: dt.datetime | None = None) -> dict[str, str]:
    period = {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if end is not None:
        period["end"] = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    return period


@dataclass
class PrivateSigstore:
    """One private instance; ``name`` keeps two instances apart."""

    name: str = "private"
    born: dt.datetime = field(
        default_factory=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    )

    def __post_init__(self) -> None:
        self.ca_key = ec.generate_private_key(ec.SECP384R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{self.name}.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name}-fulcio"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.born)
            .not_valid_after(self.born + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(self.ca_key, hashes.SHA384())
        )

    # -- the trust root ---------------------------------------------------------------

    def _log(self, key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(_der(key.public_key())),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": _validity(self.born),
            },
            "logId": {"keyId": _b64(_key_id(key.public_key()))},
        }

    def trusted_root(self) -> dict[str, Any]:
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [self._log(self.rekor_key, f"https://rekor.{self.name}.test")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": f"{self.name}.test", "commonName": "fulcio"},
                    "uri": f"https://fulcio.{self.name}.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.ca.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": _validity(self.born),
                }
            ],
            "ctlogs": [self._log(self.ct_key, f"https://ctfe.{self.name}.test")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2), encoding="utf-8")
        return path

    def write_client_trust_config(self, path: Path, services: str | None = None) -> Path:
        """The trust root inside a ClientTrustConfig (model_signing's ``trust_config``);
        its Fulcio and Rekor are at ``services`` (see :func:`serving`), else nowhere."""

        def service(url: str) -> dict[str, Any]:
            return {
                "url": url,
                "majorApiVersion": 1,
                "validFor": _validity(self.born),
                "operator": f"{self.name}.test",
            }

        config = {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": self.trusted_root(),
            "signingConfig": {
                "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                "caUrls": [service(services or f"https://fulcio.{self.name}.test")],
                "oidcUrls": [service(f"https://oauth2.{self.name}.test/auth")],
                "rekorTlogUrls": [service(services or f"https://rekor.{self.name}.test")],
                "tsaUrls": [],
                "rekorTlogConfig": {"selector": "ANY"},
                "tsaConfig": {"selector": "ANY"},
            },
        }
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return path

    # -- Fulcio -------------------------------------------------------------------------

    def issue(
        self,
        key: ec.EllipticCurvePublicKey,
        identity: str,
        issuer: str,
        not_before: dt.datetime,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
    ) -> x509.Certificate:
        """A Fulcio-style leaf certificate with an embedded SCT from this CT log."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(identity)]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V1, issuer.encode()), False)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V2, _utf8_string(issuer)), False)
        )
        # The precertificate: the same TBS without the SCT list, which the CT log signs.
        precert = builder.sign(self.ca_key, hashes.SHA384())
        issuer_hash = _key_id(self.ca_key.public_key())
        ms = int(not_before.timestamp() * 1000)
        sct = _sct(self.ct_key, precert.tbs_certificate_bytes, issuer_hash, ms)
        sct_list = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        return builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST, _octet_string(sct_list)), critical=False
        ).sign(self.ca_key, hashes.SHA384())

    # -- a keyless signature ----------------------------------------------------------------

    def sign(
        self,
        payload: bytes,
        identity: str,
        issuer: str,
        *,
        signed_at: dt.datetime | None = None,
        logged_at: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
    ) -> dict[str, Any]:
        """A keyless bundle over the in-toto ``payload``: certificate, DSSE, Rekor entry."""
        signed_at = signed_at or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        logged_at = logged_at or signed_at + dt.timedelta(seconds=2)
        key = ec.generate_private_key(ec.SECP256R1())  # ephemeral, as Sigstore's clients do
        leaf = self.issue(key.public_key(), identity, issuer, signed_at, lifetime)
        signature = _sign(key, pae(IN_TOTO_PAYLOAD_TYPE, payload))
        envelope = {
            "payload": _b64(payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": _b64(signature)}],
        }
        pem = leaf.public_bytes(serialization.Encoding.PEM)
        body = _dsse_body(payload, json.dumps(envelope).encode(), _b64(signature), _b64(pem))
        return {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self._entry(body, int(logged_at.timestamp()))],
                "timestampVerificationData": {},
            },
            "dsseEnvelope": envelope,
        }

    def _record(self, body: bytes, integrated: int) -> dict[str, Any]:
        """Rekor's record of ``body``: log id, promise, root and checkpoint (a one-leaf tree)."""
        log_id = _key_id(self.rekor_key.public_key())
        promise = rfc8785.dumps(
            {"body": _b64(body), "integratedTime": integrated, "logID": log_id.hex(), "logIndex": 0}
        )
        root = hashlib.sha256(b"\x00" + body).digest()  # one leaf: the root is its hash
        note = f"{ORIGIN}\n1\n{_b64(root)}\n"
        noted = _sign(self.rekor_key, note.encode())
        return {
            "log_id": log_id,
            "promise": _sign(self.rekor_key, promise),
            "root": root,
            "checkpoint": f"{note}\n\u2014 {ORIGIN.split()[0]} {_b64(log_id[:4] + noted)}\n",
        }

    def _entry(self, body: bytes, integrated: int) -> dict[str, Any]:
        """The log entry as a bundle carries it."""
        log = self._record(body, integrated)
        return {
            "logIndex": "0",
            "logId": {"keyId": _b64(log["log_id"])},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(log["promise"])},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": _b64(log["root"]),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": log["checkpoint"]},
            },
            "canonicalizedBody": _b64(body),
        }

    # -- the services, for a signing client (Fulcio's and Rekor's v1/v2 REST answers) -------

    def fulcio_answer(self, request: dict[str, Any], token: str) -> dict[str, Any]:
        """``POST /api/v2/signingCert``: a certificate for the CSR's key and the token's e-mail."""
        csr = x509.load_pem_x509_csr(base64.b64decode(request["certificateSigningRequest"]))
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        key = csr.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        leaf = self.issue(
            key, claims["email"], claims["iss"], dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
        )
        chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, self.ca)]
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": chain}}}

    def rekor_answer(self, proposed: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/v1/log/entries`` for a proposed ``dsse`` entry: the integrated entry."""
        content = proposed["spec"]["proposedContent"]
        envelope = json.loads(content["envelope"])
        body = _dsse_body(
            base64.b64decode(envelope["payload"]),
            content["envelope"].encode(),
            envelope["signatures"][0]["sig"],
            content["verifiers"][0],
        )
        integrated = int(dt.datetime.now(dt.UTC).timestamp())
        log = self._record(body, integrated)
        return {
            "0" * 64: {
                "body": _b64(body),
                "integratedTime": integrated,
                "logID": log["log_id"].hex(),
                "logIndex": 0,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": log["checkpoint"],
                        "hashes": [],
                        "logIndex": 0,
                        "rootHash": log["root"].hex(),
                        "treeSize": 1,
                    },
                    "signedEntryTimestamp": _b64(log["promise"]),
                },
            }
        }


def _dsse_body(payload: bytes, envelope: bytes, signature: str, verifier: str) -> bytes:
    """Rekor's canonical ``dsse/0.0.1`` body."""
    return rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(envelope).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [{"signature": signature, "verifier": verifier}],
            },
        }
    )


@contextmanager
def serving(instance: PrivateSigstore) -> Iterator[str]:
    """The instance's Fulcio and Rekor on a loopback port, for a signing client; its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/v2/signingCert":
                token = self.headers["Authorization"].removeprefix("Bearer ")
                answer = instance.fulcio_answer(request, token)
            elif self.path == "/api/v1/log/entries":
                answer = instance.rekor_answer(request)
            else:
                self.send_error(404)
                return
            data = json.dumps(answer).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    with threads.serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url
