"""``donjon server`` over TLS with a real certificate chain made here; mTLS service identities;
plain HTTP refused off loopback, by the server and by the clients."""

from __future__ import annotations

import ipaddress
import signal
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.cli.main import main
from donjon.client import VaultClient
from donjon.errors import InputError
from tests.server.process import prepare_home, running_server, server_env

pytestmark = pytest.mark.integration


@dataclass
class Authority:
    """A CA that issues server and client certificates into ``folder``."""

    folder: Path
    name: str

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            self._builder(self.name, self.key)
            .issuer_name(_name(self.name))
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.folder / "ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(cn: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
        )

    def issue(self, cn: str, *, server: bool) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(cn, key)
            .issuer_name(self.cert.subject)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file, key_file = self.folder / f"{cn}.pem", self.folder / f"{cn}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@contextmanager
def _tls_server(
    env: dict[str, str], ca: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``donjon server`` over TLS on a free port; yields the process and its https URL."""
    trust = ssl.create_default_context(cafile=str(ca))
    with running_server(env, *args, scheme="https", verify=trust) as served:
        yield served


def _client(ca: Path, cert: tuple[Path, Path] | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(verify=context, timeout=10)


def test_tls_and_client_certificates_name_service_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    url_db = f"sqlite+pysqlite:///{tmp_path / 'vault.db'}"
    token = prepare_home(home, url_db, monkeypatch, capsys)
    assert main(["access", "service-account", "add", "ci-bot"]) == 0
    assert main(["access", "service-account", "add", "old-bot"]) == 0
    assert main(["access", "user", "disable", "old-bot"]) == 0  # any account
    capsys.readouterr()
    ca = Authority(tmp_path / "ca", "donjon test CA")
    rogue = Authority(tmp_path / "rogue", "rogue CA")
    server_cert, server_key = ca.issue("localhost", server=True)
    bot, old_bot, alice = (ca.issue(n, server=False) for n in ("ci-bot", "old-bot", "alice"))
    impostor = rogue.issue("ci-bot", server=False)
    args = ("--tls-cert", str(server_cert), "--tls-key", str(server_key))
    args += ("--tls-client-ca", str(ca.ca_file))
    with _tls_server(server_env(home, url_db), ca.ca_file, *args) as (proc, https):
        url = https.replace("https://", "http://")
        with _client(ca.ca_file) as plain:
            assert plain.get(f"{https}/health").status_code == 200
            me = plain.get(f"{https}/v1/whoami", headers={"Authorization": f"Bearer {token}"})
            assert (me.status_code, me.json()["id"]) == (200, "alice")
            assert plain.get(f"{https}/v1/whoami").status_code == 401  # no token, no cert
        with _client(ca.ca_file, bot) as mtls:
            me = mtls.get(f"{https}/v1/whoami")
            assert (me.status_code, me.json()["id"], me.json()["kind"]) == (
                200,
                "ci-bot",
                "service",
            )
        for refused in (old_bot, alice):  # disabled, and a user account
            with _client(ca.ca_file, refused) as mtls:
                assert mtls.get(f"{https}/v1/whoami").status_code == 401
        # a certificate the CA did not issue: the handshake fails (TLS 1.3 says so after it)
        with _client(ca.ca_file, impostor) as mtls, pytest.raises(httpx.TransportError):
            mtls.get(f"{https}/v1/whoami")
        with httpx.Client(timeout=10) as system_trust, pytest.raises(httpx.ConnectError):
            system_trust.get(f"{https}/health")  # the test CA is not in the system store
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=5)  # plain HTTP on the TLS port
        with VaultClient(
            https, None, ca_file=ca.ca_file, client_cert=bot[0], client_key=bot[1]
        ) as client:
            assert client.whoami()["id"] == "ci-bot"
        # donjon login over https, trusting the CA from the settings
        monkeypatch.setenv("DONJON_VAULT__CA_FILE", str(ca.ca_file))
        monkeypatch.setattr("sys.stdin", __import__("io").StringIO(token + "\n"))
        assert main(["login", "--server", https, "--token-stdin"]) == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    events = (home / "events.jsonl").read_text()
    assert '"method":"mtls"' in events.replace(" ", "")


def test_plain_http_off_loopback_is_refused_by_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["server", "--host", "0.0.0.0", "--port", "0"]) == 2  # noqa: S104
    assert "refusing to serve plain HTTP on 0.0.0.0" in capsys.readouterr().err
    assert main(["server", "--tls-cert", str(tmp_path / "c.pem"), "--port", "0"]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


def test_clients_refuse_plain_http_to_another_host(capsys: pytest.CaptureFixture[str]) -> None:
    for url in ("http://vault.example.com:8470", "http://10.1.2.3", "http://[2001:db8::1]"):
        with pytest.raises(InputError, match="refusing plain HTTP"):
            VaultClient(url, "djt_x")
        VaultClient(url, "djt_x", allow_insecure_http=True).close()  # on purpose
    for url in ("http://127.0.0.1:8470", "http://localhost:1", "http://[::1]:2", "https://a.b"):
        VaultClient(url, "djt_x").close()
    with pytest.raises(InputError, match="not a vault URL"):
        VaultClient("ftp://vault.example.com", "djt_x")
    code = main(["login", "--server", "http://vault.example.com", "--token-stdin"])
    assert code == 2
    assert "refusing plain HTTP to vault.example.com" in capsys.readouterr().err
