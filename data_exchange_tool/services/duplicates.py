"""Keys repeated inside a file: found across all chunks at the end of the preview.

The key is ``Meta.unique_fields`` when declared, else each single-column unique field of the
target model that the file fills. The later row gets an error naming the earlier one. Only the
key columns of each chunk are read.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def report_duplicate_keys(job: ImportJob, ledger: Iterable[ImportChunk]) -> int:
    """Store an error on every row whose key an earlier row already used; returns the count
    of rows newly found invalid."""
    keys = key_sets(job)
    if not keys:
        return 0
    already_invalid = set(
        RowError.objects.filter(job=job, phase=Phase.PREVIEW).values_list("row_number", flat=True)
    )
    fields = sorted({f for key in keys for f in key})
    seen: dict[tuple[str, ...], dict[tuple, int]] = {key: {} for key in keys}
    errors: list[CellError] = []
    for chunk in ledger:
        rows = chunks.decode(import_storage().read_bytes(chunk.storage_key), fields=fields)
        for i, row_number in enumerate(rows.row_numbers):
            if row_number in already_invalid:
                continue
            for key in keys:
                value = tuple((rows.columns[f][i] or "").strip() for f in key)
                if not all(value):
                    continue
                first = seen[key].setdefault(value, row_number)
                if first != row_number:
                    errors.append(_duplicate(job, key, value, row_number, first))
    store_errors(job, None, Phase.PREVIEW, errors)
    return len({e.row_number for e in errors})


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
