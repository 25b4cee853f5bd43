"""Header matching: each serializer field to its column of the file.

Headers match serializer fields ignoring case and surrounding spaces (and through
``Meta.header_aliases``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rest_framework import serializers

from ..exceptions import HeaderMismatch
from ..options import ImporterOptions, normalise_header
from ..readers.base import column_label


def writable_fields(serializer: serializers.BaseSerializer) -> dict[str, serializers.Field]:
    return {name: f for name, f in serializer.fields.items() if not f.read_only}


@dataclass(frozen=True)
class HeaderMatch:
    """Each serializer field's column index, and the columns that are not read (and why)."""

    indexes: dict[str, int]
    ignored: list[str]  # "colour", or "id (read-only in BookSerializer)"


def match_header(header: list[str], importer: ImporterOptions) -> HeaderMatch:
    """Match each serializer field to its column of ``header``.

    Raises :class:`HeaderMismatch` naming every missing required column and every header that
    two columns share, before any row is validated; columns that match no writable field are
    ignored (and named) unless the importer sets ``Meta.unknown_columns = "error"``.
    """
    serializer = importer.serializer_class()
    fields = writable_fields(serializer)
    read_only = {
        normalise_header(name) for name, f in serializer.fields.items() if f.read_only
    }
    by_name = {normalise_header(name): name for name in fields}
    by_name.update({k: v for k, v in importer.normalised_aliases().items() if v in fields})
    mapping: dict[str, int] = {}
    ignored: list[str] = []
    duplicated: list[str] = []
    for index, raw in enumerate(header):
        label = (raw or "").strip()
        name = by_name.get(normalise_header(raw or ""))
        if name is None:
            if label:
                ignored.append(_why_ignored(label, read_only, serializer))
            continue
        if name in mapping:
            first = mapping[name]
            duplicated.append(
                f"{_column(first, header[first].strip())} and {_column(index, label)}"
            )
            continue
        mapping[name] = index
    missing = [name for name, f in fields.items() if f.required and name not in mapping]
    problems = []
    if missing:
        problems.append("missing required column(s): " + ", ".join(missing))
    if ignored and importer.unknown_columns == "error":
        problems.append("unknown column(s): " + ", ".join(ignored))
    if duplicated:
        problems.append("the same column given twice: " + "; ".join(duplicated))
    if problems:
        expected = ", ".join(fields)
        raise HeaderMismatch(
            "The header does not match the importer: "
            + "; ".join(problems)
            + f". Expected columns: {expected}."
        )
    return HeaderMatch(mapping, ignored)


def _why_ignored(label: str, read_only: set[str], serializer: serializers.BaseSerializer) -> str:
    if normalise_header(label) in read_only:
        return f"{label} (read-only in {type(serializer).__name__})"
    return label


def _column(index: int, label: str) -> str:
    """``column 3 (C) "name"``: a column as a person finds it in a spreadsheet."""
    return f'{column_label(index)} "{label}"'
