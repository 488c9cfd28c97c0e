"""Keras: .keras archives (config.json) and legacy HDF5 files (the model_config attribute).

HDF5 files are not opened with an HDF5 library: the config is a JSON string
attribute, found by content and decoded with ``json`` (no deserialisation).
"""

from __future__ import annotations

import json
import mmap
from typing import Any

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.policy import Verdict

_KERAS_MODULES = ("keras", "tensorflow", "tf_keras", "keras_hub", "keras_nlp", "keras_cv")
_CODE_KEYS = ("function", "output_shape")


def check_config(ctx: Context, source: Source, config: Any) -> None:
    start = len(ctx.findings)
    try:
        _walk_config(ctx, source, config)
    finally:  # a Lambda layer and its own config say the same thing once
        unique: dict[tuple[str, str, str | None], Any] = {}
        for finding in ctx.findings[start:]:
            unique.setdefault((finding.rule.id, finding.message, finding.location.member), finding)
        ctx.findings[start:] = list(unique.values())


def _walk_config(ctx: Context, source: Source, config: Any) -> None:
    todo: list[tuple[Any, int]] = [(config, 0)]
    seen = 0
    while todo and seen < 1_000_000:
        node, depth = todo.pop()
        seen += 1
        if depth > 200:
            ctx.add(rules.KER_MALFORMED, "model config nests too deeply", source)
            return
        if isinstance(node, list):
            todo.extend((item, depth + 1) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        _check_object(ctx, source, node)
        todo.extend((value, depth + 1) for value in node.values())


def _check_object(ctx: Context, source: Source, node: dict[str, Any]) -> None:
    class_name = node.get("class_name")
    if class_name in ("Lambda", "__lambda__", "TFOpLambda") or (
        node.get("function_type") == "lambda"
    ):
        ctx.add(rules.KER_LAMBDA, f"{class_name or 'Lambda'} layer carries Python code", source)
        return
    cfg = node.get("config")
    if isinstance(cfg, dict) and any(
        isinstance(cfg.get(k), list | dict) and cfg.get(f"{k}_type") in ("lambda", "raw")
        for k in _CODE_KEYS
    ):
        ctx.add(rules.KER_LAMBDA, "layer config holds marshalled bytecode", source)
    registered = node.get("registered_name")
    if isinstance(registered, str) and "." in registered and ">" not in registered:
        _judge(ctx, source, registered)  # a dotted callable, not a "package>Name" registration
    module = node.get("module")
    if not isinstance(module, str) or not isinstance(class_name, str):
        if isinstance(class_name, str) and class_name.startswith("Custom>"):
            ctx.add(rules.KER_CUSTOM, f"custom object {class_name!r}", source)
        return
    name = cfg if class_name == "function" and isinstance(cfg, str) else class_name
    _judge(ctx, source, f"{module}.{name}")


def _judge(ctx: Context, source: Source, dotted: str) -> None:
    module = dotted.rsplit(".", 1)[0]
    verdict = ctx.policy.verdict(dotted)
    if verdict is Verdict.DENY:
        ctx.add(rules.KER_DANGEROUS, f"config names dangerous callable {dotted}", source)
    elif verdict is Verdict.UNKNOWN and module.split(".")[0] not in _KERAS_MODULES:
        ctx.add(rules.KER_CUSTOM, f"config names {dotted}, outside Keras", source)


def scan_keras_config(ctx: Context, source: Source) -> None:
    with source.open() as fh:
        raw = fh.read(64 << 20)
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        ctx.add(rules.KER_MALFORMED, f"config.json is not valid JSON: {e}", source)
        return
    check_config(ctx, source, config)
    from donjon.scan.config import check_value

    check_value(ctx, source, config, source.name)  # targets, templates, blobs in strings


def _json_start(data: Any, at: int) -> int:
    """Where the JSON text holding position ``at`` starts: a '{' after non-text bytes."""
    low = max(0, at - (1 << 20))
    start = at
    while (start := data.rfind(b"{", low, start)) >= 0:
        if start == 0 or not 0x20 <= data[start - 1] < 0x7F:
            return int(start)
    return -1


def scan_hdf5(ctx: Context, source: Source) -> None:
    ctx.formats.append("hdf5")
    decoder = json.JSONDecoder()
    with source.open() as fh:
        try:
            data: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, AttributeError):
            data = fh.read(ctx.policy.max_member_bytes)
        try:
            # Configs are JSON string attributes (model_config, training_config) in any
            # key order: find a "class_name" key, then the start of the text holding it.
            at, found = 0, 0
            while (key := data.find(b'"class_name"', at)) >= 0 and found < 64:
                start = _json_start(data, key)
                if start < 0:
                    at = key + 1
                    continue
                end = data.find(b"\x00", key, key + (64 << 20))
                chunk = bytes(data[start : end if end > 0 else key + (64 << 20)])
                try:
                    config, used = decoder.raw_decode(chunk.decode("utf-8", "replace"))
                except ValueError:
                    at = key + 1
                    continue
                found += 1
                check_config(ctx, source, config)
                from donjon.scan.config import check_value

                check_value(ctx, source, config, "model_config")
                at = max(start + used, key + 1)
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
