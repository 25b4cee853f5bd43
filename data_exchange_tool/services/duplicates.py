"""Keys repeated inside a file: found across all chunks at the end of the preview.

The keys are ``Meta.unique_fields`` and every unique constraint of the target model the
serializer fills: each unique field, each ``unique_together`` and each ``UniqueConstraint`` on
fields (one with a ``condition`` or on expressions is left to the database at import). Keys are
compared on the values the serializer validated, in a canonical form: ``01`` and ``1`` in an
integer field are one number, ``2024-1-1`` and ``2024-01-01`` one date, and what
``validate_<field>()`` returns counts, not what the file says. The later row gets an error
naming the earlier one.

Memory stays bounded whatever the file's size: each chunk's validation stores one 64-bit hash
per row and key (0: the row has no key), the reducer sorts the hashes to find those that
repeat, and only the rows whose hash repeats are validated again to compare their keys
exactly, so that two keys which merely share a hash are never reported.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.utils.translation import gettext as _

from .. import chunkfiles
from ..models import ImportChunk, ImportJob
from ..states import Phase
from ..validation import CellError, writable_fields
from ..writers import constant_default, uses_bulk_path
from .chunk_ledger import store_errors
from .chunk_work import validate_rows

COUNT = struct.Struct("<I")
ABSENT: Any = object()  # a value the validated data does not give and no constant default fills
NO_KEY = 0  # the stored hash of a row without a (complete) key


@dataclass(frozen=True)
class KeyPart:
    """One field of a key: where its value is in the validated data and in the file."""

    source: str  # key in the validated data
    column: str  # serializer field (the chunk's column, ``job.column_map``'s key)
    default: Any  # the value written when the validated data leaves the field out, or ABSENT


@dataclass(frozen=True)
class UniqueKey:
    """A set of fields whose values no two rows may share."""

    parts: tuple[KeyPart, ...]
    nulls_distinct: bool = True

    def text(self, data: dict[str, Any]) -> str | None:
        """The canonical text of this key in validated ``data``; ``None``: no complete key."""
        if len(self.parts) == 1:  # the common case, on the preview's hot path
            part = self.parts[0]
            value = data.get(part.source, part.default)
            if type(value) is str:
                return "s" + value
        texts = []
        for part in self.parts:
            value = data.get(part.source, part.default)
            if value is ABSENT:
                return None
            if isinstance(value, models.Model):
                value = value.pk
            if value is None:
                if self.nulls_distinct:
                    return None
                texts.append("\x00")
            else:
                texts.append(canonical(value))
        if len(texts) == 1:
            return texts[0]
        return "".join(f"{len(t)}:{t}" for t in texts)

    def shown(self, cells: dict[str, str]) -> str:
        """The key as the file writes it."""
        return ", ".join((cells.get(p.column) or "").strip() for p in self.parts)


def key_sets(job: ImportJob) -> list[UniqueKey]:
    """The keys a file must not repeat, ``Meta.unique_fields`` first; none twice."""
    importer = job.importer_options
    model = importer.target_model
    serializer = importer.serializer_class(context={"import_job": job})
    written = _written(model, serializer)
    defaults = uses_bulk_path(serializer) and not importer.unique_fields
    declared = [(tuple(importer.unique_fields), True)] if importer.unique_fields else []
    keys: list[UniqueKey] = []
    seen: set[frozenset[str]] = set()
    for names, nulls_distinct in declared + _model_keys(model):
        fields = [_model_field(model, name) for name in names]
        if not names or None in fields:
            continue
        same = frozenset(f.name for f in fields)
        model_key = not declared or names != declared[0][0]
        if same in seen or (model_key and any(f.name not in written for f in fields)):
            continue  # a model key is checked when the serializer fills all its fields
        seen.add(same)
        parts = tuple(_part(f, written, defaults) for f in fields)
        keys.append(UniqueKey(parts, nulls_distinct))
    return keys


def _model_keys(model: type[models.Model]) -> list[tuple[tuple[str, ...], bool]]:
    """(field names, whether nulls are distinct) of each unique constraint the rows fill."""
    meta = model._meta
    keys = [((f.name,), True) for f in meta.concrete_fields if f.unique]
    keys += [(tuple(names), True) for names in meta.unique_together]
    keys += [  # without a condition or expressions
        (tuple(c.fields), getattr(c, "nulls_distinct", None) is not False)
        for c in meta.total_unique_constraints
    ]
    return keys


def _model_field(model: type[models.Model], name: str) -> models.Field | None:
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    return field if getattr(field, "concrete", False) else None


def _written(model: type[models.Model], serializer: Any) -> dict[str, tuple[str, str]]:
    """Model field name → (key in the validated data, serializer field) for each field the
    serializer writes straight to the model."""
    written: dict[str, tuple[str, str]] = {}
    for name, f in writable_fields(serializer).items():
        attrs = getattr(f, "source_attrs", None) or []
        if len(attrs) != 1:
            continue
        field = _model_field(model, attrs[0])
        if field is not None:
            written.setdefault(field.name, (attrs[0], name))
    return written


def _part(field: models.Field, written: dict[str, tuple[str, str]], defaults: bool) -> KeyPart:
    source, column = written.get(field.name, (field.name, field.name))
    return KeyPart(source, column, constant_default(field, ABSENT) if defaults else ABSENT)


# -- canonical values --------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """A text equal for two values exactly when the database stores them as equal."""
    kind = type(value)
    if kind is str:
        return "s" + value
    if kind is int:
        return "n" + str(value)
    convert = _CANONICAL.get(kind)
    if convert is not None:
        return convert(value)
    for base, convert in _CANONICAL.items():
        if isinstance(value, base):
            return convert(value)
    return "r" + kind.__qualname__ + ":" + repr(value)


def _decimal(value: decimal.Decimal) -> str:
    if not value.is_finite():
        return "n" + str(value)
    if value == value.to_integral_value():
        return "n" + str(int(value))
    return "n" + format(value.normalize(), "f")


def _float(value: float) -> str:
    if value.is_integer():
        return "n" + str(int(value))
    return "n" + repr(value)


def _datetime(value: datetime.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    return "t" + value.isoformat()


_CANONICAL: dict[type, Any] = {
    bool: lambda v: "b1" if v else "b0",
    str: lambda v: "s" + v,
    int: lambda v: "n" + str(int(v)),
    decimal.Decimal: _decimal,
    float: _float,
    datetime.datetime: _datetime,
    datetime.date: lambda v: "d" + v.isoformat(),
    datetime.time: lambda v: "h" + v.isoformat(),
    datetime.timedelta: lambda v: "p" + str(v // datetime.timedelta(microseconds=1)),
    uuid.UUID: lambda v: "u" + v.hex,
    bytes: lambda v: "x" + v.hex(),
    list: lambda v: "j" + json.dumps(v, sort_keys=True, default=str),
    dict: lambda v: "j" + json.dumps(v, sort_keys=True, default=str),
}


def key_digest(text: str) -> int:
    """A 64-bit hash of a key's canonical text, the same in every process (unlike ``hash()``);
    never :data:`NO_KEY`."""
    data = text.encode("utf-8", "surrogatepass")
    digest = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
    return digest or 1


# -- per chunk ---------------------------------------------------------------------------------


def chunk_key_hashes(
    job: ImportJob, row_numbers: list[int], valid: list[tuple[int, dict[str, Any]]]
) -> bytes | None:
    """The key hashes of a chunk, per key, one per row in the chunk's order (:data:`NO_KEY` for
    an invalid row or one without the key), computed on the validated ``valid`` rows."""
    import numpy as np

    keys = key_sets(job)
    if not keys:
        return None
    position = {row: i for i, row in enumerate(row_numbers)}
    per_key = []
    for key in keys:
        hashes = [NO_KEY] * len(row_numbers)
        text_of = key.text
        for row, data in valid:
            text = text_of(data)
            if text is not None:
                hashes[position[row]] = key_digest(text)
        per_key.append(hashes)
    blob = bytearray()
    for hashes in per_key:
        blob += COUNT.pack(len(hashes)) + np.array(hashes, dtype="<i8").tobytes()
    return bytes(blob)


def _stored_hashes(blob: bytes, count: int) -> Iterator[Any]:
    """The hash arrays of a chunk's blob, one per key (fewer if the blob is short)."""
    import numpy as np

    offset = 0
    for _key in range(count):
        if offset >= len(blob):
            return
        (size,) = COUNT.unpack_from(blob, offset)
        offset += COUNT.size
        yield np.frombuffer(blob, dtype="<i8", count=size, offset=offset)
        offset += 8 * size


# -- the reducer -------------------------------------------------------------------------------

#: hashes sorted at once; a bigger file is checked in several passes over the stored hashes
HASHES_PER_PASS = 2_000_000


def report_duplicate_keys(job: ImportJob, ledger: Iterable[ImportChunk]) -> int:
    """Store an error on every row whose key an earlier row already used; returns the count
    of rows newly found invalid.

    The first pass reads only the 64-bit key hashes the chunks stored at validation, from the
    database, and sorts them to find hashes seen twice, a slice of the hash space at a time so
    that memory stays under 40 MB whatever the file's size. Only when a hash repeats, a second
    pass validates again the rows with such a hash, to compare their keys and name the rows.
    """
    keys = key_sets(job)
    if not keys:
        return 0
    total = sum(c.row_count for c in ledger) * len(keys)
    candidates = _repeated_hashes(job, len(keys), -(-total // HASHES_PER_PASS))
    if not any(len(c) for c in candidates):
        return 0
    return _name_duplicates(job, keys, candidates)


def _repeated_hashes(job: ImportJob, count: int, passes: int) -> list[Any]:
    """The stored key hashes that occur more than once, per key, as sorted arrays."""
    import numpy as np

    passes = max(passes, 1)
    found: list[list[Any]] = [[] for _ in range(count)]
    for part in range(passes):
        pieces: list[list[Any]] = [[] for _ in range(count)]
        blobs = ImportChunk.objects.filter(job=job).values_list("key_hashes", flat=True)
        for blob in blobs.iterator(chunk_size=20):
            for k, hashes in enumerate(_stored_hashes(bytes(blob or b""), count)):
                hashes = hashes[hashes != NO_KEY]
                pieces[k].append(hashes[hashes % passes == part] if passes > 1 else hashes)
        for k in range(count):
            values = np.concatenate(pieces[k]) if pieces[k] else np.empty(0, np.int64)
            pieces[k] = []
            values.sort()
            found[k].append(np.unique(values[1:][values[1:] == values[:-1]]))
    return [np.concatenate(f) for f in found]


def _name_duplicates(job: ImportJob, keys: list[UniqueKey], candidates: list[Any]) -> int:
    """Validate again the rows whose hash repeats, chunk by chunk in file order, and store an
    error on each whose key an earlier row has (compared exactly, not by hash)."""
    import numpy as np

    first: list[dict[str, tuple[int, str]]] = [{} for _ in keys]
    invalid: set[int] = set()
    ledger = ImportChunk.objects.filter(job=job).order_by("index")
    columns = ("storage_key", "row_count", "key_hashes")
    for storage_key, row_count, blob in ledger.values_list(*columns).iterator(20):
        stored = list(_stored_hashes(bytes(blob or b""), len(keys)))
        if len(stored) != len(keys) or any(len(h) != row_count for h in stored):
            continue  # not hashed per row (stored by an earlier version)
        hits = [np.isin(h, c) for h, c in zip(stored, candidates, strict=True)]
        positions = np.flatnonzero(np.logical_or.reduce(hits)).tolist()
        if not positions:
            continue
        rows = _subset(chunkfiles.load_rows(storage_key), positions)
        index = {row: i for i, row in enumerate(rows.row_numbers)}
        errors: list[CellError] = []
        for row, data in validate_rows(job, rows).valid:
            i, cells = positions[index[row]], rows.cells(index[row])
            for k, key in enumerate(keys):
                if not hits[k][i] or (text := key.text(data)) is None:
                    continue
                if key_digest(text) != stored[k][i]:
                    continue  # the serializer now returns another value than the one hashed
                earlier = first[k].setdefault(text, (row, key.shown(cells)))
                if earlier[0] != row:
                    errors.append(_duplicate(job, key, key.shown(cells), row, *earlier))
        store_errors(job, None, Phase.PREVIEW, errors)
        invalid.update(e.row_number for e in errors)
    return len(invalid)


def _subset(rows: chunkfiles.ChunkRows, positions: list[int]) -> chunkfiles.ChunkRows:
    return chunkfiles.ChunkRows(
        [rows.row_numbers[i] for i in positions],
        [rows.extra_cells[i] for i in positions],
        {name: [column[i] for i in positions] for name, column in rows.columns.items()},
    )


def _duplicate(
    job: ImportJob, key: UniqueKey, shown: str, row: int, first: int, first_shown: str
) -> CellError:
    lead = key.parts[0].column
    values = {
        "columns": ", ".join(job.column_map.get(p.column, p.column) for p in key.parts),
        "value": repr(shown),
        "row": first,
        "written": repr(first_shown),
    }
    if first_shown == shown:
        message = _("%(columns)s %(value)s is repeated: row %(row)s already has it.")
    else:
        message = _(
            "%(columns)s %(value)s is repeated: row %(row)s already has it (written %(written)s)."
        )
    column = job.column_map.get(lead, lead)
    return CellError(row, column, lead, "duplicate_key", message % values, shown)
