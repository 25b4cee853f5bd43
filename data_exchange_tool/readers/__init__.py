"""Readers: a binary stream in, a header and numbered rows of text cells out."""

from __future__ import annotations

import zlib
from typing import BinaryIO

from .base import (
    EXTENSIONS,
    FORMATS,
    GZIP_MAGIC,
    FileRejected,
    ReadOptions,
    Row,
    TableReader,
    reject,
)

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "FileRejected",
    "ReadOptions",
    "Row",
    "TableReader",
    "detect_format",
    "open_table",
]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: magic numbers of common binary files a user might upload by mistake
BINARY_MAGIC = (
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"PAR1", "a Parquet file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
TEXT_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16 and UTF-32 (whose LE BOM starts the same)
#: control bytes that do not occur in text (TAB, LF, FF, CR and ESC do)
CONTROL_BYTES = bytes([*range(0, 9), 11, *range(14, 27), *range(28, 32)])


def detect_format(name: str, head: bytes) -> str:
    """The format of a file from its first bytes and, failing that, its name's extension.

    Raises :class:`FileRejected` with a message a user understands when the content does not
    match what the name claims (a zip renamed ``.csv``, a binary file).
    """
    if not head:
        raise reject("The file is empty.")
    claimed = _claimed_format(name)
    if head.startswith(GZIP_MAGIC):
        if claimed == "xlsx":
            raise reject(
                "Compressed XLSX workbooks are not supported: upload the .xlsx file itself "
                "(it is already compressed)."
            )
        head = _gunzip_head(head)
    kind = _content_kind(head)
    if claimed == "xlsx":
        return _check_xlsx(kind)
    if claimed:
        return _check_text(claimed, kind)
    if kind == "zip":
        return "xlsx"
    if kind == "text":
        return "csv"
    raise reject(f"This file is neither a CSV nor an XLSX file: {_describe(kind)}.")


def _claimed_format(name: str) -> str | None:
    """The format the file name's extension claims (``.gz`` aside), if any."""
    lowered = name.strip().lower().removesuffix(".gz")
    dot = lowered.rfind(".")
    return EXTENSIONS.get(lowered[dot:]) if dot >= 0 else None


def _gunzip_head(head: bytes) -> bytes:
    """As much of a gzip stream's start as ``head`` decompresses to."""
    try:
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, 64 * 1024)
    except zlib.error:
        raise reject("The compressed file is damaged: it cannot be decompressed.") from None


def _content_kind(head: bytes) -> str:
    """"zip", "ole2", "text", "binary" or the description of a known binary file type."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(OLE2_MAGIC):
        return "ole2"
    for magic, description in BINARY_MAGIC:
        if head.startswith(magic):
            return description
    if head.startswith(TEXT_BOMS):
        return "text"
    if b"\x00" in head or len(head.translate(None, CONTROL_BYTES)) < len(head) * 0.9:
        return "binary"
    return "text"


def _describe(kind: str) -> str:
    if kind == "zip":
        return "it looks like an XLSX workbook (zip)"
    if kind == "ole2":
        return (
            "it looks like an old Excel .xls workbook or a password-protected workbook. "
            "Save it in Excel as .xlsx (without a password) or as CSV"
        )
    if kind == "binary":
        return "it contains binary data"
    return f"it contains binary data (it looks like {kind})"


def _check_xlsx(kind: str) -> str:
    if kind == "zip":
        return "xlsx"
    if kind == "ole2":
        raise reject(f"This file is not an XLSX workbook: {_describe(kind)}.")
    hint = " If it is a CSV file, upload it with a .csv name." if kind == "text" else ""
    raise reject(
        f"This file is not an XLSX workbook: it is not a zip archive, as XLSX files are.{hint}"
    )


def _check_text(file_format: str, kind: str) -> str:
    if kind == "text":
        return file_format
    label = FORMATS[file_format]
    if kind == "zip":
        raise reject(
            f"This file is not a {label} file: it looks like an XLSX workbook (zip). "
            "Upload it with a .xlsx name."
        )
    raise reject(f"This file is not a {label} file: {_describe(kind)}.")


def open_table(file_format: str, stream: BinaryIO, options: ReadOptions) -> TableReader:
    """Open ``stream`` (binary, read once from the start) as a table of ``file_format``.

    CSV and TSV are streamed (gzip is decompressed on the fly); XLSX is spooled to a
    size-capped temporary file and checked before it is parsed. The header is read before
    this returns, so an unreadable file raises :class:`FileRejected` here.
    """
    if file_format in ("csv", "tsv"):
        from .csv_reader import CsvReader

        return CsvReader(stream, options, tsv=file_format == "tsv")
    if file_format == "xlsx":
        from .xlsx_reader import XlsxReader

        return XlsxReader(stream, options)
    raise reject(f'The format "{file_format}" is not supported; use CSV, TSV or XLSX.')
