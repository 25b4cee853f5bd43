"""Cancel a running preview or import: from the admin (POST, CSRF, permission) and, against the
real worker, what a cancel leaves behind: the job's state and reason, the lock, exactly the rows
of the chunks that committed, and a Resume that writes the rest.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.urls import reverse

from data_exchange_tool import services
from data_exchange_tool.exceptions import TransitionRefused
from data_exchange_tool.locks import ContentTypeLock, lock_key
from data_exchange_tool.models import ImportChunk, ImportJob, JobEvent
from data_exchange_tool.states import ChunkState, FailureKind, JobState
from tests.fault_hooks import HOOKS_PATH, FaultControl
from tests.fixtures import E2E, WorkerProcess, redis_db
from tests.fixtures.users import logged_in_staff
from tests.testapp.models import Partner, StockRecord

HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
IMPORTER = "testapp.StockRecordImportJob"
GENERIC = "data_exchange_tool_importjob"
CONFIRMER = ("data_exchange_tool.change_importjob", "data_exchange_tool.confirm_importjob")
HOOKS_ENV = {"DATA_EXCHANGE_TEST_FAULT_HOOKS": HOOKS_PATH}
MARKED = "after_chunk_marked"
STORED = "after_chunk_stored"
N = 1000


def csv_rows(n: int, start: int = 0) -> str:
    return "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,P1\n"
        for i in range(start, start + n)
    )


def url(action: str, job: ImportJob) -> str:
    return reverse(f"admin:{GENERIC}_{action}", args=(job.pk,))


def page(client: Client, job: ImportJob) -> str:
    return client.get(url("change", job)).content.decode()


def cancel_button(job: ImportJob) -> str:
    return f'<form method="post" action="{url("cancel", job)}">'


# -- the admin, eager Celery ------------------------------------------------------------------


@pytest.fixture
def _local_storage(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


@pytest.fixture
def importing(
    _local_storage: None, partner: Partner, django_capture_on_commit_callbacks: Any
) -> Iterator[ImportJob]:
    """A confirmed job of 10 rows whose chunks have not run yet (IMPORT_IN_PROGRESS)."""
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(10)
    with django_capture_on_commit_callbacks() as queued:
        services.confirm_import(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_IN_PROGRESS
    job.queued = queued  # type: ignore[attr-defined]
    yield job
    ContentTypeLock(job.content_type_id).release(job.lock_token)


def alice(*perms: str) -> Client:
    """A client logged in as the staff user alice (made once) holding ``perms`` and view."""
    user = get_user_model().objects.filter(username="alice").first()
    if user is None:
        return logged_in_staff("alice", "data_exchange_tool.view_importjob", *perms)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_cancel_in_the_admin_fails_the_import_and_its_queued_chunks_write_nothing(
    importing: ImportJob, django_capture_on_commit_callbacks: Any
) -> None:
    client = alice(*CONFIRMER)
    assert cancel_button(importing) in page(client, importing)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("cancel", importing), follow=True)
    assert [str(m) for m in response.context["messages"]] == ["“stock.csv” was cancelled."]
    importing.refresh_from_db()
    assert importing.state == JobState.IMPORT_FAILED
    assert importing.failure_kind == FailureKind.FAULT
    assert importing.error_summary.startswith("Cancelled by alice.")
    content = response.content.decode()
    assert "Cancelled by alice." in content
    assert cancel_button(importing) not in content
    assert f'action="{url("resume", importing)}"' in content
    assert ContentTypeLock(importing.content_type_id).holder() is None

    with django_capture_on_commit_callbacks(execute=True):
        for send in importing.queued:  # the import's chunks, sent after the cancel
            send()
    importing.refresh_from_db()
    assert StockRecord.objects.count() == 0
    assert importing.state == JobState.IMPORT_FAILED
    assert importing.error_summary.startswith("Cancelled by alice.")
    assert JobEvent.objects.filter(job=importing, to_state=JobState.IMPORT_FAILED).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "perms",
    [
        ("data_exchange_tool.change_importjob",),
        ("data_exchange_tool.confirm_importjob",),
    ],
)
def test_cancel_needs_the_change_and_the_confirm_permission(
    importing: ImportJob, perms: tuple[str, ...]
) -> None:
    client = alice(*perms)
    assert cancel_button(importing) not in page(client, importing)
    assert client.post(url("cancel", importing)).status_code == 403
    importing.refresh_from_db()
    assert importing.state == JobState.IMPORT_IN_PROGRESS


@pytest.mark.django_db
def test_cancel_accepts_only_a_post_with_its_csrf_token(importing: ImportJob) -> None:
    client = alice(*CONFIRMER)
    response = client.get(url("cancel", importing))
    assert (response.status_code, response["Allow"]) == (405, "POST")
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(get_user_model().objects.get(username="alice"))
    assert checked.post(url("cancel", importing)).status_code == 403
    importing.refresh_from_db()
    assert importing.state == JobState.IMPORT_IN_PROGRESS


@pytest.mark.django_db
def test_a_finished_job_cannot_be_cancelled(
    _local_storage: None, partner: Partner, run_on_commit: Callable
) -> None:
    job = run_on_commit(services.create_job, IMPORTER, io.BytesIO((HEADER + csv_rows(3)).encode()))
    run_on_commit(services.confirm_import, job.pk)
    with pytest.raises(TransitionRefused, match="Only a running preview or import"):
        services.cancel_job(job.pk, user=None)
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_SUCCEEDED
    client = alice(*CONFIRMER)
    assert cancel_button(job) not in page(client, job)


# -- the real worker --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _worker_back_to_normal(celery_worker: WorkerProcess) -> Iterator[None]:
    yield
    if celery_worker.extra_env or not celery_worker.is_alive():
        celery_worker.restart()


@pytest.fixture
def faults(e2e: E2E, _worker_back_to_normal: None) -> FaultControl:
    if not e2e.worker.is_alive() or e2e.worker.extra_env != HOOKS_ENV:
        e2e.worker.restart(extra_env=HOOKS_ENV)
    return FaultControl(e2e.redis_url)


def wait_state(e2e: E2E, job: ImportJob, state: JobState, timeout: float = 60.0) -> ImportJob:
    def reached() -> ImportJob | None:
        job.refresh_from_db()
        return job if job.state == state else None

    return e2e.wait_for(reached, timeout=timeout, message=f"job {job.pk} {state}",
                        describe=lambda: (job.state, job.error_summary))  # fmt: skip


def upload(n: int, start: int = 0) -> ImportJob:
    return services.create_job(IMPORTER, io.BytesIO((HEADER + csv_rows(n, start)).encode()),
                               name="stock.csv")  # fmt: skip


def post_cancel_in_a_thread(client: Client, job: ImportJob) -> tuple[threading.Thread, list]:
    """POST Cancel from another thread: it waits for the chunks in flight to commit."""
    responses: list = []

    def post() -> None:
        try:
            responses.append(client.post(url("cancel", job)))
        finally:
            connection.close()

    thread = threading.Thread(target=post)
    thread.start()
    return thread, responses


def lock_in_redis(e2e: E2E, job: ImportJob) -> bool:
    return bool(redis_db.client(e2e.redis_url).exists(lock_key(job.content_type_id)))


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_an_import_cancelled_midway_keeps_exactly_its_committed_chunks_and_resumes(
    e2e: E2E, faults: FaultControl, partner: Partner
) -> None:
    client = alice(*CONFIRMER)
    other = wait_state(e2e, upload(5, start=90000), JobState.PREVIEW_SUCCEEDED)
    # PostgreSQL: both pool processes hold a chunk inside its transaction. SQLite has one
    # writer: the held chunk keeps the other process (and the cancel) waiting.
    held = (2,) if connection.vendor == "sqlite" else (2, 3)
    for index in held:
        faults.plan(MARKED, "import", index)
    job = wait_state(e2e, upload(N), JobState.PREVIEW_SUCCEEDED)
    services.confirm_import(job.pk)
    for index in held:
        e2e.wait_for(lambda i=index: faults.fired(MARKED, i), timeout=30, message=f"chunk {index}")

    thread, responses = post_cancel_in_a_thread(client, job)
    time.sleep(1)
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_IN_PROGRESS, "the cancel waits for chunks in flight"
    for index in held:
        faults.release(MARKED, "import", index)
    thread.join(30)
    assert [r.status_code for r in responses] == [302]
    assert e2e.drain(timeout=30)

    job.refresh_from_db()
    assert (job.state, job.failure_kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT)
    assert job.error_summary.startswith("Cancelled by alice.")
    ledger = ImportChunk.objects.filter(job=job)
    done = set(ledger.filter(import_state=ChunkState.DONE).values_list("index", flat=True))
    assert {0, 1, *held} <= done and len(done) < job.chunk_count, done
    written = ledger.aggregate(n=Sum("imported_rows"))["n"]
    assert written == 100 * len(done) == job.imported_rows == StockRecord.objects.count()
    assert "Cancelled by alice." in page(client, job)
    assert JobEvent.objects.filter(job=job, to_state=JobState.IMPORT_FAILED).count() == 1
    assert not lock_in_redis(e2e, job)

    other = services.confirm_import(other.pk)  # the model is free again
    wait_state(e2e, other, JobState.IMPORT_SUCCEEDED)
    assert StockRecord.objects.count() == written + 5

    services.resume_import(job.pk)
    job = wait_state(e2e, job, JobState.IMPORT_SUCCEEDED)
    assert job.imported_rows == N
    assert StockRecord.objects.filter(sku__lt="SKU90000").count() == N
    assert StockRecord.objects.count() == N + 5
    assert not lock_in_redis(e2e, job)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_preview_cancelled_midway_stops_its_split_and_cannot_be_confirmed(
    e2e: E2E, faults: FaultControl, partner: Partner
) -> None:
    faults.plan(STORED, "preview", 2)
    job = upload(N)
    e2e.wait_for(lambda: faults.fired(STORED, 2), timeout=30, message="split holds at chunk 2")

    client = alice(*CONFIRMER)
    assert cancel_button(job) in page(client, job)
    assert client.post(url("cancel", job)).status_code == 302
    faults.release(STORED, "preview", 2)
    assert e2e.drain(timeout=30)

    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_FAILED
    assert job.error_summary == "Cancelled by alice."
    assert ImportChunk.objects.filter(job=job).count() == 3, "the split stopped after chunk 2"
    assert JobEvent.objects.filter(job=job, to_state=JobState.PREVIEW_FAILED).count() == 1
    content = page(client, job)
    assert "Cancelled by alice." in content
    assert "Confirm Import" not in content
    with pytest.raises(TransitionRefused):
        services.confirm_import(job.pk)
    assert StockRecord.objects.count() == 0
