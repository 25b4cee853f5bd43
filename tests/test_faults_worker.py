"""Fault scenarios against the real worker (notes/reliability.md §7: S1, S2, S3, S6, S8, S10).

The worker runs with the hooks of :mod:`tests.fault_hooks`: a test plans a fault in Redis (block
a chunk inside its transaction, or make it slow), then kills the pool process, the whole worker
or the chunk's database connection, or deletes the chord's bookkeeping. Every test then checks
the invariants: the job ended, the table holds exactly the file's rows once, each chunk was
marked done once and the job moved to its final state once, the lock is free, and the fault
really fired.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator

import psutil
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from data_exchange_tool import services
from data_exchange_tool.locks import ContentTypeLock, lock_key
from data_exchange_tool.models import ImportChunk, ImportJob, JobEvent
from data_exchange_tool.services.reconcile import reconcile
from data_exchange_tool.states import ChunkState, JobState
from tests.fault_hooks import HOOKS_PATH, FaultControl
from tests.fixtures import E2E, WorkerProcess, redis_db
from tests.testapp.models import Partner, StockRecord

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

N = 1000
IMPORTER = "testapp.StockRecordImportJob"
QUEUE = "data_exchange_shared_queue"
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
VISIBILITY = 5
HOOKS_ENV = {"DATA_EXCHANGE_TEST_FAULT_HOOKS": HOOKS_PATH}
SHORT_VISIBILITY_ENV = {**HOOKS_ENV, "DATA_EXCHANGE_TEST_VISIBILITY_TIMEOUT": str(VISIBILITY)}
MARKED = "after_chunk_marked"
STORED = "after_chunk_stored"
BEFORE_COMMIT = "before_chunk_commit"
IMPORT_CHUNK = "workflows.import_chunk"


# -- worker and faults ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _worker_back_to_normal(celery_worker: WorkerProcess) -> Iterator[None]:
    """After this module, the worker runs without hooks again."""
    yield
    if celery_worker.extra_env or not celery_worker.is_alive():
        celery_worker.restart()


def use_worker(e2e: E2E, env: dict[str, str]) -> None:
    """Run the worker with ``env`` (restart only if it runs with another one)."""
    if not e2e.worker.is_alive() or e2e.worker.extra_env != env:
        e2e.worker.restart(extra_env=env)


@pytest.fixture
def faults(e2e: E2E, _worker_back_to_normal: None) -> FaultControl:
    """The worker loads the fault hooks; the test plans faults through the returned object."""
    use_worker(e2e, HOOKS_ENV)
    return FaultControl(e2e.redis_url)


def wait_fired(e2e: E2E, faults: FaultControl, hook: str, chunk_index: int) -> dict:
    """Wait until a planned hook fired; return its log entry (pid, backend pid …)."""
    return e2e.wait_for(lambda: faults.fired(hook, chunk_index), timeout=30,
                        message=f"{hook} on chunk {chunk_index}")[0]  # fmt: skip


def kill_pool_process(e2e: E2E, pid: int) -> None:
    """SIGKILL one pool process of the worker and wait until the worker has replaced it."""
    assert pid in [child.pid for child in e2e.worker.children()], "not a pool process"
    os.kill(pid, signal.SIGKILL)
    e2e.wait_for(lambda: pid not in [c.pid for c in e2e.worker.children()]
                 and len(e2e.worker.children()) == e2e.worker.concurrency,
                 timeout=20, message=f"pool process {pid} replaced")  # fmt: skip


# -- jobs -------------------------------------------------------------------------------------


def csv_file(n: int) -> bytes:
    return (HEADER + "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,P1\n" for i in range(n)
    )).encode()  # fmt: skip


def upload(n: int = N) -> ImportJob:
    Partner.objects.get_or_create(code="P1", defaults={"name": "Partner one"})
    return services.create_job(IMPORTER, io.BytesIO(csv_file(n)), name="stock.csv")


def wait_state(e2e: E2E, job: ImportJob, state: JobState, timeout: float = 60.0) -> ImportJob:
    def reached() -> ImportJob | None:
        job.refresh_from_db()
        if job.state == state:
            return job
        if job.is_terminal:
            pytest.fail(f"job ended {job.state}: {job.error_summary}")
        return None

    return e2e.wait_for(reached, timeout=timeout, message=f"job {job.pk} {state}",
                        describe=lambda: (job.state, job.error_summary))  # fmt: skip


def start_import(e2e: E2E, n: int = N) -> ImportJob:
    """Upload, wait for the preview, confirm; the import then runs on the worker."""
    job = wait_state(e2e, upload(n), JobState.PREVIEW_SUCCEEDED)
    assert job.invalid_rows == 0
    return services.confirm_import(job.pk)


def chunk_id(job: ImportJob, index: int) -> int:
    return ImportChunk.objects.get(job=job, index=index).pk


def lock_in_redis(e2e: E2E, job: ImportJob) -> bool:
    return bool(redis_db.client(e2e.redis_url).exists(lock_key(job.content_type_id)))


def assert_imported_once(e2e: E2E, job: ImportJob, n: int = N) -> None:
    """INV-T, INV-R, INV-C and INV-L for a job that must end IMPORT_SUCCEEDED with ``n`` rows."""
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    assert StockRecord.objects.count() == n
    assert not StockRecord.objects.values("sku").annotate(c=Count("id")).filter(c__gt=1).exists()
    assert set(StockRecord.objects.values_list("sku", flat=True)) == {
        f"SKU{i:05d}" for i in range(n)
    }
    chunks = ImportChunk.objects.filter(job=job)
    assert chunks.count() == job.chunk_count == -(-n // settings.DATA_EXCHANGE_CHUNK_SIZE)
    assert chunks.filter(import_state=ChunkState.DONE).count() == job.chunk_count
    assert chunks.aggregate(n=Sum("imported_rows"))["n"] == n == job.imported_rows
    assert set(chunks.values_list("import_fence", flat=True)) == {job.fence}
    events = JobEvent.objects.filter(job=job)
    assert events.filter(to_state=JobState.IMPORT_SUCCEEDED).count() == 1
    assert events.filter(to_state=JobState.IMPORT_IN_PROGRESS).count() == 1
    assert not lock_in_redis(e2e, job)
    assert not ImportJob.objects.filter(state=JobState.IMPORT_IN_PROGRESS).exists()


# -- the preview ------------------------------------------------------------------------------


def test_preview_survives_a_pool_process_killed_in_validate_chunk(
    e2e: E2E, faults: FaultControl
) -> None:
    faults.plan(MARKED, "preview", 2)
    job = upload()
    killed = wait_fired(e2e, faults, MARKED, 2)["pid"]
    kill_pool_process(e2e, killed)

    job = wait_state(e2e, job, JobState.PREVIEW_SUCCEEDED)
    assert (job.total_rows, job.valid_rows, job.invalid_rows, job.chunk_count) == (N, N, 0, 10)
    chunks = ImportChunk.objects.filter(job=job)
    assert set(chunks.values_list("preview_state", flat=True)) == {ChunkState.DONE}
    assert chunks.aggregate(n=Sum("valid_rows"))["n"] == N
    assert not job.row_errors.exists()
    runs = faults.starts("workflows.validate_chunk", job.pk, chunk_id(job, 2))
    assert len(runs) >= 2 and runs[0]["pid"] == killed != runs[-1]["pid"], runs
    assert JobEvent.objects.filter(job=job, to_state=JobState.PREVIEW_SUCCEEDED).count() == 1


def test_preview_validates_chunks_while_the_split_is_still_running(
    e2e: E2E, faults: FaultControl
) -> None:
    faults.plan(STORED, "preview", 5)
    job = upload()
    splitter = wait_fired(e2e, faults, STORED, 5)["pid"]

    validated = ImportChunk.objects.filter(job=job, preview_state=ChunkState.DONE)
    e2e.wait_for(lambda: validated.count() == 5, timeout=30, message="chunks 0-4 validated")
    job.refresh_from_db()
    assert (job.state, job.chunk_count) == (JobState.CREATED, None), "the split is still held"
    assert ImportChunk.objects.filter(job=job).count() == 6
    runs = [faults.starts("workflows.validate_chunk", job.pk, chunk_id(job, i)) for i in range(5)]
    assert all(r and r[0]["pid"] != splitter for r in runs), runs
    faults.release(STORED, "preview", 5)

    job = wait_state(e2e, job, JobState.PREVIEW_SUCCEEDED)
    assert (job.total_rows, job.valid_rows, job.invalid_rows, job.chunk_count) == (N, N, 0, 10)
    assert JobEvent.objects.filter(job=job, to_state=JobState.PREVIEW_SUCCEEDED).count() == 1
    assert faults.starts("workflows.finalize_preview", job.pk)


# -- S1 ---------------------------------------------------------------------------------------


def test_s1_pool_process_killed_inside_a_chunk_transaction(e2e: E2E, faults: FaultControl) -> None:
    faults.plan(MARKED, "import", 3)
    job = start_import(e2e)
    killed = wait_fired(e2e, faults, MARKED, 3)["pid"]
    kill_pool_process(e2e, killed)

    assert_imported_once(e2e, wait_state(e2e, job, JobState.IMPORT_SUCCEEDED))
    runs = faults.starts(IMPORT_CHUNK, job.pk, chunk_id(job, 3))
    assert len(runs) >= 2 and runs[0]["pid"] == killed != runs[-1]["pid"], runs


# -- S6 ---------------------------------------------------------------------------------------


def delete_chord_keys(e2e: E2E) -> list[bytes]:
    conn = redis_db.client(str(settings.CELERY_RESULT_BACKEND))
    keys = list(conn.scan_iter(match="celery-taskset-meta-*", count=500))
    if keys:
        conn.delete(*keys)
    return keys


def wait_chord_parts(count: int, timeout: float = 10) -> None:
    """Give the other chunks up to ``timeout`` s to return to the chord before its keys go.

    On PostgreSQL they run beside the held chunk and return within a second or two; deleting
    the keys before they have returned races with them. On SQLite they may wait for the held
    chunk's write lock and return only after it is released, whatever the wait.
    """
    conn = redis_db.client(str(settings.CELERY_RESULT_BACKEND))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = list(conn.scan_iter(match="celery-taskset-meta-*.j", count=500))
        held = [conn.zcard(k) if conn.type(k) == b"zset" else conn.llen(k) for k in keys]
        if held and max(held) >= count:
            return
        time.sleep(0.05)


def test_s6_chord_bookkeeping_lost_then_the_last_chunk_finalises(
    e2e: E2E, faults: FaultControl
) -> None:
    faults.plan(MARKED, "import", 0)
    job = start_import(e2e)
    wait_fired(e2e, faults, MARKED, 0)
    wait_chord_parts(job.chunk_count - 1)  # every chunk but the held one, where they can run
    deleted = delete_chord_keys(e2e)
    assert any(key.endswith(b".s") for key in deleted), deleted
    faults.release(MARKED, "import", 0)

    # the chord can no longer fire; the chunk that settles the ledger last sends the reducer
    assert_imported_once(e2e, wait_state(e2e, job, JobState.IMPORT_SUCCEEDED, timeout=30))
    assert len(faults.starts("workflows.finalize_import", None, job.pk)) == 1
    assert reconcile(stale_after=0)["finalised"] == 0


# -- S8 ---------------------------------------------------------------------------------------


def test_s8_reducer_delivered_again_after_success_changes_nothing(
    e2e: E2E, faults: FaultControl
) -> None:
    job = wait_state(e2e, start_import(e2e), JobState.IMPORT_SUCCEEDED)
    assert_imported_once(e2e, job)
    finished_at = job.import_finished_at

    other = ContentTypeLock(job.content_type_id)
    assert other.acquire("token-of-the-next-import")
    try:
        duplicate = e2e.app.send_task("workflows.finalize_import", args=(None, str(job.pk)),
                                      queue=QUEUE)  # fmt: skip
        duplicate.get(timeout=30)
        assert reconcile(stale_after=0) == {"finalised": 0, "resent": 0, "failed": 0,
                                            "released": 0}  # fmt: skip
        assert other.holder() == "token-of-the-next-import", "a stale release freed another lock"
    finally:
        other.release("token-of-the-next-import")
    assert faults.starts("workflows.finalize_import", None, job.pk)
    job.refresh_from_db()
    assert job.import_finished_at == finished_at
    assert_imported_once(e2e, job)


# -- S10 --------------------------------------------------------------------------------------


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
                    reason="pg_terminate_backend is PostgreSQL only")  # fmt: skip
def test_s10_database_connection_terminated_before_commit(e2e: E2E, faults: FaultControl) -> None:
    faults.plan(BEFORE_COMMIT, "import", 4)
    job = start_import(e2e)
    backend = wait_fired(e2e, faults, BEFORE_COMMIT, 4)["backend_pid"]
    with connection.cursor() as cursor:
        cursor.execute("select pg_terminate_backend(%s)", [backend])
        assert cursor.fetchone()[0] is True
    faults.release(BEFORE_COMMIT, "import", 4)

    assert_imported_once(e2e, wait_state(e2e, job, JobState.IMPORT_SUCCEEDED))
    runs = faults.starts(IMPORT_CHUNK, job.pk, chunk_id(job, 4))
    assert len(runs) >= 2 and runs[-1]["retries"] >= 1, runs


# -- S3 ---------------------------------------------------------------------------------------


def test_s3_chunk_outlives_the_visibility_timeout(e2e: E2E, faults: FaultControl) -> None:
    use_worker(e2e, SHORT_VISIBILITY_ENV)
    slow = 2 * VISIBILITY + 2
    faults.plan(MARKED, "import", 2, action="sleep", seconds=slow)
    job = start_import(e2e)
    first = wait_fired(e2e, faults, MARKED, 2)

    assert_imported_once(e2e, wait_state(e2e, job, JobState.IMPORT_SUCCEEDED))
    runs = faults.starts(IMPORT_CHUNK, job.pk, chunk_id(job, 2))
    assert len(runs) >= 2 and any(r["redelivered"] for r in runs[1:]), runs
    assert len(faults.fired(MARKED, 2)) == 1
    if connection.vendor == "postgresql":
        # SQLite has one writer: the other pool process waits for the slow chunk's write lock,
        # so the redelivered copy can only start after it; PostgreSQL runs both at once.
        during = [r for r in runs[1:] if r["at"] < first["at"] + slow and r["pid"] != first["pid"]]
        assert during, f"no copy of chunk 2 started while the first ran: {runs}"


# -- S2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("recovery", ["redelivery", "reconcile"])
def test_s2_whole_worker_killed_then_a_new_worker_finishes(
    e2e: E2E, faults: FaultControl, recovery: str
) -> None:
    """Redelivery: a short visibility timeout brings the lost messages back to the new worker.
    Reconcile: with the default (one hour) timeout, reconcile re-sends the pending chunks, and
    the last of them to settle sends the reducer, since the chord can no longer complete."""
    env = SHORT_VISIBILITY_ENV if recovery == "redelivery" else HOOKS_ENV
    use_worker(e2e, env)
    faults.plan(MARKED, "import", 4)
    job = start_import(e2e)
    wait_fired(e2e, faults, MARKED, 4)
    old = [e2e.worker.pid, *(c.pid for c in e2e.worker.children())]
    e2e.worker.kill()
    assert not any(psutil.pid_exists(pid) for pid in old)
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_IN_PROGRESS
    time.sleep(2)
    e2e.worker.start(extra_env=env)

    passes: list[dict[str, int]] = []

    def finished() -> bool:
        job.refresh_from_db()
        if job.state == JobState.IMPORT_IN_PROGRESS and recovery == "reconcile":
            passes.append(reconcile(stale_after=2))
        return job.state != JobState.IMPORT_IN_PROGRESS

    e2e.wait_for(finished, timeout=60, interval=0.5, message=f"job final by {recovery}")
    assert_imported_once(e2e, job)
    runs = faults.starts(IMPORT_CHUNK, job.pk, chunk_id(job, 4))
    assert len(runs) >= 2 and runs[0]["pid"] in old and runs[-1]["pid"] not in old, runs
    if recovery == "reconcile":
        # the re-sent chunks settle the ledger and send the reducer; reconcile may finalise
        assert sum(p["resent"] for p in passes) >= 1 and sum(p["finalised"] for p in passes) <= 1
        # the killed worker's deliveries would come back after an hour, as harmless duplicates
        redis_db.client(str(settings.CELERY_BROKER_URL)).delete("unacked", "unacked_index")
    else:
        assert any(r["redelivered"] for r in runs[1:]), runs
