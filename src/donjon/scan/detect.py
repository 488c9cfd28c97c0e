"""Format detection by content (extensions are only a tie-breaker for protobufs)."""

from __future__ import annotations

import enum
import re
import struct


class Format(enum.StrEnum):
    PICKLE = "pickle"
    ZIP = "zip"
    TAR = "tar"
    SEVEN_ZIP = "7z"
    GZIP = "gzip"
    BZ2 = "bz2"
    XZ = "xz"
    LZMA = "lzma"
    ZLIB = "zlib"
    LZ4 = "lz4"
    NPY = "npy"
    HDF5 = "hdf5"
    GGUF = "gguf"
    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    SAVED_MODEL = "tf-savedmodel"
    TEMPLATE = "chat-template"
    CONFIG = "config"
    NATIVE = "native-code"
    OTHER = "other"


PICKLE_EXTENSIONS = {
    ".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib", ".p",
    ".sav", ".pyt", ".jl", ".dill", ".cloudpkl", ".debug_pkl",
}  # fmt: skip
_PROTO0 = re.compile(rb"^(\(|\]|\}|\)|c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n|[IFLSV].*\n|N)")


def sniff(head: bytes, name: str) -> Format:
    """The format of a stream from its first 512 bytes and its name."""
    lower = name.lower()
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return Format.ZIP
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return Format.SEVEN_ZIP
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return Format.PICKLE
    if head[:6] == b"\x93NUMPY":
        return Format.NPY
    if is_native(head):
        return Format.NATIVE
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return Format.HDF5
    if head[:4] == b"GGUF":
        return Format.GGUF
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Format.TAR
    if head[:2] == b"\x1f\x8b":
        return Format.GZIP
    if head[:3] == b"BZh":
        return Format.BZ2
    if head[:6] == b"\xfd7zXZ\x00":
        return Format.XZ
    if head[:3] == b"\x5d\x00\x00":
        return Format.LZMA
    if head[:4] == b"\x04\x22\x4d\x18":
        return Format.LZ4
    zlib_header = len(head) >= 2 and head[0] == 0x78 and head[1] in (0x01, 0x5E, 0x9C, 0xDA)
    if zlib_header and not _is_text(head):  # "x^..." could start a text file
        return Format.ZLIB
    if len(head) >= 9:
        (size,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and size > 1:
            return Format.SAFETENSORS
    if lower.endswith("saved_model.pb"):
        return Format.SAVED_MODEL
    if lower.endswith(".onnx"):
        return Format.ONNX
    if lower.endswith((".jinja", ".jinja2")) or lower.rsplit("/", 1)[-1] in (
        "tokenizer_config.json",
        "chat_template.json",
    ):
        return Format.TEMPLATE
    if _PROTO0.match(head) and (
        _looks_binaryish(head) or any(lower.endswith(e) for e in PICKLE_EXTENSIONS)
    ):
        return Format.PICKLE
    if any(lower.endswith(e) for e in PICKLE_EXTENSIONS) and head and not _is_text(head):
        return Format.PICKLE
    return Format.OTHER


_MACH_O = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")


def is_native(head: bytes) -> bool:
    """ELF, Mach-O or PE (a DOS header whose e_lfanew points at "PE\\0\\0") machine code."""
    if head[:4] == b"\x7fELF" or head[:4] in _MACH_O:
        return True
    if head[:2] == b"MZ" and len(head) >= 64:
        (pe,) = struct.unpack("<I", head[60:64])
        return head[pe : pe + 4] == b"PE\x00\x00"
    return False


def _looks_binaryish(head: bytes) -> bool:
    """Protocol-0 pickles mix opcodes and newlines; plain text rarely starts like one."""
    return head.startswith(b"c") and head.count(b"\n") >= 2 and b"." in head[-4:]


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
