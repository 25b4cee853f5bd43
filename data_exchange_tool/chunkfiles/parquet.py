"""The one Parquet writer and reader of chunk files; pyarrow is imported only when used."""

from __future__ import annotations

import io
from typing import Any

ROW = "__row"  # the column of spreadsheet row numbers, in every chunk file


def write_table(table: Any) -> bytes:
    """Parquet bytes of a pyarrow table, zstd-compressed, with plain (not dictionary) pages:
    reading them back into Python is twice as fast."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False)
    return sink.getvalue()


def read_table(data: bytes, columns: list[str] | None = None) -> Any:
    """The pyarrow table of Parquet bytes; with ``columns``, only those."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data), columns=columns)
