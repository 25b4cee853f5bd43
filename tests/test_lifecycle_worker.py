"""Every job ends, against the real worker: a file that kills its worker every time fails the
preview instead of being redelivered forever, and an import whose worker host died finishes as
soon as its chunk's time limit says the worker is gone, without waiting for the stale time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import override_settings

from data_exchange_tool import taskspec
from data_exchange_tool.models import ImportChunk, ImportJob
from data_exchange_tool.services import reconcile
from data_exchange_tool.states import ChunkState, FailureKind, JobState
from tests.fault_hooks import FaultControl
from tests.fixtures import E2E, WorkerProcess, redis_db
from tests.test_faults_worker import (
    HOOKS_ENV,
    IMPORT_CHUNK,
    MARKED,
    STORED,
    assert_imported_once,
    chunk_id,
    start_import,
    upload,
    use_worker,
    wait_fired,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

CAP = 3
CAPPED_ENV = {**HOOKS_ENV, "DATA_EXCHANGE_TEST_MAX_CHUNK_ATTEMPTS": str(CAP)}


@pytest.fixture(scope="module")
def _plain_worker_after(celery_worker: WorkerProcess) -> Iterator[None]:
    """After this module, the worker runs without hooks again."""
    yield
    if celery_worker.extra_env or not celery_worker.is_alive():
        celery_worker.restart()


@pytest.fixture
def faults(e2e: E2E, _plain_worker_after: None) -> FaultControl:
    """The worker loads the fault hooks; the test plans faults through the returned object."""
    use_worker(e2e, HOOKS_ENV)
    return FaultControl(e2e.redis_url)


def wait_final(e2e: E2E, job: ImportJob, timeout: float = 60.0) -> ImportJob:
    def ended() -> ImportJob | None:
        job.refresh_from_db()
        return job if job.is_terminal else None

    return e2e.wait_for(ended, timeout=timeout, message=f"job {job.pk} to end",
                        describe=lambda: (job.state, job.error_summary))  # fmt: skip


@pytest.mark.parametrize(
    ("hook", "index", "task", "kind", "reason"),
    [
        (STORED, 1, "workflows.run_preview", FailureKind.DATA,
         f"The file made the worker stop (out of memory?) {CAP} times while reading it, each "
         "time after row 201."),
        (MARKED, 2, "workflows.validate_chunk", FailureKind.FAULT,
         "Chunk 2 (rows 202–301) could not be validated: the file made the worker stop (out of "
         f"memory?) {CAP} times while reading this chunk."),
    ],
    ids=["split", "validation"],
)  # fmt: skip
def test_a_file_that_kills_its_worker_every_time_fails_the_preview(
    e2e: E2E, faults: FaultControl, hook: str, index: int, task: str, kind: str, reason: str
) -> None:
    use_worker(e2e, CAPPED_ENV)
    faults.plan(hook, "preview", index, action="kill", once=False)
    job = wait_final(e2e, upload())

    assert (job.state, job.failure_kind) == (JobState.PREVIEW_FAILED, kind)
    assert job.error_summary.startswith(reason), job.error_summary
    killed = {entry["pid"] for entry in faults.fired(hook, index)}
    assert len(killed) == CAP, f"each of {CAP} attempts killed its own pool process"
    args = [job.pk] if hook == STORED else [job.pk, chunk_id(job, index)]
    assert len(faults.starts(task, *args)) == CAP + 1, faults.starts(task, *args)
    assert e2e.drain(timeout=20), "nothing is redelivered any more"
    assert len(faults.starts(task, *args)) == CAP + 1


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
                    reason="SQLite has one writer: a chunk held inside its transaction stops "
                    "every other chunk, so the others cannot finish first")  # fmt: skip
def test_a_chunk_of_a_worker_killed_whole_is_resent_after_its_time_limit_and_finishes(
    e2e: E2E, faults: FaultControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's main process dies with chunk 4 inside its transaction and the broker keeps
    the message for an hour; the chunk is re-sent once its own hard time limit has passed
    (long before the job-wide stale time), and its commit, not reconcile, ends the job."""
    use_worker(e2e, HOOKS_ENV)
    faults.plan(MARKED, "import", 4)
    job = start_import(e2e)
    wait_fired(e2e, faults, MARKED, 4)
    done = ImportChunk.objects.filter(job=job, import_state=ChunkState.DONE)
    e2e.wait_for(lambda: done.count() == 9, timeout=30, message="every other chunk written")
    e2e.worker.kill()
    killed_at = time.monotonic()
    e2e.worker.start(extra_env=HOOKS_ENV)

    monkeypatch.setattr(taskspec, "HARD_LIMIT_EXTRA", 1)
    monkeypatch.setattr(reconcile, "RUNNING_MARGIN", 1, raising=False)
    passes: list[dict[str, int]] = []

    def finished() -> bool:
        job.refresh_from_db()
        if job.state == JobState.IMPORT_IN_PROGRESS:
            passes.append(reconcile.reconcile())
        return job.state != JobState.IMPORT_IN_PROGRESS

    with override_settings(DATA_EXCHANGE_CHUNK_TIME_LIMIT=5, DATA_EXCHANGE_STALE_AFTER=600):
        e2e.wait_for(finished, timeout=40, interval=0.5, message="job final")
    ended_after = time.monotonic() - killed_at
    print(f"\nimport ended {ended_after:.1f} s after its worker was killed")
    assert_imported_once(e2e, job)
    assert sum(p["resent"] for p in passes) == 1, passes
    assert sum(p["finalised"] for p in passes) == 0, "the chunk's commit sent the reducer"
    runs = faults.starts(IMPORT_CHUNK, job.pk, chunk_id(job, 4))
    assert len(runs) == 2, runs
    assert faults.starts("workflows.finalize_import", None, job.pk)
    assert ended_after < 20
    # the killed worker's delivery would come back after an hour, as a harmless duplicate
    redis_db.client(str(settings.CELERY_BROKER_URL)).delete("unacked", "unacked_index")
