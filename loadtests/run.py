"""End-to-end benchmark: the real pipeline beside django-import-export and PostgreSQL COPY.

    python -m loadtests.run --rows 1000000 [--peer-rows 20000] [--skip-peers] [--preview-only]
                            [--chunk-size N] [--format csv] [--invalid-share 0.001]
                            [--profile] [--py-spy]

Starts moto_server (S3 on loopback) and one Celery worker (prefork, 2 processes), prepares the
``dxt_bench`` database, uploads the generated file through ``services.create_job``, times the
preview and, after ``services.confirm_import``, the import, while sampling the peak RSS of every
worker process. Then runs the peers on the same file and prints the figures. Never fails on time;
it exits non-zero only when the pipeline did not end as expected.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.fixtures import S3Endpoint, WorkerProcess
from tests.fixtures.processes import tail

from . import generate, profiling
from .infra import (
    DATA_DIR,
    QUEUE,
    S3_BUCKET,
    CpuMeter,
    RedisWitness,
    RssSampler,
    child_env,
    flush_redis,
    s3_env,
)
from .report import COPY, IMPORT_EXPORT, MB, OURS, Check, Measure, Report, Target

IMPORTER = "testapp.StockRecordImportJob"
POLL = 0.1
PROGRESS_EVERY = 1.0
ERROR_GRACE = 10.0
RESULTS = DATA_DIR / "results.jsonl"
GOAL_ROWS = 1_000_000
GOAL_SECONDS = 30.0
GOAL_RSS = 300 * MB
GOAL_VS_IMPORT_EXPORT = 40.0
GOAL_VS_COPY = 3.0


class BenchFailure(Exception):
    """The pipeline did not get where it should: the message says where, with the log."""


@dataclass
class Options:
    rows: int
    file_format: str
    invalid_share: float
    seed: int
    peer_rows: int
    skip_peers: bool
    preview_only: bool
    chunk_size: int
    timeout: float
    stall_timeout: float
    profile: bool
    py_spy: bool


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description="Benchmark the import pipeline against its peers.")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--format", dest="file_format", choices=generate.FORMATS, default="csv")
    p.add_argument("--invalid-share", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=generate.Spec.seed)
    p.add_argument("--peer-rows", type=int, default=20_000)
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--preview-only", action="store_true")
    p.add_argument("--chunk-size", type=int, default=10000)
    p.add_argument("--timeout", type=float, default=0, help="seconds per phase (0: by rows)")
    p.add_argument("--stall-timeout", type=float, default=120)
    p.add_argument("--profile", action="store_true", help="pyinstrument on one chunk")
    p.add_argument("--py-spy", action="store_true", help="py-spy on the worker processes")
    a = p.parse_args(argv)
    timeout = a.timeout or 120 + a.rows / 500
    return Options(
        a.rows, a.file_format, a.invalid_share, a.seed, a.peer_rows, a.skip_peers,
        a.preview_only or a.invalid_share > 0, a.chunk_size, timeout, a.stall_timeout,
        a.profile, a.py_spy,
    )  # fmt: skip


# -- set-up ----------------------------------------------------------------------------------------


def setup_django(env: dict[str, str]) -> Any:
    """Configure Django for the bench settings in this process; returns the Celery app."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "loadtests.settings"
    import django

    django.setup()
    from .celery_app import app

    return app


def prepare_database() -> None:
    from django.conf import settings
    from django.core.management import call_command

    from .infra import ensure_database

    ensure_database(settings.DATABASES["default"])
    call_command("migrate", interactive=False, verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    generate.create_partners()
    flush_redis(settings.REDIS_URL)


def versions() -> dict[str, str]:
    names = ["django", "djangorestframework", "celery", "pyarrow", "psycopg", "moto"]
    out = {"python": platform.python_version()}
    for name in [*names, "django-import-export"]:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        out["postgresql"] = cursor.fetchone()[0]
    return out


# -- waiting on the job ----------------------------------------------------------------------------


class LogWatch:
    """New lines of the worker log that report an error."""

    MARKERS = ("ERROR/", "CRITICAL/", "Traceback", "raised unexpected")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.errors: list[str] = []

    def poll(self) -> None:
        with contextlib.suppress(OSError), self.path.open("rb") as fh:
            fh.seek(self.offset)
            text = fh.read().decode("utf-8", "replace")
            self.offset = fh.tell()
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if any(m in line for m in self.MARKERS) and len(self.errors) < 200:
                    self.errors.extend(lines[i : i + 30])


def job_state(job_id: Any) -> str:
    from data_exchange_tool.models import ImportJob

    return ImportJob.objects.filter(pk=job_id).values_list("state", flat=True).get()


def chunk_progress(job_id: Any, phase: str) -> tuple[Any, ...]:
    from django.db.models import Count, Q

    from data_exchange_tool.models import ImportChunk, ImportJob

    field = "preview_state" if phase == "preview" else "import_state"
    done = ImportChunk.objects.filter(job_id=job_id).aggregate(
        n=Count("id"), done=Count("id", filter=~Q(**{field: "PENDING"}))
    )
    state = ImportJob.objects.filter(pk=job_id).values_list("state", "chunk_count").get()
    return (*state, done["n"], done["done"])


def wait_while(job_id: Any, running: set[str], phase: str, scope: Watch) -> None:
    """Wait until the job leaves ``running``; raise BenchFailure on timeout, stall or crash."""
    worker, opts = scope.worker, scope.opts
    watch = LogWatch(worker.log_path)
    start = last_change = last_check = time.monotonic()
    progress: tuple[Any, ...] = ()
    while job_state(job_id) in running:
        now = time.monotonic()
        if not worker.is_alive():
            raise BenchFailure(f"{phase}: the celery worker exited.\n{tail(worker.log_path)}")
        if now - start > opts.timeout:
            raise _stuck(
                phase, f"did not finish within {opts.timeout:.0f} s", progress, watch, scope
            )
        if now - last_check >= PROGRESS_EVERY:
            last_check = now
            watch.poll()
            current = chunk_progress(job_id, phase)
            if current != progress:
                progress, last_change = current, now
            quiet = now - last_change
            if (watch.errors and quiet > ERROR_GRACE) or quiet > opts.stall_timeout:
                raise _stuck(phase, f"made no progress for {quiet:.0f} s", progress, watch, scope)
        time.sleep(POLL)


def _stuck(
    phase: str, what: str, progress: tuple[Any, ...], watch: LogWatch, scope: Watch
) -> BenchFailure:
    watch.poll()
    state = ", ".join(str(p) for p in progress) or "unknown"
    log = "\n".join(watch.errors[:80]) or tail(watch.path, 40)
    outside = "".join(f"\nNOT THE LIBRARY: {p}." for p in scope.redis.problems())
    return BenchFailure(
        f"{phase} {what} (state, chunk_count, chunks, chunks done: {state}).{outside}\n"
        f"worker log ({watch.path}):\n{log}"
    )


# -- the pipeline ----------------------------------------------------------------------------------


@dataclass
class Watch:
    """What a pipeline phase is watched with."""

    worker: WorkerProcess
    sampler: RssSampler
    opts: Options
    report: Report
    redis: RedisWitness


@contextlib.contextmanager
def phase_scope(name: str, watch: Watch) -> Iterator[None]:
    """Tag RSS samples with the phase, meter the CPU, run py-spy if asked."""
    sampler, worker, opts = watch.sampler, watch.worker, watch.opts
    sampler.sample()
    sampler.phase = name
    meter = CpuMeter()
    spy: Any = contextlib.nullcontext()
    if opts.py_spy:
        spy = profiling.py_spy(worker.pid, DATA_DIR / f"pyspy_{name}.txt", DATA_DIR / "py-spy.log")
    try:
        with spy:
            yield
    finally:
        sampler.sample()
        sampler.phase = "idle"
        watch.report.notes.append(f"CPU during {name}: {meter.stop().describe()}")
        offsets = sampler.result.peak_offsets(name)
        if name != "upload" and offsets:
            watch.report.notes.append(
                f"RSS peaks during {name}, seconds into the phase: "
                + ", ".join(f"{role} at {at:.1f} s" for role, at in offsets.items())
            )


def run_pipeline(path: Path, summary: generate.Summary, watch: Watch) -> None:
    from data_exchange_tool import services
    from data_exchange_tool.models import ImportJob

    sampler, opts, report = watch.sampler, watch.opts, watch.report
    with phase_scope("upload", watch):
        started = time.perf_counter()
        with path.open("rb") as fh:
            job = services.create_job(IMPORTER, fh, name=path.name)
        uploaded = time.perf_counter()
    report.measures.append(Measure(OURS, "upload to S3", summary.rows, uploaded - started))
    with phase_scope("preview", watch):
        wait_while(job.pk, {"CREATED"}, "preview", watch)
        previewed = time.perf_counter()
    job = ImportJob.objects.get(pk=job.pk)
    add_preview(report, job, summary, previewed - uploaded, sampler)
    if not preview_passed(job, summary) or opts.preview_only:
        return
    with phase_scope("import", watch):
        confirmed = time.perf_counter()
        services.confirm_import(job.pk)
        wait_while(job.pk, {"IMPORT_IN_PROGRESS"}, "import", watch)
        imported = time.perf_counter()
    job = ImportJob.objects.get(pk=job.pk)
    add_import(report, job, imported - confirmed, sampler)
    total = (previewed - started) + (imported - confirmed)
    rss = merge_rss(sampler, ("upload", "preview", "import"))
    report.measures.append(
        Measure(OURS, "preview + import", summary.rows, total, rss, "with upload")
    )


def merge_rss(sampler: RssSampler, phases: tuple[str, ...]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for phase in phases:
        for role, size in sampler.result.by_role(phase).items():
            merged[role] = max(merged.get(role, 0), size)
    return merged


def seconds_between(a: Any, b: Any) -> float | None:
    return (b - a).total_seconds() if a and b else None


def add_preview(
    report: Report, job: Any, summary: generate.Summary, seconds: float, sampler: RssSampler
) -> None:
    report.measures.append(
        Measure(OURS, "preview", summary.rows, seconds, sampler.result.by_role("preview"))
    )
    split = seconds_between(job.created_at, job.preview_started_at)
    validate = seconds_between(job.preview_started_at, job.preview_finished_at)
    if split is not None and validate is not None:
        report.notes.append(
            f"preview, from the job's timestamps: split {split:.2f} s (queue + read + "
            f"{job.chunk_count} chunks written), validate + reduce {validate:.2f} s"
        )
    expected = (
        "PREVIEW_SUCCEEDED", summary.rows, summary.valid_rows, summary.invalid_rows,
    )  # fmt: skip
    got = (job.state, job.total_rows, job.valid_rows, job.invalid_rows)
    report.checks.append(
        Check(
            "preview: state, rows, valid, invalid",
            got == expected,
            f"got {_fmt(got)}, expected {_fmt(expected)}"
            + (f"; error: {job.error_summary}" if job.error_summary else ""),
        )
    )


def _fmt(values: tuple[Any, ...]) -> str:
    return " / ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in values)


def preview_passed(job: Any, summary: generate.Summary) -> bool:
    return job.state == "PREVIEW_SUCCEEDED" and not job.invalid_rows


def add_import(report: Report, job: Any, seconds: float, sampler: RssSampler) -> None:
    from tests.testapp.models import StockRecord

    report.measures.append(
        Measure(OURS, "import", job.valid_rows or 0, seconds, sampler.result.by_role("import"))
    )
    in_table = StockRecord.objects.count()
    got = (job.state, job.imported_rows, job.valid_rows, in_table)
    expected = ("IMPORT_SUCCEEDED", job.valid_rows, job.valid_rows, job.valid_rows)
    report.checks.append(
        Check(
            "import: state, imported = valid = rows in table",
            got == expected,
            f"{_fmt(got)}" + (f"; error: {job.error_summary}" if job.error_summary else ""),
        )
    )
    db_seconds = seconds_between(job.import_started_at, job.import_finished_at)
    if db_seconds is not None:
        report.notes.append(f"import, from the job's timestamps: {db_seconds:.2f} s")


PROFILE_SKU_PREFIX = "PRF"


def profile_services(opts: Options, report: Report) -> None:
    """pyinstrument on ``services.preview.validate_chunk`` and ``services.importing.import_chunk``
    of one chunk, in this process, with the worker stopped.

    A job of two chunks (SKUs of their own, so they never clash with the benchmark's rows) is
    taken through split, preview, confirm and import by calling the services directly; the
    second chunk of each phase is profiled (the first warms imports and caches). The tasks
    that the services queue meanwhile are dropped with the benchmark's Redis database.
    """
    from django.conf import settings

    from data_exchange_tool import services
    from data_exchange_tool.services import importing, preview

    spec = generate.Spec(
        rows=2 * opts.chunk_size, seed=opts.seed + 1, sku_prefix=PROFILE_SKU_PREFIX
    )
    path, _summary = generate.cached(spec, "csv", DATA_DIR)
    try:
        with path.open("rb") as fh:
            job = services.create_job(IMPORTER, fh, name=path.name)
        first, second = preview.split_source(job.pk)[:2]
        preview.validate_chunk(job.pk, first)
        profiled = [
            profile_step("preview.validate_chunk", lambda: preview.validate_chunk(job.pk, second))
        ]
        preview.finalize_preview(job.pk)
        services.confirm_import(job.pk)
        fence, (first, second) = importing.pending_chunks(job.pk)
        importing.import_chunk(job.pk, first, fence)
        profiled.append(
            profile_step(
                "importing.import_chunk", lambda: importing.import_chunk(job.pk, second, fence)
            )
        )
        importing.finalize_import(job.pk)
    except Exception as exc:  # a profile is a bonus: report, never stop the benchmark
        report.notes.append(f"profile: could not run: {type(exc).__name__}: {exc}")
        return
    finally:
        flush_redis(settings.REDIS_URL)
    rows = opts.chunk_size
    for name, seconds, spots in profiled:
        report.notes.append(
            f"pyinstrument, {name} of one chunk ({rows:,} rows, in-process, {seconds:.2f} s, "
            f"{rows / seconds:,.0f} rows/s):\n" + "\n".join(spots.lines(10))
        )


def profile_step(name: str, func: Any) -> tuple[str, float, profiling.Hotspots]:
    started = time.perf_counter()
    spots = profiling.profile_call(func, DATA_DIR / f"profile_{name}.html")
    return name, time.perf_counter() - started, spots


# -- peers -----------------------------------------------------------------------------------------


def run_peer(args: list[str], timeout: float) -> tuple[dict[str, Any] | None, dict[str, int], str]:
    """Run ``python -m loadtests.peers ARGS``; its JSON, its peak RSS and its error, if any."""
    argv = [sys.executable, "-m", "loadtests.peers", *args]
    proc = subprocess.Popen(
        argv, env=child_env({}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with RssSampler(proc.pid) as sampler:
        sampler.phase = "peer"
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return None, {}, f"timed out after {timeout:.0f} s"
    rss = {"process": max(sampler.result.of("peer").values(), default=0)}
    if proc.returncode != 0:
        return None, rss, (err or out).strip()[-2000:]
    return json_line(out), rss, ""


def json_line(out: str) -> dict[str, Any] | None:
    import json

    for line in reversed(out.strip().splitlines()):
        with contextlib.suppress(ValueError):
            return json.loads(line)
    return None


def run_peers(path: Path, summary: generate.Summary, opts: Options, report: Report) -> None:
    if opts.file_format != "csv":
        report.notes.append("peers: run on CSV files only; skipped for this format")
        return
    rows = min(opts.peer_rows, summary.rows)
    phases = [("dry run", ["--dry-run"])] + ([] if opts.preview_only else [("import", [])])
    for phase, extra in phases:
        args = ["import-export", "--file", str(path), "--rows", str(rows), *extra]
        meter = CpuMeter()
        outcome, rss, error = run_peer(args, 120 + rows / 100)
        report.notes.append(f"CPU during {IMPORT_EXPORT} {phase}: {meter.stop().describe()}")
        add_peer(report, IMPORT_EXPORT, phase, outcome, rss, error, summary.invalid_rows > 0)
    if opts.preview_only:
        report.notes.append("COPY: not run (preview only, or the file has invalid rows)")
        return
    meter = CpuMeter()
    outcome, rss, error = run_peer(["copy", "--file", str(path)], 60 + summary.rows / 10_000)
    report.notes.append(f"CPU during {COPY}: {meter.stop().describe()}")
    add_peer(report, COPY, "total", outcome, rss, error)
    if outcome:
        for part in ("load", "insert", "commit"):
            label = {"load": "COPY into temp table", "insert": "INSERT…SELECT join",
                     "commit": "COMMIT"}[part]  # fmt: skip
            report.measures.append(
                Measure(COPY, label, outcome["rows"], outcome[f"{part}_seconds"])
            )


def add_peer(
    report: Report, tool: str, phase: str, outcome: dict[str, Any] | None, rss: dict[str, int],
    error: str, bad_file: bool = False,
) -> None:  # fmt: skip
    if outcome is None:
        report.checks.append(Check(f"{tool} {phase}", False, error))
        return
    report.measures.append(Measure(tool, phase, outcome["rows"], outcome["seconds"], rss))
    detail = {
        k: round(v, 3) if isinstance(v, float) else v
        for k, v in outcome.items()
        if k not in ("peer", "phase", "seconds")
    }
    report.notes.append(f"{tool} {phase}: {detail}")
    report.checks.append(peer_check(tool, phase, outcome, bad_file))


def peer_check(tool: str, phase: str, outcome: dict[str, Any], bad_file: bool) -> Check:
    """A peer's run counts only if it wrote what it should (nothing, for a dry run) and, on a
    file without invalid rows, reported no error."""
    errors = outcome.get("base_errors") or []
    expected = 0 if phase == "dry run" else outcome["rows"]
    got = outcome["target_count"]
    clean = not errors and not outcome.get("error_rows") and not outcome.get("invalid_rows")
    ok = got == expected and (clean or bad_file)
    detail = f"rows in table after it: {got:,} (expected {expected:,})"
    if errors:
        detail += f"; first error: {errors[0].splitlines()[0]}"
    return Check(f"{tool} {phase}", ok, detail)


# -- targets ---------------------------------------------------------------------------------------


def add_targets(report: Report, opts: Options) -> None:
    total = report.find(OURS, "preview + import")
    if total is not None:
        projected = total.seconds * GOAL_ROWS / total.rows
        report.targets.append(
            Target(
                f"preview + import of {GOAL_ROWS:,} rows ≤ {GOAL_SECONDS:.0f} s",
                f"{total.seconds:.1f} s for {total.rows:,} rows"
                + ("" if total.rows == GOAL_ROWS else f" (linear to 1M: {projected:.1f} s)"),
                total.seconds <= GOAL_SECONDS if total.rows >= GOAL_ROWS else None,
            )
        )
    worker_rss = [m.peak_rss for m in report.measures if m.tool == OURS and m.rss]
    if worker_rss:
        peak = max(worker_rss)
        report.targets.append(
            Target(
                f"peak RSS of each worker process ≤ {GOAL_RSS // MB} MB",
                f"{peak / MB:.0f} MB",
                peak <= GOAL_RSS,
            )
        )
    for phase, peer in (("preview", "dry run"), ("import", "import")):
        ours, theirs = report.find(OURS, phase), report.find(IMPORT_EXPORT, peer)
        if ours and theirs:
            times = ours.rate / theirs.rate
            report.targets.append(
                Target(
                    f"{phase} ≥ {GOAL_VS_IMPORT_EXPORT:.0f}× django-import-export {peer} rows/s",
                    f"{times:,.1f}× ({ours.rate:,.0f} vs {theirs.rate:,.0f} rows/s)",
                    times >= GOAL_VS_IMPORT_EXPORT,
                )
            )
    ours, copy = report.find(OURS, "import"), report.find(COPY, "total")
    if ours and copy and ours.rate:
        times = copy.rate / ours.rate
        report.targets.append(
            Target(
                f"import within {GOAL_VS_COPY:.0f}× of COPY's time (per row)",
                f"{times:.2f}× ({ours.seconds:.1f} s vs {copy.seconds:.1f} s for "
                f"{copy.rows:,} rows)",
                times <= GOAL_VS_COPY,
            )
        )


# -- main ------------------------------------------------------------------------------------------


def add_profiles(report: Report, opts: Options) -> None:
    if not opts.py_spy:
        return
    for phase in ("preview", "import"):
        path = DATA_DIR / f"pyspy_{phase}.txt"
        spots = profiling.read_collapsed(path)
        if spots.total:
            report.notes.append(
                f"py-spy, {phase}, all worker processes ({path}):\n" + "\n".join(spots.lines(10))
            )


def add_baseline(report: Report, sampler: RssSampler) -> None:
    rss = sampler.result.by_role("baseline")
    report.notes.append(
        "worker RSS at rest before the job (MB): "
        + " · ".join(f"{role} {size / MB:.0f}" for role, size in rss.items())
    )


def run(opts: Options) -> Report:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    spec = generate.Spec(rows=opts.rows, invalid_share=opts.invalid_share, seed=opts.seed)
    generated = time.perf_counter()
    path, summary = generate.cached(spec, opts.file_format, DATA_DIR)
    report = Report(
        context={
            "rows": f"{opts.rows:,}", "format": opts.file_format, "chunk_size": opts.chunk_size,
            "invalid_rows": summary.invalid_rows, "file": path.name,
            "file_MB": round(path.stat().st_size / MB, 1),
        }
    )  # fmt: skip
    report.notes.append(f"file ready in {time.perf_counter() - generated:.1f} s: {path}")
    moto = S3Endpoint(DATA_DIR / "moto.log", bucket=S3_BUCKET)
    worker: WorkerProcess | None = None
    try:
        moto.start()
        env = {**s3_env(moto), "DXT_BENCH_CHUNK_SIZE": str(opts.chunk_size)}
        app = setup_django(env)
        from django.conf import settings

        prepare_database()
        report.context["versions"] = versions()
        worker = WorkerProcess(
            app,
            child_env(env),
            DATA_DIR / "worker.log",
            queues=[QUEUE],
            app_module="loadtests.celery_app",
            loglevel="warning",
        )
        worker.start()
        witness = RedisWitness(settings.REDIS_URL)
        try:
            with RssSampler(worker.pid) as sampler:
                time.sleep(1.0)
                add_baseline(report, sampler)
                try:
                    run_pipeline(path, summary, Watch(worker, sampler, opts, report, witness))
                finally:
                    sampler.result.write_timeline(DATA_DIR / "rss_timeline.csv")
        except BenchFailure as exc:
            report.failure = str(exc)
        finally:
            worker.stop()
            worker = None
            report.notes += [f"outside interference: {p}" for p in witness.problems()]
            witness.close()
        if opts.profile:
            profile_services(opts, report)
        if not opts.skip_peers:
            run_peers(path, summary, opts, report)
    finally:
        if worker is not None:
            worker.stop()
        moto.stop()
    add_targets(report, opts)
    add_profiles(report, opts)
    return report


def main(argv: list[str] | None = None) -> int:
    from .report import append_json, render

    opts = parse_args(argv)
    report = run(opts)
    print(render(report, markdown=False))
    print()
    print(render(report, markdown=True))
    append_json(report, RESULTS)
    print(f"\nappended to {RESULTS}")
    ok = not report.failure and all(c.ok for c in report.checks)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
