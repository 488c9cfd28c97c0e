"""Reading a user's text and CSV files the way they were written: one rule for every reader.

Spreadsheets and editors write more than plain UTF-8 with commas: a byte-order mark (Excel's
"CSV UTF-8"), UTF-16 (Excel's "Unicode text", PowerShell 5's ``>``), semicolons (locales with
a decimal comma), CRLF line ends. Every reader of tables (the data checks, the gateway's and
the watch's profiles) decodes and splits them with these functions, so a file one command
accepts is read the same way by the next. Text that is not UTF-8 and carries no byte-order
mark is refused with the offset of the first bad byte: it is never guessed (a guessed
encoding would hash, compare and forward other text than the file holds).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from donjon.errors import InputError

# Byte-order marks, longest first (UTF-32-LE's starts with UTF-16-LE's); each codec named
# here reads its mark and drops it.
BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
DELIMITERS = (",", ";", "\t", "|")


def bom_encoding(head: bytes) -> str:
    """The encoding a file's first bytes announce with a byte-order mark, else ``utf-8``."""
    return next((name for bom, name in BOMS if head.startswith(bom)), "utf-8")


def sniff_delimiter(header: str, suffix: str = ".csv") -> str:
    """The delimiter of a CSV file from its header line: a tab for ``.tsv``; for any other
    file a comma, unless the header is one field by commas and several by ``;``, a tab or
    ``|`` (then the one that splits it most)."""
    if suffix.lower() == ".tsv":
        return "\t"
    widths = {sep: len(next(csv.reader([header], delimiter=sep), [])) for sep in DELIMITERS}
    best = max(DELIMITERS, key=lambda sep: widths[sep])
    return best if widths[","] <= 1 and widths[best] > 1 else ","


def decode_text(raw: bytes, where: str) -> str:
    """``raw`` as text (a byte-order mark decides the encoding, else UTF-8); InputError
    naming ``where`` and the first bad byte when it is neither."""
    encoding = bom_encoding(raw)
    if encoding in ("utf-8", "utf-8-sig") and b"\x00" in raw[:4096]:
        raise InputError(
            f"{where} is not a text file (NUL bytes at its start: a spreadsheet, Parquet or "
            f"another binary format?)"
        )
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"{where} is not {encoding.upper().removesuffix('-SIG')} text: byte "
            f"0x{raw[e.start]:02x} at offset {e.start} (line {line}); save it as UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8.csv)"
        ) from None


def read_text(path: Path, what: str = "file") -> str:
    """The text of the file at ``path``, decoded by :func:`decode_text`; InputError when it
    cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from e
    return decode_text(raw, f"{what} {path}" if what != "file" else str(path))


def read_csv_rows(path: Path, what: str = "file") -> list[list[str]]:
    """The rows of the CSV (or ``.tsv``) file at ``path`` as lists of cells, blank lines
    left out; the encoding and the delimiter as :func:`decode_text` and
    :func:`sniff_delimiter` find them. InputError when it cannot be read or parsed."""
    text = read_text(path, what)
    delimiter = sniff_delimiter(text.split("\n", 1)[0].rstrip("\r"), path.suffix)
    try:
        return [
            row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if row
        ]
    except csv.Error as e:
        raise InputError(f"{path} is not a readable CSV file: {e}") from e
