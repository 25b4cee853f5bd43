"""What every reader gives: a header and numbered rows of text cells.

Readers turn a binary stream into rows and know nothing of Django. Row numbers are the ones a
spreadsheet shows: the header is row 1, the first record row 2. A cell is ``None`` when it is
empty. Blank rows are skipped (their numbers are not reused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..exceptions import FileRejected

Row = tuple[int, list[str | None]]


@dataclass(frozen=True)
class ReadOptions:
    """How to read a file; empty strings mean "detect"."""

    encoding: str = ""
    delimiter: str = ""
    sheet_name: str = ""
    max_field_bytes: int = 1024 * 1024
    max_rows: int = 50_000_000
    xlsx_max_uncompressed_bytes: int = 2 * 1024**3
    xlsx_max_compression_ratio: int = 200
    xlsx_max_shared_strings_bytes: int = 256 * 1024**2
    temp_dir: str | None = None


class TableReader(Protocol):
    """An open table: its header, then its rows, read once, in order."""

    header: list[str]
    #: what was used to read the file, to show the user (e.g. {"encoding": "utf-8", "delimiter": ";"})
    detected: dict[str, str]

    def rows(self) -> Iterator[Row]: ...

    def close(self) -> None: ...


__all__ = ["FileRejected", "ReadOptions", "Row", "TableReader"]


