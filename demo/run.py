"""``make demo``: the whole flow on SQLite and local files, printed step by step.

Generates a stock file with a few bad rows, previews it (showing the errors), imports a
corrected file, and says how to open the admin on the result.
"""

from __future__ import annotations

import os
import random
import time
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from data_exchange_tool import services  # noqa: E402
from data_exchange_tool.exceptions import TransitionRefused  # noqa: E402
from data_exchange_tool.models import ImportJob  # noqa: E402
from demo.settings import STATE_DIR  # noqa: E402
from tests.testapp.models import Partner, StockRecord  # noqa: E402

ROWS = 5000
IMPORTER = "testapp.StockRecordUpsertImportJob"
PARTNERS = {
    "ACME": "Acme Supplies",
    "GLOBEX": "Globex",
    "INITECH": "Initech",
    "UMBRELLA": "Umbrella",
}
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
BAD_ROWS = {
    120: "price",  # not a number
    987: "quantity",  # negative
    2345: "partner",  # unknown partner code
    3999: "updated_at",  # not a date
}


def stock_line(i: int, rng: random.Random, broken: str | None = None) -> str:
    price = f"{rng.uniform(0.5, 900):.2f}"
    quantity = str(rng.randint(0, 5000))
    partner = rng.choice(list(PARTNERS))
    updated = (
        f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    )
    kind = rng.choice(["Bolt", "Nut", "Washer", "Hinge", "Bracket"])
    metal = rng.choice(["zinc", "steel", "brass"])
    name = f'"{kind} {i}, {metal}"'
    if broken == "price":
        price = "12.5O"
    elif broken == "quantity":
        quantity = "-3"
    elif broken == "partner":
        partner = "NOSUCH"
    elif broken == "updated_at":
        updated = "31/02/2026"
    warehouse = rng.choice(["North", "South", "East"])
    active = rng.choice(["true", "false", "1", "0"])
    return f"SKU-{i:06d},{name},{price},{quantity},{warehouse},{active},{updated},{partner}\n"


def write_file(path: Path, with_errors: bool) -> Path:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER)
        for i in range(1, ROWS + 1):
            fh.write(stock_line(i, rng, BAD_ROWS.get(i) if with_errors else None))
    return path


def upload(path: Path) -> ImportJob:
    with path.open("rb") as fh:
        job = services.create_job(IMPORTER, fh, name=path.name)
    job.refresh_from_db()
    return job


def show(job: ImportJob, title: str) -> None:
    print(f"\n== {title}")
    print(f"   job {job.pk}  state: {job.state}")
    print(
        f"   rows {job.total_rows}, valid {job.valid_rows}, invalid {job.invalid_rows}, "
        f"imported {job.imported_rows}, chunks {job.chunk_count}"
    )
    if job.error_summary:
        print(f"   error: {job.error_summary}")
    for error in job.row_errors.order_by("row_number")[:10]:
        print(
            f"   row {error.row_number}, column {error.column!r}: {error.message} "
            f"(value {error.value!r})"
        )


def main() -> None:
    print("Setting up the demo database (SQLite) and partners…")
    call_command("migrate", verbosity=0)
    for code, name in PARTNERS.items():
        Partner.objects.get_or_create(code=code, defaults={"name": name})
    StockRecord.objects.all().delete()

    bad = write_file(STATE_DIR / "stock_with_errors.csv", with_errors=True)
    print(f"Generated {bad} ({ROWS} rows, {len(BAD_ROWS)} of them invalid)")
    started = time.perf_counter()
    job = upload(bad)
    show(job, f"Preview of {bad.name} ({time.perf_counter() - started:.2f} s)")
    try:
        services.confirm_import(job.pk)
    except TransitionRefused as exc:
        print(f"   Confirm Import refused: {exc}")

    good = write_file(STATE_DIR / "stock.csv", with_errors=False)
    started = time.perf_counter()
    job = upload(good)
    preview_seconds = time.perf_counter() - started
    show(job, f"Preview of the corrected {good.name} ({preview_seconds:.2f} s)")
    started = time.perf_counter()
    job = services.confirm_import(job.pk)
    seconds = time.perf_counter() - started
    show(job, f"Import ({seconds:.2f} s)")
    total = StockRecord.objects.count()
    print(
        f"\n   {total} stock records in the table; "
        f"{job.imported_rows / seconds:,.0f} rows/s imported, "
        f"{ROWS / (preview_seconds + seconds):,.0f} rows/s end to end"
    )
    sample = StockRecord.objects.order_by("sku").first()
    assert sample is not None and sample.price > Decimal(0)

    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        user_model.objects.create_superuser("admin", "admin@example.com", "admin")
    print("\nOpen the admin on this data:")
    print("   .venv/bin/python -m demo.manage runserver")
    print("   then http://127.0.0.1:8000/admin/  (user admin, password admin)")
    print("   'Import jobs' shows both jobs with their previews and errors.")


if __name__ == "__main__":
    main()
