"""Files at rest: sources and chunks live in a private storage of their own, and the files of
finished jobs are removed after ``DATA_EXCHANGE_KEEP_FILES_FOR``.

Celery runs eager; the S3 tests talk to the session's S3 endpoint over HTTP.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from data_exchange_tool import checks, services
from data_exchange_tool.exceptions import TransitionRefused
from data_exchange_tool.models import ImportJob
from data_exchange_tool.services.reconcile import reconcile
from data_exchange_tool.states import FailureKind, JobState, Phase
from data_exchange_tool.storage import import_storage
from tests.fixtures import S3Endpoint
from tests.testapp.models import Partner

IMPORTER = "testapp.StockRecordImportJob"
GENERIC = "data_exchange_tool_importjob"
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
DAY = 24 * 3600

pytestmark = pytest.mark.django_db


def rows(n: int, bad: int = 0) -> bytes:
    good = "".join(f"SKU{i:04d},Item {i},1.00,1,W1,true,,P1\n" for i in range(n))
    wrong = "".join(f"BAD{i:04d},Bad {i},abc,1,W1,true,,P1\n" for i in range(bad))
    return (HEADER + good + wrong).encode()


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class FailSecondChunk:
    """Fault hook: the import of chunk 1 fails before it commits (a worker fault)."""

    @staticmethod
    def before_chunk_commit(*, job_id: Any, chunk_index: int, phase: str) -> None:
        if phase == Phase.IMPORT and chunk_index == 1:
            raise RuntimeError("worker lost its connection")


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 5
    return tmp_path / "media"


@pytest.fixture
def partners() -> list[Partner]:
    return [Partner.objects.create(code=c, name=c) for c in ("P1", "P2")]


@pytest.fixture
def make_job(partners: list[Partner], django_capture_on_commit_callbacks: Any) -> Any:
    def make(content: bytes, name: str = "stock.csv") -> ImportJob:
        with django_capture_on_commit_callbacks(execute=True):
            job = services.create_job(IMPORTER, io.BytesIO(content), name=name)
        job.refresh_from_db()
        return job

    return make


def age(job: ImportJob, seconds: float) -> None:
    """Make the job's last change ``seconds`` old."""
    ImportJob.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def job_keys(job: ImportJob) -> list[str]:
    return [job.source_key, *job.chunks.values_list("storage_key", flat=True)]


# -- where files are stored -------------------------------------------------------------------


def test_without_a_bucket_files_go_to_a_private_folder_beside_media_root(
    media: Path, make_job: Any
) -> None:
    job = make_job(rows(12))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    private = media.parent / "data_exchange_private"
    assert not media.exists() or files_under(media) == []
    stored = files_under(private)
    assert f"data_exchange/{job.pk}/source.csv" in stored
    assert f"data_exchange/{job.pk}/chunks/000000.parquet" in stored
    with pytest.raises(ValueError, match="not served"):
        import_storage().storage.url(job.source_key)


def test_the_private_folder_is_the_one_set(
    media: Path, make_job: Any, settings: Any, tmp_path: Path
) -> None:
    settings.DATA_EXCHANGE_FILES_DIR = str(tmp_path / "elsewhere")
    job = make_job(rows(3))
    assert f"data_exchange/{job.pk}/source.csv" in files_under(tmp_path / "elsewhere")
    assert not (media.parent / "data_exchange_private").exists()


def test_a_storages_alias_named_data_exchange_is_used_when_defined(
    media: Path, make_job: Any, settings: Any, tmp_path: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "data_exchange": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "alias")},
        },
    }
    job = make_job(rows(3))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert f"data_exchange/{job.pk}/source.csv" in files_under(tmp_path / "alias")
    assert not (media.parent / "data_exchange_private").exists()


def test_a_private_folder_under_media_root_is_warned_about(media: Path, settings: Any) -> None:
    assert not [m for m in checks.check_settings() if m.id == "data_exchange_tool.W006"]
    settings.DATA_EXCHANGE_FILES_DIR = str(media / "imports")
    [warning] = [m for m in checks.check_settings() if m.id == "data_exchange_tool.W006"]
    assert str(media / "imports") in warning.msg
    assert "MEDIA_ROOT" in warning.msg


def test_keep_files_for_must_be_positive_or_none(settings: Any) -> None:
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = 0
    assert [m.id for m in checks.check_settings() if "KEEP_FILES_FOR" in m.msg] == [
        "data_exchange_tool.E003"
    ]
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = None
    assert not [m for m in checks.check_settings() if "KEEP_FILES_FOR" in m.msg]


# -- retention --------------------------------------------------------------------------------


def test_reconcile_removes_the_files_of_jobs_finished_longer_ago_than_kept(
    media: Path, make_job: Any, settings: Any, admin_client: Client
) -> None:
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = 7 * DAY
    old = make_job(rows(8, bad=2))
    recent = make_job(rows(8))
    age(old, 8 * DAY)
    age(recent, 6 * DAY)
    private = media.parent / "data_exchange_private"

    done = reconcile()
    assert done["files_removed"] == 1
    assert not [f for f in files_under(private) if str(old.pk) in f]
    assert [f for f in files_under(private) if str(recent.pk) in f]
    old.refresh_from_db()
    assert old.files_removed_at is not None
    assert (old.state, old.total_rows, old.valid_rows, old.invalid_rows) == (
        JobState.PREVIEW_SUCCEEDED,
        10,
        8,
        2,
    )
    assert old.row_errors.count() == 2

    page = admin_client.get(reverse(f"admin:{GENERIC}_change", args=(old.pk,)))
    content = page.content.decode()
    assert "The stored file and its chunks were removed" in content
    assert content.count("abc") >= 2, "the row errors (value abc) are still shown"
    assert "files_removed" not in reconcile(), "a second pass removes nothing more"


def test_a_job_whose_files_were_removed_cannot_be_confirmed(
    media: Path, make_job: Any, settings: Any, admin_client: Client
) -> None:
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = DAY
    job = make_job(rows(8))
    age(job, 2 * DAY)
    call_command("data_exchange_cleanup", stdout=io.StringIO())
    job.refresh_from_db()
    refusal = (
        "The stored file of this job was removed (DATA_EXCHANGE_KEEP_FILES_FOR); upload the file "
        "again to import it."
    )
    assert services.confirm_refusals(job) == [refusal]
    with pytest.raises(TransitionRefused, match=r"was removed \(DATA_EXCHANGE_KEEP_FILES_FOR\)"):
        services.confirm_import(job.pk)
    page = admin_client.get(reverse(f"admin:{GENERIC}_change", args=(job.pk,))).content.decode()
    assert refusal in page
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED


def test_a_failed_import_whose_files_were_removed_says_so_instead_of_offering_resume(
    media: Path,
    make_job: Any,
    settings: Any,
    admin_client: Client,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = DAY
    settings.DATA_EXCHANGE_FAULT_HOOKS = f"{__name__}.FailSecondChunk"
    job = make_job(rows(12))
    with django_capture_on_commit_callbacks(execute=True):
        services.confirm_import(job.pk)
    job.refresh_from_db()
    assert (job.state, job.failure_kind, job.imported_rows) == (
        JobState.IMPORT_FAILED,
        FailureKind.FAULT,
        7,
    )
    age(job, 2 * DAY)
    out = io.StringIO()
    call_command("data_exchange_cleanup", stdout=out)
    assert "1" in out.getvalue()

    page = admin_client.get(reverse(f"admin:{GENERIC}_change", args=(job.pk,))).content.decode()
    assert "The stored file and its chunks were removed" in page
    assert reverse(f"admin:{GENERIC}_resume", args=(job.pk,)) not in page
    with pytest.raises(TransitionRefused, match="was removed"):
        services.resume_import(job.pk)
    job.refresh_from_db()
    assert (job.state, job.imported_rows) == (JobState.IMPORT_FAILED, 7)


def test_running_jobs_and_jobs_kept_forever_keep_their_files(
    media: Path, make_job: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = DAY
    running = make_job(rows(8))
    with django_capture_on_commit_callbacks(execute=False):
        services.confirm_import(running.pk)  # its chunks never run
    age(running, 2 * DAY)
    assert call_command("data_exchange_cleanup", stdout=io.StringIO()) is None
    running.refresh_from_db()
    assert running.files_removed_at is None
    assert all(import_storage().storage.exists(k) for k in job_keys(running))

    settings.DATA_EXCHANGE_KEEP_FILES_FOR = None
    finished = make_job(rows(3))
    age(finished, 1000 * DAY)
    assert "files_removed" not in reconcile(stale_after=10 * 1000 * DAY)
    assert all(import_storage().storage.exists(k) for k in job_keys(finished))


# -- on S3 ------------------------------------------------------------------------------------


@pytest.fixture
def on_s3(s3_endpoint: S3Endpoint, media: Path) -> Iterator[S3Endpoint]:
    s3_endpoint.clear()
    with override_settings(**s3_endpoint.django_settings()):
        yield s3_endpoint
    s3_endpoint.clear()


def bucket_keys(s3: S3Endpoint) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_with_a_bucket_files_go_to_s3_and_expired_ones_are_removed(
    on_s3: S3Endpoint, make_job: Any, settings: Any
) -> None:
    settings.DATA_EXCHANGE_KEEP_FILES_FOR = DAY
    old = make_job(rows(12))
    kept = make_job(rows(3))
    assert old.state == JobState.PREVIEW_SUCCEEDED
    assert f"imports/{old.pk}/source.csv" in bucket_keys(on_s3)
    assert not (Path(settings.MEDIA_ROOT).parent / "data_exchange_private").exists()
    age(old, 2 * DAY)

    call_command("data_exchange_cleanup", stdout=io.StringIO())
    assert not [k for k in bucket_keys(on_s3) if str(old.pk) in k]
    assert f"imports/{kept.pk}/source.csv" in bucket_keys(on_s3)
    old.refresh_from_db()
    assert old.files_removed_at is not None and old.total_rows == 12
