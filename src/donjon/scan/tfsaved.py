"""TensorFlow SavedModel: list the graph's ops from saved_model.pb, without TensorFlow."""

from __future__ import annotations

from collections.abc import Iterator

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.protobuf import ProtoError, strings, submessages

# Ops that touch the file system, run Python or load native code when the graph runs.
UNSAFE_OPS = frozenset(
    {
        "ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc",
        "DeleteFile", "CreateDirectory", "RecursiveCreateDir", "CopyFile", "RenameFile",
        "ImmutableConst", "LoadLibrary", "ShellExec", "PrintV2",
    }
)  # fmt: skip
_EXFIL_OPS = frozenset({"DebugIdentityV2", "DebugIdentityV3"})


def _nodes_ops(graph: memoryview) -> Iterator[str]:
    for node in submessages(graph, 1):  # GraphDef.node
        yield from strings(node, 2)  # NodeDef.op
    for library in submessages(graph, 2):  # GraphDef.library
        for function in submessages(library, 1):  # FunctionDefLibrary.function
            for node in submessages(function, 3):  # FunctionDef.node_def
                yield from strings(node, 2)


def saved_model_ops(data: bytes) -> set[str]:
    ops: set[str] = set()
    for meta in submessages(data, 2):  # SavedModel.meta_graphs
        for graph in submessages(meta, 2):  # MetaGraphDef.graph_def
            ops.update(_nodes_ops(graph))
    return ops


def scan_saved_model(ctx: Context, source: Source) -> None:
    ctx.formats.append("tf-savedmodel")
    with source.open() as fh:
        data = fh.read(ctx.policy.max_member_bytes)
    try:
        ops = saved_model_ops(data)
    except ProtoError as e:
        ctx.add(rules.TF_MALFORMED, f"saved_model.pb is not a valid SavedModel: {e}", source)
        return
    bad = sorted(ops & (UNSAFE_OPS - {"PrintV2"}))
    if bad:
        ctx.add(rules.TF_FILE_OPS, f"graph uses unsafe ops: {', '.join(bad)}", source, ops=bad)
