"""Configuration-driven code execution: configs that name code a framework will run.

Many loaders instantiate whatever a config names or import modules it ships:
Hydra / OmegaConf ``_target_`` (NeMo archives, YAML and JSON configs, string
metadata), Hugging Face ``auto_map`` (custom code run with
``trust_remote_code``), MLflow ``MLmodel`` (``loader_module``, ``code``
paths, environments), TorchServe manifests (handlers, requirements), and
Jinja templates in any metadata string. Targets are judged with the pickle
allow-list policy; YAML is read line by line with patterns (never
``yaml.load``: the scan extra has no YAML library).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.policy import Verdict, is_identifier_path
from donjon.scan.templates import check_template, looks_like_template

_MAX_TEXT = 16 << 20
_MAX_NODES = 1_000_000
_TARGET_KEYS = ("_target_", "_target", "target_class")
_YAML_TARGET = re.compile(r"""["']?\b_target_["']?\s*:\s*["']?([^"'\s,}#]+)""")
_YAML_KEY = re.compile(r"""(?m)^\s*(loader_module|code)\s*:\s*(.*)$""")
_MLMODEL = re.compile(r"(?m)^flavors\s*:")
_RISKY_SPEC = re.compile(
    r"""(?ix)^(
        (-e|--editable)\s+\S+                                   # editable installs
      | (git|hg|svn|bzr)\+\S+                                   # VCS installs
      | [A-Za-z0-9_.\[\],-]+\s*@\s*\S+                            # direct references
      | (https?|ftp|file)://\S+                                 # archives by URL
      | (--index-url|--extra-index-url|-i|--find-links|-f|--trusted-host)(\s+|=)\S+
      | \.{0,2}/\S+                                              # local paths
    )$"""
)
_PLAIN_SPEC = re.compile(
    r"(?i)^[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,\s-]*\])?\s*((===?|[<>!~]=?)\s*[\w.*+!-]+\s*,?\s*)*"
    r"(;.*)?$|^(-r|-c|--requirement|--constraint|--hash|--pre|--no-binary|--only-binary)\b.*"
)
_PIP_SECTION = re.compile(r"(?m)^\s*(dependencies|build_dependencies|- pip)\s*:")
_FRAMEWORK_LOADERS = ("mlflow.",)
_BASE64 = re.compile(r"[A-Za-z0-9+/=_\-\s]+")
_CODE_MAGIC = (b"PK\x03\x04", b"\x80", b"\x1f\x8b", b"\x93NUMPY", b"\x89HDF")


def scan_config_file(ctx: Context, source: Source) -> None:
    """A text file: JSON or YAML configs, templates and requirement lists, judged by content."""
    with source.open() as fh:
        raw = fh.read(_MAX_TEXT)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return
    ctx.formats.append("config")
    if source.suffix == ".py":
        from donjon.scan.pysource import check_python

        check_python(ctx, source, text)
        return
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if data is not None:
            if is_keras_config(data):  # a Keras model config, whatever the file is called
                from donjon.scan.keras import check_config

                check_config(ctx, source, data)
            check_value(ctx, source, data, source.name)
            return
    check_text(ctx, source, text, source.name)


def check_text(ctx: Context, source: Source, text: str, where: str) -> None:
    """Free text (YAML, requirement lists, Jinja files, metadata strings)."""
    for found in _YAML_TARGET.finditer(text):
        judge_target(ctx, source, found[1], f"{where}: _target_")
    if _MLMODEL.search(text):  # an MLflow MLmodel file
        for key, value in _YAML_KEY.findall(text):
            _check_yaml_key(ctx, source, key, value.strip().strip("'\""), where)
    specs = risky_requirements(text)
    if specs:
        dependency(ctx, source, specs, where)
    if looks_like_template(text):
        check_template(ctx, source, text, where)


def risky_requirements(text: str) -> list[str]:
    """Install specs from outside the index, in a requirements list or an environment file.

    A text is a requirements list when nearly every line is a spec (by structure,
    whatever its name); in a conda / MLflow environment, the YAML list items count.
    """
    lines = [line.split(" #", 1)[0].strip() for line in text.splitlines()[:5000]]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        return []
    if _PIP_SECTION.search(text):  # conda.yaml / python_env.yaml: "- spec" items
        items = [line[2:].strip().strip("'\"") for line in lines if line.startswith("- ")]
        return sorted({item for item in items if _RISKY_SPEC.match(item)})
    risky = [line for line in lines if _RISKY_SPEC.match(line)]
    plain = sum(1 for line in lines if _PLAIN_SPEC.match(line))
    if risky and len(risky) + plain >= 0.8 * len(lines):
        return sorted(set(risky))
    return []


def check_value(ctx: Context, source: Source, data: Any, where: str) -> None:
    """Walk parsed JSON (or metadata): targets, ``auto_map``, templates and embedded configs.

    Paths are kept as (parent, key) links and spelled out only for a finding,
    so a large vocabulary costs one tuple per entry, not one string."""
    if isinstance(data, str):
        if len(data) > 8 and _worth_a_look(data):
            _check_string(ctx, source, data, where, 0)
        return
    todo: list[tuple[Any, Any, int]] = [(data, where, 0)]
    seen = 0
    while todo and seen < _MAX_NODES:
        node, link, depth = todo.pop()
        if depth > 200:
            ctx.add(rules.SCN_BUDGET, f"{where}: config nests deeper than 200 levels", source)
            return
        if isinstance(node, dict):
            if _MAPPING_KEYS.intersection(node):
                _check_mapping(ctx, source, node, _spell(link))
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        seen += len(node)
        for key, value in items:  # scalars are looked at in place; containers queued
            kind = type(value)
            if kind is str:
                if len(value) > 8 and _worth_a_look(value):
                    _check_string(ctx, source, value, _spell((link, key)), depth + 1)
            elif kind is dict or kind is list:
                todo.append((value, (link, key), depth + 1))


_MAPPING_KEYS = frozenset({*_TARGET_KEYS, "auto_map", "model"})


def _worth_a_look(text: str) -> bool:
    return (
        "_target_" in text
        or "{{" in text
        or "{%" in text
        or text.lstrip()[:1] in ("{", "[")
        or (len(text) >= 64 and _BASE64.fullmatch(text, 0, 4096) is not None)
    )


def _spell(link: Any) -> str:
    parts: list[str] = []
    while isinstance(link, tuple):
        link, key = link
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return str(link) + "".join(reversed(parts))


def is_keras_config(data: Any) -> bool:
    return isinstance(data, dict) and "class_name" in data and "config" in data


def _check_string(ctx: Context, source: Source, text: str, path: str, depth: int) -> None:
    if len(text) >= 64 and _BASE64.fullmatch(text, 0, 4096):
        embedded(ctx, source, text, path)
        return
    head = text.lstrip()[:1]
    if head in ("{", "[") and depth < 8:  # JSON inside a string (safetensors metadata)
        try:
            inner = json.loads(text)
        except (ValueError, RecursionError):
            inner = None
        if isinstance(inner, dict | list):
            check_value(ctx, source, inner, path)
            return
    if "_target_" in text:
        for found in _YAML_TARGET.finditer(text):
            judge_target(ctx, source, found[1], f"{path}: _target_")
    if looks_like_template(text):
        check_template(ctx, source, text, path)


def _check_mapping(ctx: Context, source: Source, node: dict[str, Any], path: str) -> None:
    for key in _TARGET_KEYS:
        target = node.get(key)
        if isinstance(target, str) and (key == "_target_" or "." in target):
            judge_target(ctx, source, target, f"{path}.{key}")
    auto_map = node.get("auto_map")
    if isinstance(auto_map, dict):
        refs = sorted(set(_auto_map_refs(auto_map)))
        if refs:
            ctx.add(
                rules.CFG_CODE,
                f"{path}.auto_map loads custom code with trust_remote_code: {', '.join(refs[:5])}",
                source,
                modules=refs[:50],
            )
    if isinstance(node.get("model"), dict) and "handler" in node["model"]:
        _torchserve_manifest(ctx, source, node["model"], path)


def _auto_map_refs(auto_map: dict[str, Any]) -> Iterator[str]:
    for value in auto_map.values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and ref:
                yield ref


def _torchserve_manifest(ctx: Context, source: Source, model: dict[str, Any], path: str) -> None:
    handler = model.get("handler")
    if isinstance(handler, str) and (handler.endswith(".py") or ":" in handler):
        ctx.add(
            rules.CFG_CODE,
            f"{path}: TorchServe runs the shipped handler {handler!r}",
            source,
            handler=str(handler),
        )
    requirements = model.get("requirementsFile")
    if isinstance(requirements, str) and requirements:
        ctx.add(
            rules.CFG_DEPENDENCY,
            f"{path}: TorchServe installs {requirements!r} when the model loads",
            source,
            requirements=requirements,
        )


def _check_yaml_key(ctx: Context, source: Source, key: str, value: str, where: str) -> None:
    if not value or value.startswith(("{", "[", "|", ">")):
        return
    if key == "loader_module":
        if not value.startswith(_FRAMEWORK_LOADERS):
            judge_target(ctx, source, value, f"{where}: MLmodel loader_module")
    elif key == "code" and value not in ("null", "~"):
        ctx.add(
            rules.CFG_CODE,
            f"{where}: MLflow puts the shipped code path {value!r} on sys.path",
            source,
            code=value,
        )


def judge_target(ctx: Context, source: Source, target: str, where: str) -> None:
    """A callable a config names, judged like a pickle global."""
    dotted = target.strip().replace(":", ".")
    if not is_identifier_path(dotted):
        ctx.add(
            rules.CFG_UNKNOWN,
            f"{where} names {target[:80]!r}, which cannot be resolved statically",
            source,
            target=target[:200],
        )
        return
    verdict = ctx.policy.verdict(dotted)
    if verdict is Verdict.DENY:
        ctx.add(
            rules.CFG_DANGEROUS, f"{where} instantiates dangerous callable {dotted}", source,
            target=dotted,
        )  # fmt: skip
    elif verdict is Verdict.UNKNOWN:
        ctx.add(
            rules.CFG_UNKNOWN, f"{where} names {dotted}, which is not on the allow-list", source,
            target=dotted,
        )  # fmt: skip


def dependency(ctx: Context, source: Source, specs: list[str], where: str) -> None:
    ctx.add(
        rules.CFG_DEPENDENCY,
        f"{where}: dependencies installed from outside the package index: {', '.join(specs[:3])}",
        source,
        specs=specs[:50],
    )


def scan_native(ctx: Context, source: Source) -> None:
    """Machine code: reported inside a model archive, where a loader may load it."""
    if source.depth > 0:
        ctx.add(rules.ARC_NATIVE, f"archive ships native code: {source.name}", source)


def embedded(ctx: Context, source: Source, text: str, path: str) -> None:
    """A base64 blob in a config (a torch.save archive, a pickled layer): scanned as a file."""
    import base64
    import binascii
    import io

    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=False)
    except (binascii.Error, ValueError):
        return
    if not raw.startswith(_CODE_MAGIC) and not _protocol0_pickle(raw, ctx):
        return
    from donjon.scan.engine import scan_source

    child = source.child(f"{path}[base64]", lambda: io.BytesIO(raw), len(raw))
    scan_source(ctx, child)


def _protocol0_pickle(raw: bytes, ctx: Context) -> bool:
    from donjon.scan.probe import looks_like_pickle

    return looks_like_pickle(raw[: 64 << 10], ctx.policy, whole=len(raw) <= 64 << 10)
