"""The admin as a staff user sees it: upload, preview, row errors, Confirm Import, permissions.

Celery runs eager: the preview and the import run inside the request's on-commit callbacks,
which ``django_capture_on_commit_callbacks(execute=True)`` runs when the request returns.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin import AdminSite
from django.contrib.admin.templatetags.admin_list import result_headers
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import Client
from django.urls import resolve, reverse
from django.utils import timezone

from data_exchange_tool import registry
from data_exchange_tool.admin import GenericImporterModelAdmin
from data_exchange_tool.locks import ContentTypeLock
from data_exchange_tool.models import ImportJob
from data_exchange_tool.states import ChunkState, FailureKind, JobState, Phase
from tests.fixtures.users import logged_in_staff
from tests.testapp.admin import StockRecordNewImporterAdmin
from tests.testapp.models import Partner, StockRecord, StockRecordImportJob

HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
IMPORTER = "testapp.StockRecordImportJob"
UPSERT = "testapp.StockRecordUpsertImportJob"
GENERIC = "data_exchange_tool_importjob"
PROXY = "testapp_stockrecordimportjob"
UPSERT_PROXY = "testapp_stockrecordupsertimportjob"
BAD_ROWS = (
    "SKU90001,Bad price,abc,1,W1,true,,P1\n"
    "SKU90002,Unknown partner,1.00,1,W1,true,,NOPE\n"
    "SKU90003,Negative,1.00,-5,W1,true,,P1\n"
)

pytestmark = pytest.mark.django_db


def csv_rows(n: int, start: int = 0) -> str:
    return "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,P1\n"
        for i in range(start, start + n)
    )


def url(admin_name: str, action: str, job: ImportJob | None = None) -> str:
    return reverse(f"admin:{admin_name}_{action}", args=(job.pk,) if job else ())


def job_of(response: HttpResponse) -> ImportJob:
    """The job whose page an upload redirected to."""
    assert response.status_code == 302, response.content.decode()[:2000]
    return ImportJob.objects.get(pk=resolve(response["Location"]).kwargs["object_id"])


def text(response: HttpResponse) -> str:
    return response.content.decode()


class _Section(HTMLParser):
    """Collect the header and body cells of the tables inside ``<div id=section_id>``."""

    def __init__(self, section_id: str) -> None:
        super().__init__()
        self.section_id = section_id
        self.depth = 0
        self.part = ""
        self.header: list[str] = []
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "div" and (self.depth or dict(attrs).get("id") == self.section_id):
            self.depth += 1
        if not self.depth:
            return
        if tag in ("thead", "tbody"):
            self.part = tag
        elif tag == "tr" and self.part == "tbody":
            self.rows.append([])
        elif tag in ("td", "th") and self.part:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "div":
            self.depth -= 1
        elif tag in ("td", "th") and self.cell is not None:
            value = " ".join("".join(self.cell).split())
            (self.header if self.part == "thead" else self.rows[-1]).append(value)
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table(response: HttpResponse, section_id: str) -> tuple[list[str], list[list[str]]]:
    parser = _Section(section_id)
    parser.feed(text(response))
    return parser.header, parser.rows


def select_options(response: HttpResponse, name: str) -> dict[str, str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', text(response), re.S)
    assert select, f"no <select name={name}>"
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select.group(1))
    return {value: label for value, label in options if value}


def page_messages(response: HttpResponse) -> list[str]:
    return [str(m) for m in response.context["messages"]]


class FailChunkOnce:
    """Fault hook: the first import of chunk 1 fails before it commits (a worker fault)."""

    armed = False

    @staticmethod
    def before_chunk_commit(*, job_id: Any, chunk_index: int, phase: str) -> None:
        if FailChunkOnce.armed and phase == Phase.IMPORT and chunk_index == 1:
            FailChunkOnce.armed = False
            raise RuntimeError("worker lost its connection")


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _local_storage(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


@pytest.fixture(autouse=True)
def _no_lock_left_held() -> Iterator[None]:
    """Every import a test starts releases its target's lock (and a leak fails only that test)."""
    yield
    lock = ContentTypeLock(ContentType.objects.get_for_model(StockRecord).pk)
    holder = lock.holder()
    if holder and ImportJob.objects.filter(lock_token=holder).exists():
        lock.release(holder)
        pytest.fail("the import lock of stock records was left held")


@pytest.fixture
def partners() -> list[Partner]:
    return [
        Partner.objects.create(code="P1", name="Partner one"),
        Partner.objects.create(code="P2", name="Partner two"),
    ]


@pytest.fixture
def upload(django_capture_on_commit_callbacks: Any) -> Callable[..., HttpResponse]:
    """POST a file to an admin's add view and run the preview it queues."""

    def post(
        client: Client,
        content: str,
        *,
        admin_name: str = GENERIC,
        importer: str = IMPORTER,
        name: str = "stock.csv",
        **options: str,
    ) -> HttpResponse:
        data: dict[str, Any] = {"file": SimpleUploadedFile(name, content.encode()), **options}
        if admin_name == GENERIC:
            data["importer"] = importer
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url(admin_name, "add"), data)

    return post


@pytest.fixture
def post_on_commit(django_capture_on_commit_callbacks: Any) -> Callable[..., HttpResponse]:
    """POST, run the work the request queued (the import), then follow the redirect if asked."""

    def post(client: Client, path: str, *, follow: bool = False) -> HttpResponse:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(path)
        if not follow:
            return response
        assert response.status_code == 302
        page = client.get(response["Location"])
        page.redirect_chain = [(response["Location"], 302)]
        return page

    return post


@pytest.fixture
def staff_client() -> Callable[..., Client]:
    """A logged-in staff user holding exactly the permissions given as "app.codename"."""
    made = 0

    def make(*perms: str) -> Client:
        nonlocal made
        made += 1
        return logged_in_staff(f"staff{made}", *perms)

    return make


@pytest.fixture
def previewed(admin_client: Client, partners: list[Partner], upload: Callable) -> ImportJob:
    """A job of 10 valid rows whose preview succeeded, uploaded through the generic admin."""
    response = upload(admin_client, HEADER + csv_rows(10))
    assert admin_client.get(response["Location"]).status_code == 200
    job = job_of(response)
    assert job.state == JobState.PREVIEW_SUCCEEDED
    return job


@pytest.fixture
def importing(
    previewed: ImportJob, admin_client: Client, django_capture_on_commit_callbacks: Any
) -> Iterator[ImportJob]:
    """A confirmed job whose import has not run yet (IMPORT_IN_PROGRESS); it runs at teardown."""
    with django_capture_on_commit_callbacks() as queued:
        admin_client.post(url(GENERIC, "confirm", previewed))
    previewed.refresh_from_db()
    assert previewed.state == JobState.IMPORT_IN_PROGRESS
    try:
        yield previewed
    finally:
        with django_capture_on_commit_callbacks(execute=True):
            for callback in queued:
                callback()


# -- the add form and the upload --------------------------------------------------------------


def test_admin_index_lists_import_jobs(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:index"))
    assert f'<a href="{url(GENERIC, "changelist")}">Import jobs</a>' in text(response)


def test_add_form_lists_exactly_the_registered_importers(admin_client: Client) -> None:
    response = admin_client.get(url(GENERIC, "add"))
    assert response.status_code == 200
    options = select_options(response, "importer")
    assert list(options) == list(registry.all_importers())
    assert options == {
        # Importers sharing a target are told apart by their verbose names, never by labels.
        "testapp.MemberColumnsImportJob": "Member (member columns import job)",
        "testapp.MemberImportJob": "Member (member import job)",
        "testapp.MemberUpsertImportJob": "Member (member upsert import job)",
        IMPORTER: "Stock record (stock record import job)",
        UPSERT: "Stock record (stock record upsert import job)",
        "testapp.StockRecordStrictImportJob": "Stock record (stock record strict import job)",
        "testapp.ShipmentImportJob": "Shipment",
    }
    page = text(response)
    assert 'enctype="multipart/form-data"' in page
    for field in ('type="file" name="file"', 'name="encoding"', 'name="sheet_name"'):
        assert field in page
    assert select_options(response, "delimiter") == {
        ",": "Comma (,)",
        ";": "Semicolon (;)",
        "\t": "Tab",
        "|": "Pipe (|)",
    }


def test_upload_of_a_valid_csv_ends_on_the_preview(
    admin_client: Client, admin_user: Any, partners: list[Partner], upload: Callable
) -> None:
    response = upload(admin_client, HEADER + csv_rows(10))
    job = job_of(response)
    assert response["Location"] == url(GENERIC, "change", job)
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert (job.total_rows, job.valid_rows, job.invalid_rows) == (10, 10, 0)
    assert (job.importer, job.original_name, job.created_by) == (IMPORTER, "stock.csv", admin_user)
    assert StockRecord.objects.count() == 0

    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    assert "“stock.csv” was uploaded." in page_messages(page)[0]
    content = text(page)
    assert "Preview succeeded" in content
    assert '<meta http-equiv="refresh"' not in content
    header, rows = table(page, "sample-rows")
    assert header == ["Row", *HEADER.strip().split(",")]
    assert rows[0] == [
        "2",
        "SKU00000",
        "Item 0",
        "0.50",
        "0",
        "W1",
        "true",
        "2024-01-02T03:04:05Z",
        "P1",
    ]
    assert len(rows) == 7, "the sample comes from the first chunk"
    assert f'<form method="post" action="{url(GENERIC, "confirm", job)}">' in content
    assert 'value="Confirm Import"' in content
    assert "Writes 10 rows into stock records." in content
    assert "No row has errors." in content
    _header, events = table(page, "job-events")
    assert [e[1:3] for e in events] == [["Created (preview running)", "Preview succeeded"]]


def test_upload_options_are_kept_on_the_job(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    content = HEADER.replace(",", ";") + csv_rows(3).replace(",", ";").replace("Item", "Ítem")
    response = upload(
        admin_client,
        content,
        encoding="utf-8",
        delimiter=";",
        sheet_name="",
    )
    job = job_of(response)
    assert (job.encoding, job.delimiter, job.state) == ("utf-8", ";", JobState.PREVIEW_SUCCEEDED)
    page = text(admin_client.get(url(GENERIC, "change", job)))
    assert "Semicolon (;), as chosen at upload" in page
    assert "Ítem 1" in page


def test_upload_form_errors(admin_client: Client) -> None:
    response = admin_client.post(url(GENERIC, "add"), {"importer": "", "encoding": "klingon"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"importer", "file", "encoding"}
    assert errors["encoding"] == ["“klingon” is not a known text encoding."]
    assert "Please correct the errors below." in text(response)
    assert ImportJob.objects.count() == 0


def test_a_file_refused_at_upload_is_a_form_error_on_the_file(
    admin_client: Client, settings: Any, upload: Callable
) -> None:
    settings.DATA_EXCHANGE_MAX_FILE_BYTES = 10
    response = upload(admin_client, HEADER + csv_rows(2))
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["file"]
    assert "larger than the upload limit of 10 bytes" in error
    assert "larger than the upload limit of 10 bytes" in text(response)
    assert ImportJob.objects.count() == 0


def test_an_unreadable_file_shows_the_reason_in_an_error_box(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    job = job_of(upload(admin_client, "sku,title\nSKU1,Thing\n"))
    assert job.state == JobState.PREVIEW_FAILED
    page = admin_client.get(url(GENERIC, "change", job))
    content = text(page)
    assert '<div class="errornote" role="alert" id="job-error">' in content
    assert "The header does not match the importer" in content
    assert "missing required column(s): name, price" in content
    assert "Confirm Import" not in content
    assert 'id="sample-rows"' not in content


def test_the_page_of_a_running_preview_refreshes_itself(
    admin_client: Client, partners: list[Partner], django_capture_on_commit_callbacks: Any
) -> None:
    data = {"importer": IMPORTER, "file": SimpleUploadedFile("s.csv", HEADER.encode() + b"x")}
    with django_capture_on_commit_callbacks() as queued:
        job = job_of(admin_client.post(url(GENERIC, "add"), data))
    assert len(queued) == 1
    page = text(admin_client.get(url(GENERIC, "change", job)))
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "The preview is running" in page
    assert "Confirm Import" not in page


# -- row errors ---------------------------------------------------------------------------------


def test_row_errors_show_row_column_message_and_value_page_by_page(
    admin_client: Client, partners: list[Partner], upload: Callable, settings: Any
) -> None:
    settings.DATA_EXCHANGE_ERRORS_PER_PAGE = 2
    job = job_of(upload(admin_client, HEADER + csv_rows(3) + BAD_ROWS))
    assert (job.state, job.total_rows, job.invalid_rows) == (JobState.PREVIEW_SUCCEEDED, 6, 3)
    change = url(GENERIC, "change", job)

    first = admin_client.get(change)
    header, rows = table(first, "row-errors")
    assert header == ["Row", "Column", "Message", "Value", "Found at"]
    assert rows == [
        ["5", "price", "A valid number is required.", "abc", "Preview"],
        ["6", "partner", "Object with code=NOPE does not exist.", "NOPE", "Preview"],
    ]
    content = text(first)
    assert "3 errors; showing 1–2." in content
    assert "Page 1 of 2" in content
    assert 'href="?errors_page=2#row-errors"' in content

    second = admin_client.get(change, {"errors_page": 2})
    _header, rows = table(second, "row-errors")
    assert rows == [
        ["7", "quantity", "Ensure this value is greater than or equal to 0.", "-5", "Preview"]
    ]
    assert 'href="?errors_page=1#row-errors"' in text(second)

    assert table(admin_client.get(change, {"errors_page": "x"}), "row-errors")[1][0][0] == "5"


def test_the_breadcrumb_names_the_importer_by_its_verbose_name(
    admin_client: Client, previewed: ImportJob
) -> None:
    content = text(admin_client.get(url(GENERIC, "change", previewed)))
    # The breadcrumb's last item is the job (its markup differs between Django releases).
    assert "stock.csv → Stock record import job" in content
    assert IMPORTER not in content


def test_ignored_columns_are_named_in_a_warning_on_the_job_page(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    rows = "".join(line + ",red,x\n" for line in csv_rows(2).splitlines())
    job = job_of(upload(admin_client, HEADER.strip() + ",colour,notes\n" + rows))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    content = text(admin_client.get(url(GENERIC, "change", job)))
    assert (
        "These columns match no field of the importer and were not read: colour, notes."
        in content
    )


def test_errors_are_grouped_by_column_and_message_with_a_chart_by_column(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    bad_price = "".join(f"SKU9{i:04d},Bad,abc,1,W1,true,,P1\n" for i in range(5))
    bad_partner = "".join(f"SKU8{i:04d},Unknown,1.00,1,W1,true,,NOPE\n" for i in range(2))
    job = job_of(upload(admin_client, HEADER + csv_rows(1) + bad_price + bad_partner))
    page = admin_client.get(url(GENERIC, "change", job))
    header, rows = table(page, "dx-error-groups")
    assert header == ["Column", "Message", "Rows", "First rows"]
    assert rows == [
        ["price", "A valid number is required.", "5", "3, 4, 5"],
        ["partner", "Object with code=NOPE does not exist.", "2", "8, 9"],
    ]
    chart = re.search(r'<div id="dx-error-chart".*?</div>\s*</div>\s*</div>', text(page), re.S)
    assert chart is not None
    bars = re.findall(
        r'dxt-bar-label">([^<]*)</span>\s*<span class="dxt-bar" style="width: (\d+)%">'
        r'</span>\s*<span class="dxt-bar-value">(\d+)<',
        chart.group(0),
    )
    assert bars == [("price", "100", "5"), ("partner", "40", "2")]


def test_a_job_without_errors_shows_no_error_groups(
    admin_client: Client, previewed: ImportJob
) -> None:
    assert 'id="dx-error-groups"' not in text(admin_client.get(url(GENERIC, "change", previewed)))


def test_confirm_is_disabled_with_the_reason_when_rows_have_errors(
    admin_client: Client, partners: list[Partner], upload: Callable, post_on_commit: Callable
) -> None:
    job = job_of(upload(admin_client, HEADER + csv_rows(3) + BAD_ROWS))
    content = text(admin_client.get(url(GENERIC, "change", job)))
    assert 'value="Confirm Import" disabled aria-describedby="confirm-refusal"' in content
    assert "The preview found 3 row(s) with errors" in content
    assert url(GENERIC, "confirm", job) not in content

    response = post_on_commit(admin_client, url(GENERIC, "confirm", job), follow=True)
    assert response.redirect_chain == [(url(GENERIC, "change", job), 302)]
    assert page_messages(response) == [
        "The preview found 3 row(s) with errors; fix the file and upload it again."
    ]
    job.refresh_from_db()
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert StockRecord.objects.count() == 0


# -- confirm and resume -------------------------------------------------------------------------


def test_confirm_imports_the_rows(
    admin_client: Client, previewed: ImportJob, post_on_commit: Callable
) -> None:
    response = post_on_commit(admin_client, url(GENERIC, "confirm", previewed), follow=True)
    assert response.redirect_chain == [(url(GENERIC, "change", previewed), 302)]
    assert page_messages(response) == [
        "The import of “stock.csv” was confirmed; its rows are being written."
    ]
    previewed.refresh_from_db()
    assert (previewed.state, previewed.imported_rows) == (JobState.IMPORT_SUCCEEDED, 10)
    assert StockRecord.objects.count() == 10
    content = text(response)
    assert "Import succeeded" in content
    assert "Confirm Import" not in content
    _header, events = table(response, "job-events")
    assert [e[2] for e in events] == ["Preview succeeded", "Import in progress", "Import succeeded"]


def test_confirm_in_a_wrong_state_is_refused_naming_the_rule(
    admin_client: Client, previewed: ImportJob, post_on_commit: Callable
) -> None:
    confirm = url(GENERIC, "confirm", previewed)
    post_on_commit(admin_client, confirm, follow=True)
    response = post_on_commit(admin_client, confirm, follow=True)
    assert page_messages(response) == [
        "The job is import succeeded; only a job whose preview succeeded can be imported."
    ]
    assert StockRecord.objects.count() == 10


def test_confirm_is_refused_while_another_import_of_the_target_runs(
    admin_client: Client, importing: ImportJob, upload: Callable, post_on_commit: Callable
) -> None:
    other = job_of(upload(admin_client, HEADER + csv_rows(3, start=50), importer=UPSERT))
    content = text(admin_client.get(url(GENERIC, "change", other)))
    assert "Another import into stock records is running" in content

    response = post_on_commit(admin_client, url(GENERIC, "confirm", other), follow=True)
    [message] = page_messages(response)
    assert message.startswith("Another import into stock records is running")
    other.refresh_from_db()
    assert other.state == JobState.PREVIEW_SUCCEEDED


def test_confirm_and_resume_accept_only_post(admin_client: Client, previewed: ImportJob) -> None:
    for action in ("confirm", "resume"):
        response = admin_client.get(url(GENERIC, action, previewed))
        assert response.status_code == 405
        assert response["Allow"] == "POST"
    previewed.refresh_from_db()
    assert previewed.state == JobState.PREVIEW_SUCCEEDED


def test_the_preview_page_cannot_be_saved(admin_client: Client, previewed: ImportJob) -> None:
    page = text(admin_client.get(url(GENERIC, "change", previewed)))
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page
    form = re.search(r'<form [^>]*id="importjob_form".*?</form>', page, re.S)
    assert form
    controls = re.findall(r"<(?:input|select|textarea)\b[^>]*>", form.group(0))
    assert all('name="csrfmiddlewaretoken"' in control for control in controls), controls
    response = admin_client.post(url(GENERIC, "change", previewed), {"state": "IMPORT_SUCCEEDED"})
    assert response.status_code == 405
    previewed.refresh_from_db()
    assert previewed.state == JobState.PREVIEW_SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_an_import_failed_by_a_fault_can_be_resumed(
    admin_client: Client, previewed: ImportJob, post_on_commit: Callable, settings: Any
) -> None:
    settings.DATA_EXCHANGE_FAULT_HOOKS = f"{__name__}.FailChunkOnce"
    FailChunkOnce.armed = True
    post_on_commit(admin_client, url(GENERIC, "confirm", previewed))
    previewed.refresh_from_db()
    assert (previewed.state, previewed.failure_kind) == (JobState.IMPORT_FAILED, FailureKind.FAULT)
    assert previewed.imported_rows == 7

    page = text(admin_client.get(url(GENERIC, "change", previewed)))
    assert "Resume the import to write them." in page
    assert f'<form method="post" action="{url(GENERIC, "resume", previewed)}">' in page

    response = post_on_commit(admin_client, url(GENERIC, "resume", previewed), follow=True)
    assert page_messages(response) == [
        "The import of “stock.csv” was resumed; its remaining rows are being written."
    ]
    previewed.refresh_from_db()
    assert (previewed.state, previewed.imported_rows) == (JobState.IMPORT_SUCCEEDED, 10)
    assert StockRecord.objects.count() == 10


def test_resume_of_a_job_that_did_not_fail_is_refused(
    admin_client: Client, previewed: ImportJob, post_on_commit: Callable
) -> None:
    response = post_on_commit(admin_client, url(GENERIC, "resume", previewed), follow=True)
    assert page_messages(response) == [
        "Only an import that failed by a fault (not by bad data) can be resumed."
    ]


# -- the list ----------------------------------------------------------------------------------


def test_changelist_columns_filters_and_search(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    good = job_of(upload(admin_client, HEADER + csv_rows(3), name="good.csv"))
    bad = job_of(upload(admin_client, "sku\nX\n", name="bad.csv", importer=UPSERT))
    changelist = url(GENERIC, "changelist")

    response = admin_client.get(changelist)
    assert [job.pk for job in response.context["cl"].result_list] == [bad.pk, good.pk]
    assert [str(h["text"]).capitalize() for h in result_headers(response.context["cl"])] == [
        "File name",
        "Target",
        "State",
        "Rows",
        "Valid rows",
        "Invalid rows",
        "Imported rows",
        "Progress",
        "Size",
        "Created by",
        "Created",
    ]
    content = text(response)
    assert '<span class="dxt-state dxt-state--ready">Preview succeeded</span>' in content
    assert '<span class="dxt-state dxt-state--failed">Preview failed</span>' in content
    assert '<td class="field-target">Stock record</td>' in content
    assert 'name="action"' not in content, "no bulk actions (no bulk delete)"
    assert f'<a href="{url(GENERIC, "add")}" class="addlink">Upload a file</a>' in content

    def listed(**query: str) -> list[str]:
        result = admin_client.get(changelist, query).context["cl"].result_list
        return [job.original_name for job in result]

    assert listed(state__exact=JobState.PREVIEW_FAILED) == ["bad.csv"]
    assert listed(importer=IMPORTER) == ["good.csv"]
    assert listed(q="good") == ["good.csv"]
    assert f'href="?importer={UPSERT}"' in content
    assert "Stock record (stock record upsert import job)" in content


# -- deleting -------------------------------------------------------------------------------------


def test_the_page_of_a_running_import_refreshes_itself(
    admin_client: Client, importing: ImportJob
) -> None:
    page = text(admin_client.get(url(GENERIC, "change", importing)))
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "The import is running" in page
    assert "Confirm Import" not in page


def test_an_importing_job_cannot_be_deleted(admin_client: Client, importing: ImportJob) -> None:
    assert admin_client.get(url(GENERIC, "delete", importing)).status_code == 403
    assert admin_client.post(url(GENERIC, "delete", importing), {"post": "yes"}).status_code == 403
    assert "deletelink" not in text(admin_client.get(url(GENERIC, "change", importing)))


def test_a_finished_job_is_deleted_with_its_errors(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    job = job_of(upload(admin_client, HEADER + csv_rows(3) + BAD_ROWS))
    confirmation = text(admin_client.get(url(GENERIC, "delete", job)))
    assert "row errors: 3" in confirmation.lower()
    response = admin_client.post(url(GENERIC, "delete", job), {"post": "yes"})
    assert response.status_code == 302
    assert not ImportJob.objects.filter(pk=job.pk).exists()


# -- permissions ------------------------------------------------------------------------------


def test_a_view_only_user_sees_the_preview_but_cannot_confirm(
    staff_client: Callable[..., Client], previewed: ImportJob, post_on_commit: Callable
) -> None:
    client = staff_client("data_exchange_tool.view_importjob")
    page = client.get(url(GENERIC, "change", previewed))
    assert page.status_code == 200
    content = text(page)
    assert "SKU00000" in content
    assert "Confirm Import" not in content
    assert url(GENERIC, "confirm", previewed) not in content
    assert post_on_commit(client, url(GENERIC, "confirm", previewed)).status_code == 403
    assert client.get(url(GENERIC, "add")).status_code == 403
    previewed.refresh_from_db()
    assert previewed.state == JobState.PREVIEW_SUCCEEDED


@pytest.mark.parametrize(
    ("perms", "status"),
    [
        (("view_importjob", "change_importjob"), 403),
        (("view_importjob", "confirm_importjob"), 403),
        (("change_importjob", "confirm_importjob"), 302),
    ],
)
def test_confirm_needs_the_change_and_the_confirm_permission(
    staff_client: Callable[..., Client],
    previewed: ImportJob,
    post_on_commit: Callable,
    perms: tuple[str, ...],
    status: int,
) -> None:
    client = staff_client(*(f"data_exchange_tool.{p}" for p in perms))
    shows_button = 'value="Confirm Import"' in text(client.get(url(GENERIC, "change", previewed)))
    assert shows_button is (status == 302)
    assert post_on_commit(client, url(GENERIC, "confirm", previewed)).status_code == status
    previewed.refresh_from_db()
    expected = JobState.IMPORT_SUCCEEDED if status == 302 else JobState.PREVIEW_SUCCEEDED
    assert previewed.state == expected


def test_without_view_permission_on_a_proxy_its_jobs_are_hidden(
    admin_client: Client,
    staff_client: Callable[..., Client],
    partners: list[Partner],
    upload: Callable,
) -> None:
    job = job_of(upload(admin_client, HEADER + csv_rows(3), admin_name=PROXY))
    client = staff_client("testapp.view_stockrecordupsertimportjob")
    for path in (
        url(PROXY, "changelist"),
        url(PROXY, "change", job),
        url(GENERIC, "changelist"),
        url(GENERIC, "change", job),
    ):
        assert client.get(path).status_code == 403, path
    assert client.post(url(PROXY, "confirm", job)).status_code == 403

    # The proxy the user may view does not list the job, nor show it.
    assert list(client.get(url(UPSERT_PROXY, "changelist")).context["cl"].result_list) == []
    response = client.get(url(UPSERT_PROXY, "change", job))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_a_proxy_admin_lists_its_own_jobs_and_uploads_without_a_target(
    admin_client: Client, partners: list[Partner], upload: Callable
) -> None:
    form = admin_client.get(url(PROXY, "add"))
    assert form.status_code == 200
    assert 'name="importer"' not in text(form)
    assert "Upload a file to import into stock records" in text(form)

    response = upload(admin_client, HEADER + csv_rows(3), admin_name=PROXY, name="new.csv")
    job = job_of(response)
    assert response["Location"] == url(PROXY, "change", job)
    assert (job.importer, job.state) == (IMPORTER, JobState.PREVIEW_SUCCEEDED)
    upload(admin_client, HEADER + csv_rows(3), admin_name=UPSERT_PROXY, name="upsert.csv")
    upload(admin_client, HEADER + csv_rows(3), importer=UPSERT, name="generic.csv")

    def listed(admin_name: str) -> set[str]:
        response = admin_client.get(url(admin_name, "changelist"))
        return {job.original_name for job in response.context["cl"].result_list}

    assert listed(PROXY) == {"new.csv"}
    assert listed(UPSERT_PROXY) == {"upsert.csv", "generic.csv"}
    assert listed(GENERIC) == {"new.csv", "upsert.csv", "generic.csv"}
    page = text(admin_client.get(url(PROXY, "change", job)))
    assert f'action="{url(PROXY, "confirm", job)}"' in page
    history = admin_client.get(url(PROXY, "history", job))
    assert [entry.get_change_message() for entry in history.context["action_list"]] == ["Added."]


def test_a_proxy_admin_for_a_model_that_is_no_importer_fails_its_check() -> None:
    errors = GenericImporterModelAdmin(ImportJob, AdminSite()).check()
    assert [e.id for e in errors] == ["data_exchange_tool.E101"]
    assert not StockRecordNewImporterAdmin(StockRecordImportJob, AdminSite()).check()


def test_a_proxy_admin_uses_the_proxys_permissions(
    staff_client: Callable[..., Client],
    partners: list[Partner],
    upload: Callable,
    post_on_commit: Callable,
) -> None:
    uploader = staff_client("testapp.add_stockrecordimportjob", "testapp.view_stockrecordimportjob")
    job = job_of(upload(uploader, HEADER + csv_rows(3), admin_name=PROXY))
    assert job.state == JobState.PREVIEW_SUCCEEDED
    assert uploader.get(url(GENERIC, "add")).status_code == 403
    assert uploader.get(url(UPSERT_PROXY, "add")).status_code == 403
    assert uploader.post(url(PROXY, "confirm", job)).status_code == 403

    confirmer = staff_client(
        "testapp.change_stockrecordimportjob", "data_exchange_tool.confirm_importjob"
    )
    assert 'value="Confirm Import"' in text(confirmer.get(url(PROXY, "change", job)))
    assert post_on_commit(confirmer, url(PROXY, "confirm", job)).status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_SUCCEEDED
    assert StockRecord.objects.count() == 3


# -- packaging ----------------------------------------------------------------------------------


def test_the_admin_loads_no_heavy_module() -> None:
    code = (
        "import sys, django; django.setup(); import data_exchange_tool.admin; "
        "print(sorted({'pyarrow', 'boto3', 'openpyxl'} & set(sys.modules)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# -- live progress, the list's filters, the phase times ------------------------------------------


@pytest.fixture
def importing_three_chunks(
    admin_client: Client,
    partners: list[Partner],
    upload: Callable,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> Iterator[ImportJob]:
    """A confirmed 250-row job (chunks of 100) whose import has written its first chunk only;
    the rest runs at teardown."""
    settings.DATA_EXCHANGE_CHUNK_SIZE = 100
    job = job_of(upload(admin_client, HEADER + csv_rows(250)))
    with django_capture_on_commit_callbacks() as queued:  # the import is queued, not run
        admin_client.post(url(GENERIC, "confirm", job))
    job.refresh_from_db()
    assert job.state == JobState.IMPORT_IN_PROGRESS
    first = job.chunks.get(index=0)
    first.import_state = ChunkState.DONE
    first.settled_at = timezone.now()
    first.save(update_fields=["import_state", "settled_at"])
    yield job
    with django_capture_on_commit_callbacks(execute=True):
        for callback in queued:
            callback()


def test_a_running_import_shows_its_progress_live_from_the_status_view(
    admin_client: Client, importing_three_chunks: ImportJob
) -> None:
    job = importing_three_chunks
    page = text(admin_client.get(url(GENERIC, "change", job)))
    assert re.search(r'<progress id="dx-progress"[^>]* max="250" value="100"', page)
    assert "100 of 250 rows · 1 of 3 chunks" in page
    # The page polls the status view instead of reloading itself every 5 seconds.
    assert f'data-url="{url(GENERIC, "status", job)}"' in page
    assert '<noscript><meta http-equiv="refresh"' in page

    status = admin_client.get(url(GENERIC, "status", job))
    assert status["Content-Type"] == "application/json"
    data = status.json()
    assert (data["state"], data["phase"], data["running"]) == (
        "IMPORT_IN_PROGRESS",
        "import",
        True,
    )
    assert (data["rows_done"], data["rows_total"]) == (100, 250)
    assert (data["chunks_done"], data["chunks_total"]) == (1, 3)
    assert data["rows_per_second"] > 0
    assert data["seconds_left"] >= 0
    assert data["text"].startswith("100 of 250 rows · 1 of 3 chunks · ")
    assert " rows/s · about " in data["text"]

    # A second chunk settles: the next poll says so.
    job.chunks.filter(index=1).update(import_state=ChunkState.DONE, settled_at=timezone.now())
    assert admin_client.get(url(GENERIC, "status", job)).json()["rows_done"] == 200

    # The list of jobs shows the same progress for the running job.
    listing = text(admin_client.get(url(GENERIC, "changelist")))
    assert "200 of 250 rows · 2 of 3 chunks" in listing


def test_the_status_view_needs_the_view_permission_of_the_job(
    importing_three_chunks: ImportJob, staff_client: Callable[..., Client]
) -> None:
    job = importing_three_chunks
    assert staff_client().get(url(GENERIC, "status", job)).status_code == 403
    viewer = staff_client("data_exchange_tool.view_importjob")
    assert viewer.get(url(GENERIC, "status", job)).json()["rows_done"] == 100


def test_a_finished_preview_reports_its_totals_and_no_rate(
    admin_client: Client, previewed: ImportJob
) -> None:
    data = admin_client.get(url(GENERIC, "status", previewed)).json()
    assert (data["state"], data["running"]) == ("PREVIEW_SUCCEEDED", False)
    assert (data["rows_done"], data["rows_total"], data["chunks_total"]) == (10, 10, 2)
    assert data["rows_per_second"] is None
    assert data["seconds_left"] is None


def test_the_list_filters_by_uploader_and_my_jobs(
    admin_client: Client,
    partners: list[Partner],
    upload: Callable,
    staff_client: Callable[..., Client],
) -> None:
    mine = job_of(upload(admin_client, HEADER + csv_rows(2), name="mine.csv"))
    other = staff_client(
        "data_exchange_tool.add_importjob",
        "data_exchange_tool.view_importjob",
        "data_exchange_tool.change_importjob",
    )
    theirs = job_of(upload(other, HEADER + csv_rows(2), name="theirs.csv"))

    def listed(client: Client, **query: str) -> set[str]:
        response = client.get(url(GENERIC, "changelist"), query)
        return {job.original_name for job in response.context["cl"].result_list}

    assert listed(admin_client) == {"mine.csv", "theirs.csv"}
    assert listed(admin_client, mine="1") == {"mine.csv"}
    assert listed(other, mine="1") == {"theirs.csv"}
    assert listed(admin_client, created_by__id__exact=str(theirs.created_by_id)) == {"theirs.csv"}
    page = text(admin_client.get(url(GENERIC, "changelist")))
    assert "My jobs" in page
    assert mine.created_by_id != theirs.created_by_id


def test_a_phase_that_never_ran_shows_no_times(
    admin_client: Client, previewed: ImportJob
) -> None:
    page = text(admin_client.get(url(GENERIC, "change", previewed)))
    assert "Preview finished at" in page or "preview finished at" in page.lower()
    assert "import started at" not in page.lower()
    assert "import finished at" not in page.lower()
