"""DRF error details flattened to messages, and cell values clipped for display."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rest_framework.exceptions import ErrorDetail
from rest_framework.settings import api_settings

MAX_VALUE_LENGTH = 1000  # characters of a cell kept beside its error
NON_FIELD_KEYS = frozenset({"", "__all__", api_settings.NON_FIELD_ERRORS_KEY})


def messages(detail: Any) -> Iterator[ErrorDetail | str]:
    """Every message of one field's error detail, nested ones as ``"key: message"``."""
    if isinstance(detail, dict):
        for key, nested in detail.items():
            for message in messages(nested):
                yield ErrorDetail(f"{key}: {message}", getattr(message, "code", None))
    elif isinstance(detail, list | tuple):
        for message in detail:
            yield from messages(message)
    else:
        yield detail


def code_of(message: Any) -> str:
    """A message's DRF code, ``"invalid"`` when it has none."""
    return str(getattr(message, "code", "") or "invalid")


def flatten(detail: Any) -> Iterator[tuple[str, str, str]]:
    """``(field name, code, message)`` for a serializer's error detail; the field name is
    ``""`` for an error that belongs to no field."""
    if not isinstance(detail, dict):
        detail = {"": detail}
    for name, nested in detail.items():
        field = "" if name in NON_FIELD_KEYS else str(name)
        for message in messages(nested):
            yield field, code_of(message), str(message)


def clip(value: Any) -> str:
    """A cell's text as kept beside its error: at most ``MAX_VALUE_LENGTH`` characters."""
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH] + "…"
