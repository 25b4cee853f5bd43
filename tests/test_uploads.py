"""Uploads: what an importer accepts, and how big a file may be, refused before it costs disk.

Celery runs eager: the preview runs inside the on-commit callbacks of the request or call.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from data_exchange_tool import registry, services
from data_exchange_tool.models import ImportJob
from data_exchange_tool.states import FailureKind, JobState
from tests.testapp.models import Partner

IMPORTER = "testapp.StockRecordImportJob"
GENERIC = "data_exchange_tool_importjob"
PROXY = "testapp_stockrecordimportjob"
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
ROWS = "SKU1,One,1.00,1,W1,true,,P1\nSKU2,Two,2.00,2,W1,true,,P1\n"

pytestmark = pytest.mark.django_db


def xlsx_bytes() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for line in (HEADER + ROWS).splitlines():
        sheet.append(line.split(","))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def add_url(admin_name: str = GENERIC) -> str:
    return reverse(f"admin:{admin_name}_add")


@pytest.fixture(autouse=True)
def _local_storage(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def partners() -> list[Partner]:
    return [Partner.objects.create(code=c, name=c) for c in ("P1", "P2")]


@pytest.fixture
def csv_only() -> Iterator[Callable[[], None]]:
    """Make the stock-record importer accept CSV only, as ``Meta.accepted_formats = ("csv",)``
    would; the returned function does it (so a test can do it after the upload)."""
    model, options = registry._importers[IMPORTER]

    def restrict() -> None:
        registry._importers[IMPORTER] = (
            model,
            dataclasses.replace(options, accepted_formats=("csv",)),
        )

    yield restrict
    registry._importers[IMPORTER] = (model, options)


# -- Meta.accepted_formats ----------------------------------------------------------------------


@pytest.mark.parametrize("admin_name", [GENERIC, PROXY])
def test_an_upload_of_a_format_the_importer_does_not_accept_is_a_form_error(
    admin_client: Client, csv_only: Callable[[], None], admin_name: str
) -> None:
    csv_only()
    data: dict[str, Any] = {
        "file": SimpleUploadedFile("stock.xlsx", xlsx_bytes()),
    }
    if admin_name == GENERIC:
        data["importer"] = IMPORTER
    response = admin_client.post(add_url(admin_name), data)
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["file"]
    assert error == "This importer accepts only CSV files; “stock.xlsx” is an XLSX workbook."
    assert error in response.content.decode()
    assert ImportJob.objects.count() == 0


def test_a_renamed_workbook_is_refused_by_its_content_not_its_name(
    admin_client: Client, csv_only: Callable[[], None]
) -> None:
    csv_only()
    response = admin_client.post(
        add_url(), {"importer": IMPORTER, "file": SimpleUploadedFile("stock.bin", xlsx_bytes())}
    )
    [error] = response.context["adminform"].form.errors["file"]
    assert "accepts only CSV files" in error
    assert ImportJob.objects.count() == 0


def test_an_accepted_format_is_uploaded_and_previewed(
    admin_client: Client,
    csv_only: Callable[[], None],
    partners: list[Partner],
    django_capture_on_commit_callbacks: Any,
) -> None:
    csv_only()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            add_url(),
            {"importer": IMPORTER, "file": SimpleUploadedFile("s.csv", (HEADER + ROWS).encode())},
        )
    assert response.status_code == 302
    assert ImportJob.objects.get().state == JobState.PREVIEW_SUCCEEDED


def test_the_import_command_refuses_a_format_the_importer_does_not_accept(
    csv_only: Callable[[], None], tmp_path: Path
) -> None:
    csv_only()
    path = tmp_path / "stock.xlsx"
    path.write_bytes(xlsx_bytes())
    refusal = "accepts only CSV files; “stock.xlsx” is an XLSX workbook."
    with pytest.raises(CommandError, match=re.escape(refusal)):
        call_command("data_exchange_import", IMPORTER, str(path), timeout=1)
    assert ImportJob.objects.count() == 0


def test_a_stored_file_of_a_format_the_importer_no_longer_accepts_fails_the_preview(
    csv_only: Callable[[], None],
    partners: list[Partner],
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Accepted at upload, then the importer's formats changed before the preview ran."""
    with django_capture_on_commit_callbacks() as queued:
        job = services.create_job(IMPORTER, io.BytesIO(xlsx_bytes()), name="stock.xlsx")
    csv_only()
    with django_capture_on_commit_callbacks(execute=True):
        for callback in queued:
            callback()
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_FAILED
    assert job.failure_kind == FailureKind.DATA
    assert job.error_summary == (
        "This importer accepts only CSV files; “stock.xlsx” is an XLSX workbook."
    )
    assert job.chunks.count() == 0
