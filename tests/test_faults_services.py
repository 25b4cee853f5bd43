"""Faults around the services: S3 failures, concurrent upserts, an expired lock, Redis lost.

Each test asserts what a user would see or lose: the job's final state and reason, the rows in
the target table, and that the import lock is free afterwards. Fault tests are ``slow`` and
bounded; every process they start is stopped.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest
from celery import Celery
from django.db import close_old_connections, connection, transaction
from django.test import override_settings

from data_exchange_tool import dispatch, registry, services, taskspec, writers
from data_exchange_tool.exceptions import ImportLockHeld, StaleFence, TransitionRefused
from data_exchange_tool.locks import ContentTypeLock, lock_key
from data_exchange_tool.models import ImportJob
from data_exchange_tool.services import importing, reconcile
from data_exchange_tool.services import preview as preview_service
from data_exchange_tool.states import ChunkState, FailureKind, JobState
from data_exchange_tool.storage import import_storage
from data_exchange_tool.writers import write_rows
from tests.fixtures import E2E, WorkerProcess, processes, redis_db, wait_for
from tests.fixtures.tcpproxy import Fault, FaultProxy
from tests.testapp.models import Partner, StockRecord
from tests.testapp.serializers import ImportStockRecordSerializer

IMPORTER = "testapp.StockRecordImportJob"
UPSERT = "testapp.StockRecordUpsertImportJob"
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
FINAL = (JobState.PREVIEW_FAILED, JobState.IMPORT_SUCCEEDED, JobState.IMPORT_FAILED)


def csv_bytes(n: int, prefix: str = "SKU", start: int = 0) -> bytes:
    body = "".join(
        f"{prefix}{i:06d},Item {i} with a name long enough,{i}.50,{i % 7},W1,true,,P1\n"
        for i in range(start, start + n)
    )
    return (HEADER + body).encode()


def state_of(job: ImportJob) -> tuple[str, str]:
    job.refresh_from_db()
    return job.state, job.error_summary


def wait_state(job: ImportJob, states: tuple[str, ...], timeout: float) -> str:
    wait_for(lambda: state_of(job)[0] in states, timeout=timeout,
             message=f"job {job.pk} to reach {states}", describe=lambda: state_of(job))
    return job.state


def assert_lock_free(job: ImportJob) -> None:
    job.refresh_from_db()
    assert ContentTypeLock(job.content_type_id).holder() is None
    assert not ImportJob.objects.filter(
        content_type_id=job.content_type_id, state=JobState.IMPORT_IN_PROGRESS
    ).exists()


def assert_rows_exactly(n: int, prefix: str = "SKU") -> None:
    skus = list(StockRecord.objects.filter(sku__startswith=prefix).values_list("sku", flat=True))
    assert len(skus) == n and len(set(skus)) == n, (len(skus), len(set(skus)))


# Scenario 11: S3 faults through a proxy in front of the S3 endpoint ---------------------------


@contextlib.contextmanager
def worker_behind_proxy(e2e: E2E, **env: str) -> Iterator[FaultProxy]:
    """The session worker restarted to reach S3 through a fault proxy; restored after."""
    proxy = FaultProxy(e2e.s3_url).start()
    try:
        e2e.worker.restart(extra_env={
            "DATA_EXCHANGE_TEST_S3_ENDPOINT": proxy.url, "AWS_ENDPOINT_URL": proxy.url, **env,
        })  # fmt: skip
        yield proxy
    finally:
        try:
            if not e2e.drain(timeout=10):
                e2e.worker.kill()
            e2e.worker.restart()
        finally:
            proxy.stop()


def previewed(e2e: E2E, content: bytes, timeout: float = 45) -> ImportJob:
    job = services.create_job(IMPORTER, io.BytesIO(content), name="stock.csv")
    wait_state(job, (JobState.PREVIEW_SUCCEEDED, JobState.PREVIEW_FAILED), timeout)
    return job


@pytest.fixture
def partner_p1(transactional_db: None) -> Partner:
    return Partner.objects.create(code="P1", name="P1")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_s3_throttling_is_retried_and_the_import_succeeds(e2e: E2E, partner_p1):
    with worker_behind_proxy(e2e) as proxy:
        proxy.add(Fault("GET", r"/source\.csv", status=503, times=3))
        job = previewed(e2e, csv_bytes(300))
        assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
        outcomes = proxy.outcomes("GET", r"/source\.csv")
        assert outcomes[:3] == ["503"] * 3 and outcomes[3] in ("200", "206"), outcomes
        services.confirm_import(job.pk)
        wait_state(job, FINAL, 45)
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    assert_rows_exactly(300)
    assert_lock_free(job)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_permanent_s3_errors_at_import_fail_the_job_with_the_reason(e2e: E2E, partner_p1):
    with worker_behind_proxy(e2e, AWS_MAX_ATTEMPTS="2") as proxy:
        job = previewed(e2e, csv_bytes(200))
        assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
        proxy.add(Fault("GET", r"/chunks/", status=500))
        started = time.monotonic()
        services.confirm_import(job.pk)
        wait_state(job, FINAL, 60)
        assert time.monotonic() - started < 60
        assert "500" in "".join(proxy.outcomes("GET", r"/chunks/"))
    assert (job.state, job.failure_kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT)
    assert "InternalError" in job.error_summary or "500" in job.error_summary, job.error_summary
    assert "Resume the import" in job.error_summary
    assert StockRecord.objects.count() == 0
    assert_lock_free(job)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_permanent_s3_errors_at_preview_fail_the_preview_instead_of_hanging(e2e: E2E, partner_p1):
    with worker_behind_proxy(e2e, AWS_MAX_ATTEMPTS="1") as proxy:
        proxy.add(Fault("GET", r"/source\.csv", status=500))
        job = services.create_job(IMPORTER, io.BytesIO(csv_bytes(50)), name="stock.csv")
        wait_state(job, FINAL, 75)
        assert proxy.outcomes("GET", r"/source\.csv")
    assert (job.state, job.failure_kind) == (JobState.PREVIEW_FAILED, FailureKind.FAULT)
    assert job.error_summary.startswith("The file could not be read:"), job.error_summary
    assert "500" in job.error_summary or "InternalError" in job.error_summary


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_connection_cut_mid_download_is_resumed(e2e: E2E, partner_p1):
    content = csv_bytes(2000)
    assert len(content) > 65536
    with worker_behind_proxy(e2e) as proxy:
        proxy.add(Fault("GET", r"/source\.csv", cut_after=65536, times=1, after=1))
        job = previewed(e2e, content, timeout=60)
        assert "cut after 65536" in proxy.outcomes("GET", r"/source\.csv")
        assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
        assert job.total_rows == 2000
        services.confirm_import(job.pk)
        wait_state(job, FINAL, 60)
    assert job.state == JobState.IMPORT_SUCCEEDED, job.error_summary
    assert_rows_exactly(2000)
    assert_lock_free(job)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_source_replaced_after_preview_is_refused_at_confirm(e2e: E2E, partner_p1):
    job = previewed(e2e, csv_bytes(20))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    e2e.s3.client().put_object(
        Bucket=e2e.s3.bucket, Key=f"imports/{job.source_key}", Body=csv_bytes(20, prefix="EVIL")
    )
    with pytest.raises(TransitionRefused, match="changed after it was uploaded"):
        services.confirm_import(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_FAILED
    assert "changed after it was uploaded" in job.error_summary
    assert StockRecord.objects.count() == 0
    assert_lock_free(job)


@pytest.mark.django_db
def test_local_source_replaced_after_preview_is_refused_at_confirm(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    Partner.objects.create(code="P1", name="P1")
    with django_capture_on_commit_callbacks(execute=True):
        job = services.create_job(IMPORTER, io.BytesIO(csv_bytes(5)), name="s.csv")
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED
    Path(import_storage().storage.path(job.source_key)).write_bytes(csv_bytes(6, prefix="EVIL"))
    with pytest.raises(TransitionRefused, match="changed after it was uploaded"):
        services.confirm_import(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_FAILED
    assert StockRecord.objects.count() == 0
    assert ContentTypeLock(job.content_type_id).holder() is None


# Scenario 10: duplicate keys and concurrent upserts -------------------------------------------


@pytest.mark.django_db
def test_keys_repeated_in_a_chunk_and_across_chunks_are_preview_errors(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 5
    Partner.objects.create(code="P1", name="P1")
    lines = csv_bytes(8).decode().splitlines(keepends=True)
    lines.insert(4, lines[2])  # row 5 repeats row 3, in the same chunk
    lines.append(lines[2].replace("SKU000001", " SKU000001"))  # row 11, a later chunk
    with django_capture_on_commit_callbacks(execute=True):
        job = services.create_job(UPSERT, io.BytesIO("".join(lines).encode()), name="d.csv")
    job.refresh_from_db()
    assert job.invalid_rows == 2
    messages = {e.row_number: e.message for e in job.row_errors.all()}
    assert messages == {
        5: "sku 'SKU000001' is repeated: row 3 already has it.",
        11: "sku 'SKU000001' is repeated: row 3 already has it.",
    }
    with pytest.raises(TransitionRefused, match="row\\(s\\) with errors"):
        services.confirm_import(job.pk)


def validated(n: int, tag: str, partner: Partner) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i + 2, {"sku": f"K{i:05d}", "name": f"{tag} {i}", "price": Decimal("1.00"),
                 "quantity": i, "warehouse": "W1", "active": True, "updated_at": None,
                 "partner": partner})
        for i in range(n)
    ]  # fmt: skip


@contextlib.contextmanager
def slow_row_writes(table: str, seconds: float) -> Iterator[None]:
    """A PostgreSQL trigger that sleeps before each row written to ``table``, so two
    statements on the same rows run side by side for long enough to meet."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION dxt_slow_row() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER dxt_slow_row BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION dxt_slow_row()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS dxt_slow_row ON {table}")
            cursor.execute("DROP FUNCTION IF EXISTS dxt_slow_row()")


def upsert_concurrently(batches: dict[str, list[tuple[int, dict[str, Any]]]]) -> list[Exception]:
    """Write each batch through the upsert importer's writer, in its own thread and
    transaction, all released at once; the errors raised."""
    importer = registry.get_importer(UPSERT)
    barrier = threading.Barrier(len(batches))
    errors: list[Exception] = []

    def write(tag: str) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                write_rows(importer, ImportStockRecordSerializer(), batches[tag])
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(tag,)) for tag in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.django_db(transaction=True)
def test_concurrent_upserts_of_the_same_keys_in_opposite_order_do_not_deadlock(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlocks are PostgreSQL's; SQLite serialises writers")
    partner = Partner.objects.create(code="P1", name="P1")
    existing = validated(600, "old", partner)[::3]
    StockRecord.objects.bulk_create(StockRecord(**data) for _row, data in existing)
    batches = {"A": validated(600, "A", partner), "B": validated(600, "B", partner)[::-1]}
    with slow_row_writes(StockRecord._meta.db_table, 0.002):
        errors = upsert_concurrently(batches)
        assert not errors, errors
        assert_rows_exactly(600, prefix="K")
        names = StockRecord.objects.values_list("name", flat=True)
        assert len({name.split()[0] for name in names}) == 1, "one writer's rows win whole"

        # The bait is real: written in the order given, the same batches deadlock.
        monkeypatch.setattr(writers.bulk, "_sort_key", lambda model, keys: lambda row: 0)
        errors = upsert_concurrently(batches)
    assert any("deadlock" in str(e) for e in errors), errors


# Scenario 8: the lock expires while its holder is paused ---------------------------------------


class Sent:
    """Stands in for dispatch.send: records what would be queued, runs nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    def __call__(self, task_name: str, args: list[Any], queue: str) -> None:
        self.calls.append((task_name, args))


def previewed_now(content: bytes) -> ImportJob:
    """A job previewed synchronously through the services."""
    job = services.create_job(IMPORTER, io.BytesIO(content), name="s.csv")
    for chunk_id in preview_service.split_source(job.pk):
        preview_service.validate_chunk(job.pk, chunk_id)
    preview_service.finalize_preview(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED, job.error_summary
    return job


def run_import(job: ImportJob) -> list[str]:
    fence, chunk_ids = importing.pending_chunks(job.pk)
    outcomes = [importing.import_chunk(job.pk, cid, fence) for cid in chunk_ids]
    importing.finalize_import(job.pk)
    return outcomes


def confirm_at_once(job_ids: list[Any]) -> list[BaseException | None]:
    barrier = threading.Barrier(len(job_ids))
    results: list[BaseException | None] = [None] * len(job_ids)

    def attempt(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            services.confirm_import(job_ids[i])
        except BaseException as exc:
            results[i] = exc
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(job_ids))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.django_db(transaction=True)
def test_an_expired_lock_lets_no_second_import_in_and_an_old_fence_writes_nothing(
    settings, tmp_path, monkeypatch
):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 5
    monkeypatch.setattr(dispatch, "send", Sent())
    Partner.objects.create(code="P1", name="P1")
    a, b, c = (previewed_now(csv_bytes(12, prefix=p)) for p in ("AAA", "BBB", "CCC"))

    a = services.confirm_import(a.pk)
    lock = ContentTypeLock(a.content_type_id)
    assert lock.holder() == a.lock_token
    assert lock.redis is not None and lock.redis.delete(lock_key(a.content_type_id)) == 1

    refused = confirm_at_once([b.pk, c.pk])
    for error in refused:
        assert isinstance(error, ImportLockHeld), error
        assert "Another import into stock records is running" in str(error)
    importing_now = ImportJob.objects.filter(state=JobState.IMPORT_IN_PROGRESS)
    assert list(importing_now.values_list("pk", flat=True)) == [a.pk]
    assert {state_of(b)[0], state_of(c)[0]} == {JobState.PREVIEW_SUCCEEDED}

    assert set(run_import(a)) == {"written"}
    assert state_of(a)[0] == JobState.IMPORT_SUCCEEDED
    assert_rows_exactly(12, prefix="AAA")
    assert lock.holder() is None

    b = services.confirm_import(b.pk)
    old_fence = b.fence
    assert importing.fail_import(b, "a worker was lost", kind=FailureKind.FAULT)
    b = services.resume_import(b.pk)
    assert b.fence == old_fence + 1
    chunk = b.chunks.order_by("index").first()
    assert importing.import_chunk(b.pk, chunk.pk, old_fence) == "stale"
    with pytest.raises(StaleFence):
        importing._write(b, chunk, old_fence, [])
    chunk.refresh_from_db()
    assert chunk.import_state == ChunkState.PENDING
    assert not StockRecord.objects.filter(sku__startswith="BBB").exists()
    assert set(run_import(b)) == {"written"}
    assert state_of(b)[0] == JobState.IMPORT_SUCCEEDED
    assert_rows_exactly(12, prefix="BBB")
    assert_lock_free(b)


# The preview's reducer sent by several chunks, and a split started over ------------------------


def split_and_validate(content: bytes, importer: str = IMPORTER) -> ImportJob:
    """A job split and validated through the services; with dispatch.send a Sent, the reducer
    the last chunk sends is only recorded."""
    job = services.create_job(importer, io.BytesIO(content), name="s.csv")
    for chunk_id in preview_service.split_source(job.pk):
        preview_service.validate_chunk(job.pk, chunk_id)
    return job


def with_repeated_keys() -> bytes:
    """12 rows in chunks of 5; rows 14 and 15 repeat the key of row 3."""
    lines = csv_bytes(12).decode().splitlines(keepends=True)
    return "".join([*lines, lines[2], lines[2]]).encode()


def assert_previewed_once_with_two_repeated_keys(job: ImportJob) -> None:
    job.refresh_from_db()
    assert (job.state, job.invalid_rows, job.valid_rows) == (JobState.PREVIEW_SUCCEEDED, 2, 12)
    errors = job.row_errors.filter(code="duplicate_key")
    assert sorted(errors.values_list("row_number", flat=True)) == [14, 15]
    assert job.row_errors.count() == 2
    assert job.events.filter(to_state=JobState.PREVIEW_SUCCEEDED).count() == 1


@pytest.fixture
def sent(settings, tmp_path, monkeypatch) -> Sent:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 5
    recorder = Sent()
    monkeypatch.setattr(dispatch, "send", recorder)
    Partner.objects.create(code="P1", name="P1")
    return recorder


@pytest.mark.django_db(transaction=True)
def test_the_preview_reducer_run_twice_stores_repeated_keys_once(sent: Sent):
    job = split_and_validate(with_repeated_keys(), importer=UPSERT)
    assert sent.calls.count((taskspec.FINALIZE_PREVIEW, [str(job.pk)])) == 1
    preview_service.finalize_preview(job.pk)
    preview_service.finalize_preview(job.pk)
    assert_previewed_once_with_two_repeated_keys(job)


@pytest.mark.django_db(transaction=True)
def test_a_chunk_fault_recorded_for_good_sends_the_reducer_that_fails_the_preview(
    sent: Sent, monkeypatch
):
    from data_exchange_tool.services import chunk_work
    from workflows.tasks import validate_chunk

    job = services.create_job(IMPORTER, io.BytesIO(csv_bytes(12)), name="s.csv")
    chunk_ids = preview_service.split_source(job.pk)
    for chunk_id in chunk_ids[:2]:
        preview_service.validate_chunk(job.pk, chunk_id)
    finalize = (taskspec.FINALIZE_PREVIEW, [str(job.pk)])
    assert finalize not in sent.calls, "chunk 2 is not settled yet"

    def unreadable(chunk: Any) -> Any:
        raise ValueError("unreadable chunk")

    monkeypatch.setattr(chunk_work, "load_rows", unreadable)
    assert validate_chunk.apply(args=(str(job.pk), chunk_ids[2])).successful()
    assert sent.calls.count(finalize) == 1
    preview_service.finalize_preview(job.pk)
    job.refresh_from_db()
    assert (job.state, job.failure_kind) == (JobState.PREVIEW_FAILED, FailureKind.FAULT)
    assert job.error_summary == (
        "Chunk 2 (rows 12–13) could not be validated: ValueError: unreadable chunk"
    )


@pytest.mark.django_db(transaction=True)
def test_reconcile_carries_a_preview_whose_messages_were_lost(sent: Sent):
    def reconcile_now() -> dict[str, int]:
        sent.calls.clear()
        return reconcile.reconcile(send=sent, stale_after=0)

    job = services.create_job(IMPORTER, io.BytesIO(csv_bytes(12)), name="s.csv")
    preview_service.split_source(job.pk)
    ImportJob.objects.filter(pk=job.pk).update(chunk_count=None)  # as if cut before its end
    assert reconcile_now()["resent"] == 1
    assert sent.calls == [(taskspec.RUN_PREVIEW, [str(job.pk)])]

    chunk_ids = preview_service.split_source(job.pk)
    preview_service.validate_chunk(job.pk, chunk_ids[0])
    assert reconcile_now()["resent"] == 1
    assert sent.calls == [(taskspec.VALIDATE_CHUNK, [str(job.pk), i]) for i in chunk_ids[1:]]

    for chunk_id in chunk_ids[1:]:
        preview_service.validate_chunk(job.pk, chunk_id)
    assert reconcile_now()["finalised"] == 1, "the reducer the last chunk sent was lost"
    job.refresh_from_db()
    assert (job.state, job.valid_rows, job.invalid_rows) == (JobState.PREVIEW_SUCCEEDED, 12, 0)
    assert job.events.filter(to_state=JobState.PREVIEW_SUCCEEDED).count() == 1
    assert reconcile_now() == {"finalised": 0, "resent": 0, "failed": 0, "released": 0}


class SlowReducer:
    """Fault-hook object: the reducer, once it holds the job, waits a while before reducing."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.calls = 0

    def before_finalize(self, *, job_id: Any, phase: Any) -> None:
        self.calls += 1
        self.entered.set()
        time.sleep(0.5)


SLOW_REDUCER = SlowReducer()


@pytest.mark.django_db(transaction=True)
def test_two_preview_reducers_at_once_store_repeated_keys_once(sent: Sent, settings, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("two transactions at once on the job's row: PostgreSQL")
    job = split_and_validate(with_repeated_keys(), importer=UPSERT)
    hook = SlowReducer()
    monkeypatch.setattr(f"{__name__}.SLOW_REDUCER", hook)
    settings.DATA_EXCHANGE_FAULT_HOOKS = f"{__name__}.SLOW_REDUCER"
    times: dict[str, float] = {}
    errors: list[BaseException] = []

    def reduce(name: str, after: threading.Event | None) -> None:
        try:
            if after is not None:
                assert after.wait(timeout=10)
            times[f"{name} start"] = time.monotonic()
            preview_service.finalize_preview(job.pk)
            times[f"{name} end"] = time.monotonic()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reduce, args=("first", None)),
               threading.Thread(target=reduce, args=("second", hook.entered))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert hook.calls == 1, "the second reducer found the preview done"
    assert times["second start"] < times["first end"], "the second started while the first ran"
    assert times["second end"] - times["second start"] > 0.25, "it waited for the first"
    assert_previewed_once_with_two_repeated_keys(job)


def start_split_over(job: ImportJob) -> list[int]:
    """What a split delivered again after being interrupted (before it stored the chunk count)
    does: it deletes the chunks and splits again. Returns the new chunks' ids."""
    ImportJob.objects.filter(pk=job.pk).update(chunk_count=None)
    return preview_service.split_source(job.pk)


def with_an_invalid_row() -> bytes:
    """12 rows in chunks of 5; row 3 (chunk 0) has an invalid price."""
    lines = csv_bytes(12).decode().splitlines(keepends=True)
    lines[2] = lines[2].replace(",1.50,", ",abc,")
    return "".join(lines).encode()


def assert_untouched_by_stale_validations(job: ImportJob, fresh: list[int]) -> None:
    """The new chunks wait for their own validation; nothing was stored for the old ones."""
    assert sorted(job.chunks.values_list("pk", flat=True)) == sorted(fresh)
    assert set(job.chunks.values_list("preview_state", "preview_attempts", "last_error")) == {
        (ChunkState.PENDING, 0, "")
    }
    assert not job.row_errors.exists()
    chunk_dir = Path(import_storage().storage.path(job.chunks.get(index=0).storage_key)).parent
    assert sorted(p.name for p in chunk_dir.iterdir()) == [f"{i:06d}.parquet" for i in range(3)]


def assert_preview_ends_with_the_invalid_row(job: ImportJob, fresh: list[int]) -> None:
    for chunk_id in fresh:
        preview_service.validate_chunk(job.pk, chunk_id)
    preview_service.finalize_preview(job.pk)
    job.refresh_from_db()
    assert (job.state, job.valid_rows, job.invalid_rows) == (JobState.PREVIEW_SUCCEEDED, 11, 1)
    assert list(job.row_errors.values_list("row_number", "column")) == [(3, "price")]


@pytest.mark.django_db(transaction=True)
def test_validating_a_chunk_deleted_by_a_split_started_over_does_nothing(sent: Sent):
    from workflows.tasks import validate_chunk

    job = services.create_job(IMPORTER, io.BytesIO(with_an_invalid_row()), name="s.csv")
    stale = preview_service.split_source(job.pk)
    fresh = start_split_over(job)
    assert len(stale) == len(fresh) == 3 and not set(stale) & set(fresh)
    for chunk_id in stale:
        outcome = validate_chunk.apply(args=(str(job.pk), chunk_id))
        assert outcome.successful() and outcome.result is None
    assert_untouched_by_stale_validations(job, fresh)
    assert_preview_ends_with_the_invalid_row(job, fresh)


@pytest.mark.parametrize(
    ("deleted", "index"),
    [("while reading", 0), ("after validating", 0), ("after validating", 1)],
    ids=["while reading", "after finding errors", "after validating"],
)
@pytest.mark.django_db(transaction=True)
def test_a_chunk_deleted_by_a_split_started_over_during_its_validation_stores_nothing(
    sent: Sent, monkeypatch, deleted: str, index: int
):
    from data_exchange_tool.services import chunk_work
    from workflows.tasks import validate_chunk

    job = services.create_job(IMPORTER, io.BytesIO(with_an_invalid_row()), name="s.csv")
    stale = preview_service.split_source(job.pk)
    fresh: list[int] = []
    runs: list[str] = []
    if deleted == "while reading":

        def step(chunk: Any) -> Any:
            runs.append(deleted)
            fresh.extend(start_split_over(job))
            raise FileNotFoundError(chunk.storage_key)

        monkeypatch.setattr(chunk_work, "load_rows", step)
    else:
        validate_rows = chunk_work.validate_rows

        def step(*args: Any) -> Any:  # type: ignore[misc]
            runs.append(deleted)
            result = validate_rows(*args)
            fresh.extend(start_split_over(job))
            return result

        monkeypatch.setattr(chunk_work, "validate_rows", step)
    outcome = validate_chunk.apply(args=(str(job.pk), stale[index]))
    monkeypatch.undo()
    assert outcome.successful() and outcome.result is None
    assert runs == [deleted], "the task was not retried"
    assert_untouched_by_stale_validations(job, fresh)
    assert_preview_ends_with_the_invalid_row(job, fresh)


# Scenarios 4 and 5: Redis lost or paused during an import -------------------------------------


class RedisServer:
    """A private ``redis-server`` on a free loopback port (never the shared one)."""

    def __init__(self, log_path: Path) -> None:
        self.port = processes.free_port()
        self.log_path = log_path
        self.proc: Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = processes.spawn(argv, env=dict(os.environ), cwd=self.log_path.parent,
                                        log=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception), redis_db.client(self.url) as client:
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            processes.kill(self.proc)
            self.proc = None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            processes.stop(self.proc, timeout=5)
            self.proc = None


@contextlib.contextmanager
def private_redis_and_worker(e2e: E2E, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                             ) -> Iterator[tuple[RedisServer, Callable[..., None], WorkerProcess]]:
    """A private Redis and a worker on it; the test process sends and locks through it too."""
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    # not the current app: the rest of the session keeps sending through the test project's app
    app = Celery("faults", broker=server.url, backend=server.url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, task_acks_late=True)
    env = {**e2e.worker.env, "DATA_EXCHANGE_TEST_REDIS": server.url,
           "DATA_EXCHANGE_TEST_BROKER": server.url, "DATA_EXCHANGE_TEST_LOCK_REDIS": server.url,
           "DATA_EXCHANGE_TEST_CHUNK_SIZE": "50"}  # fmt: skip
    worker = WorkerProcess(app, env, tmp_path / "worker.log")

    def send(task_name: str, args: list[Any], queue: str) -> None:
        app.send_task(task_name, args=args, queue=queue)

    try:
        worker.start()
        monkeypatch.setattr(dispatch, "send", send)
        with override_settings(DATA_EXCHANGE_REDIS_URL=server.url):
            yield server, send, worker
    finally:
        try:
            worker.kill()
        finally:
            server.stop()
            app.close()


def import_until_some_chunks_are_done(job: ImportJob, at_least: int, timeout: float = 30) -> int:
    """Confirm ``job`` and return the count of imported chunks once it reaches ``at_least``."""
    services.confirm_import(job.pk)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = job.chunks.filter(import_state=ChunkState.DONE).count()
        if done >= at_least:
            return done
        time.sleep(0.01)
    pytest.fail(f"the import did not start: {state_of(job)}")


def reconcile_until_final(
    job: ImportJob, send: Callable[..., None], timeout: float
) -> dict[str, int]:
    """Run reconcile passes until the job ends; returns what they did, summed."""
    totals: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state_of(job)[0] in FINAL:
            return totals
        for action, count in reconcile.reconcile(send=send, stale_after=3).items():
            totals[action] = totals.get(action, 0) + count
        time.sleep(1)
    pytest.fail(f"the job did not end: {state_of(job)}; reconcile did {totals}")


def assert_outcome_of_lost_coordination(job: ImportJob, n: int) -> None:
    """Success with exactly ``n`` rows, or a failure that says what was lost; never fewer."""
    job.refresh_from_db()
    ledger = job.chunks.all()
    if job.state == JobState.IMPORT_SUCCEEDED:
        assert job.imported_rows == n
        assert_rows_exactly(n)
        assert not ledger.exclude(import_state=ChunkState.DONE).exists()
    else:
        assert job.state == JobState.IMPORT_FAILED and job.failure_kind == FailureKind.FAULT
        assert "Resume the import" in job.error_summary
        written = sum(c.imported_rows or 0 for c in ledger)
        assert StockRecord.objects.count() == written < n
    assert_lock_free(job)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_redis_restarted_empty_during_an_import(e2e: E2E, partner_p1, tmp_path, monkeypatch):
    n = 2000
    with private_redis_and_worker(e2e, tmp_path, monkeypatch) as (server, send, worker):
        job = previewed(e2e, csv_bytes(n))
        other = previewed(e2e, csv_bytes(10, prefix="OTHER"))
        assert job.chunk_count == 40 and other.state == JobState.PREVIEW_SUCCEEDED
        done = import_until_some_chunks_are_done(job, at_least=3)
        server.kill()
        time.sleep(0.5)
        server.start()
        assert state_of(job)[0] == JobState.IMPORT_IN_PROGRESS
        assert done < job.chunk_count, "the fault landed mid-import"
        with redis_db.client(server.url) as client:
            assert client.dbsize() == 0, "Redis came back empty"
        with pytest.raises(ImportLockHeld):
            services.confirm_import(other.pk)
        # A Celery worker may stop consuming after its Redis restarts (celery/celery#8091,
        # #8030, #10205), so it is restarted, as its supervisor would; what is tested is that
        # the work the broker lost is found again and done once.
        worker.restart()
        done_by_reconcile = reconcile_until_final(job, send, timeout=60)
    assert done_by_reconcile.get("resent", 0) + done_by_reconcile.get("finalised", 0) >= 1, (
        "with the queues and the chord lost, only reconcile can finish the job"
    )
    assert_outcome_of_lost_coordination(job, n)
    assert state_of(other)[0] == JobState.PREVIEW_SUCCEEDED


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_redis_paused_longer_than_the_socket_timeout(e2e: E2E, partner_p1, tmp_path, monkeypatch):
    n = 2000
    with private_redis_and_worker(e2e, tmp_path, monkeypatch) as (server, send, _worker):
        job = previewed(e2e, csv_bytes(n))
        done = import_until_some_chunks_are_done(job, at_least=3)
        server.signal(signal.SIGSTOP)
        try:
            time.sleep(8)  # past the lock client's 5 s socket timeout
            paused_done = job.chunks.filter(import_state=ChunkState.DONE).count()
        finally:
            server.signal(signal.SIGCONT)
        assert done < job.chunk_count and paused_done < job.chunk_count
        reconcile_until_final(job, send, timeout=60)
    assert state_of(job)[0] == JobState.IMPORT_SUCCEEDED, job.error_summary
    assert_outcome_of_lost_coordination(job, n)
