"""Deterministic StockRecord files for the benchmark: CSV, XLSX or Parquet, of any size.

Rows are made one at a time from a seeded generator, so the same arguments always give the same
file and memory stays constant (XLSX through openpyxl's write-only mode). A share of the rows can
be made invalid, each in one of a few ways the importer must report.

    python -m loadtests.generate --rows 1000000 --format csv --invalid-share 0.001 --out f.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

HEADER = ["sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner"]
PARTNER_CODES = [f"P{n:02d}" for n in range(1, 11)]
WAREHOUSES = ["north", "south", "east", "west", "central", "harbour", "airport"]
NOUNS = ["bolt", "nut", "washer", "gear", "spring", "valve", "pipe", "hinge", "clamp", "seal"]
INVALID_KINDS = (
    "bad_price",
    "negative_quantity",
    "unknown_partner",
    "bad_datetime",
    "missing_name",
    "bad_active",
    "duplicate_sku",
)
FORMATS = ("csv", "xlsx", "parquet")
EPOCH = datetime(2024, 1, 1)
YEAR_SECONDS = 365 * 24 * 3600
PARQUET_BATCH = 50_000

Row = list[str]


@dataclass(frozen=True)
class Spec:
    """What to generate."""

    rows: int
    invalid_share: float = 0.0
    seed: int = 20240101
    sku_prefix: str = "SKU"


@dataclass
class Summary:
    """What was generated: written beside the file as ``<file>.meta.json``."""

    rows: int
    invalid_share: float
    seed: int
    file_format: str
    invalid_rows: int = 0
    invalid_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def valid_rows(self) -> int:
        return self.rows - self.invalid_rows


def valid_row(index: int, bits: int, sku_prefix: str = "SKU") -> Row:
    """Row ``index`` (1-based) made from 64 random ``bits``."""
    cents = bits % 10_000_000
    stamp = EPOCH + timedelta(seconds=(bits >> 24) % YEAR_SECONDS)
    return [
        f"{sku_prefix}{index:07d}",
        f"{NOUNS[(bits >> 8) % len(NOUNS)]} {(bits >> 12) % 1000:03d}",
        f"{cents // 100}.{cents % 100:02d}",
        str((bits >> 32) % 5000),
        WAREHOUSES[(bits >> 44) % len(WAREHOUSES)],
        "true" if (bits >> 50) % 5 else "false",
        stamp.isoformat(sep=" "),
        PARTNER_CODES[(bits >> 54) % len(PARTNER_CODES)],
    ]


def spoil(row: Row, kind: str, last_valid_sku: str) -> Row:
    """Make ``row`` invalid in the way ``kind`` names."""
    column = {
        "bad_price": (2, row[2] + "x"),
        "negative_quantity": (3, "-" + str(int(row[3]) + 1)),
        "unknown_partner": (7, "P99"),
        "bad_datetime": (6, "2024-13-45 25:61:00"),
        "missing_name": (1, ""),
        "bad_active": (5, "maybe"),
        "duplicate_sku": (0, last_valid_sku),
    }[kind]
    spoiled = list(row)
    spoiled[column[0]] = column[1]
    return spoiled


def iter_rows(spec: Spec, counts: Counter[str] | None = None) -> Iterator[Row]:
    """The data rows of ``spec``, in order; ``counts`` receives the invalid rows by kind."""
    rng = random.Random(spec.seed)
    counts = counts if counts is not None else Counter()
    last_valid_sku = ""
    spoiled = 0
    for index in range(1, spec.rows + 1):
        row = valid_row(index, rng.getrandbits(64), spec.sku_prefix)
        if spec.invalid_share and rng.random() < spec.invalid_share and last_valid_sku:
            kind = INVALID_KINDS[spoiled % len(INVALID_KINDS)]
            spoiled += 1
            counts[kind] += 1
            yield spoil(row, kind, last_valid_sku)
        else:
            last_valid_sku = row[0]
            yield row


def write_csv(path: Path, rows: Iterator[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8", buffering=1 << 20) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows)


def write_parquet(path: Path, rows: Iterator[Row]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in HEADER])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        batch: list[Row] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= PARQUET_BATCH:
                writer.write_table(_parquet_table(batch, schema))
                batch = []
        if batch:
            writer.write_table(_parquet_table(batch, schema))


def _parquet_table(batch: list[Row], schema: object) -> object:
    import pyarrow as pa

    columns = [[row[i] or None for row in batch] for i in range(len(HEADER))]
    return pa.table(columns, schema=schema)


def write_xlsx(path: Path, rows: Iterator[Row]) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("stock")
    sheet.append(HEADER)
    for row in rows:
        sheet.append([cell or None for cell in row])
    workbook.save(path)


WRITERS: dict[str, Callable[[Path, Iterator[Row]], None]] = {
    "csv": write_csv,
    "parquet": write_parquet,
    "xlsx": write_xlsx,
}


def generate(spec: Spec, file_format: str, out: Path) -> Summary:
    """Write the file for ``spec`` to ``out`` (atomically) and its summary beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    counts: Counter[str] = Counter()
    WRITERS[file_format](partial, iter_rows(spec, counts))
    os.replace(partial, out)
    summary = Summary(
        rows=spec.rows,
        invalid_share=spec.invalid_share,
        seed=spec.seed,
        file_format=file_format,
        invalid_rows=sum(counts.values()),
        invalid_by_kind=dict(sorted(counts.items())),
    )
    meta_path(out).write_text(json.dumps(asdict(summary), indent=2))
    return summary


def meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def load_summary(path: Path) -> Summary | None:
    """The summary of a file generated earlier, or None if there is none."""
    meta = meta_path(path)
    if not (path.exists() and meta.exists()):
        return None
    return Summary(**json.loads(meta.read_text()))


def cached(spec: Spec, file_format: str, directory: Path) -> tuple[Path, Summary]:
    """The file for ``spec`` under ``directory``, generated only if not there yet."""
    share = f"{spec.invalid_share:g}".replace(".", "p")
    prefix = "" if spec.sku_prefix == "SKU" else f"_{spec.sku_prefix}"
    path = directory / f"stock_{spec.rows}_inv{share}_s{spec.seed}{prefix}.{file_format}"
    summary = load_summary(path)
    if summary is None:
        summary = generate(spec, file_format, path)
    return path, summary


def create_partners() -> int:
    """Create the partners P01..P10 the files refer to (Django must be set up)."""
    from tests.testapp.models import Partner

    Partner.objects.bulk_create(
        [Partner(code=code, name=f"Partner {code}") for code in PARTNER_CODES],
        ignore_conflicts=True,
    )
    return Partner.objects.filter(code__in=PARTNER_CODES).count()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--format", choices=FORMATS, default="csv", dest="file_format")
    parser.add_argument("--invalid-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=Spec.seed)
    parser.add_argument("--sku-prefix", default=Spec.sku_prefix)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = Spec(args.rows, args.invalid_share, args.seed, args.sku_prefix)
    summary = generate(spec, args.file_format, args.out)
    print(
        f"{args.out}: {summary.rows:,} rows, {summary.invalid_rows:,} invalid "
        f"{summary.invalid_by_kind}"
    )


if __name__ == "__main__":
    main()
