"""The error report of a job: its row errors as a CSV or XLSX file a user downloads.

Values in the report come from the uploaded file, so they are hostile: a cell that starts with
``=``, ``+``, ``-``, ``@``, TAB, CR or LF would be run as a formula by a spreadsheet program
(CSV injection). In CSV such a cell is prefixed with ``'`` and every cell is quoted; in XLSX
every text is written as an inline string, never as a formula. Errors are streamed from the
database in batches, so memory stays bounded however many errors a job has.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from django.http import FileResponse

if TYPE_CHECKING:
    from .models import ImportJob

ReportFormat = Literal["csv", "xlsx"]
FORMATS: tuple[ReportFormat, ...] = ("csv", "xlsx")
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
HEADER = ("row", "column", "message", "value")
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
BATCH = 2000
SPOOL_BYTES = 8 * 1024 * 1024
#: characters XML 1.0 (and so XLSX) cannot hold
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def neutralise(value: str) -> str:
    """``value`` made inert for a spreadsheet: prefixed with ``'`` if it starts a formula."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def report_rows(job: ImportJob) -> Iterator[tuple[int, str, str, str]]:
    """``(row, column, message, value)`` of every row error of ``job``, in row order."""
    errors = job.row_errors.order_by("row_number", "id").values_list(
        "row_number", "column", "message", "value"
    )
    yield from errors.iterator(chunk_size=BATCH)


def report_filename(job: ImportJob, fmt: ReportFormat) -> str:
    return f"errors-{job.pk}.{fmt}"


def error_report_response(job: ImportJob, fmt: ReportFormat) -> FileResponse:
    """A download of ``job``'s row errors as ``fmt``, spooled to disk past a few megabytes."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (the response closes it)
    write_error_report(job, fmt, spool)
    spool.seek(0)
    return FileResponse(
        spool,
        as_attachment=True,
        filename=report_filename(job, fmt),
        content_type=CONTENT_TYPES[fmt],
    )


def write_error_report(job: ImportJob, fmt: ReportFormat, out: BinaryIO) -> int:
    """Write ``job``'s row errors to ``out`` as ``fmt``; returns the number of errors written."""
    if fmt == "csv":
        return _write_csv(job, out)
    if fmt == "xlsx":
        return _write_xlsx(job, out)
    raise ValueError(f"Unknown report format {fmt!r}; use one of {', '.join(FORMATS)}.")


def _write_csv(job: ImportJob, out: BinaryIO) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    out.write("\ufeff".encode())  # so spreadsheet programs read the file as UTF-8
    writer.writerow(HEADER)
    count = 0
    for row, column, message, value in report_rows(job):
        writer.writerow([row, neutralise(column), neutralise(message), neutralise(value)])
        count += 1
        if buffer.tell() >= 64 * 1024:
            _flush(buffer, out)
    _flush(buffer, out)
    return count


def _flush(buffer: io.StringIO, out: BinaryIO) -> None:
    out.write(buffer.getvalue().encode("utf-8"))
    buffer.seek(0)
    buffer.truncate()


def _write_xlsx(job: ImportJob, out: BinaryIO) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Errors")

    def text(value: str) -> Any:
        cell = WriteOnlyCell(sheet, value=_XML_ILLEGAL.sub("\ufffd", value))
        cell.data_type = "s"  # openpyxl makes any text starting with "=" a formula
        return cell

    sheet.append([text(name) for name in HEADER])
    count = 0
    for row, column, message, value in report_rows(job):
        sheet.append([row, text(column), text(message), text(value)])
        count += 1
    workbook.save(out)
    return count
