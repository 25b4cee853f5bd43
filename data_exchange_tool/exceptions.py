"""Exceptions of django-data-exchange-tool. None shadows a builtin."""

from __future__ import annotations


class DataExchangeError(Exception):
    """Base class of the library's errors."""


class ImproperlyConfiguredImporter(DataExchangeError):
    """An importer proxy's Meta options are wrong; raised at class creation or by checks."""


class FileRejected(DataExchangeError):
    """The file cannot be read as a table. The message is shown to the user as is.

    ``line`` is the physical line (CSV) or row (XLSX) where reading stopped, when known.
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"{message} (line {line})" if line else message)


class HeaderMismatch(FileRejected):
    """The header does not match the importer's fields (missing or unknown columns)."""


class TransitionRefused(DataExchangeError):
    """A job cannot move as asked; the message names the rule that failed."""


class ImportLockHeld(TransitionRefused):
    """Another job of the same target is importing."""


class StaleFence(DataExchangeError):
    """A chunk's job no longer holds the import; nothing may be written."""


class SplitDatabases(DataExchangeError):
    """An import's target and its ledger are written to different databases."""


class SourceChanged(DataExchangeError):
    """The stored source differs from the one recorded at upload."""
