"""The whole flow through the admin, against a real worker, Redis, the S3 endpoint and the DB.

A superuser uploads a file in the admin, the worker previews it in chunks, the user confirms,
the worker imports it. What is checked is what a user and an operator would see: the job's
state and counts, the rows of the target table, the objects in the bucket, the Redis lock.
"""

from __future__ import annotations

import datetime
import html
import io
import re
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import openpyxl
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.urls import resolve

from data_exchange_tool.locks import lock_key
from data_exchange_tool.models import ImportChunk, ImportJob, JobEvent
from data_exchange_tool.states import ChunkState, JobState
from tests.fixtures import E2E, redis_db
from tests.fixtures.worker import QUEUES
from tests.testapp.models import Partner, StockRecord

pytestmark = pytest.mark.django_db(transaction=True)

HEADER = ["sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner"]
IMPORTER = "testapp.StockRecordImportJob"
ADD_URL = "/admin/data_exchange_tool/importjob/add/"
WAIT = 60.0
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# -- files ------------------------------------------------------------------------------------


def row(i: int) -> list[str]:
    return [f"SKU{i:05d}", f"Item {i}", f"{i}.50", str(i % 7), "W1", "true",
            "2024-01-02T03:04:05Z", "P1"]  # fmt: skip


def csv_file(n: int, start: int = 0, extra: str = "") -> bytes:
    lines = [",".join(HEADER)] + [",".join(row(i)) for i in range(start, start + n)]
    return ("\n".join(lines) + "\n" + extra).encode()


def xlsx_file(n: int) -> bytes:
    """A workbook written by openpyxl: integer and decimal cells, a datetime cell per row."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for i in range(n):
        when = datetime.datetime(2024, 3, 1 + i % 28, 10, 30)
        sheet.append([f"SKU{i:05d}", f"Item {i}", i + 0.25, i % 7, "W2", True, when, "P1"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


# -- the admin --------------------------------------------------------------------------------


@pytest.fixture
def partner(transactional_db: None) -> Partner:
    return Partner.objects.create(code="P1", name="Partner one")


@pytest.fixture
def admin_user(transactional_db: None):
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user) -> Client:
    return logged_in(admin_user)


def upload(client: Client, content: bytes, name: str = "stock.csv") -> ImportJob:
    """Upload through the admin's add page; return the job it redirected to."""
    response = client.post(
        ADD_URL,
        {"importer": IMPORTER, "file": SimpleUploadedFile(name, content), "encoding": "",
         "delimiter": "", "sheet_name": ""},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    return ImportJob.objects.get(pk=resolve(response["Location"]).kwargs["object_id"])


def confirm(client: Client, job: ImportJob) -> list[str]:
    """POST Confirm Import; return the messages the next page shows."""
    response = client.post(f"/admin/data_exchange_tool/importjob/{job.pk}/confirm/", follow=True)
    assert response.status_code == 200
    return shown_messages(response.content.decode())


def shown_messages(page: str) -> list[str]:
    """The texts of the admin's message list in ``page`` (read from the HTML: the test client's
    captured contexts are shared between threads)."""
    items = re.findall(r'<li class="(?:success|error|warning|info)">(.*?)</li>', page, re.S)
    return [html.unescape(" ".join(item.split())) for item in items]


def wait_state(e2e: E2E, job: ImportJob, *states: JobState, timeout: float = WAIT) -> ImportJob:
    """Wait until the job reaches one of ``states``; fail at once on another final state."""

    def reached() -> ImportJob | None:
        job.refresh_from_db()
        if job.state in states:
            return job
        if job.is_terminal:
            pytest.fail(f"job ended {job.state}: {job.error_summary}")
        return None

    return e2e.wait_for(reached, timeout=timeout, message=f"job {job.pk} in {states}",
                        describe=lambda: (job.state, job.error_summary))  # fmt: skip


def lock_held(e2e: E2E, job: ImportJob) -> bool:
    return bool(redis_db.client(e2e.redis_url).exists(lock_key(job.content_type_id)))


def preview(e2e: E2E, client: Client, content: bytes, name: str = "stock.csv") -> ImportJob:
    return wait_state(e2e, upload(client, content, name), JobState.PREVIEW_SUCCEEDED)


def assert_previewed(job: ImportJob, rows: int, invalid: int = 0) -> None:
    assert (job.total_rows, job.valid_rows, job.invalid_rows) == (rows, rows - invalid, invalid)
    chunks = ImportChunk.objects.filter(job=job)
    assert job.chunk_count == chunks.count() == -(-rows // settings.DATA_EXCHANGE_CHUNK_SIZE) > 1
    assert set(chunks.values_list("preview_state", flat=True)) == {ChunkState.DONE}


def assert_imported(e2e: E2E, job: ImportJob, rows: int) -> None:
    assert job.state == JobState.IMPORT_SUCCEEDED
    assert job.imported_rows == rows
    assert StockRecord.objects.count() == rows
    assert set(ImportChunk.objects.filter(job=job).values_list("import_state", flat=True)) == {
        ChunkState.DONE
    }
    assert JobEvent.objects.filter(job=job, to_state=JobState.IMPORT_SUCCEEDED).count() == 1
    assert not lock_held(e2e, job)


# -- tests ------------------------------------------------------------------------------------


def test_csv_through_the_admin_is_previewed_in_chunks_then_imported(
    e2e: E2E, partner: Partner, admin_client: Client
) -> None:
    job = preview(e2e, admin_client, csv_file(450))
    assert_previewed(job, 450)
    assert StockRecord.objects.count() == 0, "the preview writes nothing"

    messages = confirm(admin_client, job)
    assert any("was confirmed" in m for m in messages), messages
    job = wait_state(e2e, job, JobState.IMPORT_SUCCEEDED)
    assert_imported(e2e, job, 450)
    for i in (0, 123, 449):
        record = StockRecord.objects.get(sku=f"SKU{i:05d}")
        assert (record.name, record.price, record.quantity) == (f"Item {i}", Decimal(f"{i}.50"),
                                                                i % 7)  # fmt: skip
        assert record.updated_at == datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
        assert (record.warehouse, record.active, record.partner_id) == ("W1", True, partner.pk)


def test_xlsx_through_the_admin_is_previewed_then_imported(
    e2e: E2E, partner: Partner, admin_client: Client
) -> None:
    job = preview(e2e, admin_client, xlsx_file(250), name="stock.xlsx")
    assert job.file_format == "xlsx"
    assert_previewed(job, 250)

    confirm(admin_client, job)
    job = wait_state(e2e, job, JobState.IMPORT_SUCCEEDED)
    assert_imported(e2e, job, 250)
    record = StockRecord.objects.get(sku="SKU00031")
    assert (record.price, record.quantity, record.warehouse) == (Decimal("31.25"), 3, "W2")
    assert record.updated_at == datetime.datetime(2024, 3, 4, 10, 30, tzinfo=datetime.UTC)


def test_files_are_stored_under_the_base_path_of_the_bucket(
    e2e: E2E, partner: Partner, admin_client: Client
) -> None:
    job = preview(e2e, admin_client, csv_file(250), name="../../etc/My Stock.csv")
    listing = e2e.s3.client().list_objects_v2(Bucket=e2e.s3.bucket)
    keys = sorted(obj["Key"] for obj in listing.get("Contents", []))
    prefix = f"imports/{job.pk}/"
    assert all(key.startswith(prefix) for key in keys), keys
    assert f"{prefix}source.csv" in keys
    assert re.fullmatch(rf"imports/{UUID}/source\.csv", f"imports/{job.source_key}")
    chunk_keys = [f"imports/{k}" for k in job.chunks.order_by("index").values_list(
        "storage_key", flat=True)]  # fmt: skip
    assert chunk_keys == [f"{prefix}chunks/{i:06d}.parquet" for i in range(3)]
    assert all(re.fullmatch(rf"imports/{UUID}/chunks/\d{{6}}\.parquet", k) for k in chunk_keys)
    assert set(chunk_keys) <= set(keys)
    others = set(keys) - set(chunk_keys) - {f"{prefix}source.csv"}
    assert all(k.startswith(f"{prefix}chunks/") for k in others), others


@pytest.fixture
def queue_settings(e2e: E2E) -> Iterator[None]:
    """Phases on their own queues in the test process; the worker is put back afterwards."""
    with override_settings(DATA_EXCHANGE_PREVIEW_QUEUE="preview_q",
                           DATA_EXCHANGE_IMPORT_QUEUE="import_q"):  # fmt: skip
        try:
            yield
        finally:
            e2e.drain()
            e2e.worker.restart(queues=QUEUES)


def test_a_worker_on_the_configured_queues_runs_the_job(
    e2e: E2E, partner: Partner, admin_client: Client, queue_settings: None
) -> None:
    job = upload(admin_client, csv_file(250))
    time.sleep(3)
    job.refresh_from_db()
    assert (job.state, job.chunk_count) == (JobState.CREATED, None), (
        "a worker on the shared queue only must not take the preview_q message"
    )
    assert redis_db.pending_messages(str(settings.CELERY_BROKER_URL), ["preview_q"]) == 1

    e2e.worker.restart(
        extra_env={"DATA_EXCHANGE_TEST_PREVIEW_QUEUE": "preview_q",
                   "DATA_EXCHANGE_TEST_IMPORT_QUEUE": "import_q"},
        queues=["preview_q", "import_q"],
    )  # fmt: skip
    job = wait_state(e2e, job, JobState.PREVIEW_SUCCEEDED)
    assert_previewed(job, 250)
    confirm(admin_client, job)
    job = wait_state(e2e, job, JobState.IMPORT_SUCCEEDED)
    assert_imported(e2e, job, 250)


def test_preview_errors_block_confirm_in_the_admin(
    e2e: E2E, partner: Partner, admin_client: Client
) -> None:
    bad = "SKU90001,Bad price,abc,1,W1,true,,P1\nSKU90002,Negative,1.00,-5,W1,true,,P1\n"
    job = preview(e2e, admin_client, csv_file(150, extra=bad))
    assert_previewed(job, 152, invalid=2)

    messages = confirm(admin_client, job)
    assert any("2 row(s) with errors" in m for m in messages), messages
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert StockRecord.objects.count() == 0
    assert not lock_held(e2e, job)


def test_a_failed_import_releases_the_lock_for_the_next_job(
    e2e: E2E, partner: Partner, admin_client: Client
) -> None:
    job = preview(e2e, admin_client, csv_file(250))
    StockRecord.objects.create(sku="SKU00150", name="Meanwhile", price=1, quantity=1,
                               partner=partner)  # fmt: skip
    confirm(admin_client, job)
    job = wait_state(e2e, job, JobState.IMPORT_FAILED)
    assert job.failure_kind == "data"
    assert "chunk(s) 1" in job.error_summary
    assert job.row_errors.filter(phase="import", row_number=152).exists()
    assert StockRecord.objects.count() == 1 + 150, "chunks 0 and 2 committed, chunk 1 nothing"
    assert not lock_held(e2e, job)
    assert JobEvent.objects.filter(job=job, to_state=JobState.IMPORT_FAILED).count() == 1

    second = preview(e2e, admin_client, csv_file(120, start=1000))
    assert confirm(admin_client, second)
    second = wait_state(e2e, second, JobState.IMPORT_SUCCEEDED)
    assert StockRecord.objects.filter(sku__startswith="SKU01").count() == 120
    assert not lock_held(e2e, second)


def test_racing_confirms_in_the_admin_start_one_import(
    e2e: E2E, partner: Partner, admin_user
) -> None:
    client = logged_in(admin_user)
    jobs = [preview(e2e, client, csv_file(300, start=start)) for start in (0, 1000)]
    barrier = threading.Barrier(len(jobs))
    shown: dict[str, list[str]] = {}

    def press_confirm(job: ImportJob) -> None:
        own = logged_in(admin_user)
        try:
            barrier.wait(timeout=10)
            shown[str(job.pk)] = confirm(own, job)
        finally:
            connection.close()

    threads = [threading.Thread(target=press_confirm, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(shown) == 2, shown

    started = [j for j in jobs if any("was confirmed" in m for m in shown[str(j.pk)])]
    refused = [j for j in jobs if any("Another import" in m for m in shown[str(j.pk)])]
    assert (len(started), len(refused)) == (1, 1), shown
    winner = wait_state(e2e, started[0], JobState.IMPORT_SUCCEEDED)
    assert_imported(e2e, winner, 300)
    loser = ImportJob.objects.get(pk=refused[0].pk)
    assert loser.state == JobState.PREVIEW_SUCCEEDED
    assert not JobEvent.objects.filter(job=loser, to_state=JobState.IMPORT_IN_PROGRESS).exists()
