"""What every reader gives: a header and numbered rows of text cells.

Readers turn a binary stream into rows and know nothing of Django. Row numbers are the ones a
spreadsheet shows: the header is row 1, the first record row 2. A cell is ``None`` when it is
empty. Blank rows are skipped (their numbers are not reused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from ..exceptions import FileRejected

Row = tuple[int, list[str | None]]

#: the formats the readers read, each with the name a user knows it by
FORMATS = {"csv": "CSV", "tsv": "TSV", "xlsx": "XLSX"}
#: the format a file name's extension claims (a ``.gz`` suffix aside)
EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file; empty strings mean "detect".

    Sizes of text (``max_field_bytes``, ``max_record_bytes``) are counted in characters, as the
    ``csv`` module counts them.
    """

    encoding: str = ""
    delimiter: str = ""
    sheet_name: str = ""
    max_field_bytes: int = 1024 * 1024
    max_rows: int = 50_000_000
    xlsx_max_uncompressed_bytes: int = 2 * 1024**3
    xlsx_max_compression_ratio: int = 200
    xlsx_max_shared_strings_bytes: int = 64 * 1024**2
    temp_dir: str | None = None
    #: the largest XLSX file (compressed, as uploaded) spooled to a temporary file
    xlsx_max_file_bytes: int = 1024**3
    #: the largest CSV record (all its physical lines), which bounds a reader's memory: the
    #: csv module holds a whole record, several times over, before its cells can be dropped
    max_record_bytes: int = 16 * 1024**2
    #: how many times a gzip CSV may expand when decompressed (checked past 1 MiB of text)
    gzip_max_compression_ratio: int = 200


class TableReader(Protocol):
    """An open table: its header, then its rows, read once, in order.

    Use it as a context manager, or call :meth:`close` when done.
    """

    #: the column names; trailing blank cells are dropped, blank cells between names kept
    header: list[str]
    #: characters of text read for the rows so far (delimiters and quotes included), which
    #: the caller uses to bound what it keeps by size
    chars_read: int
    #: what was used to read the file, to show the user,
    #: e.g. {"encoding": "utf-8", "delimiter": ";"} or {"sheet": "Sheet1"}
    detected: dict[str, str]

    def rows(self) -> Iterator[Row]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def reject(message: str, line: int | None = None) -> FileRejected:
    """A :class:`FileRejected` whose ``message`` already names ``line`` where it matters.

    ``line`` is kept on the exception for callers, without appending it to the message again.
    """
    error = FileRejected(message)
    error.line = line
    return error


def column_label(index: int) -> str:
    """The 0-based column ``index`` as a person finds it: "column 4 (D)", "column 28 (AB)"."""
    letters = ""
    number = index + 1
    while number:
        number, rest = divmod(number - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return f"column {index + 1} ({letters})"


def named_columns(header: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """``header`` without its trailing blank cells, and the indexes of all its blank cells."""
    blank = tuple(i for i, name in enumerate(header) if not (name or "").strip())
    width = len(header)
    while width and width - 1 in blank:
        width -= 1
    return header[:width], blank


def unnamed_column(index: int, row: int) -> FileRejected:
    """The refusal of a file whose column ``index`` holds data under a blank header cell."""
    label = column_label(index)
    return reject(
        f"{label[0].upper()}{label[1:]} has data but no header (first in row {row}): "
        "name the column in the header row, or delete the column.",
        row,
    )


def check_unnamed(cells: list[str | None], blank: tuple[int, ...], row: int) -> None:
    """Refuse ``cells`` if one of them, under a blank header cell (``blank``), holds data."""
    size = len(cells)
    for index in blank:
        if index < size and cells[index]:
            raise unnamed_column(index, row)


def human_size(size: float) -> str:
    """``size`` bytes as a person reads it: "512 bytes", "1.5 MB", "2.0 GB"."""
    if size < 1024:
        return f"{int(size)} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TB"


__all__ = [
    "FileRejected",
    "ReadOptions",
    "Row",
    "TableReader",
    "check_unnamed",
    "column_label",
    "human_size",
    "named_columns",
    "reject",
    "unnamed_column",
]
