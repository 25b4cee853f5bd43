"""Readers: a binary stream in, a header and numbered rows of text cells out."""

from __future__ import annotations

from typing import BinaryIO

from .base import FileRejected, ReadOptions, Row, TableReader

__all__ = ["FileRejected", "ReadOptions", "Row", "TableReader", "detect_format", "open_table"]


def detect_format(name: str, head: bytes) -> str:
    """The format of a file from its first bytes and, failing that, its name's extension.

    Raises :class:`FileRejected` with a message a user understands when the content does not
    match what the name claims (a zip renamed ``.csv``, a binary file).
    """
    raise NotImplementedError


def open_table(file_format: str, stream: BinaryIO, options: ReadOptions) -> TableReader:
    """Open ``stream`` (binary, read once from the start) as a table of ``file_format``."""
    raise NotImplementedError
