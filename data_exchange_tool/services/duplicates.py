"""Keys repeated inside a file: found across all chunks at the end of the preview.

The key is ``Meta.unique_fields`` when declared, else each single-column unique field of the
target model that the file fills. The later row gets an error naming the earlier one.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from typing import Any

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
COUNT = struct.Struct("<I")


def key_digest(value: Key) -> int:
    """A 64-bit hash of a key, the same in every process (unlike ``hash()``)."""
    data = "\x1f".join(value).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def chunk_key_hashes(job: ImportJob, rows: chunks.ChunkRows, valid: set[int]) -> bytes | None:
    """The key hashes of a chunk's valid rows, per key set, to store on the chunk."""
    import numpy as np

    keys = key_sets(job)
    if not keys:
        return None
    per_key: dict[Key, list[int]] = {key: [] for key in keys}
    for _row, key, value in _row_keys(rows, keys, valid):
        per_key[key].append(key_digest(value))
    blob = bytearray()
    for key in keys:
        blob += COUNT.pack(len(per_key[key])) + np.array(per_key[key], dtype="<i8").tobytes()
    return bytes(blob)


#: hashes sorted at once; a bigger file is checked in several passes over the stored hashes
HASHES_PER_PASS = 2_000_000


def report_duplicate_keys(job: ImportJob, ledger: Iterable[ImportChunk]) -> int:
    """Store an error on every row whose key an earlier row already used; returns the count
    of rows newly found invalid.

    The first pass reads only the 64-bit key hashes the chunks stored at validation, from the
    database, and sorts them to find hashes seen twice, a slice of the hash space at a time so
    that memory stays under 40 MB whatever the file's size. Only when a hash repeats, a second
    pass reads the chunks' key columns to name the rows.
    """
    keys = key_sets(job)
    if not keys:
        return 0
    ledger = list(ledger)
    total = sum(c.valid_rows or 0 for c in ledger)
    candidates = _repeated_hashes(job, keys, -(-total // HASHES_PER_PASS))
    if not any(candidates.values()):
        return 0
    return _name_duplicates(job, ledger, keys, candidates)


def _repeated_hashes(job: ImportJob, keys: list[Key], passes: int) -> dict[Key, set[int]]:
    """The stored key hashes that occur more than once, per key set."""
    import numpy as np

    candidates: dict[Key, set[int]] = {key: set() for key in keys}
    for part in range(max(passes, 1)):
        pieces: dict[Key, list[Any]] = {key: [] for key in keys}
        blobs = ImportChunk.objects.filter(job=job).values_list("key_hashes", flat=True)
        for blob in blobs.iterator(chunk_size=20):
            for key, hashes in _stored_hashes(bytes(blob or b""), keys):
                pieces[key].append(hashes[hashes % passes == part] if passes > 1 else hashes)
        for key in keys:
            values = np.concatenate(pieces[key]) if pieces[key] else np.empty(0, np.int64)
            pieces[key] = []
            values.sort()
            candidates[key] |= set(values[1:][values[1:] == values[:-1]].tolist())
    return candidates


def _stored_hashes(blob: bytes, keys: list[Key]) -> Iterator[tuple[Key, Any]]:
    import numpy as np

    offset = 0
    for key in keys:
        if offset >= len(blob):
            return
        (count,) = COUNT.unpack_from(blob, offset)
        offset += COUNT.size
        yield key, np.frombuffer(blob, dtype="<i8", count=count, offset=offset)
        offset += 8 * count


def _name_duplicates(
    job: ImportJob, ledger: list[ImportChunk], keys: list[Key], candidates: dict[Key, set[int]]
) -> int:
    skip = set(
        RowError.objects.filter(job=job, phase=Phase.PREVIEW).values_list("row_number", flat=True)
    )
    fields = sorted({f for key in keys for f in key})
    seen: dict[Key, dict[Key, int]] = {key: {} for key in keys}
    errors: list[CellError] = []
    for chunk in ledger:
        rows = chunks.decode(import_storage().read_bytes(chunk.storage_key), fields=fields)
        valid = set(rows.row_numbers) - skip
        for row, key, value in _row_keys(rows, keys, valid):
            if key_digest(value) in candidates[key]:
                first = seen[key].setdefault(value, row)
                if first != row:
                    errors.append(_duplicate(job, key, value, row, first))
    store_errors(job, None, Phase.PREVIEW, errors)
    return len({e.row_number for e in errors})


def _row_keys(
    rows: chunks.ChunkRows, keys: list[Key], valid: set[int]
) -> Iterator[tuple[int, Key, Key]]:
    """(row number, key fields, key value) for every valid row with a complete key."""
    for i, row_number in enumerate(rows.row_numbers):
        if row_number not in valid:
            continue
        for key in keys:
            value = tuple((rows.columns[f][i] or "").strip() for f in key)
            if all(value):
                yield row_number, key, value


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
