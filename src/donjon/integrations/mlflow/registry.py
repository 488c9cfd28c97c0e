"""MLflow's model registry, reached through MLflow's own client (``mlflow-skinny``).

The only module of the service that imports ``mlflow``; every MLflow error is
wrapped as :class:`~donjon.errors.IntegrationError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.errors import IntegrationError


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What the registry says about one model version."""

    name: str
    version: str
    source: str
    run_id: str | None
    tags: Mapping[str, str]
    aliases: tuple[str, ...]


def _mlflow() -> Any:
    try:
        return importlib.import_module("mlflow")
    except ImportError as e:
        raise IntegrationError("the MLflow integration needs: pip install 'donjon[mlflow]'") from e


@contextmanager
def _calling(what: str) -> Iterator[None]:
    mlflow = _mlflow()
    try:
        yield
    except mlflow.exceptions.MlflowException as e:
        raise IntegrationError(f"MLflow refused {what}: {e.message}") from e
    except OSError as e:  # connection refused, artifact store unreachable
        raise IntegrationError(f"MLflow unreachable for {what}: {e}") from e


class MlflowRegistry:
    """One MLflow tracking / registry server (``http://...``, ``sqlite:///...``)."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None) -> None:
        mlflow = _mlflow()
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self._client = mlflow.MlflowClient(
            tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
        )

    def warm_up(self) -> None:
        """Import the artifact client a download uses (``models:/``, ``runs:/``, proxied) and
        open the connection to the server with one cheap registry call."""
        for module in (
            "mlflow.artifacts",
            "mlflow.store.artifact.models_artifact_repo",
            "mlflow.store.artifact.runs_artifact_repo",
            "mlflow.store.artifact.http_artifact_repo",
        ):
            importlib.import_module(module)
        with _calling("a first registry call"):
            self._client.search_registered_models(max_results=1)

    def version(self, name: str, version: str) -> VersionInfo:
        with _calling(f"reading {name} version {version}"):
            mv = self._client.get_model_version(name, version)
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            source=mv.source,
            run_id=mv.run_id or None,
            tags=dict(mv.tags or {}),
            aliases=tuple(mv.aliases or ()),
        )

    def download(self, name: str, version: str, destination: Path) -> Path:
        """Every artifact of the version, downloaded into ``destination``; the local folder."""
        mlflow = _mlflow()
        with _calling(f"the artifacts of {name} version {version}"):
            uri = self._client.get_model_version_download_uri(name, version)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri,
                dst_path=str(destination),
                tracking_uri=self.tracking_uri,
                registry_uri=self.registry_uri,
            )
        return Path(local)

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        """Every tag but the last at once (MLflow sets one per request), then the last."""
        if not tags:
            return
        *first, last = tags.items()

        def put(item: tuple[str, str]) -> None:
            self._client.set_model_version_tag(name, version, *item)

        with _calling(f"tagging {name} version {version}"):
            if first:
                with ThreadPoolExecutor(len(first), thread_name_prefix="donjon-tags") as pool:
                    list(pool.map(put, first))  # re-raises the first failure
            put(last)

    def alias_target(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at now, or ``None`` when it is not set."""
        mlflow = _mlflow()
        try:
            return str(self._client.get_model_version_by_alias(name, alias).version)
        except mlflow.exceptions.MlflowException as e:
            if e.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in e.message.lower():
                return None
            raise IntegrationError(f"MLflow refused reading alias {alias!r}: {e.message}") from e

    def delete_alias(self, name: str, alias: str) -> None:
        with _calling(f"removing alias {alias!r} of {name}"):
            self._client.delete_registered_model_alias(name, alias)

    def create_webhook(self, name: str, url: str, events: list[str], secret: str) -> str:
        """Register a webhook (MLflow keeps the secret); its id."""
        with _calling(f"creating webhook {name!r}"):
            created = self._client.create_webhook(name=name, url=url, events=events, secret=secret)
        return str(created.webhook_id)
