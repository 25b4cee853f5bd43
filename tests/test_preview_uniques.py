"""Keys repeated inside a file are preview errors, for every unique constraint of the target,
compared on the values the serializer validated (converted and normalised), across chunks.

What a user sees: the later row's error names the earlier row, and Confirm is refused, so such
a file never reaches an import that would fail on the database's unique constraint.
"""

from __future__ import annotations

import io

import pytest

from data_exchange_tool import services
from data_exchange_tool.exceptions import TransitionRefused
from data_exchange_tool.models import ImportJob
from data_exchange_tool.registry import get_importer
from data_exchange_tool.states import JobState
from data_exchange_tool.validation import RowValidator
from tests.testapp.models import Member

HEADER = "email,badge,club,seat,joined\n"
ROWS = "testapp.MemberImportJob"
COLUMNS = "testapp.MemberColumnsImportJob"
UPSERT = "testapp.MemberUpsertImportJob"


@pytest.fixture(autouse=True)
def _local_storage(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


def members(n: int, start: int = 0) -> str:
    """``n`` rows that repeat no key: the row of member ``i`` is file row ``i + 2``."""
    return "".join(
        f"m{i}@example.com,{100 + i},C{i},{i},2024-02-{i + 1:02d}\n"
        for i in range(start, start + n)
    )


def preview(run_on_commit, text: str, importer: str) -> ImportJob:
    job = run_on_commit(services.create_job, importer, io.BytesIO(text.encode()), name="m.csv")
    job.refresh_from_db()
    return job


def assert_blocked(job: ImportJob, expected: dict[int, str]) -> None:
    """The preview ended with exactly these duplicate errors, and Confirm is refused."""
    assert job.state == JobState.PREVIEW_SUCCEEDED
    errors = {e.row_number: e.message for e in job.row_errors.order_by("row_number")}
    assert errors == expected
    assert job.invalid_rows == len(expected)
    with pytest.raises(TransitionRefused, match="row\\(s\\) with errors"):
        services.confirm_import(job.pk)
    assert Member.objects.count() == 0


def test_the_importers_cover_both_validation_paths(db):
    assert RowValidator(get_importer(COLUMNS), {}).plan.column_wise
    assert not RowValidator(get_importer(ROWS), {}).plan.column_wise


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [ROWS, COLUMNS])
def test_a_unique_together_key_repeated_is_an_error_naming_the_earlier_row(run_on_commit, importer):
    text = HEADER + members(5) + "other@example.com,900,C1,1,2024-03-01\n"
    job = preview(run_on_commit, text, importer)
    assert_blocked(job, {7: "club, seat 'C1, 1' is repeated: row 3 already has it."})


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [ROWS, COLUMNS])
def test_an_integer_written_with_a_leading_zero_repeats_the_same_number(run_on_commit, importer):
    text = HEADER + members(5) + "other@example.com,0101,C9,9,2024-03-01\n"
    job = preview(run_on_commit, text, importer)
    assert_blocked(job, {7: "badge '0101' is repeated: row 3 already has it (written '101')."})


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [ROWS, COLUMNS])
def test_a_date_written_without_padding_repeats_the_same_date(run_on_commit, importer):
    text = HEADER + members(5) + "other@example.com,900,C1,9,2024-2-2\n"
    job = preview(run_on_commit, text, importer)
    assert_blocked(
        job,
        {
            7: "club, joined 'C1, 2024-2-2' is repeated: row 3 already has it "
            "(written 'C1, 2024-02-02')."
        },
    )


@pytest.mark.django_db
def test_values_the_serializer_normalises_are_compared_as_it_returns_them(run_on_commit):
    text = HEADER + "dup.one@example.com,1,A,1,2024-01-01\nDUP.ONE@EXAMPLE.COM,2,B,2,2024-01-02\n"
    job = preview(run_on_commit, text, ROWS)
    assert_blocked(
        job,
        {
            3: "email 'DUP.ONE@EXAMPLE.COM' is repeated: row 2 already has it "
            "(written 'dup.one@example.com')."
        },
    )


@pytest.mark.django_db
@pytest.mark.parametrize("importer", [ROWS, COLUMNS])
def test_keys_repeated_in_another_chunk_name_the_row_in_the_first(run_on_commit, importer):
    text = HEADER + members(20) + "M1@example.com,0102,C3,3,2024-2-17\n"
    job = preview(run_on_commit, text, importer)
    assert job.chunk_count == 3
    expected = {
        (ROWS, "email"): "email 'M1@example.com' is repeated: row 3 already has it "
        "(written 'm1@example.com').",
        (ROWS, "badge"): "badge '0102' is repeated: row 4 already has it (written '102').",
        (ROWS, "club"): "club, seat 'C3, 3' is repeated: row 5 already has it.",
    }
    errors = {(importer, e.column): e.message for e in job.row_errors.filter(row_number=22)}
    if importer == ROWS:
        assert errors == expected
    else:  # the column-wise serializer keeps the email as written: no repeat there
        assert errors == {(COLUMNS, k[1]): v for k, v in expected.items() if k[1] != "email"}
    assert job.invalid_rows == 1
    with pytest.raises(TransitionRefused):
        services.confirm_import(job.pk)


@pytest.mark.django_db
def test_unique_fields_repeated_as_the_same_values_are_an_error(run_on_commit):
    text = HEADER + members(9) + "other@example.com,900,C4,04,2024-04-01\n"
    job = preview(run_on_commit, text, UPSERT)
    assert_blocked(
        job, {11: "club, seat 'C4, 04' is repeated: row 6 already has it (written 'C4, 4')."}
    )


@pytest.mark.django_db
def test_rows_whose_keys_only_share_a_hash_are_no_error(run_on_commit, monkeypatch):
    """A hash collision costs a second look at the rows, never a false error."""
    monkeypatch.setattr("data_exchange_tool.services.duplicates.key_digest", lambda _key: 7)
    job = preview(run_on_commit, HEADER + members(10), ROWS)
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert (job.invalid_rows, job.row_errors.count()) == (0, 0)


STOCK_HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"


def stock_row(i: int, sku: str | None = None) -> str:
    return f"{sku or f'SKU{i:05d}'},Item {i},1.50,3,W1,true,,P1\n"


@pytest.mark.django_db(transaction=True)
def test_chunks_validated_before_the_split_ends_keep_their_keys(partners):
    """Committed at once, each chunk is validated as soon as the split stores it, before the
    job knows its columns: its keys are checked all the same."""
    rows = [stock_row(i) for i in range(20)]
    rows[5] = stock_row(5, sku="SKU00001")  # file row 7, in the first chunk
    rows[9] = stock_row(9, sku="SKU00002")  # file row 11, in the second chunk
    job = services.create_job(
        "testapp.StockRecordImportJob",
        io.BytesIO((STOCK_HEADER + "".join(rows)).encode()),
        name="stock.csv",
    )
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED
    errors = {e.row_number: e.message for e in job.row_errors.order_by("row_number")}
    assert errors == {
        7: "sku 'SKU00001' is repeated: row 3 already has it.",
        11: "sku 'SKU00002' is repeated: row 4 already has it.",
    }
    with pytest.raises(TransitionRefused, match="2 row\\(s\\) with errors"):
        services.confirm_import(job.pk)
