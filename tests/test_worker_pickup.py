"""A job whose tasks no worker takes says so, and a project that lists only
``data_exchange_tool`` in ``INSTALLED_APPS`` still gets a worker that runs the library's tasks.
"""

from __future__ import annotations

import datetime
import html
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from data_exchange_tool import services
from data_exchange_tool.locks import ContentTypeLock
from data_exchange_tool.models import ImportJob
from data_exchange_tool.states import JobState
from tests.fixtures import E2E, WorkerProcess
from tests.testapp.models import Partner, StockRecord

HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
IMPORTER = "testapp.StockRecordImportJob"
ONLY_THE_APP_ENV = {"DATA_EXCHANGE_TEST_ONLY_THE_APP": "1"}
QUEUE = "data_exchange_shared_queue"


def csv_file(n: int) -> bytes:
    return (HEADER + "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,P1\n" for i in range(n)
    )).encode()  # fmt: skip


def job_page(client: Client, job: ImportJob) -> str:
    url = reverse("admin:data_exchange_tool_importjob_change", args=(job.pk,))
    return html.unescape(client.get(url).content.decode())


def some_time_ago(seconds: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(seconds=seconds)


@pytest.fixture
def _local_storage(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


# -- no worker took the job ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_preview_no_worker_took_says_so_after_the_pickup_time(
    _local_storage: None, partner: Partner, admin_client: Client, settings: Any
) -> None:
    settings.DATA_EXCHANGE_PREVIEW_QUEUE = "previews"
    job = services.create_job(IMPORTER, io.BytesIO(csv_file(3)))  # its task is never run
    warning = (
        "No worker has started this job's preview yet after 2 minutes: check that a Celery "
        "worker consumes queue “previews”"
    )
    assert warning not in job_page(admin_client, job)

    ImportJob.objects.filter(pk=job.pk).update(created_at=some_time_ago(121))
    assert warning in job_page(admin_client, job)

    settings.DATA_EXCHANGE_PICKUP_WARNING_AFTER = 300
    assert "No worker has started" not in job_page(admin_client, job)


@pytest.mark.django_db
def test_an_import_no_worker_took_says_so_and_one_taken_does_not(
    _local_storage: None,
    partner: Partner,
    admin_client: Client,
    run_on_commit: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_on_commit(services.create_job, IMPORTER, io.BytesIO(csv_file(10)))
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert "No worker has started" not in job_page(admin_client, job), "the preview ran"
    with django_capture_on_commit_callbacks() as queued:  # the import's first task, not run
        services.confirm_import(job.pk)
    job.refresh_from_db()
    warning = (
        "No worker has started this job's import yet after 2 minutes: check that a Celery "
        f"worker consumes queue “{QUEUE}”"
    )
    assert warning not in job_page(admin_client, job)
    ImportJob.objects.filter(pk=job.pk).update(import_started_at=some_time_ago(121))
    assert warning in job_page(admin_client, job)

    with django_capture_on_commit_callbacks(execute=True):
        for send in queued:
            send()
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_SUCCEEDED
    assert "No worker has started" not in job_page(admin_client, job)
    ContentTypeLock(job.content_type_id).release(job.lock_token)


# -- a project without the workflows app ------------------------------------------------------


@pytest.fixture(scope="module")
def _worker_back_to_normal(celery_worker: WorkerProcess) -> Iterator[None]:
    yield
    if celery_worker.extra_env or not celery_worker.is_alive():
        celery_worker.restart()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_worker_of_a_project_listing_only_the_app_runs_the_whole_job(
    e2e: E2E, _worker_back_to_normal: None, partner: Partner
) -> None:
    e2e.worker.restart(extra_env=ONLY_THE_APP_ENV)
    job = services.create_job(IMPORTER, io.BytesIO(csv_file(250)), name="stock.csv")

    def final(state: JobState) -> ImportJob | None:
        job.refresh_from_db()
        return job if job.state == state else None

    e2e.wait_for(lambda: final(JobState.PREVIEW_SUCCEEDED), timeout=30,
                 message="preview succeeded", describe=lambda: job.state)  # fmt: skip
    services.confirm_import(job.pk)
    e2e.wait_for(lambda: final(JobState.IMPORT_SUCCEEDED), timeout=30,
                 message="import succeeded", describe=lambda: job.state)  # fmt: skip
    assert StockRecord.objects.count() == 250
