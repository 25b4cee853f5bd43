"""Chunk files: a chunk's rows as Parquet, beside the source in the import storage.

- :mod:`.raw`: the text cells of a chunk as the split wrote them (:class:`ChunkRows`);
- :mod:`.validated`: a chunk's validated rows, written at preview for the import
  (:class:`StoredRows`);
- :mod:`.parquet`: the one Parquet writer and reader both use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..storage import import_storage
from . import raw, validated
from .raw import ChunkBuilder, ChunkRows
from .validated import ABSENT, NotStorable, StoredRows, valid_key

if TYPE_CHECKING:
    from ..validation.recheck import Plan

__all__ = [
    "ABSENT",
    "ChunkBuilder",
    "ChunkRows",
    "NotStorable",
    "StoredRows",
    "load_rows",
    "load_validated",
    "raw",
    "save_validated",
    "valid_key",
    "validated",
]


def load_rows(storage_key: str, fields: list[str] | None = None) -> ChunkRows:
    """A chunk's rows as the split stored them; with ``fields``, only those columns."""
    return raw.decode(import_storage().read_bytes(storage_key), fields)


def save_validated(plan: Plan, chunk_key: str, rows: list[tuple[int, dict[str, Any]]]) -> None:
    """Store a chunk's validated rows beside it; raises :class:`NotStorable`."""
    import_storage().write_bytes(valid_key(chunk_key), validated.encode(plan, rows))


def load_validated(plan: Plan, chunk_key: str) -> StoredRows | None:
    """A chunk's validated rows as stored at preview; ``None`` when there are none (or they
    were written for another model)."""
    try:
        data = import_storage().read_bytes(valid_key(chunk_key))
    except FileNotFoundError:
        return None
    return validated.decode(plan, data)
