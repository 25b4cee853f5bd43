"""A chunk's validated rows as Parquet, written at preview beside the chunk, read at import.

What the serializer returned for the valid rows is stored (``chunks/000001.valid.parquet``), one
typed column per key of the validated data: bool, int, float, str, date, time, duration,
datetimes as ``timestamp[us]`` (UTC when aware), decimals and UUIDs as their exact text, lists
and dicts as JSON, and related objects as the value their foreign key stores (usually the pk).
A row without a key is told apart from a ``None`` value. A value of any other type means the
chunk is not stored, and the import validates it again in full. Nothing is pickled.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from .parquet import ROW, read_table, write_table

if TYPE_CHECKING:
    from ..validation.recheck import Plan, RelatedCheck

FORMAT_VERSION = 1
ABSENT_PREFIX = "__absent:"
METADATA_KEY = b"data_exchange_tool"
SUFFIX = ".valid.parquet"


class NotStorable(Exception):
    """A validated value the file cannot hold exactly."""


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def valid_key(chunk_key: str) -> str:
    """Storage key of a chunk's validated rows: beside the chunk."""
    return chunk_key.removesuffix(".parquet") + SUFFIX


# -- encoding --------------------------------------------------------------------------------------


@dataclass
class _Column:
    key: str
    kind: str  # plain, decimal, uuid, json, related
    nulls: str  # "none": a null is None; "absent": a null is a missing key; "mask": see mask
    values: list[Any]
    arrow_type: Any
    mask: list[bool] | None = None


def encode(plan: Plan, rows: list[tuple[int, dict[str, Any]]]) -> bytes:
    """Parquet bytes of ``(row number, validated data)`` rows; raises :class:`NotStorable`."""
    import pyarrow as pa

    datas = [data for _row, data in rows]
    keys = list(dict.fromkeys(chain.from_iterable(datas)))
    complete = set(map(len, datas)) <= {len(keys)}  # every row has every key
    related = plan.related_keys
    arrays: dict[str, Any] = {ROW: pa.array([r for r, _d in rows], pa.int64())}
    described = []
    for key in keys:
        if complete:
            raw = list(map(itemgetter(key), datas))
        else:
            raw = [data.get(key, ABSENT) for data in datas]
        column = _encode_column(key, raw, related, complete)
        try:
            arrays[key] = pa.array(column.values, column.arrow_type)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise NotStorable(f"{key}: {exc}") from exc
        if column.mask is not None:
            arrays[ABSENT_PREFIX + key] = pa.array(column.mask, pa.bool_())
        described.append({"key": key, "kind": column.kind, "nulls": column.nulls})
    meta = {"version": FORMAT_VERSION, "model": plan.model._meta.label, "columns": described}
    return write_table(pa.table(arrays).replace_schema_metadata({METADATA_KEY: json.dumps(meta)}))


def _encode_column(
    key: str, raw: list[Any], related: dict[str, RelatedCheck], complete: bool
) -> _Column:
    """``complete``: no row lacks the key, so ``raw`` holds no ``ABSENT``."""
    has_absent = not complete and any(v is ABSENT for v in raw)
    has_none = any(v is None for v in raw)
    nulls = "mask" if has_absent and has_none else "absent" if has_absent else "none"
    mask = [v is ABSENT for v in raw] if nulls == "mask" else None
    present = [None if v is ABSENT else v for v in raw] if has_absent else raw
    if key not in related:
        kind, values, arrow_type = _scalar(key, present)
        return _Column(key, kind, nulls, values, arrow_type, mask)
    target_kind, values, arrow_type = _scalar(key, _targets(related[key], present))
    if target_kind not in ("plain", "uuid", "decimal"):
        raise NotStorable(f"{key}: related values of an unsupported type")
    kind = "related" if target_kind == "plain" else f"related-{target_kind}"
    return _Column(key, kind, nulls, values, arrow_type, mask)


def _targets(check: RelatedCheck, values: list[Any]) -> list[Any]:
    related_model = check.model_field.related_model
    attname = check.target.attname
    out = []
    for value in values:
        if value is None:
            out.append(None)
        elif isinstance(value, related_model):
            out.append(getattr(value, attname))
        else:
            raise NotStorable(f"{check.key}: expected {related_model.__name__}, got {value!r}")
    return out


_PLAIN_TYPES: dict[type, Any] = {}


def _plain_arrow_types() -> dict[type, Any]:
    import pyarrow as pa

    if not _PLAIN_TYPES:
        _PLAIN_TYPES.update(
            {
                bool: pa.bool_(),
                int: pa.int64(),
                float: pa.float64(),
                str: pa.string(),
                bytes: pa.binary(),
                dt.date: pa.date32(),
                dt.time: pa.time64("us"),
                dt.timedelta: pa.duration("us"),
            }
        )
    return _PLAIN_TYPES


def _scalar(key: str, values: list[Any]) -> tuple[str, list[Any], Any]:
    """(kind, values to give pyarrow, arrow type) for one column of Python values."""
    import pyarrow as pa

    types = set(map(type, values))
    types.discard(type(None))
    if not types:
        return "plain", values, pa.null()
    if len(types) > 1:
        if types <= {dict, list}:
            return "json", [_json(key, v) for v in values], pa.string()
        raise NotStorable(f"{key}: values of several types {sorted(t.__name__ for t in types)}")
    (kind,) = types
    if kind is dt.datetime:
        return "plain", values, _datetime_type(key, values)
    if kind is dt.time and any(v.tzinfo is not None for v in values if v is not None):
        raise NotStorable(f"{key}: times with a time zone")
    if kind is int and any(not -(2**63) <= v < 2**63 for v in values if v is not None):
        return "json", [_json(key, v) for v in values], pa.string()
    plain = _plain_arrow_types().get(kind)
    if plain is not None:
        return "plain", values, plain
    if kind is Decimal:
        return "decimal", [None if v is None else str(v) for v in values], pa.string()
    if kind is uuid.UUID:
        return "uuid", [None if v is None else str(v) for v in values], pa.string()
    if kind in (dict, list):
        return "json", [_json(key, v) for v in values], pa.string()
    raise NotStorable(f"{key}: values of type {kind.__name__}")


def _datetime_type(key: str, values: list[Any]) -> Any:
    import pyarrow as pa

    aware = {v.tzinfo is not None for v in values if v is not None}
    if len(aware) > 1:
        raise NotStorable(f"{key}: naive and aware datetimes mixed")
    return pa.timestamp("us", tz="UTC") if aware == {True} else pa.timestamp("us")


def _json(key: str, value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise NotStorable(f"{key}: {exc}") from exc
    if json.loads(text) != value or not _same_shape(json.loads(text), value):
        raise NotStorable(f"{key}: {value!r} does not survive JSON")
    return text


def _same_shape(decoded: Any, value: Any) -> bool:
    if type(decoded) is not type(value):
        return False
    if isinstance(value, dict):
        return all(_same_shape(decoded[k], v) for k, v in value.items())
    if isinstance(value, list):
        return all(_same_shape(a, b) for a, b in zip(decoded, value, strict=True))
    return True


# -- decoding --------------------------------------------------------------------------------------


class StoredRows:
    """A chunk's validated rows as read back: row numbers and, per key, its values.

    Columns are turned into Python values only when asked for (:meth:`column`, :meth:`records`);
    :meth:`arrow_table` hands the writers the columns as read, for one COPY of the whole chunk.
    Related keys hold the stored foreign-key value; :meth:`records` and :meth:`arrow_table` give
    them under the model field's ``attname`` (``partner_id``), so writing them needs no related
    object.
    """

    def __init__(
        self, table: Any, described: list[dict[str, str]], attnames: dict[str, str]
    ) -> None:
        self.table = table
        self.described = {d["key"]: d for d in described}
        self.attnames = attnames
        self.row_numbers: list[int] = table.column(ROW).to_pylist()
        self._columns: dict[str, list[Any]] = {}
        self.changed: set[str] = set()

    def __len__(self) -> int:
        return len(self.row_numbers)

    def column(self, key: str) -> list[Any] | None:
        """The Python values of ``key`` (``ABSENT`` where a row had no such key)."""
        described = self.described.get(key)
        if described is None:
            return None
        if key not in self._columns:
            values = _decode_values(described["kind"], self.table.column(key).to_pylist())
            mask = None
            if described["nulls"] == "mask":
                mask = self.table.column(ABSENT_PREFIX + key).to_pylist()
            self._columns[key] = _restore_absent(values, described["nulls"], mask)
        return self._columns[key]

    def replace(self, key: str, index: int, value: Any) -> None:
        """Put a new value in one row (a related value that now resolves elsewhere)."""
        column = self.column(key)
        assert column is not None
        column[index] = value
        self.changed.add(key)

    def records(self, skip: Iterable[int] = ()) -> list[tuple[int, dict[str, Any]]]:
        """``(row number, data)`` as the writers take them, leaving out rows in ``skip``."""
        skipped = set(skip)
        names = [(self.attnames.get(k, k), self.column(k)) for k in self.described]
        out = []
        for i, row_number in enumerate(self.row_numbers):
            if row_number in skipped:
                continue
            data = {}
            for name, values in names:
                value = values[i]
                if value is not ABSENT:
                    data[name] = value
            out.append((row_number, data))
        return out

    def arrow_table(self) -> tuple[Any, set[str]] | None:
        """The columns as read, named by model attname, and the names of those whose nulls
        stand for a key the row did not have; ``None`` when a value was replaced or a column
        mixes both kinds of null (write :meth:`records` instead)."""
        described = self.described.values()
        if self.changed or any(d["nulls"] == "mask" or d["kind"] == "json" for d in described):
            return None
        keys = list(self.described)
        names = [self.attnames.get(k, k) for k in keys]
        absent = {
            name
            for key, name in zip(keys, names, strict=True)
            if self.described[key]["nulls"] == "absent"
        }
        return self.table.select(keys).rename_columns(names), absent


def decode(plan: Plan, data: bytes) -> StoredRows | None:
    """Read a file written by :func:`encode`; ``None`` if it was written for something else."""
    table = read_table(data)
    meta = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    if meta.get("version") != FORMAT_VERSION or meta.get("model") != plan.model._meta.label:
        return None
    related = plan.related_keys
    attnames: dict[str, str] = {}
    for described in meta["columns"]:
        key, kind = described["key"], described["kind"]
        if kind.startswith("related"):
            if key not in related:
                return None
            attnames[key] = related[key].model_field.attname
    return StoredRows(table, meta["columns"], attnames)


def _decode_values(kind: str, values: list[Any]) -> list[Any]:
    convert = {
        "decimal": Decimal,
        "related-decimal": Decimal,
        "uuid": uuid.UUID,
        "related-uuid": uuid.UUID,
        "json": json.loads,
    }.get(kind)
    if convert is None:
        return values
    return [None if v is None else convert(v) for v in values]


def _restore_absent(values: list[Any], nulls: str, mask: list[bool] | None) -> list[Any]:
    if nulls == "absent":
        return [ABSENT if v is None else v for v in values]
    if nulls == "mask" and mask is not None:
        return [ABSENT if gone else v for v, gone in zip(values, mask, strict=True)]
    return values
