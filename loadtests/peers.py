"""The peers, each run in a subprocess of its own so its peak memory is its own.

    python -m loadtests.peers import-export --file F --rows 20000 [--dry-run]
    python -m loadtests.peers copy --file F

Each prints one JSON line with its timings. ``import-export`` is django-import-export 4.x with a
``ModelResource`` (partner by code through a ``ForeignKeyWidget``, ``use_bulk=True``, batches of
1,000) on the first ``--rows`` rows; ``copy`` is PostgreSQL ``COPY`` into a temporary table and an
``INSERT … SELECT`` joining the partner by code, on the whole file. Both empty the target table
first (a dry run leaves it as it was).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from itertools import islice
from pathlib import Path
from typing import Any

COPY_BLOCK = 1024 * 1024


def setup_django() -> None:
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loadtests.settings")
    django.setup()


def truncate_target() -> None:
    from django.db import connection

    from tests.testapp.models import StockRecord

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {StockRecord._meta.db_table} RESTART IDENTITY")


def target_count() -> int:
    from tests.testapp.models import StockRecord

    return StockRecord.objects.count()


# -- django-import-export --------------------------------------------------------------------------


def stock_resource_class() -> type:
    from import_export import fields, resources, widgets

    from tests.testapp.models import Partner, StockRecord

    class StockRecordResource(resources.ModelResource):
        partner = fields.Field(
            column_name="partner",
            attribute="partner",
            widget=widgets.ForeignKeyWidget(Partner, field="code"),
        )

        class Meta:
            model = StockRecord
            fields = (
                "sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner",
            )  # fmt: skip
            import_id_fields = ("sku",)
            use_bulk = True
            batch_size = 1000

    return StockRecordResource


def read_prefix(path: Path, rows: int) -> Any:
    import tablib

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return tablib.Dataset(*islice(reader, rows), headers=header)


def run_import_export(path: Path, rows: int, dry_run: bool) -> dict[str, Any]:
    truncate_target()
    resource = stock_resource_class()()
    started = time.perf_counter()
    dataset = read_prefix(path, rows)
    loaded = time.perf_counter()
    result = resource.import_data(dataset, dry_run=dry_run, raise_errors=False)
    finished = time.perf_counter()
    return {
        "peer": "import-export",
        "phase": "dry run" if dry_run else "import",
        "rows": len(dataset),
        "seconds": finished - started,
        "load_seconds": loaded - started,
        "totals": {k: v for k, v in result.totals.items() if v},
        "invalid_rows": len(result.invalid_rows),
        "error_rows": len(result.row_errors()),
        "base_errors": [str(e.error) for e in result.base_errors][:3],
        "target_count": target_count(),
    }


# -- PostgreSQL COPY -------------------------------------------------------------------------------


def copy_sql() -> tuple[str, str]:
    from tests.testapp.models import Partner, StockRecord

    target = StockRecord._meta.db_table
    partner = Partner._meta.db_table
    load = "COPY stock_load FROM STDIN WITH (FORMAT csv, HEADER true)"
    insert = (
        f"INSERT INTO {target} (sku, name, price, quantity, warehouse, active, updated_at, "
        "partner_id) SELECT s.sku, s.name, s.price, s.quantity, coalesce(s.warehouse, ''), "
        f"s.active, s.updated_at, p.id FROM stock_load s JOIN {partner} p ON p.code = s.partner"
    )
    return load, insert


CREATE_LOAD_TABLE = (
    "CREATE TEMP TABLE stock_load (sku text, name text, price numeric(12, 2), quantity integer, "
    "warehouse text, active boolean, updated_at timestamptz, partner text) ON COMMIT DROP"
)


def run_copy(path: Path) -> dict[str, Any]:
    import psycopg
    from django.db import connection

    truncate_target()
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    load, insert = copy_sql()
    with psycopg.connect(**params) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute(CREATE_LOAD_TABLE)
            with cur.copy(load) as copy, path.open("rb") as fh:
                while block := fh.read(COPY_BLOCK):
                    copy.write(block)
            loaded = time.perf_counter()
            cur.execute(insert)
            inserted = cur.rowcount
            selected = time.perf_counter()
        conn.commit()
        committed = time.perf_counter()
    return {
        "peer": "COPY",
        "phase": "import",
        "rows": inserted,
        "seconds": committed - started,
        "load_seconds": loaded - started,
        "insert_seconds": selected - loaded,
        "commit_seconds": committed - selected,
        "target_count": target_count(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one peer on a generated CSV file.")
    parser.add_argument("peer", choices=("import-export", "copy"))
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    setup_django()
    if args.peer == "copy":
        outcome = run_copy(args.file)
    else:
        outcome = run_import_export(args.file, args.rows, args.dry_run)
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
