"""Hostile and awkward files through the whole flow (eager Celery, local storage).

What a user sees: the job's state and reason, the row errors, the rows written, and the error
report they download. XLSX bombs are read in a child process under an address-space cap, so a
reader that blew up would kill the child, not the test run.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.reader.excel import ExcelReader
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from data_exchange_tool import services
from data_exchange_tool.exceptions import TransitionRefused
from data_exchange_tool.models import ImportJob
from data_exchange_tool.reports import write_error_report
from data_exchange_tool.states import JobState
from tests.preview_rss import fat_gzip_csv, wide_csv, wide_gzip_csv
from tests.testapp.models import StockRecord

IMPORTER = "testapp.StockRecordImportJob"
UPSERT = "testapp.StockRecordUpsertImportJob"
FIELDS = ["sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner"]
HEADER = ",".join(FIELDS) + "\n"
MEMORY_CAP = 1_500_000_000
REPO = Path(__file__).resolve().parents[1]


def row(i: int, *, name: str | None = None, price: str | None = None, partner: str = "P1") -> str:
    return (
        f"SKU{i:05d},{name or f'Item {i}'},{price or f'{i}.50'},{i % 7},W1,true,"
        f"2024-01-02T03:04:05Z,{partner}\n"
    )


def rows(n: int, start: int = 0) -> str:
    return "".join(row(i) for i in range(start, start + n))


@pytest.fixture(autouse=True)
def _local_storage(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 5


@pytest.fixture
def flow(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Run a service call and the tasks it queues on commit (eagerly)."""

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


def preview(
    flow: Callable[..., Any],
    content: str | bytes,
    name: str = "stock.csv",
    importer: str = IMPORTER,
    **options: str,
) -> ImportJob:
    data = content.encode() if isinstance(content, str) else content
    job = flow(services.create_job, importer, io.BytesIO(data), name=name, **options)
    job.refresh_from_db()
    return job


def confirm(flow: Callable[..., Any], job: ImportJob) -> ImportJob:
    flow(services.confirm_import, job.pk)
    job.refresh_from_db()
    return job


def assert_refused(job: ImportJob, *fragments: str) -> None:
    """The preview failed, saying each fragment, and wrote nothing."""
    assert job.state == JobState.PREVIEW_FAILED, job.error_summary
    for fragment in fragments:
        assert fragment in job.error_summary
    assert job.chunks.count() == 0
    assert StockRecord.objects.count() == 0


# CSV -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_utf8_bom_header_imports(partners, flow):
    job = preview(flow, "\ufeff" + HEADER + rows(3))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert job.header[0] == "sku"
    assert confirm(flow, job).imported_rows == 3


@pytest.mark.django_db
def test_windows_1252_without_encoding_fails_naming_line_and_hint(partners, flow):
    content = (HEADER + row(1) + row(2, name="Müller")).encode("cp1252")
    job = preview(flow, content)
    assert_refused(job, "not valid UTF-8 (line 3)", "windows-1252")


@pytest.mark.django_db
def test_windows_1252_with_its_encoding_imports_the_umlaut(partners, flow):
    content = (HEADER + row(1) + row(2, name="Müller")).encode("cp1252")
    job = confirm(flow, preview(flow, content, encoding="windows-1252"))
    assert job.state == JobState.IMPORT_SUCCEEDED
    assert StockRecord.objects.get(sku="SKU00002").name == "Müller"


@pytest.mark.django_db
def test_semicolons_with_decimal_commas_are_row_errors_not_a_crash(partners, flow):
    body = row(1) + row(2, price='"12,50"') + row(3)
    text = HEADER.replace(",", ";") + body.replace(",", ";").replace('"12;50"', "12,50")
    job = preview(flow, text)
    assert (job.state, job.detected_delimiter) == (JobState.PREVIEW_SUCCEEDED, ";")
    assert (job.valid_rows, job.invalid_rows) == (2, 1)
    error = job.row_errors.get()
    assert (error.row_number, error.column, error.value) == (3, "price", "12,50")
    assert error.message == "A valid number is required."


@pytest.mark.django_db
def test_quoted_newline_across_a_chunk_boundary_keeps_record_numbers(partners, flow):
    body = rows(4) + row(4, name='"two\nlines"') + row(5, price="abc") + rows(6, start=6)
    job = preview(flow, HEADER + body)
    assert job.total_rows == 12
    ledger = list(job.chunks.order_by("index").values_list("first_row", "row_count"))
    assert ledger == [(2, 5), (7, 5), (12, 2)], "record 5 (row 6) stays whole in chunk 0"
    error = job.row_errors.get()
    assert (error.row_number, error.column) == (7, "price"), "a record number, not line 8"

    fixed = preview(flow, HEADER + rows(4) + row(4, name='"two\nlines"') + rows(7, start=5))
    assert confirm(flow, fixed).imported_rows == 12
    assert StockRecord.objects.get(sku="SKU00004").name == "two\nlines"


@pytest.mark.django_db
def test_unterminated_quote_fails_the_preview_and_writes_no_rows(partners, flow):
    job = preview(flow, HEADER + rows(2) + row(2, name='"never closed') + rows(3, start=3))
    assert_refused(job, "Unterminated quoted field starting at line 4")
    assert job.total_rows is None


@pytest.mark.django_db
def test_ten_megabyte_field_fails_with_its_line_in_bounded_memory(partners, flow, settings):
    settings.DATA_EXCHANGE_MAX_FIELD_BYTES = 1024 * 1024
    content = (HEADER + rows(2) + row(2, name="x" * 10 * 1024 * 1024)).encode()
    tracemalloc.start()
    try:
        job = preview(flow, content)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(job, "row starting at line 4 is larger than the limit of 1.0 MB")
    assert peak < 8 * len(content), f"peak {peak:,} bytes for a {len(content):,}-byte file"


@pytest.mark.django_db
def test_nul_byte_fails_the_preview_naming_its_line(partners, flow):
    filler = rows(200)  # past the bytes format detection looks at
    assert len(filler) > 8192
    content = (HEADER + filler + row(999, name="a\x00b")).encode()
    assert_refused(preview(flow, content), "NUL bytes at line 202")


@pytest.mark.django_db
def test_nul_byte_near_the_start_is_refused_as_binary(partners, flow):
    job = preview(flow, (HEADER + row(1, name="a\x00b")).encode())
    assert_refused(job, "not a CSV file", "binary data")


@pytest.mark.django_db
def test_a_row_with_too_few_fields_is_a_row_error_naming_both_counts(partners, flow):
    shifted = row(2).replace("Item 2,", "Item 2 ", 1)  # a delimiter lost: 7 fields
    job = preview(flow, HEADER + row(1) + shifted + row(3))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert (job.valid_rows, job.invalid_rows) == (2, 1)
    error = job.row_errors.get()
    assert (error.row_number, error.code) == (3, "missing_values")
    assert error.message == "This row has 7 fields; the header has 8."
    with pytest.raises(TransitionRefused, match="1 row"):
        confirm(flow, job)
    assert StockRecord.objects.count() == 0


@pytest.mark.django_db
def test_a_blank_header_over_data_fails_the_preview_naming_the_column(partners, flow):
    header = HEADER.replace("price,", ",price,")
    body = row(1).replace(",1.50", ",,1.50") + row(2).replace(",2.50", ",oops,2.50")
    job = preview(flow, header + body)
    assert_refused(job, "Column 3 (C) has data but no header (first in row 3)")


@pytest.mark.django_db
def test_trailing_empty_columns_are_ignored(partners, flow):
    body = "".join(line.replace("\n", ",,\n") for line in rows(3).splitlines(keepends=True))
    job = preview(flow, HEADER.replace("\n", ",,\n") + body)
    assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
    assert (job.valid_rows, job.invalid_rows) == (3, 0)
    assert confirm(flow, job).imported_rows == 3


# Memory bounded by bytes ----------------------------------------------------------------------

RSS_LIMIT_MIB = 400


def preview_in_child(path: Path, *settings: str) -> dict[str, Any]:
    """Preview ``path`` in a fresh process (default limits, real chunk size); its outcome."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.preview_rss", str(path), *settings],
        capture_output=True, text=True, timeout=240, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def wide_gzip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 MB of gzip CSV whose 100 rows carry ten 1 MiB cells beyond the header (about 1 GB)."""
    path = tmp_path_factory.mktemp("wide") / "wide.csv.gz"
    assert wide_gzip_csv(path) < 1_100_000
    return path


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gzip_csv_of_wide_rows_is_refused_as_a_bomb_in_bounded_memory(wide_gzip):
    result = preview_in_child(wide_gzip)
    assert result["state"] == JobState.PREVIEW_FAILED
    assert "The compressed file expands more than 200 times" in result["reason"]
    assert result["max_rss_mib"] < RSS_LIMIT_MIB, result


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cells_beyond_the_header_are_row_errors_never_held_in_memory(wide_gzip):
    result = preview_in_child(wide_gzip, "DATA_EXCHANGE_GZIP_MAX_COMPRESSION_RATIO=100000")
    assert (result["state"], result["invalid_rows"]) == (JobState.PREVIEW_SUCCEEDED, 100)
    assert result["max_rss_mib"] < RSS_LIMIT_MIB, result


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wide_rows_within_the_header_are_chunked_by_bytes_in_bounded_memory(tmp_path):
    path = tmp_path / "fat.csv.gz"
    fat_gzip_csv(path)  # 150 rows of 5 MiB, about 750 MB of text
    result = preview_in_child(path, "DATA_EXCHANGE_GZIP_MAX_COMPRESSION_RATIO=100000")
    assert (result["state"], result["invalid_rows"]) == (JobState.PREVIEW_SUCCEEDED, 150)
    assert result["max_rss_mib"] < RSS_LIMIT_MIB, result


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_csv_rows_of_sixty_megabytes_are_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "wide.csv"
    wide_csv(path)
    result = preview_in_child(path)
    assert result["state"] == JobState.PREVIEW_FAILED
    assert "Line 2 is longer than the limit of 16.0 MB" in result["reason"]
    assert result["max_rss_mib"] < RSS_LIMIT_MIB, result


@pytest.mark.django_db
def test_extra_cells_are_dropped_as_read_and_reported(partners, flow, settings):
    settings.DATA_EXCHANGE_CHUNK_SIZE = 10_000
    extra = ("," + "x" * 1024**2) * 3
    body = rows(2) + "".join(
        line.replace("\n", extra + "\n") for line in rows(20, start=2).splitlines(keepends=True)
    )
    content = (HEADER + body).encode()
    tracemalloc.start()
    try:
        job = preview(flow, content)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (job.valid_rows, job.invalid_rows) == (2, 20)
    error = job.row_errors.order_by("row_number").first()
    assert (error.row_number, error.code) == (4, "extra_values")
    assert peak < len(content) / 2, f"peak {peak:,} bytes for a {len(content):,}-byte file"


@pytest.mark.django_db
def test_a_chunk_is_closed_by_bytes_as_well_as_rows(partners, flow, settings):
    settings.DATA_EXCHANGE_CHUNK_SIZE = 10_000
    name = "n" * 150
    settings.DATA_EXCHANGE_CHUNK_MAX_BYTES = len(row(0, name=name)) * 5 // 2
    body = "".join(row(i, name=name) for i in range(7))
    job = preview(flow, HEADER + body)
    assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
    ledger = list(job.chunks.order_by("index").values_list("first_row", "row_count"))
    assert ledger == [(2, 3), (5, 3), (8, 1)]
    assert confirm(flow, job).imported_rows == 7


# Error report: formula injection --------------------------------------------------------------

TRIGGERS = ['=HYPERLINK("http://evil.example","x")', "+1", "-2", "@SUM(A1)", "\tP9", "\rP9"]


def _report_job(flow: Callable[..., Any]) -> ImportJob:
    body = rows(2)
    for i, value in enumerate(TRIGGERS, start=10):
        quoted = '"' + value.replace('"', '""') + '"'
        body += row(i, partner=quoted)
    job = preview(flow, HEADER + body)
    assert job.invalid_rows == len(TRIGGERS)
    return job


@pytest.mark.django_db
def test_csv_error_report_neutralises_formula_triggers(partners, flow):
    job = _report_job(flow)
    out = io.BytesIO()
    assert write_error_report(job, "csv", out) == len(TRIGGERS)
    text = out.getvalue().decode("utf-8-sig")
    records = list(csv.reader(io.StringIO(text, newline="")))
    assert records[0] == ["row", "column", "message", "value"]
    values = {int(r[0]): r[3] for r in records[1:]}
    assert values == {i: "'" + v for i, v in enumerate(TRIGGERS, start=4)}
    for record in records[1:]:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in record)
    for line in text.split("\r\n")[1:-1]:
        assert line.startswith('"'), "every field is quoted"


@pytest.mark.django_db
def test_xlsx_error_report_writes_text_never_formulas(partners, flow):
    job = _report_job(flow)
    out = io.BytesIO()
    assert write_error_report(job, "xlsx", out) == len(TRIGGERS)
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
    for name in sheets:
        xml = archive.read(name)
        assert b"<f>" not in xml and b"<f " not in xml
        assert b'<c r="D2" t="inlineStr">' in xml
    sheet = openpyxl.load_workbook(io.BytesIO(out.getvalue())).active
    values = [r[3] for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert values == [v.replace("\r", "\n") for v in TRIGGERS], "XML reads a CR as LF"


# XLSX under a memory cap -----------------------------------------------------------------------

CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from data_exchange_tool.readers import FileRejected, ReadOptions, open_table
try:
    with open(sys.argv[1], "rb") as fh, open_table("xlsx", fh, ReadOptions()) as table:
        result = {"header": table.header, "rows": list(table.rows())}
except FileRejected as exc:
    result = {"rejected": str(exc)}
except MemoryError:
    result = {"memory_error": True}
from tests.preview_rss import peak_rss_kib  # ru_maxrss would count the parent's peak
result["max_rss_kb"] = peak_rss_kib()
print(json.dumps(result))
"""


def read_capped(path: Path) -> dict[str, Any]:
    """Read ``path`` with the default limits in a child capped at ``MEMORY_CAP`` bytes."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(MEMORY_CAP)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(done.stdout)
    assert "memory_error" not in result
    assert result["max_rss_kb"] * 1024 < MEMORY_CAP
    return result


def workbook(data_rows: list[list[object]], *, epoch: Any = None) -> bytes:
    book = openpyxl.Workbook()
    if epoch is not None:
        book.epoch = epoch
    for values in data_rows:
        book.active.append(values)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def replace_members(
    data: bytes, members: dict[str, Callable[[zipfile.ZipFile, str], None]], path: Path
) -> bytes:
    """Write ``data`` (a zip) to ``path`` with members rewritten by callables."""
    source = zipfile.ZipFile(io.BytesIO(data))
    names = list(dict.fromkeys([*source.namelist(), *members]))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name in names:
            if name in members:
                members[name](target, name)
            else:
                target.writestr(name, source.read(name))
    return path.read_bytes()


def bytes_member(content: bytes) -> Callable[[zipfile.ZipFile, str], None]:
    return lambda target, name: target.writestr(name, content)


SHARED_STRINGS_TYPE = (
    b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
)
SST = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


def content_types_with_strings(
    base: bytes, part: str = "xl/sharedStrings.xml"
) -> Callable[[zipfile.ZipFile, str], None]:
    """``base``'s content types, declaring ``part`` as the shared strings (and no other)."""
    xml = zipfile.ZipFile(io.BytesIO(base)).read("[Content_Types].xml")
    xml = re.sub(rb'<Override PartName="[^"]*"[^>]*sharedStrings\+xml"\s*/>', b"", xml)
    override = SHARED_STRINGS_TYPE.replace(b"/xl/sharedStrings.xml", b"/" + part.encode())
    return bytes_member(xml.replace(b"</Types>", override))


def with_shared_strings(
    strings: Callable[[zipfile.ZipFile, str], None],
    path: Path,
    part: str = "xl/sharedStrings.xml",
) -> bytes:
    """A one-cell workbook whose shared-strings part, ``part``, is written by ``strings``."""
    base = workbook([["sku"], ["A"]])
    return replace_members(
        base,
        {part: strings, "[Content_Types].xml": content_types_with_strings(base, part)},
        path,
    )


def zip_bomb(path: Path) -> bytes:
    """A workbook whose sheet declares 1 GiB of rows, compressed about 1000:1."""
    base = workbook([["sku"], ["A"]])
    pattern = b'<row r="2"><c r="A2" t="inlineStr"><is><t>A</t></is></c></row>' * 16384

    def sheet(target: zipfile.ZipFile, name: str) -> None:
        with target.open(name, "w", force_zip64=True) as member:
            member.write(
                b'<worksheet xmlns="http://schemas.openxmlformats.org/'
                b'spreadsheetml/2006/main"><sheetData>'
            )
            for _ in range(1024**3 // len(pattern)):
                member.write(pattern)
            member.write(b"</sheetData></worksheet>")

    return replace_members(base, {"xl/worksheets/sheet1.xml": sheet}, path)


def billion_laughs(path: Path) -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10)))
        for i in range(1, 10)
    )
    strings = b'<?xml version="1.0"?><!DOCTYPE lolz [' + entities + b"]>" + SST
    strings += b"<si><t>&lol9;</t></si></sst>"
    return with_shared_strings(bytes_member(strings), path)


def external_entity(path: Path) -> bytes:
    strings = (
        b'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        + SST
        + b"<si><t>&xxe;</t></si></sst>"
    )
    return with_shared_strings(bytes_member(strings), path)


def huge_shared_strings(path: Path, part: str = "xl/sharedStrings.xml") -> bytes:
    """About 370 MB of distinct shared strings: past the 256 MiB limit, compressed ~10:1."""

    def strings(target: zipfile.ZipFile, name: str) -> None:
        with target.open(name, "w", force_zip64=True) as member:
            member.write(SST)
            pad = b" of a text long enough to fill the table quickly" * 2
            block = 50_000
            for start in range(0, 3_000_000, block):
                member.write(
                    b"".join(
                        b"<si><t>%08x%s</t></si>" % (i * 2654435761 % 2**32, pad)
                        for i in range(start, start + block)
                    )
                )
            member.write(b"</sst>")

    return with_shared_strings(strings, path, part)


def absurd_dimension(path: Path) -> bytes:
    base = workbook([["sku", "name"], ["A1", "a"], ["A2", "b"], ["A3", "c"]])
    sheet = zipfile.ZipFile(io.BytesIO(base)).read("xl/worksheets/sheet1.xml")
    sheet = re.sub(rb'<dimension ref="[^"]+"\s*/>', b'<dimension ref="A1:XFD1048576"/>', sheet)
    assert b"XFD1048576" in sheet
    return replace_members(base, {"xl/worksheets/sheet1.xml": bytes_member(sheet)}, path)


HOSTILE_XLSX: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "zip_bomb": (zip_bomb, "looks like a zip bomb"),
    "billion_laughs": (billion_laughs, "forbidden XML"),
    "external_entity": (external_entity, "forbidden XML"),
    "huge_shared_strings": (huge_shared_strings, "table of texts (xl/sharedStrings.xml)"),
    "renamed_shared_strings": (
        lambda p: huge_shared_strings(p, "xl/strs.xml"),
        "table of texts (xl/strs.xml)",
    ),
    "not_a_zip": (lambda p: b"sku,name\nA,b\n", "not a zip archive"),
}


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", list(HOSTILE_XLSX))
@pytest.mark.django_db
def test_hostile_xlsx_is_refused_under_a_memory_cap(partners, flow, tmp_path, case):
    build, reason = HOSTILE_XLSX[case]
    data = build(tmp_path / "hostile.xlsx")
    path = tmp_path / "upload.xlsx"
    path.write_bytes(data)
    result = read_capped(path)
    assert reason in result.get("rejected", ""), result
    job = preview(flow, data, name="book.xlsx")
    assert_refused(job, reason)


@pytest.mark.django_db
def test_shared_strings_limit_finds_the_part_by_its_content_type(
    partners, flow, settings, tmp_path
):
    settings.DATA_EXCHANGE_XLSX_MAX_SHARED_STRINGS_BYTES = 10_000
    texts = SST + b"".join(b"<si><t>text %d</t></si>" % i for i in range(2000)) + b"</sst>"
    data = with_shared_strings(bytes_member(texts), tmp_path / "strs.xlsx", "xl/strs.xml")
    assert "xl/sharedStrings.xml" not in zipfile.ZipFile(io.BytesIO(data)).namelist()
    reader = ExcelReader(io.BytesIO(data), read_only=True)
    reader.read_manifest()
    reader.read_strings()
    assert len(reader.shared_strings) == 2000, "openpyxl loads the part whole"
    job = preview(flow, data, name="book.xlsx")
    assert_refused(job, "table of texts (xl/strs.xml) is 47.8 KB unzipped; the limit is 9.8 KB")


@pytest.mark.slow
@pytest.mark.django_db
def test_absurd_declared_dimension_reads_the_three_real_rows(tmp_path):
    path = tmp_path / "dims.xlsx"
    path.write_bytes(absurd_dimension(tmp_path / "build.xlsx"))
    result = read_capped(path)
    assert result["rows"] == [[2, ["A1", "a"]], [3, ["A2", "b"]], [4, ["A3", "c"]]]
    assert result["max_rss_kb"] < 300 * 1024


@pytest.mark.django_db
def test_1904_dates_and_twenty_digit_text_ids_import_exactly(partners, flow):
    sku = "12345678901234567890"
    data = workbook(
        [FIELDS, [sku, "Book", 1.5, 2, "W1", True, datetime.datetime(2024, 3, 1, 10, 30), "P1"]],
        epoch=CALENDAR_MAC_1904,
    )
    job = preview(flow, data, name="book.xlsx")
    assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
    assert confirm(flow, job).state == JobState.IMPORT_SUCCEEDED
    record = StockRecord.objects.get()
    assert record.sku == sku
    assert record.price == Decimal("1.50")
    assert record.updated_at == datetime.datetime(2024, 3, 1, 10, 30, tzinfo=datetime.UTC)


@pytest.mark.django_db
def test_a_twenty_digit_id_typed_as_a_number_fails_the_preview_instead_of_changing(partners, flow):
    data = workbook([FIELDS, [12345678901234567890, "Book", 1.5, 2, "W1", True, None, "P1"]])
    job = preview(flow, data, name="ids.xlsx")
    assert job.state == JobState.PREVIEW_FAILED
    assert "cell A2" in job.error_summary
    assert "more than 15 digits" in job.error_summary
    assert StockRecord.objects.count() == 0
