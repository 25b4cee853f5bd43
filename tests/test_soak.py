"""A bounded soak: several imports into two models while workers keep dying.

Two workers of the test's own serve the shared queue (the session's worker is stopped
meanwhile). The fault hooks make every chunk hold its transaction open a moment, so kills land
inside chunk transactions and imports last long enough to be hit. Six jobs on two importers
(three into ``StockRecord``, three upserts into ``Shipment``, the last overlapping the first
two) are uploaded at once, previewed, and confirmed one after the other per model, so two
imports run side by side. Meanwhile a pool process of a random worker is killed every few
seconds; once every job is confirmed, a worker's main process is killed during an import (its
pool goes with it, as when its host dies) and a new worker takes its place: that is the last
kill. Reconcile runs every few seconds with short thresholds, as beat would run it. The whole
run has a hard deadline of three minutes.

Then every job must have succeeded once; each table must hold exactly the files' rows (keys and
values; later upserts win); the ledger must match the table; no import lock is left and no job
is importing. The figures (kills, jobs, the time from the last kill to the last job's end) are
printed, and shown in pytest's terminal summary.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.db.models import Sum

from data_exchange_tool import services
from data_exchange_tool.exceptions import TransitionRefused
from data_exchange_tool.models import ImportChunk, ImportJob, JobEvent
from data_exchange_tool.services.reconcile import reconcile
from data_exchange_tool.states import ChunkState, JobState
from tests.fault_hooks import HOOKS_PATH, FaultControl
from tests.fixtures import E2E, WorkerProcess, redis_db
from tests.testapp.models import Partner, Shipment, StockRecord

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    # A backstop only: the test bounds itself to RUN_SECONDS; teardown comes on top.
    pytest.mark.timeout(300),
]

RUN_SECONDS = 180.0  # everything the test does, the workers' start included
STORM_SECONDS = 75.0  # kills stop this long after the uploads, at the latest
KILL_EVERY = (1.5, 4.0)  # seconds between two kills, drawn at random
MAIN_KILL_AT_LATEST = 20.0  # before the storm's end, if no last import was caught half written
RECONCILE_EVERY = 3.0
STALE_AFTER = 10.0  # reconcile's thresholds, as a project with beat would shorten them
GIVE_UP_AFTER = 150.0
POLL = 0.3
HOOKS_ENV = {"DATA_EXCHANGE_TEST_FAULT_HOOKS": HOOKS_PATH}
# Seconds each chunk holds its transaction open (after its done mark, before its rows). SQLite
# has one writer, so there every hold delays every other chunk: shorter holds.
CHUNK_HOLD = {"preview": 0.3, "import": 1.0}
SQLITE_CHUNK_HOLD = {"preview": 0.1, "import": 0.4}

STOCK = "testapp.StockRecordImportJob"
SHIPMENT = "testapp.ShipmentImportJob"
STOCK_ROWS = 800
SHIPMENT_FILES = ((0, 600), (600, 600), (300, 600))  # (first reference, rows): the last overlaps
STOCK_HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
SHIPMENT_HEADER = "reference,quantity,weight,shipped_on,fragile\n"
QUEUE_KEYS = "data_exchange_shared_queue*"
UNACKED_KEYS = ("unacked", "unacked_index")
LOCK_KEYS = "data_exchange:import_lock:*"


# -- the files and the rows they mean ---------------------------------------------------------


def stock_row(i: int) -> tuple[Any, ...]:
    """The row ``i`` of the stock files, as the table must hold it."""
    updated = datetime.datetime(2024, 1 + i % 12, 1 + i % 28, i % 24, i % 60, tzinfo=datetime.UTC)
    return (f"SKU{i:05d}", f"Item {i}", Decimal(f"{i}.{i % 100:02d}"), i % 50, f"W{i % 5}",
            i % 3 != 0, updated, f"P{1 + i % 2}")  # fmt: skip


def stock_csv(first: int, rows: int) -> bytes:
    lines = []
    for i in range(first, first + rows):
        sku, name, price, qty, warehouse, active, updated, partner = stock_row(i)
        stamp = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(f"{sku},{name},{price},{qty},{warehouse},{str(active).lower()},{stamp},"
                     f"{partner}\n")  # fmt: skip
    return (STOCK_HEADER + "".join(lines)).encode()


def shipment_row(ref: int, version: int) -> tuple[Any, ...]:
    """Reference ``ref`` as file number ``version`` says it, as the table must hold it."""
    shipped = datetime.date(2024, 1, 1) + datetime.timedelta(days=(ref + 11 * version) % 366)
    return (f"REF{ref:05d}", (7 * ref + version) % 1000,
            Decimal(f"{ref}.{(37 * version + ref) % 1000:03d}"), shipped,
            (ref + version) % 2 == 0)  # fmt: skip


def shipment_csv(first: int, rows: int, version: int) -> bytes:
    lines = []
    for ref in range(first, first + rows):
        reference, qty, weight, shipped, fragile = shipment_row(ref, version)
        lines.append(f"{reference},{qty},{weight},{shipped.isoformat()},{str(fragile).lower()}\n")
    return (SHIPMENT_HEADER + "".join(lines)).encode()


@dataclass
class Planned:
    """One job of the soak: its importer, its file and the rows it must leave."""

    importer: str
    name: str
    content: bytes
    rows: int
    job_id: uuid.UUID | None = None
    confirm_refusals: list[str] = field(default_factory=list)


def planned_jobs() -> list[Planned]:
    jobs = [
        Planned(STOCK, f"stock-{n}.csv", stock_csv(n * STOCK_ROWS, STOCK_ROWS), STOCK_ROWS)
        for n in range(3)
    ]
    jobs += [
        Planned(SHIPMENT, f"shipments-{v}.csv", shipment_csv(first, rows, v), rows)
        for v, (first, rows) in enumerate(SHIPMENT_FILES)
    ]
    return jobs


def expected_stock() -> set[tuple[Any, ...]]:
    return {stock_row(i) for i in range(3 * STOCK_ROWS)}


def expected_shipments() -> set[tuple[Any, ...]]:
    """Each reference as the last file (in confirm order) that names it says."""
    latest: dict[int, int] = {}
    for version, (first, rows) in enumerate(SHIPMENT_FILES):
        latest.update(dict.fromkeys(range(first, first + rows), version))
    return {shipment_row(ref, version) for ref, version in latest.items()}


def stock_in_table() -> list[tuple[Any, ...]]:
    return list(StockRecord.objects.values_list(
        "sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner__code"
    ))  # fmt: skip


def shipments_in_table() -> list[tuple[Any, ...]]:
    return list(Shipment.objects.values_list(
        "reference", "quantity", "weight", "shipped_on", "fragile"
    ))  # fmt: skip


# -- the faults -------------------------------------------------------------------------------


class Background(threading.Thread):
    """A loop run every few seconds until stopped or past its deadline; errors are kept."""

    def __init__(self, name: str, deadline: float) -> None:
        super().__init__(name=name, daemon=True)
        self.deadline = deadline
        self.stopped = threading.Event()
        self.errors: list[str] = []

    def pause(self) -> float:
        raise NotImplementedError

    def step(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.pause()) and time.monotonic() < self.deadline:
                try:
                    self.step()
                except Exception as exc:  # reported by the test
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connections.close_all()

    def finish(self, timeout: float = 30.0) -> None:
        self.stopped.set()
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop"


class Killer(Background):
    """Kill a random pool process every few seconds; once asked, kill ``victim``'s main
    process (then what is left of its pool, as the host's death would), start it again, and
    stop: that is the last kill, so what follows measures the recovery."""

    def __init__(self, workers: list[WorkerProcess], victim: WorkerProcess, deadline: float):
        super().__init__("soak-killer", deadline)
        self.workers = workers
        self.victim = victim
        self.random = random.Random(os.getpid())
        self.main_kill_wanted = threading.Event()
        self.pool_kills = 0
        self.main_kills = 0
        self.main_killed_at: float | None = None
        self.last_kill_at: float | None = None
        self.replaced_in: float | None = None
        self.importing_at_main_kill: list[Any] = []

    def pause(self) -> float:
        """Until the next pool kill, or less if the main process kill is asked for meanwhile."""
        until = time.monotonic() + self.random.uniform(*KILL_EVERY)
        while time.monotonic() < until and not self.stopped.is_set():
            if self.main_kill_wanted.is_set() and not self.main_kills:
                break
            time.sleep(0.05)
        return 0.0

    def step(self) -> None:
        late = time.monotonic() > self.deadline - MAIN_KILL_AT_LATEST
        if not self.main_kills and (self.main_kill_wanted.is_set() or late):
            self.kill_main()
            self.stopped.set()
        else:
            self.kill_pool_process()

    def kill_pool_process(self) -> None:
        pool = [child for worker in self.workers for child in worker.children()]
        if not pool:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.random.choice(pool).pid, signal.SIGKILL)
            self.pool_kills += 1
            self.last_kill_at = time.time()

    def kill_main(self) -> None:
        importing = ImportJob.objects.filter(state=JobState.IMPORT_IN_PROGRESS)
        self.importing_at_main_kill = list(importing.values_list("pk", flat=True))
        os.kill(self.victim.pid, signal.SIGKILL)
        self.main_kills += 1
        self.main_killed_at = self.last_kill_at = time.time()
        time.sleep(0.5)
        self.victim.kill()
        started = time.monotonic()
        self.victim.start(timeout=60.0, extra_env=HOOKS_ENV)
        self.replaced_in = time.monotonic() - started


class Reconciler(Background):
    """Run the reconcile pass every few seconds, as beat would, and add up what it did."""

    def __init__(self, deadline: float) -> None:
        super().__init__("soak-reconcile", deadline)
        self.passes = 0
        self.done: dict[str, int] = {}

    def pause(self) -> float:
        return RECONCILE_EVERY

    def step(self) -> None:
        outcome = reconcile(stale_after=STALE_AFTER, give_up_after=GIVE_UP_AFTER)
        self.passes += 1
        for key, count in outcome.items():
            self.done[key] = self.done.get(key, 0) + count


# -- driving the jobs -------------------------------------------------------------------------


def queued_messages() -> int:
    """Messages waiting in the shared queue (unacknowledged ones not counted)."""
    conn = redis_db.client(str(settings.CELERY_BROKER_URL))
    return sum(int(conn.llen(name)) for name in conn.scan_iter(match=QUEUE_KEYS, count=500))


def lock_keys() -> list[bytes]:
    return list(redis_db.client(str(settings.DATA_EXCHANGE_REDIS_URL)).scan_iter(match=LOCK_KEYS))


def wait_until(predicate: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL)
    return predicate()


class Driver:
    """Upload every job, then confirm each importer's jobs one after the other."""

    def __init__(self, jobs: list[Planned], killer: Killer) -> None:
        self.jobs = jobs
        self.killer = killer
        self.queues = {imp: [j for j in jobs if j.importer == imp] for imp in (STOCK, SHIPMENT)}
        self.running: dict[str, Planned | None] = dict.fromkeys(self.queues)
        self.failures: list[str] = []

    def upload(self) -> None:
        for job in self.jobs:
            upload = io.BytesIO(job.content)
            job.job_id = services.create_job(job.importer, upload, name=job.name).pk

    def state(self, job: Planned) -> ImportJob:
        return ImportJob.objects.get(pk=job.job_id)

    def step(self) -> bool:
        """Move every importer on by one; ``True`` when every job has ended."""
        for importer, queue in self.queues.items():
            current = self.running[importer]
            if current is not None:
                row = self.state(current)
                if not row.is_terminal:
                    self.ask_for_main_kill(row)
                    continue
                if row.state != JobState.IMPORT_SUCCEEDED:
                    self.failures.append(f"{current.name}: {row.state}: {row.error_summary}")
                self.running[importer] = None
            if queue:
                self.confirm_next(importer, queue)
        return not any(self.running.values()) and not any(self.queues.values())

    def confirm_next(self, importer: str, queue: list[Planned]) -> None:
        job = queue[0]
        row = self.state(job)
        if row.state == JobState.CREATED:
            return
        if row.state != JobState.PREVIEW_SUCCEEDED or row.invalid_rows:
            self.failures.append(f"{job.name}: preview {row.state}: {row.error_summary}")
            queue.pop(0)
            return
        try:
            services.confirm_import(job.job_id)
        except TransitionRefused as exc:  # the lock of the job before may not be free yet
            job.confirm_refusals.append(str(exc))
            return
        self.running[importer] = queue.pop(0)

    def ask_for_main_kill(self, row: ImportJob) -> None:
        """Once every job is confirmed and an import is partly written, ask for the main
        process kill (the last kill)."""
        if self.killer.main_kill_wanted.is_set() or any(self.queues.values()):
            return
        done = row.chunks.filter(import_state=ChunkState.DONE).count()
        if 0 < done < (row.chunk_count or 0):
            self.killer.main_kill_wanted.set()


# -- the test ---------------------------------------------------------------------------------


@dataclass
class Figures:
    jobs: int = 0
    pool_kills: int = 0
    main_kills: int = 0
    last_kill_to_last_end: float | None = None
    main_kill_to_its_end: float | None = None
    replacement_start: float | None = None
    run_seconds: float = 0.0
    reconcile: dict[str, int] = field(default_factory=dict)
    refusals: int = 0

    def text(self) -> str:
        def secs(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1f} s"

        return (
            f"soak: {self.jobs} jobs, {self.pool_kills} pool process kill(s), "
            f"{self.main_kills} main process kill(s) (replacement up in "
            f"{secs(self.replacement_start)}); last kill → last job end "
            f"{secs(self.last_kill_to_last_end)}; main kill → end of the import(s) it hit "
            f"{secs(self.main_kill_to_its_end)}; run {self.run_seconds:.1f} s; reconcile "
            f"{self.reconcile}; confirm refused {self.refusals} time(s) while a lock was freed"
        )


def hold_every_chunk(e2e: E2E, jobs: list[Planned]) -> None:
    """Plan the hooks: every chunk of every job sleeps inside its transaction."""
    faults = FaultControl(e2e.redis_url)
    chunks = max(-(-j.rows // settings.DATA_EXCHANGE_CHUNK_SIZE) for j in jobs)
    sqlite = settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
    for phase, seconds in (SQLITE_CHUNK_HOLD if sqlite else CHUNK_HOLD).items():
        for index in range(chunks):
            faults.plan("after_chunk_marked", phase, index, action="sleep", seconds=seconds,
                        once=False)  # fmt: skip


def start_workers(e2e: E2E, tmp_path: Any) -> list[WorkerProcess]:
    """Stop the session's worker (the e2e fixture starts it again) and start two with hooks."""
    e2e.worker.stop()
    workers = [WorkerProcess(e2e.app, e2e.worker.env, tmp_path / f"worker-{n}.log")
               for n in (1, 2)]  # fmt: skip
    for worker in workers:
        worker.start(timeout=60.0, extra_env=HOOKS_ENV)
    return workers


def test_soak_imports_into_two_models_while_workers_die(
    e2e: E2E, tmp_path: Any, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    deadline = started + RUN_SECONDS
    figures = Figures()
    for code in ("P1", "P2"):
        Partner.objects.get_or_create(code=code, defaults={"name": f"Partner {code}"})
    workers: list[WorkerProcess] = []
    killer: Killer | None = None
    reconciler = Reconciler(deadline)
    jobs = planned_jobs()
    figures.jobs = len(jobs)
    passed = False
    try:
        hold_every_chunk(e2e, jobs)
        workers = start_workers(e2e, tmp_path)
        storm_end = min(time.monotonic() + STORM_SECONDS, deadline)
        killer = Killer(workers, workers[-1], storm_end)
        driver = Driver(jobs, killer)
        driver.upload()
        killer.start()
        reconciler.start()

        finished = wait_until(driver.step, deadline)
        killer.finish(timeout=max(5.0, deadline - time.monotonic()))
        assert not killer.errors and not reconciler.errors, (killer.errors, reconciler.errors)
        assert finished, f"jobs not final within {RUN_SECONDS:g}s: " + ", ".join(
            f"{j.name} {driver.state(j).state}" for j in jobs
        )
        assert not driver.failures, driver.failures
        reconciler.finish()
        assert not reconciler.errors, reconciler.errors
        # Copies that reconcile re-sent may still wait in the queue; they must change nothing.
        assert wait_until(lambda: queued_messages() == 0, deadline), "the queue did not drain"

        measure(figures, killer, [j.job_id for j in jobs])

        assert_every_job_succeeded_once(jobs)
        assert_tables_hold_the_files(jobs)
        assert lock_keys() == []
        assert not ImportJob.objects.filter(state=JobState.IMPORT_IN_PROGRESS).exists()
        assert killer.main_kills == 1 and killer.pool_kills >= 3, (
            killer.main_kills,
            killer.pool_kills,
        )
        passed = True
    finally:
        for thread in (killer, reconciler):
            if thread is not None and thread.is_alive():
                thread.stopped.set()
                thread.join(30.0)
        if killer is not None:
            figures.pool_kills, figures.main_kills = killer.pool_kills, killer.main_kills
            figures.replacement_start = killer.replaced_in
        figures.reconcile = dict(reconciler.done, passes=reconciler.passes)
        figures.refusals = sum(len(j.confirm_refusals) for j in jobs)
        figures.run_seconds = time.monotonic() - started
        for worker in workers:
            worker.kill()
            if not passed:
                print(f"-- {worker.log_path.name}:\n{worker.log_tail(60)}")
        # The killed worker's deliveries would come back after the visibility timeout (an
        # hour), as harmless duplicates; they must not hold up the next test's drain.
        redis_db.client(str(settings.CELERY_BROKER_URL)).delete(*UNACKED_KEYS)
        report = figures.text()
        request.node.user_properties.append(("soak", report))
        print(report)  # in the report's captured output
        if request.config.getoption("capture") != "no":
            with capsys.disabled():
                print("\n" + report)


def measure(figures: Figures, killer: Killer, job_ids: list[Any]) -> None:
    """Seconds from the last kill to the last job's end, and from the main process kill to
    the end of the imports that were running then."""
    ends = dict(ImportJob.objects.filter(pk__in=job_ids).values_list("pk", "import_finished_at"))
    if None in ends.values():
        return
    if killer.last_kill_at is not None:
        figures.last_kill_to_last_end = max(ends.values()).timestamp() - killer.last_kill_at
    hit = [ends[pk] for pk in killer.importing_at_main_kill if pk in ends]
    if killer.main_killed_at is not None and hit:
        figures.main_kill_to_its_end = max(hit).timestamp() - killer.main_killed_at


def assert_every_job_succeeded_once(jobs: list[Planned]) -> None:
    """Every job IMPORT_SUCCEEDED once, every chunk done under the job's fence, the ledger's
    row counts those of the file."""
    for planned in jobs:
        job = ImportJob.objects.get(pk=planned.job_id)
        assert job.state == JobState.IMPORT_SUCCEEDED, (planned.name, job.error_summary)
        chunks = ImportChunk.objects.filter(job=job)
        expected_chunks = -(-planned.rows // settings.DATA_EXCHANGE_CHUNK_SIZE)
        assert chunks.count() == job.chunk_count == expected_chunks, planned.name
        assert set(chunks.values_list("import_state", flat=True)) == {ChunkState.DONE}
        assert set(chunks.values_list("import_fence", flat=True)) == {job.fence}
        ledger = chunks.aggregate(n=Sum("imported_rows"))["n"]
        assert ledger == job.imported_rows == job.total_rows == planned.rows, planned.name
        events = JobEvent.objects.filter(job=job)
        for state in (JobState.PREVIEW_SUCCEEDED, JobState.IMPORT_IN_PROGRESS,
                      JobState.IMPORT_SUCCEEDED):  # fmt: skip
            assert events.filter(to_state=state).count() == 1, (planned.name, state)


def differences(actual: list[tuple[Any, ...]], expected: set[tuple[Any, ...]]) -> str:
    """Rows missing from the table and rows it should not hold (keys first), a few of each."""
    missing = sorted(expected - set(actual))
    unexpected = sorted(set(actual) - expected)
    return (f"{len(missing)} row(s) missing, e.g. {missing[:3]}; {len(unexpected)} row(s) not "
            f"as in the files, e.g. {unexpected[:3]}")  # fmt: skip


def assert_tables_hold_the_files(jobs: list[Planned]) -> None:
    """Exactly the files' rows, no row lost, doubled or changed; the ledger equals the table."""
    for table, actual, expected in (
        ("stock records", stock_in_table(), expected_stock()),
        ("shipments", shipments_in_table(), expected_shipments()),
    ):
        assert set(actual) == expected, f"{table}: {differences(actual, expected)}"
        assert len(actual) == len(expected), f"{table}: {len(actual)} rows for {len(expected)}"

    def ledger(importer: str) -> int:
        ids = [j.job_id for j in jobs if j.importer == importer]
        return ImportChunk.objects.filter(job__in=ids).aggregate(n=Sum("imported_rows"))["n"]

    # Inserts: the ledger counts the table's rows; upserts: every file row, the overlap once
    # more than the table holds.
    assert ledger(STOCK) == StockRecord.objects.count()
    written = sum(rows for _first, rows in SHIPMENT_FILES)
    overlap = written - len(expected_shipments())
    assert ledger(SHIPMENT) == written == Shipment.objects.count() + overlap
