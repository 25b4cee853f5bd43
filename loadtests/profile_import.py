"""Time and profile one chunk's preview (``validate_chunk``) and import (``import_chunk``).

Runs the services in-process on one StockRecord chunk (default 5,000 rows, partner given by
code) against its own PostgreSQL database (created and migrated if missing), with Celery
dispatch switched off so each step is timed on its own. Prints rows/s per step (best of
``--repeat`` runs) and the top functions of one profiled run (cProfile, by own time).

    python -m loadtests.profile_import --rows 5000 --repeat 3 [--sqlite] [--top 15] [--baseline]

``--baseline`` imports the way it was done before rows were kept from the preview: the whole
serializer again on every row (``revalidate_on_import``) and ``bulk_create`` instead of COPY.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

IMPORTER = "testapp.StockRecordImportJob"
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
PARTNERS = [f"P{n:02d}" for n in range(1, 11)]
NAMES = ["bolt", "Müller nut", "washer, flat", 'gear "12t"', "spring", "valve", "pipe"]


def configure(sqlite: bool) -> None:
    """Point the test suite's settings at a database and media directory of this script."""
    media = tempfile.mkdtemp(prefix="dxt-profile-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("DATA_EXCHANGE_TEST_MEDIA", media)
    os.environ.setdefault("DATA_EXCHANGE_TEST_REDIS", "redis://127.0.0.1:6379/15")
    os.environ["DATA_EXCHANGE_TEST_EAGER"] = "0"
    if sqlite:
        os.environ["DATA_EXCHANGE_TEST_DB"] = "sqlite"
        os.environ.setdefault("DATA_EXCHANGE_TEST_SQLITE", os.path.join(media, "db.sqlite3"))
    else:
        os.environ["DATA_EXCHANGE_TEST_DB"] = "postgres"
        os.environ.setdefault("DATA_EXCHANGE_TEST_PG_NAME", "dxt_profile_import")
        _create_pg_database(os.environ["DATA_EXCHANGE_TEST_PG_NAME"])
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)

    from data_exchange_tool import dispatch

    dispatch.send = lambda *args, **kwargs: None  # each step is run by hand


def _create_pg_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    params = {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ.get("PGUSER", "postgres"),
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def use_baseline() -> None:
    """Full re-validation at import and bulk_create, as before validate-once and COPY."""
    import dataclasses

    from data_exchange_tool import registry, writers

    model, options = registry._importers[IMPORTER]
    changed = dataclasses.replace(options, revalidate_on_import=True)
    registry._importers[IMPORTER] = (model, changed)
    writers.pgcopy.copy_insert = lambda model, objects: False


def csv_text(rows: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = [HEADER]
    for i in range(rows):
        when = (start + timedelta(seconds=rng.randrange(31_536_000))).strftime("%Y-%m-%dT%H:%M:%S")
        price = Decimal(rng.randrange(1, 10_000_000)) / 100
        name = NAMES[i % len(NAMES)].replace('"', '""')
        lines.append(
            f'SKU{i:08d},"{name} {i}",{price},{rng.randrange(500)},W{i % 7},'
            f"{'true' if i % 3 else 'false'},{when}+02:00,{PARTNERS[i % len(PARTNERS)]}\n"
        )
    return "".join(lines)


def reset_tables() -> None:
    from data_exchange_tool.models import ImportJob
    from tests.testapp.models import Partner, StockRecord

    StockRecord.objects.all().delete()
    ImportJob.objects.all().delete()
    for code in PARTNERS:
        Partner.objects.get_or_create(code=code, defaults={"name": code})


def previewed_job(text: str) -> tuple[Any, list[int]]:
    """A created job with its source split into chunks (not yet validated)."""
    from data_exchange_tool import services
    from data_exchange_tool.services import preview

    job = services.create_job(IMPORTER, io.BytesIO(text.encode()), name="stock.csv")
    return job, preview.split_source(job.pk)


def start_import(job: Any) -> int:
    """Move a previewed job to IMPORT_IN_PROGRESS under fence 1, holding the lock."""
    from data_exchange_tool.locks import ContentTypeLock
    from data_exchange_tool.services import preview, transitions
    from data_exchange_tool.states import JobState

    preview.finalize_preview(job.pk)
    token = f"profile-{job.pk}"
    ContentTypeLock(job.content_type_id).acquire(token)
    assert transitions.move(job.pk, JobState.IMPORT_IN_PROGRESS, lock_token=token, fence=1)
    return 1


def run_once(text: str, rows: int, profile: bool) -> dict[str, Any]:
    """Validate then import every chunk of ``text``; returns seconds per step (and profiles)."""
    from data_exchange_tool.services import importing, preview

    reset_tables()
    job, chunk_ids = previewed_job(text)
    out: dict[str, Any] = {}
    out["validate"], out["validate_profile"] = _timed(
        lambda: [preview.validate_chunk(job.pk, c) for c in chunk_ids], profile
    )
    fence = start_import(job)
    out["import"], out["import_profile"] = _timed(
        lambda: [importing.import_chunk(job.pk, c, fence) for c in chunk_ids], profile
    )
    from tests.testapp.models import StockRecord

    written = StockRecord.objects.count()
    if written != rows:
        sys.exit(f"expected {rows} rows written, found {written}")
    importing.finalize_import(job.pk)
    return out


def _timed(
    func: Callable[[], Any], profile: bool
) -> tuple[tuple[float, float], pstats.Stats | None]:
    """(wall seconds, this process's CPU seconds) and, when asked, the profile."""
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    func()
    if profiler is not None:
        profiler.disable()
    elapsed = (time.perf_counter() - started, time.process_time() - cpu)
    return elapsed, (pstats.Stats(profiler) if profiler is not None else None)


def top_functions(stats: pstats.Stats, n: int) -> str:
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(n)
    lines = buffer.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(lines[start : start + n + 1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--baseline", action="store_true", help="re-validate and bulk_create")
    args = parser.parse_args(argv)
    os.environ.setdefault("DATA_EXCHANGE_TEST_CHUNK_SIZE", str(args.rows))
    configure(args.sqlite)
    if args.baseline:
        use_baseline()
    from django.db import connection

    text = csv_text(args.rows)
    runs = [run_once(text, args.rows, profile=False) for _ in range(args.repeat)]
    profiled = run_once(text, args.rows, profile=True)
    path = "full re-validation + bulk_create" if args.baseline else "validate once + COPY"
    print(f"{connection.vendor}, {path}; {args.rows:,} rows; best of {args.repeat} runs")
    print("  step       wall s      rows/s   (Python CPU s  rows/s per CPU s)")
    for step in ("validate", "import"):
        wall = min(r[step][0] for r in runs)
        cpu = min(r[step][1] for r in runs)
        print(
            f"  {step:8s} {wall:7.3f} {args.rows / wall:11,.0f}   "
            f"({cpu:7.3f} {args.rows / cpu:11,.0f})"
        )
    for step in ("validate", "import"):
        seconds = profiled[step][0]
        print(f"\n{step} (profiled run, {seconds:.3f} s), top {args.top} by own time:")
        print(top_functions(profiled[f"{step}_profile"], args.top))


if __name__ == "__main__":
    main()
