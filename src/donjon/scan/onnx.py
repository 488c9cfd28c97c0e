"""ONNX: external-data locations and operator domains, read from the protobuf directly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from donjon.scan import rules
from donjon.scan.archives import member_escapes
from donjon.scan.context import Context, Source
from donjon.scan.protobuf import ProtoError, fields, strings, submessages

STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
     "com.microsoft", "com.microsoft.nchwc", "com.ms.internal.nhwc", "org.pytorch.aten",
     "pkg.onnxscript.torch_lib", "pkg.onnxscript.torch_lib.common"}
)  # fmt: skip


def _tensors(graph: memoryview, depth: int = 0) -> Iterator[memoryview]:
    if depth > 16:
        return
    yield from submessages(graph, 5)  # GraphProto.initializer
    for sparse in submessages(graph, 15):  # sparse_initializer: values, indices
        yield from submessages(sparse, 1)
        yield from submessages(sparse, 2)
    for node in submessages(graph, 1):
        for attribute in submessages(node, 5):
            yield from submessages(attribute, 5)  # AttributeProto.t
            yield from submessages(attribute, 10)  # AttributeProto.tensors
            for sub in [*submessages(attribute, 6), *submessages(attribute, 11)]:
                yield from _tensors(sub, depth + 1)


def _nodes(graph: memoryview, field: int = 1, depth: int = 0) -> Iterator[memoryview]:
    """Every node of a graph (or of a function, ``field`` 7), subgraphs included."""
    if depth > 16:
        return
    for node in submessages(graph, field):
        yield node
        for attribute in submessages(node, 5):
            for sub in [*submessages(attribute, 6), *submessages(attribute, 11)]:
                yield from _nodes(sub, 1, depth + 1)


def _function_tensors(function: memoryview) -> Iterator[memoryview]:
    for node in _nodes(function, 7):
        for attribute in submessages(node, 5):
            yield from submessages(attribute, 5)
            yield from submessages(attribute, 10)


def external_locations(model: bytes) -> list[str]:
    found: list[str] = []
    tensors = [t for graph in submessages(model, 7) for t in _tensors(graph)]
    tensors += [t for function in submessages(model, 25) for t in _function_tensors(function)]
    for tensor in tensors:
        for entry in submessages(tensor, 13):  # TensorProto.external_data
            pairs = dict(zip(strings(entry, 1), strings(entry, 2), strict=False))
            if "location" in pairs:
                found.append(pairs["location"])
    return found


def model_domains(model: bytes) -> set[str]:
    """Operator domains that need a custom-op library: neither standard nor model-local.

    A model-local function (ModelProto.functions) defines ``(domain, name)``; a
    node that calls it runs ONNX ops, not native code, so its domain is fine.
    """
    functions = list(submessages(model, 25))
    local = {(next(strings(f, 10), ""), next(strings(f, 1), "")) for f in functions}
    local_domains = {domain for domain, _ in local}
    nodes = [n for graph in submessages(model, 7) for n in _nodes(graph)]
    nodes += [n for function in functions for n in _nodes(function, 7)]
    domains: set[str] = set()
    for node in nodes:
        domain = next(strings(node, 7), "")
        if (domain, next(strings(node, 4), "")) not in local:
            domains.add(domain)
    for opset in [*submessages(model, 8), *(o for f in functions for o in submessages(f, 9))]:
        domains.update(d for d in strings(opset, 1) if d not in local_domains)
    return domains


def escapes(folder: str | None, location: str) -> bool:
    if member_escapes(location):
        return True
    if folder is None:
        return False
    base = Path(folder).resolve()
    target = Path(os.path.normpath(base / location))
    if target.is_symlink():
        target = target.resolve()
    return base != target and base not in target.parents


def scan_onnx(ctx: Context, source: Source) -> None:
    ctx.formats.append("onnx")
    with source.open() as fh:
        data = fh.read(ctx.policy.max_member_bytes)
    try:
        if not any(n == 7 for n, _, _ in fields(data)):
            raise ProtoError("no graph")
        locations = external_locations(data)
        domains = model_domains(data)
    except ProtoError as e:
        ctx.add(rules.ONX_MALFORMED, f"not a valid ONNX model: {e}", source)
        return
    metadata = {
        next(strings(entry, 1), ""): next(strings(entry, 2), "")
        for entry in submessages(data, 14)  # ModelProto.metadata_props
    }
    if metadata:  # templates, targets and configs in string metadata, judged by content
        from donjon.scan.config import check_value

        check_value(ctx, source, metadata, "metadata_props")
    for location in sorted(set(locations)):
        if escapes(source.folder, location):
            ctx.add(
                rules.ONX_EXTERNAL,
                f"external data location {location!r} leaves the model folder",
                source,
                location=location,
            )
    custom = sorted(domains - STANDARD_DOMAINS)
    if custom:
        ctx.add(
            rules.ONX_DOMAIN,
            f"custom operator domains: {', '.join(custom)}",
            source,
            domains=custom,
        )
