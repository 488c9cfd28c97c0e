"""TLS for ``donjon server``: uvicorn's TLS options, client certificates, bind rules.

With ``--tls-client-ca`` the server asks every client for a certificate and
verifies any it is given against that CA (``CERT_OPTIONAL``: token holders
need none). A verified certificate names a service account: its subject
common name. :class:`ClientCertProtocol` (uvicorn's h11 protocol) puts that
name in each request's ``scope["state"]`` under :data:`CLIENT_CERT_NAME`,
where the app's authentication reads it; nothing a client sends can set it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from donjon.core.net import is_loopback
from donjon.errors import ConfigError

CLIENT_CERT_NAME = "donjon.tls_client_name"


@dataclass(frozen=True)
class TlsOptions:
    """What ``donjon server`` hands uvicorn; empty when serving plain HTTP."""

    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    def check(self, host: str, *, insecure_http: bool) -> None:
        """Refuse incomplete TLS options, and plain HTTP on a non-loopback address."""
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.client_ca is not None and not self.enabled:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        for path in (self.cert, self.key, self.client_ca):
            if path is not None and not path.is_file():
                raise ConfigError(f"no such file: {path}")
        if not self.enabled and not is_loopback(host) and not insecure_http:
            raise ConfigError(
                f"refusing to serve plain HTTP on {host}: tokens would cross the network in "
                "clear; give --tls-cert and --tls-key, or --insecure-http behind a TLS proxy"
            )

    def uvicorn_options(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        options: dict[str, Any] = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            options |= {
                "ssl_ca_certs": str(self.client_ca),
                "ssl_cert_reqs": ssl.CERT_OPTIONAL,
                "http": ClientCertProtocol,
            }
        return options


def subject_common_name(peer: dict[str, Any]) -> str | None:
    """The subject CN of a certificate as ``SSLSocket.getpeercert()`` returns it."""
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class ClientCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, with the verified client certificate's name in the scope."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        tls = transport.get_extra_info("ssl_object")
        peer = tls.getpeercert() if tls is not None else None
        name = subject_common_name(peer) if peer else None
        if name:  # per connection: uvicorn copies app_state into every request's scope
            self.app_state = {**self.app_state, CLIENT_CERT_NAME: name}
