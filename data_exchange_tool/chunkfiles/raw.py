"""Chunks as Parquet: up to a number of rows (and of bytes), each with its spreadsheet row number.

A chunk holds the text cells of its rows, one string column per serializer field (named by the
field), plus ``__row`` (the row number) and ``__extra``: how many non-empty cells a row had
beyond the header, or, negative, how many fields it lacked (a CSV record shorter than the
header). The header's width is kept in the file's metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .parquet import ROW, read_table, write_table

EXTRA = "__extra"
HEADER_WIDTH = b"header_width"


@dataclass
class ChunkRows:
    """A decoded chunk: row numbers, extra-cell counts and one list of cells per field."""

    row_numbers: list[int]
    extra_cells: list[int]
    columns: dict[str, list[str | None]]
    #: the number of columns of the file's header (``None`` in chunks written without it)
    header_width: int | None = None

    def __len__(self) -> int:
        return len(self.row_numbers)

    def cells(self, index: int) -> dict[str, str]:
        """The non-empty cells of the row at ``index``, by field."""
        return {n: c[index] for n, c in self.columns.items() if c[index] is not None}

    def records(self) -> Iterator[tuple[int, int, dict[str, str]]]:
        """(row number, extra cells, {field: value}) with empty cells left out."""
        names = list(self.columns)
        for i, row_number in enumerate(self.row_numbers):
            data = {}
            for name in names:
                value = self.columns[name][i]
                if value is not None:
                    data[name] = value
            yield row_number, self.extra_cells[i], data


class ChunkBuilder:
    """Collects rows mapped to fields, then encodes them as one Parquet chunk.

    Rows are kept as read and turned into columns once per chunk (``zip``), which is several
    times faster than appending every cell to its column as it comes. A row is fitted to the
    header's width as it is added: cells beyond the header are counted and dropped at once
    (never kept), and a row with fewer fields is padded and marked.
    """

    def __init__(self, field_indexes: dict[str, int], header_width: int | None = None) -> None:
        self.field_indexes = field_indexes
        mapped = max(field_indexes.values(), default=-1) + 1
        self.width = max(header_width or 0, mapped)
        self.clear()

    def clear(self) -> None:
        self.row_numbers: list[int] = []
        self.cells: list[list[str | None]] = []
        self.misfits: dict[int, int] = {}  # row index: its extra cells (negative: missing)

    def __len__(self) -> int:
        return len(self.row_numbers)

    def add(self, row_number: int, cells: list[str | None]) -> None:
        """Add a row; ``cells`` is fitted to the header's width in place."""
        if len(cells) != self.width:
            self.misfits[len(self.row_numbers)] = self._fit(cells)
        self.row_numbers.append(row_number)
        self.cells.append(cells)

    def _fit(self, cells: list[str | None]) -> int:
        """Cut or pad ``cells`` to the header's width; the cells cut (non-empty), or, negative,
        the fields missing."""
        width = self.width
        size = len(cells)
        if size > width:
            extra = sum(1 for c in cells[width:] if c)
            del cells[width:]
            return extra
        cells.extend([None] * (width - size))
        return size - width

    def rows(self) -> ChunkRows:
        """The collected rows as columns; empty cells are ``None``."""
        width = self.width
        by_index = list(zip(*self.cells, strict=True)) if self.cells else [()] * width
        columns = {
            name: [value or None for value in by_index[index]]
            for name, index in self.field_indexes.items()
        }
        extras = [0] * len(self.row_numbers)
        for index, extra in self.misfits.items():
            extras[index] = extra
        return ChunkRows(list(self.row_numbers), extras, columns, width)

    def encode(self) -> bytes:
        return encode(self.rows())


def encode(rows: ChunkRows) -> bytes:
    import pyarrow as pa

    arrays = {
        ROW: pa.array(rows.row_numbers, pa.int64()),
        EXTRA: pa.array(rows.extra_cells, pa.int32()),
    }
    for name, values in rows.columns.items():
        arrays[name] = pa.array(values, pa.string())
    table = pa.table(arrays)
    if rows.header_width is not None:
        table = table.replace_schema_metadata({HEADER_WIDTH: str(rows.header_width)})
    return write_table(table)


def decode(data: bytes, fields: list[str] | None = None) -> ChunkRows:
    """Decode a chunk; with ``fields``, only those columns (and the row numbers)."""
    columns = None if fields is None else [ROW, EXTRA, *fields]
    table = read_table(data, columns)
    names = [n for n in table.column_names if n not in (ROW, EXTRA)]
    width = (table.schema.metadata or {}).get(HEADER_WIDTH)
    return ChunkRows(
        row_numbers=table.column(ROW).to_pylist(),
        extra_cells=table.column(EXTRA).to_pylist(),
        columns={n: table.column(n).to_pylist() for n in names},
        header_width=int(width) if width else None,
    )
