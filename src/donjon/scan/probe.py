"""Content probes for files no magic number names: pickles of any protocol, protobufs.

A pickle needs no header (protocols 0 and 1 have none, and a protocol-2+
stream may leave out PROTO), so a file is taken for a pickle when the
interpreter can run its first bytes the way ``pickle.load`` would: it imports
something and goes on with valid opcodes, or runs valid opcodes up to the end
of the probed window. A pickle that imports nothing builds plain data and
cannot run code, so it needs no analysis; text rarely survives a few opcodes.
"""

from __future__ import annotations

import io

from donjon.scan.policy import ScanPolicy
from donjon.scan.protobuf import ProtoError, varint

PROBE_BYTES = 64 << 10
_MIN_OPCODES = 16
_MAX_STREAMS = 8  # a window of valid opcodes this long without STOP is a pickle too


def looks_like_pickle(head: bytes, policy: ScanPolicy, *, whole: bool) -> bool:
    """True when ``head`` (the file's first bytes; ``whole`` when that is all of it)
    runs as a pickle: STOP reached, an import made, or valid opcodes to the end."""
    from donjon.scan.pickle_vm import PickleVM
    from donjon.scan.reader import Reader

    if not head or head[:1].isspace():
        return False
    vm = PickleVM(policy)
    vm.plain = True  # malformed-stream issues are not wanted here, only the outcome
    reader = Reader(io.BytesIO(head))
    for _ in range(_MAX_STREAMS):  # legacy torch.save: five pickles back to back
        complete = vm.run_stream(reader)
        last = vm.opcodes if complete else vm.opcodes - 1  # the last opcode that ran whole
        if any(use.opcode_index < last for use in vm.uses.values()):
            return True  # an import, and at least one more valid opcode after it
        if not complete:
            return not whole and reader.pos >= len(head) and last >= _MIN_OPCODES
        if reader.pos >= len(head):
            return False
    return False


# Top-level fields (number -> wire type) of onnx.ModelProto and tensorflow.SavedModel.
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}
_SAVED_MODEL_FIELDS = {1: 0, 2: 2}


def _top_fields(head: bytes) -> list[tuple[int, int, int, int]]:
    """``(number, wire, value or size, start)`` of top-level fields; the last may run past."""
    out: list[tuple[int, int, int, int]] = []
    pos = 0
    while pos < len(head) and len(out) < 64:
        key, pos = varint(head, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == 0:
            value, pos = varint(head, pos)
            out.append((number, wire, value, pos))
        elif wire == 2:
            size, pos = varint(head, pos)
            out.append((number, wire, size, pos))
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            out.append((number, wire, 0, pos))
        else:
            raise ProtoError(f"wire type {wire}")
    return out


def protobuf_kind(head: bytes) -> str | None:
    """``"onnx"`` or ``"tf-savedmodel"`` when the first bytes fit that schema, else None."""
    if not head or head[0] != 0x08:  # both messages start with field 1, a varint
        return None
    try:
        found = _top_fields(head)
    except ProtoError:
        return None
    if not found:
        return None
    numbers = {n for n, _, _, _ in found}
    if all(_ONNX_FIELDS.get(n) == w for n, w, _, _ in found) and 7 in numbers:
        ir_version = found[0][2]
        return "onnx" if 1 <= ir_version <= 64 else None
    if all(_SAVED_MODEL_FIELDS.get(n) == w for n, w, _, _ in found) and 2 in numbers:
        _, _, size, start = next(f for f in found if f[0] == 2)
        meta = head[start : start + min(size, 64)]
        try:
            inner = _top_fields(meta)
        except ProtoError:
            return None
        if inner and inner[0][0] in (1, 2) and inner[0][1] == 2:  # meta_info_def, graph_def
            return "tf-savedmodel"
    return None
