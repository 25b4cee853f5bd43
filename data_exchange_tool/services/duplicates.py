"""Keys repeated inside a file: found across all chunks at the end of the preview.

The key is ``Meta.unique_fields`` when declared, else each single-column unique field of the
target model that the file fills. The later row gets an error naming the earlier one. Only the
key columns of each chunk are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .. import chunks
from ..models import ImportChunk, ImportJob, RowError
from ..states import Phase
from ..storage import import_storage
from ..validation import CellError
from .chunk_work import store_errors


def key_sets(job: ImportJob) -> list[tuple[str, ...]]:
    importer = job.importer_options
    if importer.unique_fields:
        return [importer.unique_fields]
    model = importer.target_model
    return [
        (f.name,)
        for f in model._meta.concrete_fields
        if f.unique and not f.primary_key and f.name in job.column_map
    ]


Key = tuple[str, ...]


def report_duplicate_keys(job: ImportJob, ledger: Iterable[ImportChunk]) -> int:
    """Store an error on every row whose key an earlier row already used; returns the count
    of rows newly found invalid.

    Memory stays small: a first pass keeps one 64-bit hash per row (8 bytes) and sorts them to
    find the hashes seen twice; only when there are any, a second pass keeps the keys with
    those hashes to name the rows.
    """
    keys = key_sets(job)
    if not keys:
        return 0
    ledger = list(ledger)
    skip = set(
        RowError.objects.filter(job=job, phase=Phase.PREVIEW).values_list("row_number", flat=True)
    )
    fields = sorted({f for key in keys for f in key})
    total = sum(c.row_count for c in ledger)
    hashes = {key: _HashColumn(total) for key in keys}
    for _row, key, value in _key_values(ledger, keys, fields, skip):
        hashes[key].add(hash(value))
    candidates = {key: column.repeated() for key, column in hashes.items()}
    del hashes
    if not any(candidates.values()):
        return 0
    seen: dict[Key, dict[Key, int]] = {key: {} for key in keys}
    errors: list[CellError] = []
    for row, key, value in _key_values(ledger, keys, fields, skip):
        if hash(value) in candidates[key]:
            first = seen[key].setdefault(value, row)
            if first != row:
                errors.append(_duplicate(job, key, value, row, first))
    store_errors(job, None, Phase.PREVIEW, errors)
    return len({e.row_number for e in errors})


def _key_values(
    ledger: list[ImportChunk], keys: list[Key], fields: list[str], skip: set[int]
) -> Iterator[tuple[int, Key, Key]]:
    """(row number, key fields, key value) for every valid row with a complete key."""
    for chunk in ledger:
        rows = chunks.decode(import_storage().read_bytes(chunk.storage_key), fields=fields)
        for i, row_number in enumerate(rows.row_numbers):
            if row_number in skip:
                continue
            for key in keys:
                value = tuple((rows.columns[f][i] or "").strip() for f in key)
                if all(value):
                    yield row_number, key, value


class _HashColumn:
    """A preallocated array of 64-bit hashes."""

    def __init__(self, size: int) -> None:
        import numpy as np

        self.values = np.empty(size, dtype=np.int64)
        self.used = 0

    def add(self, value: int) -> None:
        self.values[self.used] = value
        self.used += 1

    def repeated(self) -> set[int]:
        """The hashes that occur more than once."""
        values = self.values[: self.used]
        values.sort()
        same = values[1:] == values[:-1]
        return set(values[1:][same].tolist())


def _duplicate(
    job: ImportJob, key: tuple[str, ...], value: tuple, row: int, first: int
) -> CellError:
    columns = ", ".join(job.column_map.get(f, f) for f in key)
    shown = ", ".join(value)
    return CellError(
        row,
        job.column_map.get(key[0], key[0]),
        key[0],
        "duplicate_key",
        f"{columns} {shown!r} is repeated: row {first} already has it.",
        shown,
    )
