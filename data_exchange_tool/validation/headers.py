"""Header matching: each serializer field to its column of the file.

Headers match serializer fields ignoring case and surrounding spaces (and through
``Meta.header_aliases``).
"""

from __future__ import annotations

from rest_framework import serializers

from ..exceptions import HeaderMismatch
from ..options import ImporterOptions, normalise_header


def writable_fields(serializer: serializers.BaseSerializer) -> dict[str, serializers.Field]:
    return {name: f for name, f in serializer.fields.items() if not f.read_only}


def match_header(header: list[str], importer: ImporterOptions) -> dict[str, int]:
    """Map each serializer field to the index of its column in ``header``.

    Raises :class:`HeaderMismatch` naming every missing required column and every column
    that matches no field, before any row is validated.
    """
    fields = writable_fields(importer.serializer_class())
    by_name = {normalise_header(name): name for name in fields}
    by_name.update({k: v for k, v in importer.normalised_aliases().items() if v in fields})
    mapping: dict[str, int] = {}
    unknown: list[str] = []
    duplicated: list[str] = []
    for index, raw in enumerate(header):
        name = by_name.get(normalise_header(raw or ""))
        if name is None:
            if (raw or "").strip():
                unknown.append(raw.strip())
            continue
        if name in mapping:
            duplicated.append(raw.strip())
        mapping[name] = index
    missing = [name for name, f in fields.items() if f.required and name not in mapping]
    problems = []
    if missing:
        problems.append("missing required column(s): " + ", ".join(missing))
    if unknown:
        problems.append("unknown column(s): " + ", ".join(unknown))
    if duplicated:
        problems.append("column(s) given twice: " + ", ".join(duplicated))
    if problems:
        expected = ", ".join(fields)
        raise HeaderMismatch(
            "The header does not match the importer: "
            + "; ".join(problems)
            + f". Expected columns: {expected}."
        )
    return mapping
