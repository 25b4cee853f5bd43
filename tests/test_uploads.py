"""Uploads: what an importer accepts, and how big a file may be, refused before it costs disk.

Celery runs eager: the preview runs inside the on-commit callbacks of the request or call.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.core.management import CommandError, call_command
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
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


# -- DATA_EXCHANGE_MAX_FILE_BYTES while the body streams ----------------------------------------

LIMIT = 100_000


class CountingInput:
    """A request body read as a server reads it from the socket, counting what was read."""

    def __init__(self, body: bytes) -> None:
        self.stream = io.BytesIO(body)
        self.size = len(body)

    @property
    def read_bytes(self) -> int:
        return self.stream.tell()

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self.stream.readline(size)


class RecordingUploadHandler(FileUploadHandler):
    """Stands beside Django's own handlers: records the file bytes they were given to store."""

    stored: ClassVar[list[int]] = []

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        RecordingUploadHandler.stored.append(0)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        RecordingUploadHandler.stored[-1] += len(raw_data)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


@pytest.fixture
def small_limit(settings: Any) -> None:
    settings.DATA_EXCHANGE_MAX_FILE_BYTES = LIMIT
    settings.FILE_UPLOAD_HANDLERS = [
        "tests.test_uploads.RecordingUploadHandler",
        *settings.FILE_UPLOAD_HANDLERS,
    ]
    RecordingUploadHandler.stored = []


def post_body(client: Client, admin_name: str, file_bytes: bytes) -> tuple[Any, CountingInput]:
    fields: dict[str, Any] = {"file": SimpleUploadedFile("big.csv", file_bytes)}
    if admin_name == GENERIC:
        fields = {"importer": IMPORTER, **fields}
    body = encode_multipart(BOUNDARY, fields)
    counting = CountingInput(body)
    response = client.generic(
        "POST", add_url(admin_name), body, MULTIPART_CONTENT, **{"wsgi.input": counting}
    )
    return response, counting


def big_csv(size: int) -> bytes:
    line = b"SKU1,One,1.00,1,W1,true,,P1\n"
    return HEADER.encode() + line * (size // len(line) + 1)


@pytest.mark.parametrize("admin_name", [GENERIC, PROXY])
def test_a_body_far_beyond_the_limit_is_refused_before_it_is_read(
    admin_client: Client, small_limit: None, admin_name: str
) -> None:
    response, body = post_body(admin_client, admin_name, big_csv(40 * LIMIT))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["file"] == [
        "The file is larger than the upload limit of 100,000 bytes; nothing was stored."
    ]
    assert "larger than the upload limit of 100,000 bytes" in response.content.decode()
    assert body.read_bytes < 2 * LIMIT < body.size // 20, "the body was read on"
    assert sum(RecordingUploadHandler.stored) <= LIMIT
    assert ImportJob.objects.count() == 0


def test_a_file_just_over_the_limit_stops_being_stored_at_the_limit(
    admin_client: Client, small_limit: None
) -> None:
    """The declared body size leaves room for the form's other fields, so the handler counts."""
    response, _body = post_body(admin_client, GENERIC, big_csv(LIMIT + 10_000))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["file"] == [
        "The file is larger than the upload limit of 100,000 bytes; nothing was stored."
    ]
    assert RecordingUploadHandler.stored and sum(RecordingUploadHandler.stored) <= LIMIT
    assert ImportJob.objects.count() == 0


def test_a_file_within_the_limit_is_uploaded_whole(
    admin_client: Client,
    small_limit: None,
    partners: list[Partner],
    django_capture_on_commit_callbacks: Any,
) -> None:
    content = big_csv(LIMIT - 1000)
    with django_capture_on_commit_callbacks(execute=True):
        response, body = post_body(admin_client, GENERIC, content)
    assert response.status_code == 302, response.content.decode()[:500]
    assert body.read_bytes == body.size
    job = ImportJob.objects.get()
    assert job.file_size == len(content)
    assert job.state == JobState.PREVIEW_SUCCEEDED


def test_the_upload_view_still_checks_the_csrf_token(admin_user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    data = {"importer": IMPORTER, "file": SimpleUploadedFile("s.csv", (HEADER + ROWS).encode())}
    assert client.post(add_url(), data).status_code == 403
    client.get(add_url())
    token = client.cookies["csrftoken"].value
    data["file"].seek(0)
    response = client.post(add_url(), {**data, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
