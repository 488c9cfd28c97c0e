"""Step 1's machinery: the vault on loopback, two principals, their policy and the gates.

The vault is the real server (``donjon.server`` on uvicorn, in a thread bound to a
free loopback port) wired by ``donjon.app``; the quickstart adds admission gates
through the registry's ports: the model scanner at push time and, at promotion
time, the vault's own signature and provenance gates (``donjon.app.attestation``)
holding the quickstart's verification policy. The signature and the provenance
travel with the model: they are attached to its version in the vault.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

from donjon.errors import ConfigError

SCIENTIST = "dana"  # data scientist: datasets, model pushes, promotion to staging
DEPLOYER = "dario"  # deployer: reads models, promotes signed ones to prod
MODEL = "digits-clf"
DATASET = "digits"

POLICY = f"""\
@id("scientist-owns-datasets")
permit (
  principal == User::"{SCIENTIST}",
  action in [Action::"dataset.read", Action::"dataset.write", Action::"dataset.list"],
  resource in Collection::"datasets"
);

@id("scientist-pushes-models")
permit (
  principal == User::"{SCIENTIST}",
  action in [Action::"model.read", Action::"model.write", Action::"model.list"],
  resource in Collection::"models"
);

@id("scientist-promotes-to-staging-only")
permit (
  principal == User::"{SCIENTIST}",
  action == Action::"model.promote",
  resource in Collection::"models"
) when {{ context has stage && context.stage == "staging" }};

@id("deployer-reads-the-classifier")
permit (
  principal == User::"{DEPLOYER}",
  action in [Action::"model.read", Action::"model.list"],
  resource in Collection::"models/{MODEL}"
);

@id("deployer-promotes-signed-clean-models-to-prod")
permit (
  principal == User::"{DEPLOYER}",
  action == Action::"model.promote",
  resource in Collection::"models/{MODEL}"
) when {{
  context has stage && context.stage == "prod" &&
  context has signed && context.signed &&
  context has scan_clean && context.scan_clean
}};
"""


class LoopbackServer:
    """uvicorn serving an ASGI app in a thread (default: a free 127.0.0.1 port).

    The app's lifespan runs: the vault's sweeps its failed-authentication windows and,
    on stop, flushes them and closes its worker threads."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["auto", "on", "off"] = "on",
    ) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._sock.close()
