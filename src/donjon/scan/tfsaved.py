"""TensorFlow SavedModel: the ops of every graph and function, from saved_model.pb.

Read without TensorFlow. File, network and Python ops are reported wherever
they are; checkpoint ops (SaveV2 ...) only outside the saver's own functions
and name scope, where they write or read files the model chooses.
"""

from __future__ import annotations

from collections.abc import Iterator

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.protobuf import ProtoError, strings, submessages

# Ops that touch the file system or the network, run Python or load native code.
UNSAFE_OPS = frozenset(
    {
        "ReadFile", "WriteFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc",
        "DeleteFile", "CreateDirectory", "RecursiveCreateDir", "CopyFile", "RenameFile",
        "ImmutableConst", "LoadLibrary", "ShellExec", "PrintV2", "WholeFileReader",
        "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2", "TFRecordReader",
        "TFRecordReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
        "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2", "DatasetToTFRecord", "SnapshotDatasetV2", "SaveDataset",
        "SaveDatasetV2", "LoadDataset", "CreateSummaryFileWriter", "WriteSummary",
        "WriteRawProtoSummary", "ImportEvent", "RpcClient", "RpcCall", "RpcServer",
        "RpcServerStart", "RpcServerRegister", "DebugIdentityV2", "DebugIdentityV3",
    }
)  # fmt: skip
# Checkpoint ops: benign inside the saver (its functions and its name scope), an
# arbitrary file write or read anywhere else (a serving signature, a model call).
SAVER_OPS = frozenset(
    {"SaveV2", "Save", "SaveSlices", "RestoreV2", "Restore", "RestoreSlice",
     "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec"}
)  # fmt: skip
_SAVER_FUNCTIONS = ("traced_save", "traced_restore", "_save_fn", "_restore_fn", "save_fn",
                    "restore_fn", "saver", "restore_from_tensors", "save_to_tensors")  # fmt: skip
_SAVER_SCOPES = ("save/", "save_", "saver", "restore/", "checkpoint")
_PRINT_TO_FILE = "PrintV2(output_stream=file://)"
_REPORTED = (UNSAFE_OPS - {"PrintV2"}) | SAVER_OPS | {_PRINT_TO_FILE}


def _writes_to_file(node: memoryview) -> bool:
    """PrintV2's ``output_stream`` attribute naming a file ("file://...") instead of a stream."""
    for entry in submessages(node, 5):  # NodeDef.attr: map<string, AttrValue>
        if next(strings(entry, 1), "") == "output_stream":
            value = next(submessages(entry, 2), memoryview(b""))
            return any(s.startswith("file://") for s in strings(value, 2))  # AttrValue.s
    return False


def _ops(graph: memoryview) -> Iterator[tuple[str, str, str]]:
    """``(op, function name or "", node name)`` for the graph and its function library."""
    for node in submessages(graph, 1):  # GraphDef.node
        name = next(strings(node, 1), "")
        for op in strings(node, 2):  # NodeDef.op
            yield (_PRINT_TO_FILE if op == "PrintV2" and _writes_to_file(node) else op), "", name
    for library in submessages(graph, 2):  # GraphDef.library
        for function in submessages(library, 1):  # FunctionDefLibrary.function
            signature = next(submessages(function, 1), memoryview(b""))
            fname = next(strings(signature, 1), "")  # OpDef.name
            for node in submessages(function, 3):  # FunctionDef.node_def
                name = next(strings(node, 1), "")
                for op in strings(node, 2):
                    if op == "PrintV2" and _writes_to_file(node):
                        op = _PRINT_TO_FILE
                    yield op, fname, name


def _saver_context(function: str, node: str) -> bool:
    lowered = function.lower()
    return any(k in lowered for k in _SAVER_FUNCTIONS) or node.lower().startswith(_SAVER_SCOPES)


def saved_model_ops(data: bytes) -> set[str]:
    """The ops that matter: file, network and Python ops, and checkpoint ops out of a saver."""
    ops: set[str] = set()
    for meta in submessages(data, 2):  # SavedModel.meta_graphs
        for graph in submessages(meta, 2):  # MetaGraphDef.graph_def
            for op, function, node in _ops(graph):
                if op in SAVER_OPS and _saver_context(function, node):
                    continue
                if op in _REPORTED or op in UNSAFE_OPS:
                    ops.add(op)
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
    bad = sorted(ops & _REPORTED)
    if bad:
        ctx.add(rules.TF_FILE_OPS, f"graph uses unsafe ops: {', '.join(bad)}", source, ops=bad)
