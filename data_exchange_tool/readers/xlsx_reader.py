"""XLSX: a workbook spooled to a temporary file, checked as a zip, then read with openpyxl.

openpyxl runs in read-only, values-only mode; with defusedxml installed it parses the XML
safely. Zip bombs are a zip matter, so the declared sizes are checked before parsing.
"""

from __future__ import annotations

import datetime
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import IO, Any, BinaryIO
from xml.etree.ElementTree import ParseError

import openpyxl
from defusedxml import DefusedXmlException
from openpyxl.cell.read_only import EmptyCell
from openpyxl.packaging.manifest import Manifest
from openpyxl.styles.numbers import is_datetime
from openpyxl.utils.datetime import CALENDAR_MAC_1904
from openpyxl.xml.constants import ARC_CONTENT_TYPES, SHARED_STRINGS
from openpyxl.xml.functions import fromstring

from .base import (
    FileRejected,
    ReadOptions,
    Row,
    TableReader,
    check_unnamed,
    human_size,
    named_columns,
    reject,
    unnamed_column,
)

COPY_BLOCK = 1024 * 1024
#: members smaller than this are not checked for their compression ratio
RATIO_CHECK_MIN_BYTES = 1024 * 1024
#: the largest ``[Content_Types].xml`` read to find the shared strings (real ones are ~2 KB)
CONTENT_TYPES_MAX_BYTES = 1024 * 1024
#: a number format that pads integers with zeros, e.g. "00000" (shows 123 as 00123)
ZERO_PADDING = re.compile(r"0+")
#: errors openpyxl lets through from a damaged or hostile sheet while reading rows
READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    ParseError,
    DefusedXmlException,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
)


def spool(stream: BinaryIO, options: ReadOptions) -> IO[bytes]:
    """A temporary file holding ``stream``; refuses a stream over ``xlsx_max_file_bytes``."""
    limit = options.xlsx_max_file_bytes
    # the caller owns the file and closes it (which deletes it)
    spooled = tempfile.TemporaryFile(dir=options.temp_dir, prefix="dx-", suffix=".xlsx")  # noqa: SIM115
    try:
        size = 0
        while block := stream.read(COPY_BLOCK):
            size += len(block)
            if size > limit:
                raise reject(
                    f"The workbook is larger than the limit of {human_size(limit)}. "
                    "Save it as CSV (which is read as a stream) or split it."
                )
            spooled.write(block)
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return spooled


def check_archive(file: IO[bytes], options: ReadOptions) -> None:
    """Refuse a file that is not a zip, or whose declared sizes make it a zip bomb."""
    try:
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        raise reject(
            "This file is not a valid XLSX workbook: it is not a zip archive, or it is damaged."
        ) from None
    finally:
        file.seek(0)
    _check_total(members, options.xlsx_max_uncompressed_bytes)
    for member in members:
        _check_ratio(member, options.xlsx_max_compression_ratio)
    by_name = {member.filename: member for member in members}
    with zipfile.ZipFile(file) as archive:
        parts = shared_strings_parts(archive, by_name)
    file.seek(0)
    for name in parts:
        _check_shared_strings(by_name[name], options.xlsx_max_shared_strings_bytes)


def _check_total(members: Iterable[zipfile.ZipInfo], limit: int) -> None:
    total = sum(member.file_size for member in members)
    if total > limit:
        raise reject(
            f"The workbook expands to {human_size(total)} when unzipped; the limit is "
            f"{human_size(limit)}."
        )


def _check_ratio(member: zipfile.ZipInfo, limit: int) -> None:
    if member.file_size <= RATIO_CHECK_MIN_BYTES:
        return
    ratio = member.file_size / max(member.compress_size, 1)
    if ratio > limit:
        raise reject(
            f"The workbook part {member.filename} expands {ratio:,.0f} times when unzipped; "
            f"the limit is {limit:,} times. The file looks like a zip bomb."
        )


def shared_strings_parts(
    archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
) -> list[str]:
    """The members openpyxl would load whole as the table of texts (shared strings).

    openpyxl finds that part by its content type in ``[Content_Types].xml``, whatever its
    name; this reads the manifest the same way. A manifest openpyxl cannot read gives none
    here: :func:`load` then refuses the workbook with the reason.
    """
    manifest = members.get(ARC_CONTENT_TYPES)
    if manifest is None:
        return []
    if manifest.file_size > CONTENT_TYPES_MAX_BYTES:
        raise reject(
            f"The workbook's list of parts ({ARC_CONTENT_TYPES}) is "
            f"{human_size(manifest.file_size)}; the limit is "
            f"{human_size(CONTENT_TYPES_MAX_BYTES)}. The file may be malicious."
        )
    try:
        package = Manifest.from_tree(fromstring(archive.read(ARC_CONTENT_TYPES)))
    except Exception:  # damaged or forbidden XML: load() says which
        return []
    names = (part.PartName[1:] for part in package.findall(SHARED_STRINGS))
    return [name for name in names if name in members]


def _check_shared_strings(member: zipfile.ZipInfo, limit: int) -> None:
    if member.file_size <= limit:
        return
    raise reject(
        f"The workbook's table of texts ({member.filename}) is {human_size(member.file_size)} "
        f"unzipped; the limit is {human_size(limit)}."
    )


def load(file: IO[bytes]) -> Any:
    """The workbook in ``file``, opened read-only with cached formula values."""
    try:
        return openpyxl.load_workbook(file, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for malformed workbooks
        cause = root_cause(error)
        if isinstance(cause, DefusedXmlException):
            raise reject(
                "The workbook contains forbidden XML (entity or DTD declarations); "
                "it may be malicious."
            ) from None
        raise reject(
            "This file could not be opened as an XLSX workbook; it may be damaged or written "
            f"by a program that does not follow the format ({type(cause).__name__}: {cause})."
        ) from None


def root_cause(error: BaseException) -> BaseException:
    """The first exception of the chain that led to ``error``."""
    seen = {id(error)}
    while (cause := error.__cause__ or error.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        error = cause
    return error


def pick_sheet(workbook: Any, name: str) -> Any:
    """The sheet called ``name`` (exactly, else ignoring case), or the first worksheet."""
    sheets = workbook.worksheets
    if not name:
        if not sheets:
            raise reject("The workbook has no worksheet.")
        return sheets[0]
    for candidates in (
        [s for s in sheets if s.title == name],
        [s for s in sheets if s.title.casefold() == name.strip().casefold()],
    ):
        if len(candidates) == 1:
            return candidates[0]
    names = ", ".join(f'"{sheet.title}"' for sheet in sheets)
    raise reject(f'The workbook has no sheet named "{name}". Its sheets are: {names}.')


def render(cell: Any) -> str | None:
    """A cell's value as text, as Excel shows it, or ``None`` when the cell is empty."""
    value = cell.value
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return zero_padded(value, cell.number_format)
    if isinstance(value, float):
        if not value.is_integer():
            return render_float(value)
        if abs(value) >= EXACT_DIGITS_LIMIT:
            raise _lossy_number(cell, value)
        return zero_padded(int(value), cell.number_format)
    if isinstance(value, datetime.datetime):
        return render_datetime(value, cell.number_format)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return render_duration(value)
    return str(value)


EXACT_DIGITS_LIMIT = 1e15  # Excel keeps 15 significant digits of a number


def _lossy_number(cell: Any, value: float) -> FileRejected:
    where = f"cell {getattr(cell, 'coordinate', '?')}"
    return reject(
        f"The number in {where} ({int(value)}) has more than 15 digits: Excel stores only 15, "
        "so its last digits may already be wrong. Format the column as Text in Excel, enter "
        "the values again (or save the sheet as CSV from the source system), and upload it "
        "again.",
        getattr(cell, "row", None),
    )


def zero_padded(value: int, number_format: str | None) -> str:
    """An integer as its number format shows it when that pads with zeros ("00000": 00123),
    else as General shows it ("123"). Other formats are not applied (see the README)."""
    if not number_format or not ZERO_PADDING.fullmatch(number_format):
        return str(value)
    digits = str(abs(value)).zfill(len(number_format))
    return f"-{digits}" if value < 0 else digits


def render_float(value: float) -> str:
    """A number as Excel shows it: integral values without ".0", at most 15 digits.

    Excel keeps 15 significant digits. An integral number of more digits (a 20-digit id typed
    as a number) has already lost its last digits in the file; it is rendered as stored, and
    only a text cell keeps such an id exactly.
    """
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value.is_integer():
        return str(int(value))
    rounded = Decimal(format(value, ".15g"))
    if abs(rounded.adjusted()) > 20:
        return format(value, ".15g")
    return format(rounded, "f")


def render_datetime(value: datetime.datetime, number_format: str | None) -> str:
    """A date as "2024-03-01" when the cell shows a date only, else "2024-03-01T10:30:00"."""
    is_midnight = value.time() == datetime.time(0)
    if is_midnight and is_datetime(number_format or "General") == "date":
        return value.date().isoformat()
    return value.isoformat()


def render_duration(value: datetime.timedelta) -> str:
    """A duration as Excel's ``[h]:mm:ss`` shows it, e.g. "30:15:00"."""
    seconds = value.total_seconds()
    sign = "-" if seconds < 0 else ""
    minutes, second = divmod(abs(round(seconds)), 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours}:{minute:02d}:{second:02d}"


def row_number(cells: Iterable[Any]) -> int | None:
    """The sheet row of ``cells``, from the first cell that has one."""
    for cell in cells:
        if not isinstance(cell, EmptyCell):
            return cell.row
    return None


class XlsxReader(TableReader):
    """One sheet of an XLSX workbook; see :func:`open_table`."""

    def __init__(self, stream: BinaryIO, options: ReadOptions) -> None:
        self._options = options
        self._file: IO[bytes] | None = spool(stream, options)
        self._workbook: Any = None
        self.chars_read = 0
        try:
            check_archive(self._file, options)
            self._workbook = load(self._file)
            sheet = pick_sheet(self._workbook, options.sheet_name)
            sheet.reset_dimensions()  # a declared <dimension> may claim a million rows
            epoch = "1904" if self._workbook.epoch == CALENDAR_MAC_1904 else "1900"
            self.detected = {"sheet": sheet.title, "date_system": epoch}
            self._rows = self._read(sheet.iter_rows())
            self.header_row, header = next(self._rows, (0, []))
            if not header:
                raise reject(f'The sheet "{sheet.title}" is empty.')
        except BaseException:
            self.close()
            raise
        self.header, self._unnamed = named_columns([cell or "" for cell in header])

    def _read(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[Row]:
        """Non-blank rows as ``(row number, cells)``, trailing empty cells dropped."""
        last = 0
        try:
            for cells in rows:
                values = [render(cell) for cell in cells]
                while values and values[-1] is None:
                    values.pop()
                if values:
                    last = row_number(cells) or last + 1
                    self._check_values(values, last)
                    self.chars_read += sum(map(len, filter(None, values)))
                    yield last, values
        except READ_ERRORS as error:
            raise reject(
                f"The sheet cannot be read after row {last}: it is damaged, or not written as "
                f"the XLSX format requires ({type(error).__name__}: {error}).",
                last,
            ) from None

    def _check_values(self, values: list[str | None], number: int) -> None:
        limit = self._options.max_field_bytes
        if any(value is not None and len(value) > limit for value in values):
            raise reject(
                f"A cell of row {number} is larger than the limit of {human_size(limit)}.",
                number,
            )

    def rows(self) -> Iterator[Row]:
        """``(row number, cells)`` for every non-blank row after the header.

        Rows shorter than the header are padded with ``None`` (an XLSX row has no length of
        its own). A value under a blank header cell, or beyond the header, is refused.
        """
        width = len(self.header)
        max_rows = self._options.max_rows
        unnamed = self._unnamed
        for number, cells in self._rows:
            if number - self.header_row > max_rows:
                raise reject(
                    f"The sheet has more than {max_rows:,} rows (row {number}); the limit is "
                    f"{max_rows:,}.",
                    number,
                )
            if len(cells) < width:
                cells.extend([None] * (width - len(cells)))
            if unnamed:
                check_unnamed(cells, unnamed, number)
            if len(cells) > width:
                raise unnamed_column(_first_value(cells, width), number)
            yield number, cells

    def close(self) -> None:
        """Close the workbook and delete the temporary file."""
        if self._workbook is not None:
            self._workbook.close()
            self._workbook = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _first_value(cells: list[str | None], start: int) -> int:
    """The index of the first non-empty cell from ``start`` on."""
    return next(i for i in range(start, len(cells)) if cells[i] is not None)


__all__ = ["XlsxReader", "check_archive", "render", "spool"]
