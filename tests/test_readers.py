"""The readers, as a user sees them: headers, numbered rows of text, and clear refusals."""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openpyxl.utils.datetime import CALENDAR_MAC_1904

from data_exchange_tool.readers import (
    FileRejected,
    ReadOptions,
    TableReader,
    csv_reader,
    detect_format,
    open_table,
    xlsx_reader,
)

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
XLS_HEAD = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 32


class OneWayStream:
    """A network-like stream: no seek, no tell, and short reads."""

    def __init__(self, data: bytes, chunk: int = 1000) -> None:
        self._buffer = io.BytesIO(data)
        self._chunk = chunk

    def read(self, size: int = -1) -> bytes:
        limit = self._chunk if size is None or size < 0 else min(size, self._chunk)
        return self._buffer.read(limit)

    def readline(self, size: int = -1) -> bytes:
        return self._buffer.readline(size)

    def __iter__(self):
        return iter(self._buffer)


def read_csv(data: bytes, file_format: str = "csv", **options) -> TableReader:
    return open_table(file_format, io.BytesIO(data), ReadOptions(**options))


def all_rows(reader: TableReader) -> list[tuple[int, list[str | None]]]:
    with reader:
        return list(reader.rows())


def rejection(action: Callable[[], object]) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        action()
    return caught.value


# CSV: encoding


def test_utf8_bom_is_dropped_from_the_first_header():
    reader = read_csv("\ufeffid,name\n1,Müller\n".encode())
    assert reader.header == ["id", "name"]
    assert reader.detected == {"encoding": "utf-8", "delimiter": ","}
    assert all_rows(reader) == [(2, ["1", "Müller"])]


def test_windows_1252_bytes_are_refused_under_utf8_with_line_and_hint():
    data = "id,name\n1,Smith\n2,Müller\n".encode("windows-1252")
    error = rejection(lambda: all_rows(read_csv(data)))
    assert error.line == 3
    assert "not valid UTF-8 (line 3)" in str(error)
    assert "choose its encoding (for example windows-1252)" in str(error)


def test_windows_1252_bytes_read_with_the_chosen_encoding():
    data = "id,name\n2,Müller\n".encode("windows-1252")
    reader = read_csv(data, encoding="windows-1252")
    assert all_rows(reader) == [(2, ["2", "Müller"])]
    assert reader.detected["encoding"] == "windows-1252"


def test_decoding_error_names_the_physical_line_after_a_multiline_record():
    data = b'id,note\n1,"two\nlines"\n2,ok\n3,caf\xe9\n'
    error = rejection(lambda: all_rows(read_csv(data)))
    assert error.line == 5


@pytest.mark.parametrize("encoding", ["klingon-8", "base64"])
def test_unknown_encoding_is_refused_by_name(encoding):
    error = rejection(lambda: read_csv(b"a\n1\n", encoding=encoding))
    assert f'"{encoding}" is not known' in str(error)


def test_utf16_with_bom_is_read_without_choosing_an_encoding():
    data = "id\tname\n1\tMüller\n".encode("utf-16")
    reader = read_csv(data)
    assert reader.header == ["id", "name"]
    assert reader.detected["encoding"] == "utf-16"
    assert all_rows(reader) == [(2, ["1", "Müller"])]


# CSV: delimiters


@pytest.mark.parametrize(
    ("data", "delimiter", "header"),
    [
        (b"id;name;price\n1;Anna;1,5\n", ";", ["id", "name", "price"]),
        (b"id\tname\tprice\n1\tAnna\t1,5\n", "\t", ["id", "name", "price"]),
        (b"id|name|price\n1|Anna|1,5\n", "|", ["id", "name", "price"]),
        (b"id,name\n1,Anna\n", ",", ["id", "name"]),
        (b'"a;b",c,d\n1,2,3\n', ",", ["a;b", "c", "d"]),
    ],
)
def test_delimiter_is_detected_from_the_header(data, delimiter, header):
    reader = read_csv(data)
    assert reader.detected["delimiter"] == delimiter
    assert reader.header == header
    assert len(all_rows(reader)[0][1]) == len(header)


def test_single_column_file_falls_back_to_comma():
    reader = read_csv(b"email\na@example.com\nb@example.com\n")
    assert reader.detected["delimiter"] == ","
    assert reader.header == ["email"]
    assert all_rows(reader) == [(2, ["a@example.com"]), (3, ["b@example.com"])]


def test_tsv_format_reads_tab_even_with_commas_in_the_header():
    reader = read_csv(b"a,1\tb\n1,5\t2\n", "tsv")
    assert reader.header == ["a,1", "b"]
    assert all_rows(reader) == [(2, ["1,5", "2"])]


def test_the_jobs_delimiter_wins_over_detection():
    reader = read_csv(b"a;b,c\n1;2,3\n", delimiter=";")
    assert reader.header == ["a", "b,c"]


def test_excel_sep_line_sets_the_delimiter_and_is_not_a_row():
    reader = read_csv(b"sep=;\r\nid;name\r\n1;Anna\r\n")
    assert reader.detected["delimiter"] == ";"
    assert reader.header == ["id", "name"]
    assert all_rows(reader) == [(2, ["1", "Anna"])]


# CSV: records and row numbers


def test_quoted_newline_record_is_one_row_and_rows_are_numbered_by_record():
    data = b'id,note\n1,"first\nsecond\nthird"\n2,"a,b"\n3,plain\n'
    rows = all_rows(read_csv(data))
    assert rows == [(2, ["1", "first\nsecond\nthird"]), (3, ["2", "a,b"]), (4, ["3", "plain"])]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_reads_the_same(newline):
    data = newline.join([b"id,note", b'1,"x' + newline + b'y"', b"2,z", b""])
    rows = all_rows(read_csv(data))
    assert rows == [(2, ["1", "x" + newline.decode() + "y"]), (3, ["2", "z"])]


def test_blank_rows_are_skipped_and_their_numbers_not_reused():
    rows = all_rows(read_csv(b"id,name\n1,a\n\n,\n4,d\n"))
    assert rows == [(2, ["1", "a"]), (5, ["4", "d"])]


def test_empty_cells_are_none_and_text_is_not_stripped():
    rows = all_rows(read_csv(b'id,name,note\n1,, spaced \n2,"",x\n'))
    assert rows == [(2, ["1", None, " spaced "]), (3, ["2", None, "x"])]


def test_short_and_long_rows_are_given_as_they_are():
    rows = all_rows(read_csv(b"a,b,c\n1\n1,2,3,4\n"))
    assert rows == [(2, ["1"]), (3, ["1", "2", "3", "4"])]


def test_header_only_file_has_a_header_and_no_rows():
    reader = read_csv(b"id,name\n")
    assert reader.header == ["id", "name"]
    assert all_rows(reader) == []


def test_empty_header_cells_are_kept_for_the_caller_to_report():
    assert read_csv(b"id,,name\n1,2,3\n").header == ["id", "", "name"]


def test_a_blank_header_over_data_is_refused_naming_the_column():
    reader = read_csv(b"id,,name\n1,,a\n2,x,b\n")
    seen = []
    with pytest.raises(FileRejected) as caught:
        seen.extend(reader.rows())
    assert seen == [(2, ["1", None, "a"])]
    assert str(caught.value) == (
        "Column 2 (B) has data but no header (first in row 3): name the column in the "
        "header row, or delete the column."
    )
    assert caught.value.line == 3


def test_a_trailing_blank_header_over_data_is_refused_not_taken_for_extra_values():
    error = rejection(lambda: all_rows(read_csv(b"id,name,,\n1,a,,\n2,b,,x\n")))
    assert str(error).startswith("Column 4 (D) has data but no header (first in row 3)")


def test_trailing_empty_columns_are_ignored():
    reader = read_csv(b"id,name,,\n1,a,,\n2,b\n")
    assert reader.header == ["id", "name"]
    assert all_rows(reader) == [(2, ["1", "a", None, None]), (3, ["2", "b"])]


def test_column_letters_go_past_z():
    header = b",".join([b"c%d" % i for i in range(27)] + [b""])
    error = rejection(lambda: all_rows(read_csv(header + b"\n" + b"1," * 28 + b"\n")))
    assert str(error).startswith("Column 28 (AB) has data but no header")


# CSV: refusals


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n\r\n"])
def test_empty_file_is_refused(data):
    assert str(rejection(lambda: read_csv(data))) == "The file is empty."


def test_header_without_any_name_is_refused():
    assert "header row (row 1) is empty" in str(rejection(lambda: read_csv(b",,\n1,2,3\n")))


def test_unterminated_quote_is_refused_not_swallowed():
    data = b'id,name\n1,a\n2,"b\n3,c\n4,d\n'
    reader = read_csv(data)
    seen = []
    with pytest.raises(FileRejected) as caught:
        seen.extend(reader.rows())
    assert seen == [(2, ["1", "a"])]
    assert str(caught.value).startswith("Unterminated quoted field starting at line 3")
    assert caught.value.line == 3


def test_text_after_a_closing_quote_is_refused():
    error = rejection(lambda: all_rows(read_csv(b'id,name\n1,"a"b\n')))
    assert "Bad quoting at line 2" in str(error)


def test_field_over_the_limit_is_refused_with_its_line():
    data = b"id,note\n1,short\n2," + b"x" * 2000 + b"\n"
    error = rejection(lambda: all_rows(read_csv(data, max_field_bytes=1000)))
    assert error.line == 3
    assert "larger than the limit of 1000 bytes" in str(error)


def test_field_larger_than_the_csv_module_default_reads_within_the_limit():
    big = "x" * 300_000
    rows = all_rows(read_csv(f"id,note\n1,{big}\n".encode()))
    assert rows == [(2, ["1", big])]


def test_open_quote_swallowing_the_file_stops_at_the_record_limit():
    data = b'id,note\n1,"open\n' + b"more text\n" * 5000
    error = rejection(lambda: all_rows(read_csv(data, max_record_bytes=10_000)))
    assert error.line == 2
    assert "quote that is opened but never closed" in str(error)


def test_nul_bytes_are_refused():
    error = rejection(lambda: all_rows(read_csv(b"id,name\n1,a\n2,b\x00c\n")))
    assert str(error) == ("The file contains NUL bytes at line 3; it is probably not a text file.")


def test_more_rows_than_the_limit_are_refused():
    data = b"id\n" + b"".join(b"%d\n" % i for i in range(11))
    error = rejection(lambda: all_rows(read_csv(data, max_rows=10)))
    assert "more than 10 rows" in str(error)


def test_gzip_csv_is_decompressed_on_the_fly():
    reader = open_table("csv", OneWayStream(gzip.compress(b"id;name\n1;a\n2;b\n")), ReadOptions())
    assert reader.detected == {"compression": "gzip", "encoding": "utf-8", "delimiter": ";"}
    assert all_rows(reader) == [(2, ["1", "a"]), (3, ["2", "b"])]


def test_gzip_expanding_past_the_ratio_limit_is_refused_early():
    data = gzip.compress(b"id,name\n" + b"1," + b"x" * 50 * 1024**2 + b"\n")
    reader = read_csv(data)
    with pytest.raises(FileRejected) as caught:
        all_rows(reader)
    assert str(caught.value).startswith(
        "The compressed file expands more than 200 times when decompressed (line 2); the "
        "limit is 200 times. The file looks like a compression bomb."
    )


def test_gzip_ratio_limit_is_an_option_and_small_files_are_not_checked():
    data = gzip.compress(b"id,name\n" + (b"1," + b"x" * 900_000 + b"\n") * 2)
    assert "compression bomb" in str(rejection(lambda: all_rows(read_csv(data))))
    assert len(all_rows(read_csv(data, gzip_max_compression_ratio=5000))) == 2
    small = gzip.compress(b"id,name\n" + b"1,a\n" * 100_000)
    assert len(all_rows(read_csv(small))) == 100_000


def test_truncated_gzip_is_refused():
    data = gzip.compress(b"id,name\n" + b"1,abcdefgh\n" * 10_000)[:-200]
    error = rejection(lambda: all_rows(read_csv(data)))
    assert "compressed file is damaged or cut short" in str(error)


def test_csv_reads_from_a_non_seekable_stream():
    lines = [b"id,note"] + [b'%d,"line\nbreak %d"' % (i, i) for i in range(5000)]
    reader = open_table("csv", OneWayStream(b"\n".join(lines)), ReadOptions())
    rows = all_rows(reader)
    assert len(rows) == 5000
    assert rows[-1] == (5001, ["4999", "line\nbreak 4999"])


def test_reader_works_as_a_context_manager():
    with read_csv(b"a\n1\n") as reader:
        assert list(reader.rows()) == [(2, ["1"])]


# CSV: round trip property

CELL_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from([",", ";", "|", "\t", '"', "\n", "\r", " ", "é", "\u2028", "\ufeff"]),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=12,
)
HEADER = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=5, unique=True
)
TABLE = st.lists(st.lists(CELL_TEXT, min_size=1, max_size=6), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=HEADER,
    table=TABLE,
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    block_size=st.sampled_from([1, 2, 5, 64 * 1024]),
)
def test_csv_round_trip_keeps_cells_and_record_numbers(header, table, delimiter, block_size):
    assume(delimiter == "," or len(header) > 1)  # one column: nothing to detect, "," is used
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(table)
    expected = [
        (number, [cell or None for cell in row])
        for number, row in enumerate(table, start=2)
        if any(row)
    ]
    with mock.patch.object(csv_reader, "BLOCK_SIZE", block_size):
        reader = open_table("csv", OneWayStream(text.getvalue().encode()), ReadOptions())
        assert (reader.header, reader.detected["delimiter"]) == (header, delimiter)
        assert all_rows(reader) == expected


# detect_format


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("data.csv", "csv"),
        ("DATA.TXT", "csv"),
        ("data.tsv", "tsv"),
        ("data.tab", "tsv"),
        ("data.csv.gz", "csv"),
        ("export", "csv"),
    ],
)
def test_text_files_are_detected_by_name(name, expected):
    head = gzip.compress(b"id,name\n1,a\n") if name.endswith(".gz") else b"id,name\n1,a\n"
    assert detect_format(name, head) == expected


@pytest.mark.parametrize("name", ["book.xlsx", "book.XLSM", "book.bin"])
def test_workbooks_are_detected(name):
    assert detect_format(name, b"PK\x03\x04" + b"\x00" * 60) == "xlsx"


def test_zip_renamed_csv_is_refused_by_detect_format():
    error = rejection(lambda: detect_format("data.csv", b"PK\x03\x04\x14\x00\x00\x00"))
    assert str(error) == (
        "This file is not a CSV file: it looks like an XLSX workbook (zip). "
        "Upload it with a .xlsx name."
    )


@pytest.mark.parametrize(
    ("head", "detail"),
    [
        (PNG_HEAD, "it contains binary data (it looks like a PNG image)"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "it looks like a PDF document"),
        (b"id,name\n1,\x00\x00\x00\x01", "it contains binary data"),
        (XLS_HEAD, "old Excel .xls workbook"),
    ],
)
def test_binary_renamed_csv_is_refused_by_detect_format(head, detail):
    error = rejection(lambda: detect_format("data.csv", head))
    assert str(error).startswith("This file is not a CSV file:")
    assert detail in str(error)


def test_non_zip_named_xlsx_is_refused_by_detect_format():
    error = rejection(lambda: detect_format("book.xlsx", b"id,name\n1,a\n"))
    assert str(error).startswith("This file is not an XLSX workbook")
    assert "upload it with a .csv name" in str(error)


def test_empty_head_is_refused_by_detect_format():
    assert str(rejection(lambda: detect_format("a.csv", b""))) == "The file is empty."


def test_importing_the_readers_does_not_import_openpyxl():
    code = "import sys, data_exchange_tool.readers; print('openpyxl' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# XLSX helpers


def workbook_bytes(
    rows: list[list[object]],
    *,
    title: str = "Sheet1",
    epoch=None,
    extra_sheets: tuple[str, ...] = (),
) -> bytes:
    workbook = openpyxl.Workbook()
    if epoch is not None:
        workbook.epoch = epoch
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for name in extra_sheets:
        workbook.create_sheet(name).append(["other"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def rewrite_zip(data: bytes, changes: dict[str, bytes | Callable[[bytes], bytes]]) -> bytes:
    """``data`` (a zip) with members replaced, transformed or added."""
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            change = changes.get(name)
            content = source.read(name)
            target.writestr(name, change(content) if callable(change) else change or content)
        for name, change in changes.items():
            if name not in source.namelist():
                target.writestr(name, change)
    return buffer.getvalue()


def read_xlsx(data: bytes, **options) -> TableReader:
    return open_table("xlsx", io.BytesIO(data), ReadOptions(**options))


# XLSX: values


def test_defusedxml_protects_openpyxl():
    assert openpyxl.xml.DEFUSEDXML is True


def test_xlsx_values_are_text_as_excel_shows_them():
    data = workbook_bytes(
        [
            ["int", "float", "bool", "date", "datetime", "time", "code", "id"],
            [
                123,
                1.5,
                True,
                datetime.date(2024, 3, 1),
                datetime.datetime(2024, 3, 1, 10, 30),
                datetime.time(10, 30),
                "00123",
                "12345678901234567890",
            ],
            [123.0, 0.1 + 0.2, False, None, None, None, "007", None],
        ]
    )
    reader = read_xlsx(data)
    assert reader.header == ["int", "float", "bool", "date", "datetime", "time", "code", "id"]
    assert reader.detected == {"sheet": "Sheet1", "date_system": "1900"}
    assert all_rows(reader) == [
        (
            2,
            [
                "123",
                "1.5",
                "true",
                "2024-03-01",
                "2024-03-01T10:30:00",
                "10:30:00",
                "00123",
                "12345678901234567890",
            ],
        ),
        (3, ["123", "0.3", "false", None, None, None, "007", None]),
    ]


def test_fifteen_digit_numbers_and_long_text_ids_keep_every_digit():
    rows = all_rows(read_xlsx(workbook_bytes([["n"], [999999999999999], ["12345678901234567890"]])))
    assert rows == [(2, ["999999999999999"]), (3, ["12345678901234567890"])]


def test_a_number_beyond_excels_15_digits_is_refused_not_silently_changed():
    with pytest.raises(FileRejected, match=r"cell A3 \(\d{20}\) has more than 15 digits"):
        all_rows(read_xlsx(workbook_bytes([["id"], ["00123"], [12345678901234567890]])))


def test_1904_workbook_dates_are_right():
    data = workbook_bytes([["day"], [datetime.date(2024, 3, 1)]], epoch=CALENDAR_MAC_1904)
    sheet_xml = zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")
    assert b"<v>43890</v>" in sheet_xml  # the 1904 serial; under 1900 it is 2020-02-28
    reader = read_xlsx(data)
    assert reader.detected["date_system"] == "1904"
    assert all_rows(reader) == [(2, ["2024-03-01"])]


def test_blank_xlsx_rows_are_skipped_with_numbers_preserved():
    data = workbook_bytes([["id", "name"], [1, "a"], [None, None], [], [4, None]])
    assert all_rows(read_xlsx(data)) == [(2, ["1", "a"]), (5, ["4", None])]


def test_header_is_the_first_non_empty_row():
    data = workbook_bytes([[], [None], ["id", "name"], [1, "a"]])
    reader = read_xlsx(data)
    assert (reader.header_row, reader.header) == (3, ["id", "name"])
    assert all_rows(reader) == [(4, ["1", "a"])]


def test_xlsx_rows_are_padded_to_the_header():
    data = workbook_bytes([["a", "b", "c"], [1], [1, 2, 3]])
    assert all_rows(read_xlsx(data)) == [(2, ["1", None, None]), (3, ["1", "2", "3"])]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [["a", "b", "c"], [1], [1, 2, 3, 4]],
            "Column 4 (D) has data but no header (first in row 3)",
        ),
        (
            [["a", None, "c"], [1, None, 3], [1, 2]],
            "Column 2 (B) has data but no header (first in row 3)",
        ),
    ],
)
def test_xlsx_data_under_a_blank_header_is_refused_naming_the_column(rows, message):
    error = rejection(lambda: all_rows(read_xlsx(workbook_bytes(rows))))
    assert str(error).startswith(message)


def test_xlsx_blank_header_columns_without_data_are_ignored():
    data = workbook_bytes([["a", None, "c", None], [1, None, 3], [4, None, None, None]])
    reader = read_xlsx(data)
    assert reader.header == ["a", "", "c"]
    assert all_rows(reader) == [(2, ["1", None, "3"]), (3, ["4", None, None])]


def styled_workbook(rows: list[list[tuple[object, str]]]) -> bytes:
    """A workbook of ``(value, number format)`` cells."""
    workbook = openpyxl.Workbook()
    for values in rows:
        workbook.active.append([value for value, _ in values])
        for cell, (_, number_format) in zip(
            workbook.active[workbook.active.max_row], values, strict=True
        ):
            cell.number_format = number_format
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_xlsx_zero_padded_numbers_read_as_excel_shows_them():
    data = styled_workbook(
        [
            [("zip", "General"), ("code", "General"), ("neg", "General"), ("float", "General")],
            [(123, "00000"), (7, "000"), (-42, "00000"), (123.0, "00000")],
            [(123456, "00000"), (0, "0000"), (5, "0"), (12.5, "00000")],
        ]
    )
    assert all_rows(read_xlsx(data)) == [
        (2, ["00123", "007", "-00042", "00123"]),
        (3, ["123456", "0000", "5", "12.5"]),
    ]


def test_xlsx_text_formatted_numbers_read_as_excel_shows_them():
    data = styled_workbook(
        [
            [("id", "General"), ("ratio", "General"), ("day", "General")],
            [(123, "@"), (0.1 + 0.2, "@"), (datetime.date(2024, 1, 2), "@")],
        ]
    )
    assert all_rows(read_xlsx(data)) == [(2, ["123", "0.3", "45293"])]


def test_xlsx_reads_from_a_non_seekable_stream(tmp_path):
    data = workbook_bytes([["id"], [1], [2]])
    reader = open_table("xlsx", OneWayStream(data), ReadOptions(temp_dir=str(tmp_path)))
    assert all_rows(reader) == [(2, ["1"]), (3, ["2"])]
    assert list(tmp_path.iterdir()) == []


# XLSX: sheets


def test_sheet_is_chosen_by_name():
    data = workbook_bytes([["first"]], extra_sheets=("Prices",))
    reader = read_xlsx(data, sheet_name="Prices")
    assert reader.header == ["other"]
    assert reader.detected["sheet"] == "Prices"


def test_missing_sheet_lists_the_sheets():
    data = workbook_bytes([["first"]], title="Stock", extra_sheets=("Prices",))
    error = rejection(lambda: read_xlsx(data, sheet_name="Orders"))
    assert str(error) == (
        'The workbook has no sheet named "Orders". Its sheets are: "Stock", "Prices".'
    )


def test_empty_sheet_is_refused():
    assert "is empty" in str(rejection(lambda: read_xlsx(workbook_bytes([]))))


def test_declared_huge_dimension_with_three_rows_reads_three_rows_fast():
    data = rewrite_zip(
        workbook_bytes([["id", "name"], [1, "a"], [2, "b"]]),
        {
            "xl/worksheets/sheet1.xml": lambda xml: xml.replace(
                b'<dimension ref="A1:B3" />', b'<dimension ref="A1:XFD1048576" />'
            )
        },
    )
    assert b"XFD1048576" in zipfile.ZipFile(io.BytesIO(data)).read("xl/worksheets/sheet1.xml")
    started = time.monotonic()
    rows = all_rows(read_xlsx(data))
    assert rows == [(2, ["1", "a"]), (3, ["2", "b"])]
    assert time.monotonic() - started < 2


# XLSX: hostile files


def zip_bomb_workbook(path: Path) -> bytes:
    """A valid workbook whose sheet is replaced by 50 MB of one repeated byte."""
    source = zipfile.ZipFile(io.BytesIO(workbook_bytes([["id"], [1]])))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            if name == "xl/worksheets/sheet1.xml":
                with target.open(name, "w") as member:
                    for _ in range(50):
                        member.write(b" " * 1024 * 1024)
            else:
                target.writestr(name, source.read(name))
    return path.read_bytes()


def test_zip_bomb_is_refused_before_parsing(tmp_path):
    data = zip_bomb_workbook(tmp_path / "bomb.xlsx")
    with mock.patch.object(xlsx_reader.openpyxl, "load_workbook") as load:
        error = rejection(lambda: read_xlsx(data))
    load.assert_not_called()
    assert "xl/worksheets/sheet1.xml expands" in str(error)
    assert "zip bomb" in str(error)


def test_workbook_expanding_over_the_limit_is_refused():
    data = workbook_bytes([["id"], [1]])
    error = rejection(lambda: read_xlsx(data, xlsx_max_uncompressed_bytes=1000))
    assert "when unzipped; the limit is 1000 bytes" in str(error)


def test_oversized_shared_strings_are_refused():
    declared = (
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
    )
    data = rewrite_zip(
        workbook_bytes([["id"]]),
        {
            "xl/sharedStrings.xml": b"<sst/>" * 100,
            "[Content_Types].xml": lambda xml: xml.replace(b"</Types>", declared),
        },
    )
    error = rejection(lambda: read_xlsx(data, xlsx_max_shared_strings_bytes=100))
    assert "xl/sharedStrings.xml) is 600 bytes unzipped; the limit is 100 bytes" in str(error)


def test_workbook_over_the_spool_limit_is_refused():
    error = rejection(lambda: read_xlsx(workbook_bytes([["id"]]), xlsx_max_file_bytes=100))
    assert "larger than the limit of 100 bytes" in str(error)


def test_entity_declarations_in_the_workbook_are_refused():
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b"<si><t>&lol2;</t></si></sst>"
    )
    content_types = (
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
    )
    data = rewrite_zip(
        workbook_bytes([["id"]]),
        {
            "xl/sharedStrings.xml": laughs,
            "[Content_Types].xml": lambda xml: xml.replace(b"</Types>", content_types),
        },
    )
    error = rejection(lambda: read_xlsx(data))
    assert "forbidden XML" in str(error)


@pytest.mark.parametrize("data", [b"id,name\n1,a\n", b"PK\x03\x04 truncated"])
def test_non_zip_or_damaged_xlsx_is_refused(data):
    error = rejection(lambda: read_xlsx(data))
    assert str(error).startswith("This file is not a valid XLSX workbook")


@pytest.mark.parametrize(
    "bad_row",
    [
        b'<row r="3"><c r="A3" t="s"><v>99</v></c></row>',  # no such shared string
        b'<row r="3"><c r="A3" t="n"><v>abc</v></c></row>',  # not a number
        b'<row r="3"><c r="A3"><v>1</v></row>',  # broken XML
    ],
)
def test_damaged_sheet_is_refused_after_the_last_good_row(bad_row):
    data = rewrite_zip(
        workbook_bytes([["id", "name"], [1, "a"]]),
        {
            "xl/worksheets/sheet1.xml": lambda xml: xml.replace(
                b"</sheetData>", bad_row + b"</sheetData>"
            )
        },
    )
    reader = read_xlsx(data)
    seen = []
    with pytest.raises(FileRejected) as caught:
        seen.extend(reader.rows())
    reader.close()
    assert seen == [(2, ["1", "a"])]
    assert str(caught.value).startswith("The sheet cannot be read after row 2")
