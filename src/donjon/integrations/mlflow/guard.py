"""Refuse MLflow loads whose artifacts fail review: ``mlflow.pyfunc.load_model`` and the
flavours' ``load_model`` (sklearn, pytorch, keras, transformers...).

    from donjon.integrations.mlflow import guard
    guard.install(ReviewPolicy(verify=Policy.load(Path("policy.toml"))))
    model = mlflow.pyfunc.load_model("models:/fraud@champion")   # ModelRefused if unsafe

The model is downloaded first (through MLflow's own ``download_artifacts``, into
``dst_path`` or a private temporary folder), reviewed there (every file scanned,
the signature and provenance verified when the policy has a verification
policy), and only then loaded, from that same copy: what was checked is what is
loaded. Donjon imports no flavour: one already imported is patched by
:func:`install`, one imported later as it is imported.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from donjon.errors import ModelRefused
from donjon.guard.hooks import Installation
from donjon.guard.targets import Target
from donjon.integrations.mlflow.review import ReviewPolicy, review_folder

FLAVOURS = (
    "pyfunc", "sklearn", "pytorch", "tensorflow", "keras", "transformers",
    "sentence_transformers", "xgboost", "lightgbm", "catboost", "onnx", "statsmodels",
    "spacy", "prophet", "pmdarima", "h2o", "paddle", "spark", "langchain",
)  # fmt: skip
TARGETS = tuple(Target(f"mlflow.{f}", "load_model", "model_uri") for f in FLAVOURS)

_depth = threading.local()  # a flavour loader called by pyfunc's loader runs unguarded


def _fetch(model_uri: object, dst_path: object) -> Path:
    """A private copy of the model's artifacts, fetched by MLflow's own client."""
    mlflow = sys.modules["mlflow"]  # imported: one of its loaders is being called
    folder = Path(dst_path) if isinstance(dst_path, str | Path) else None
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="donjon-mlflow-load-"))
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=str(model_uri), dst_path=str(folder)
        )
    except (mlflow.exceptions.MlflowException, OSError) as e:
        raise ModelRefused(f"cannot fetch {model_uri} to review it: {e}") from e
    return Path(local)


def check(model_uri: object, local: Path, policy: ReviewPolicy, loader: str) -> None:
    """Raise :class:`ModelRefused` unless the artifacts in ``local`` pass ``policy``."""
    review = review_folder(local, str(model_uri), policy)
    verdict = review.verdict
    if not verdict.passed:
        reasons = "; ".join(verdict.reasons[:3]) or "review failed"
        raise ModelRefused(f"{loader}: refused {model_uri}: {reasons}", review.report)


def wrap_loader(
    target: Target, original: Callable[..., Any], policy_of: Callable[[], Any]
) -> Callable[..., Any]:
    """``load_model(model_uri, ..., dst_path=None)``: fetch, review, then load that copy."""

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        policy = policy_of()
        if policy is None or getattr(_depth, "n", 0) > 0:
            return original(*args, **kwargs)
        if args:
            model_uri, rest = args[0], args[1:]
        elif "model_uri" in kwargs:
            model_uri, rest = kwargs.pop("model_uri"), ()
        else:
            return original(*args, **kwargs)  # the loader reports the missing argument
        local = _fetch(model_uri, kwargs.pop("dst_path", None))
        check(model_uri, local, policy, target.label)
        _depth.n = getattr(_depth, "n", 0) + 1
        try:
            return original(str(local), *rest, **kwargs)
        finally:
            _depth.n -= 1

    guarded.__donjon_guard__ = True  # type: ignore[attr-defined]
    return guarded


_guard: Installation[ReviewPolicy] = Installation(TARGETS, wrap_loader, ReviewPolicy)


def install(policy: ReviewPolicy | None = None) -> None:
    """Guard MLflow's loaders (again with a new policy if already installed)."""
    _guard.install(policy)


def uninstall() -> None:
    """Put MLflow's loaders back as they were."""
    _guard.uninstall()


def installed() -> ReviewPolicy | None:
    return _guard.installed()


def guarded(policy: ReviewPolicy | None = None) -> AbstractContextManager[ReviewPolicy]:
    """Guard MLflow's loaders inside a ``with`` block only."""
    return _guard.guarded(policy)
