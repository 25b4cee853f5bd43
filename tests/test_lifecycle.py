"""Every job ends: progress is what finished, a job that makes none is given up and frees its
model, a worker that keeps dying on a file fails the job with a reason, an old reducer cannot
touch a resumed import, and an import whose chord is gone still finishes.

These run the services in the test process (Celery eager, or sends only recorded). A worker
"killed" mid-task is a ``BaseException`` raised from a fault hook: as after a SIGKILL, none of
the task's own error handling runs, only the database rolls back.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.checks import run_checks
from django.utils import timezone

from data_exchange_tool import dispatch, services, taskspec
from data_exchange_tool.locks import ContentTypeLock
from data_exchange_tool.models import ImportChunk, ImportJob
from data_exchange_tool.services import importing, reconcile
from data_exchange_tool.services import preview as preview_service
from data_exchange_tool.states import FailureKind, JobState
from tests.test_faults_services import (
    IMPORTER,
    Sent,
    assert_lock_free,
    assert_rows_exactly,
    csv_bytes,
    previewed_now,
)
from tests.testapp.models import Partner

pytestmark = pytest.mark.django_db(transaction=True)

HOOKS = f"{__name__}.CRASHES"


class Clock:
    """Stands in for ``django.utils.timezone.now``: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now: datetime = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class WorkerDied(BaseException):
    """The task's process is gone: no ``except Exception`` of the task runs."""


class Crashes:
    """Fault hooks: the process dies at ``hook`` for the chunks listed (every time)."""

    def __init__(self) -> None:
        self.at: set[tuple[str, str, int]] = set()
        self.fired: list[tuple[str, str, int]] = []

    def _maybe(self, hook: str, phase: Any, chunk_index: int) -> None:
        where = (hook, str(getattr(phase, "value", phase)), chunk_index)
        if where in self.at:
            self.fired.append(where)
            raise WorkerDied(where)

    def after_chunk_marked(self, *, job_id: Any, chunk_index: int, phase: Any) -> None:
        self._maybe("after_chunk_marked", phase, chunk_index)

    def after_chunk_stored(self, *, job_id: Any, chunk_index: int, phase: Any) -> None:
        self._maybe("after_chunk_stored", phase, chunk_index)


CRASHES = Crashes()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(timezone, "now", c)
    return c


@pytest.fixture
def crashes(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Crashes:
    hooks = Crashes()
    monkeypatch.setattr(f"{__name__}.CRASHES", hooks)
    settings.DATA_EXCHANGE_FAULT_HOOKS = HOOKS
    return hooks


@pytest.fixture
def sent(settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Sent:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 5
    settings.DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS = 3
    recorder = Sent()
    monkeypatch.setattr(dispatch, "send", recorder)
    Partner.objects.create(code="P1", name="P1")
    return recorder


def confirmed(n: int = 12) -> ImportJob:
    """A job previewed and confirmed; its chunk tasks are only recorded, none has run."""
    job = previewed_now(csv_bytes(n))
    return services.confirm_import(job.pk)


def chunk(job: ImportJob, index: int) -> ImportChunk:
    return ImportChunk.objects.get(job=job, index=index)


def dies(fn: Any, *args: Any) -> None:
    with pytest.raises(WorkerDied):
        fn(*args)


def job_state(job: ImportJob) -> tuple[str, str, str]:
    job.refresh_from_db()
    return job.state, job.failure_kind, job.error_summary


# -- progress, give-up ----------------------------------------------------------------------


def test_a_job_whose_resent_work_is_always_lost_is_failed_after_the_give_up_time(
    sent: Sent, clock: Clock
):
    job = confirmed()
    lock = ContentTypeLock(job.content_type_id)
    assert lock.holder() == job.lock_token
    passes = []
    for _ in range(3 * 6):  # three hours of passes every ten minutes; the broker loses it all
        clock.advance(600)
        passes.append(reconcile.reconcile(send=sent, stale_after=300, give_up_after=3600))
        if job_state(job)[0] != JobState.IMPORT_IN_PROGRESS:
            break
    state, kind, summary = job_state(job)
    assert (state, kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT), passes
    assert "No progress for 3600 seconds" in summary
    assert "0 row(s) were imported" in summary and "chunk(s) 0, 1, 2" in summary, summary
    assert "Resume the import" in summary
    assert sum(p["resent"] for p in passes) <= 6, "re-sent each pass, but not forever"
    assert sum(p["failed"] for p in passes) == 1
    assert_lock_free(job)


def test_a_chunk_finished_is_progress_and_a_resend_is_not(sent: Sent, clock: Clock):
    job = confirmed()
    fence = job.fence
    for _ in range(5):  # 50 minutes: chunks 0 and 1 finish, chunk 2's messages are lost
        clock.advance(600)
        reconcile.reconcile(send=sent, stale_after=300, give_up_after=3600)
    importing.import_chunk(job.pk, chunk(job, 0).pk, fence)
    importing.import_chunk(job.pk, chunk(job, 1).pk, fence)
    clock.advance(3000)  # 50 minutes after the last chunk finished: still running
    reconcile.reconcile(send=sent, stale_after=300, give_up_after=3600)
    assert job_state(job)[0] == JobState.IMPORT_IN_PROGRESS
    clock.advance(601)  # an hour after: given up
    reconcile.reconcile(send=sent, stale_after=300, give_up_after=3600)
    state, kind, summary = job_state(job)
    assert (state, kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT)
    assert "10 row(s) were imported" in summary and "chunk(s) 2 " in summary, summary
    assert_rows_exactly(10)
    assert_lock_free(job)


def test_a_chunk_whose_worker_dies_every_time_fails_the_job_naming_it(
    sent: Sent, crashes: Crashes, clock: Clock
):
    job = confirmed()
    crashes.at.add(("after_chunk_marked", "import", 1))
    target = chunk(job, 1)
    for _ in range(3):  # each delivery of chunk 1 kills its worker
        dies(importing.import_chunk, job.pk, target.pk, job.fence)
        clock.advance(60)
    assert importing.import_chunk(job.pk, target.pk, job.fence) == "gave up"
    state, kind, summary = job_state(job)
    assert (state, kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT), summary
    assert "Chunk 1 (rows 7–11)" in summary, summary
    assert "its worker stopped 3 times" in summary, summary
    assert_lock_free(job)
    assert reconcile.reconcile(send=sent, stale_after=0)["resent"] == 0


# -- a chunk whose worker is gone, and an import whose chord is gone ------------------------


def test_a_chunk_whose_worker_died_is_resent_once_its_time_limit_has_passed(
    sent: Sent, crashes: Crashes, clock: Clock, settings: Any
):
    settings.DATA_EXCHANGE_CHUNK_TIME_LIMIT = 60
    job = confirmed()
    crashes.at.add(("after_chunk_marked", "import", 2))
    importing.import_chunk(job.pk, chunk(job, 0).pk, job.fence)
    importing.import_chunk(job.pk, chunk(job, 1).pk, job.fence)
    dies(importing.import_chunk, job.pk, chunk(job, 2).pk, job.fence)
    crashes.at.clear()
    sent.calls.clear()

    clock.advance(30)  # within its time limit: it may still be running
    assert reconcile.reconcile(send=sent, stale_after=900)["resent"] == 0
    clock.advance(100)  # past its hard time limit: its worker is gone
    assert reconcile.reconcile(send=sent, stale_after=900)["resent"] == 1
    resend = (taskspec.IMPORT_CHUNK, [str(job.pk), chunk(job, 2).pk, job.fence])
    assert sent.calls == [resend]
    assert reconcile.reconcile(send=sent, stale_after=900)["resent"] == 0, "sent once"

    sent.calls.clear()
    assert importing.import_chunk(*resend[1]) == "written"
    finalize = (taskspec.FINALIZE_IMPORT, [None, str(job.pk), job.fence])
    assert sent.calls == [finalize], "the last chunk to finish sends the reducer"
    importing.finalize_import(job.pk, job.fence)
    assert job_state(job)[0] == JobState.IMPORT_SUCCEEDED
    assert_rows_exactly(12)
    assert_lock_free(job)


def test_an_import_whose_chord_is_lost_is_finished_by_its_last_chunk(sent: Sent):
    job = confirmed()
    finalizes = []
    for c in job.chunks.order_by("index"):
        sent.calls.clear()
        assert importing.import_chunk(job.pk, c.pk, job.fence) == "written"
        finalizes.append([args for name, args in sent.calls if name == taskspec.FINALIZE_IMPORT])
    assert finalizes == [[], [], [[None, str(job.pk), job.fence]]]


def test_a_chunk_fault_recorded_after_the_chord_is_gone_fails_the_import(sent: Sent):
    from data_exchange_tool.services import chunk_work
    from workflows.tasks import import_chunk

    job = confirmed()
    for index in (0, 1):
        importing.import_chunk(job.pk, chunk(job, index).pk, job.fence)
    sent.calls.clear()
    broken = chunk(job, 2)

    def unreadable(*args: Any) -> Any:
        raise ValueError("chunk file unreadable")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chunk_work, "rows_for_import", unreadable)
        assert import_chunk.apply(args=(str(job.pk), broken.pk, job.fence)).result == "fault"
    assert [n for n, _a in sent.calls] == [taskspec.FINALIZE_IMPORT]
    importing.finalize_import(job.pk, job.fence)
    state, kind, summary = job_state(job)
    assert (state, kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT)
    assert "ValueError: chunk file unreadable" in summary
    assert_lock_free(job)


# -- fenced reducers ------------------------------------------------------------------------


def old_reducer(job: ImportJob) -> Any:
    """The chord body (reducer) that ``run_import`` sends for the job's current attempt."""
    import workflows.tasks  # noqa: F401  (registers the tasks in this process)
    from workflows import canvas

    chunk_ids = list(job.chunks.values_list("pk", flat=True))
    return canvas.import_chord(str(job.pk), job.fence, chunk_ids).body


def test_the_reducer_of_an_earlier_attempt_leaves_a_resumed_import_alone(sent: Sent):
    job = confirmed()
    first = job.fence
    reducer = old_reducer(job)
    importing.import_chunk(job.pk, chunk(job, 0).pk, first)
    assert importing.fail_import(job, "a worker was lost", kind=FailureKind.FAULT)
    job = services.resume_import(job.pk)
    assert job.fence == first + 1

    reducer.apply(args=([None, None, None],))  # delivered late, after the resume
    assert job_state(job)[0] == JobState.IMPORT_IN_PROGRESS
    lock = ContentTypeLock(job.content_type_id)
    assert lock.holder() == job.lock_token, "the old reducer released the new attempt's lock"
    fence, pending = importing.pending_chunks(job.pk)
    for chunk_id in pending:
        importing.import_chunk(job.pk, chunk_id, fence)
    importing.finalize_import(job.pk, fence)
    assert job_state(job)[0] == JobState.IMPORT_SUCCEEDED
    assert_rows_exactly(12)


def test_an_old_reducer_that_loses_the_race_to_a_resume_moves_nothing(
    sent: Sent, settings: Any, monkeypatch: pytest.MonkeyPatch
):
    job = confirmed()
    first = job.fence
    reducer = old_reducer(job)
    importing.import_chunk(job.pk, chunk(job, 0).pk, first)

    class ResumeMeanwhile:
        def before_finalize(self, *, job_id: Any, phase: Any) -> None:
            assert importing.fail_import(
                ImportJob.objects.get(pk=job_id), "a worker was lost", kind=FailureKind.FAULT
            )
            services.resume_import(job_id)

    monkeypatch.setattr(f"{__name__}.CRASHES", ResumeMeanwhile())
    settings.DATA_EXCHANGE_FAULT_HOOKS = HOOKS
    reducer.apply(args=([None],))
    settings.DATA_EXCHANGE_FAULT_HOOKS = None
    state, _kind, _summary = job_state(job)
    assert (state, job.fence) == (JobState.IMPORT_IN_PROGRESS, first + 1)
    assert ContentTypeLock(job.content_type_id).holder() == job.lock_token


# -- the preview's crash cap ----------------------------------------------------------------


def test_a_file_that_kills_the_split_every_time_fails_the_preview(sent: Sent, crashes: Crashes):
    crashes.at.add(("after_chunk_stored", "preview", 1))
    job = services.create_job(IMPORTER, io.BytesIO(csv_bytes(12)), name="s.csv")
    for _ in range(3):
        dies(preview_service.split_source, job.pk)
    assert preview_service.split_source(job.pk) == []
    state, kind, summary = job_state(job)
    assert (state, kind) == (JobState.PREVIEW_FAILED, FailureKind.DATA), summary
    assert "made the worker stop (out of memory?) 3 times while reading it" in summary, summary
    assert "after row 11" in summary, summary
    assert not job.chunks.exists()


def throttled(c: Any) -> Any:
    raise OSError("throttled")


def test_a_chunk_that_kills_its_validation_every_time_fails_the_preview(
    sent: Sent, crashes: Crashes
):
    from data_exchange_tool.services import chunk_work

    job = services.create_job(IMPORTER, io.BytesIO(csv_bytes(12)), name="s.csv")
    chunk_ids = preview_service.split_source(job.pk)
    preview_service.validate_chunk(job.pk, chunk_ids[0])
    preview_service.validate_chunk(job.pk, chunk_ids[2])
    with pytest.MonkeyPatch.context() as mp:  # faults the task handles (and retries) first
        mp.setattr(chunk_work, "load_rows", throttled)
        for _ in range(4):
            with pytest.raises(OSError):
                preview_service.validate_chunk(job.pk, chunk_ids[1])
    crashes.at.add(("after_chunk_marked", "preview", 1))
    for _ in range(3):
        dies(preview_service.validate_chunk, job.pk, chunk_ids[1])
    sent.calls.clear()
    preview_service.validate_chunk(job.pk, chunk_ids[1])
    assert sent.calls == [(taskspec.FINALIZE_PREVIEW, [str(job.pk)])]
    preview_service.finalize_preview(job.pk)
    state, kind, summary = job_state(job)
    assert (state, kind) == (JobState.PREVIEW_FAILED, FailureKind.FAULT), summary
    assert summary.startswith("Chunk 1 (rows 7–11) could not be validated:"), summary
    assert "made the worker stop (out of memory?) 3 times while reading this chunk" in summary


# -- settings -------------------------------------------------------------------------------


def test_the_default_timings_pass_the_checks(settings: Any):
    ids = {m.id for m in run_checks()}
    assert not ids & {"data_exchange_tool.W004", "data_exchange_tool.W005"}, ids


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"DATA_EXCHANGE_STALE_AFTER": 300, "DATA_EXCHANGE_CHUNK_TIME_LIMIT": 600},
         "data_exchange_tool.W004"),
        ({"DATA_EXCHANGE_STALE_AFTER": 900, "DATA_EXCHANGE_GIVE_UP_AFTER": 900},
         "data_exchange_tool.W005"),
    ],
)  # fmt: skip
def test_timings_that_fight_each_other_are_reported(settings: Any, overrides, expected):
    for name, value in overrides.items():
        setattr(settings, name, value)
    messages = [m for m in run_checks() if m.id == expected]
    assert len(messages) == 1, [m.id for m in run_checks()]
    assert next(iter(overrides)) in messages[0].msg
