"""Preview one file in a fresh process and print its outcome and peak memory, as JSON.

``python -m tests.preview_rss FILE [NAME] [SETTING=INT ...]`` runs the whole preview (split,
validation, reducer) eagerly against a throw-away SQLite database and local storage in a
temporary directory, with the library's default limits and chunk size (or the settings given),
and prints the job's state, its reason and the process's peak resident set size in MiB
(``VmHWM``: unlike ``ru_maxrss``, it is not inherited from the parent that started the
child). The hostile-file tests run it as a child, so a reader that blew up would take down the
child, not the test run.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

IMPORTER = "testapp.StockRecordImportJob"
FIELDS = ["sku", "name", "price", "quantity", "warehouse", "active", "updated_at", "partner"]


def peak_rss_kib() -> int:
    """This process's peak resident set size since it started its program, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover


def wide_gzip_csv(
    path: Path, *, rows: int = 100, cells: int = 10, cell_bytes: int = 1024**2
) -> int:
    """A gzip CSV whose rows carry ``cells`` cells of ``cell_bytes`` beyond the header.

    With the defaults the file is about 1 MB and expands to about 1 GB. Returns its size.
    """
    extra = ("," + "x" * cell_bytes) * cells
    with gzip.open(path, "wt", compresslevel=9, newline="") as out:
        out.write(",".join(FIELDS) + "\n")
        for i in range(rows):
            out.write(f"SKU{i:05d},Item,1.50,1,W1,true,2024-01-02T03:04:05Z,P1{extra}\n")
    return path.stat().st_size


def fat_gzip_csv(path: Path, *, rows: int = 150) -> int:
    """A gzip CSV whose rows fill five of their header's columns with 1 MiB cells each."""
    big = "x" * (1024**2 - 16)
    with gzip.open(path, "wt", compresslevel=6, newline="") as out:
        out.write(",".join(FIELDS) + "\n")
        for i in range(rows):
            out.write(f"SKU{i:05d},{big},1.50,{big},{big},{big},{big},P1\n")
    return path.stat().st_size


def wide_csv(path: Path, *, rows: int = 3, cells: int = 62) -> int:
    """A plain CSV whose rows carry ``cells`` cells of (almost) 1 MiB beyond the header."""
    extra = ("," + "x" * (1024**2 - 16)) * cells
    with path.open("w", newline="") as out:
        out.write(",".join(FIELDS) + "\n")
        for i in range(rows):
            out.write(f"SKU{i:05d},Item,1.50,1,W1,true,2024-01-02T03:04:05Z,P1{extra}\n")
    return path.stat().st_size


def preview_file(path: Path, name: str, overrides: dict[str, int]) -> dict[str, object]:
    """Preview ``path`` as an upload called ``name``; the job's outcome."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    for setting, value in overrides.items():
        setattr(settings, setting, value)
    import tests.celery_app  # noqa: F401  (the eager Celery app)
    from data_exchange_tool import services
    from data_exchange_tool.models import ImportJob

    call_command("migrate", verbosity=0)
    baseline = peak_rss_kib()
    with path.open("rb") as upload:
        job = services.create_job(IMPORTER, upload, name=name)
    job = ImportJob.objects.get(pk=job.pk)
    return {
        "state": job.state,
        "reason": job.error_summary,
        "invalid_rows": job.invalid_rows,
        "baseline_mib": round(baseline / 1024),
    }


def main(argv: list[str]) -> None:
    path = Path(argv[1]).resolve()
    name = argv[2] if len(argv) > 2 and "=" not in argv[2] else path.name
    overrides = {k: int(v) for k, _, v in (a.partition("=") for a in argv[2:] if "=" in a)}
    with tempfile.TemporaryDirectory(prefix="dx-rss-") as work:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DATA_EXCHANGE_TEST_DB="sqlite",
            DATA_EXCHANGE_TEST_SQLITE=str(Path(work) / "db.sqlite3"),
            DATA_EXCHANGE_TEST_MEDIA=str(Path(work) / "media"),
            DATA_EXCHANGE_TEST_CHUNK_SIZE="10000",
            DATA_EXCHANGE_TEST_EAGER="1",
        )
        result = preview_file(path, name, overrides)
    result["max_rss_mib"] = round(peak_rss_kib() / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--build":
        print(wide_gzip_csv(Path(sys.argv[2])))
    else:
        main(sys.argv)
