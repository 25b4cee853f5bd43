"""Validation: the file's header matched to the serializer, and rows validated by it.

- :mod:`.headers`: each serializer field to its column of the file;
- :mod:`.rows`: :class:`RowValidator`, rows in, validated data and :class:`CellError` out;
- :mod:`.compiled` (with :mod:`.converters`, :mod:`.lookups`, :mod:`.outcomes`): the
  serializer compiled to validate a chunk column by column, giving exactly what DRF gives;
- :mod:`.recheck`: what the import checks again of the rows validated at preview;
- :mod:`.errors`: DRF error details flattened to messages (the one flattener);
- :mod:`.dbquery`: ``field IN (…)`` for a chunk's worth of values.
"""

from .compiled import ChunkPlan, compile_serializer
from .headers import HeaderMatch, match_header, writable_fields
from .rows import CellError, RowValidator, ValidationResult

__all__ = [
    "CellError",
    "ChunkPlan",
    "HeaderMatch",
    "RowValidator",
    "ValidationResult",
    "compile_serializer",
    "match_header",
    "writable_fields",
]
