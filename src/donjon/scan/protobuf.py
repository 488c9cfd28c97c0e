"""A minimal protobuf wire-format reader: enough to walk SavedModel and ONNX files.

It decodes tags and length-delimited fields only; it never builds message
classes and never follows anything outside the given bytes.
"""

from __future__ import annotations

from collections.abc import Iterator


class ProtoError(ValueError):
    """The bytes are not a valid protobuf message."""


def varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtoError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values as memoryviews."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        key, pos = varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == 0:
            value, pos = varint(view, pos)
            yield number, wire, value
        elif wire == 1:
            pos += 8
            yield number, wire, 0
        elif wire == 2:
            size, pos = varint(view, pos)
            if pos + size > len(view):
                raise ProtoError("length-delimited field runs past the end")
            yield number, wire, view[pos : pos + size]
            pos += size
        elif wire == 5:
            pos += 4
            yield number, wire, 0
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        if pos > len(view):
            raise ProtoError("truncated field")


def submessages(data: bytes | memoryview, number: int) -> Iterator[memoryview]:
    for n, wire, value in fields(data):
        if n == number and wire == 2 and isinstance(value, memoryview):
            yield value


def strings(data: bytes | memoryview, number: int) -> Iterator[str]:
    for value in submessages(data, number):
        yield bytes(value).decode("utf-8", "replace")


def ints(data: bytes | memoryview, number: int) -> Iterator[int]:
    for n, wire, value in fields(data):
        if n == number and wire == 0 and isinstance(value, int):
            yield value
