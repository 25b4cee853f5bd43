"""Chunks as Parquet: a fixed number of rows, each with its spreadsheet row number.

A chunk holds the text cells of its rows, one string column per serializer field (named by the
field), plus ``__row`` (the row number) and ``__extra`` (how many non-empty cells a row had
beyond the header). pyarrow is imported here only.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

ROW = "__row"
EXTRA = "__extra"


@dataclass
class ChunkRows:
    """A decoded chunk: row numbers, extra-cell counts and one list of cells per field."""

    row_numbers: list[int]
    extra_cells: list[int]
    columns: dict[str, list[str | None]]

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
    times faster than appending every cell to its column as it comes.
    """

    def __init__(self, field_indexes: dict[str, int]) -> None:
        self.field_indexes = field_indexes
        self.width = max(field_indexes.values(), default=-1) + 1
        self.clear()

    def clear(self) -> None:
        self.row_numbers: list[int] = []
        self.cells: list[list[str | None]] = []

    def __len__(self) -> int:
        return len(self.row_numbers)

    def add(self, row_number: int, cells: list[str | None]) -> None:
        self.row_numbers.append(row_number)
        self.cells.append(cells)

    def rows(self) -> ChunkRows:
        """The collected rows as columns; empty cells are ``None``."""
        width = self.width
        extras: list[int] = []
        fitted: list[list[str | None]] = []
        for cells in self.cells:
            size = len(cells)
            if size > width:
                extras.append(sum(1 for c in cells[width:] if c))
                cells = cells[:width]
            else:
                extras.append(0)
                if size < width:
                    cells = cells + [None] * (width - size)
            fitted.append(cells)
        by_index = list(zip(*fitted, strict=True)) if fitted else [()] * width
        columns = {
            name: [value or None for value in by_index[index]]
            for name, index in self.field_indexes.items()
        }
        return ChunkRows(list(self.row_numbers), extras, columns)

    def encode(self) -> bytes:
        return encode(self.rows())


def encode(rows: ChunkRows) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {
        ROW: pa.array(rows.row_numbers, pa.int64()),
        EXTRA: pa.array(rows.extra_cells, pa.int32()),
    }
    for name, values in rows.columns.items():
        arrays[name] = pa.array(values, pa.string())
    sink = io.BytesIO()
    # plain (not dictionary) pages: reading them back into Python is twice as fast
    pq.write_table(pa.table(arrays), sink, compression="zstd", use_dictionary=False)
    return sink.getvalue()


def decode(data: bytes, fields: list[str] | None = None) -> ChunkRows:
    """Decode a chunk; with ``fields``, only those columns (and the row numbers)."""
    import pyarrow.parquet as pq

    columns = None if fields is None else [ROW, EXTRA, *fields]
    table = pq.read_table(io.BytesIO(data), columns=columns)
    names = [n for n in table.column_names if n not in (ROW, EXTRA)]
    return ChunkRows(
        row_numbers=table.column(ROW).to_pylist(),
        extra_cells=table.column(EXTRA).to_pylist(),
        columns={n: table.column(n).to_pylist() for n in names},
    )
