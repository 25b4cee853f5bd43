"""The REST API: what a client with, or without, each permission sees and can do."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from data_exchange_tool.models import ImportJob
from data_exchange_tool.states import JobState
from tests.testapp.models import StockRecord

IMPORTER = "testapp.StockRecordImportJob"
OTHER = "testapp.MemberImportJob"
HEADER = "sku,name,price,quantity,warehouse,active,updated_at,partner\n"
BASE = "/api/imports/jobs/"


def rows(n: int, bad: int = 0) -> bytes:
    good = "".join(
        f"SKU{i:05d},Item {i},{i}.50,{i % 7},W1,true,2024-01-02T03:04:05Z,P1\n" for i in range(n)
    )
    return (HEADER + good + "BAD,Bad,notaprice,1,W1,true,2024-01-02T03:04:05Z,P1\n" * bad).encode()


@pytest.fixture(autouse=True)
def _local_storage(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


def user_with(*codenames: str) -> APIClient:
    user = User.objects.create_user(f"u{User.objects.count()}", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))
    return client


ALL = (
    "view_stockrecordimportjob",
    "add_stockrecordimportjob",
    "change_stockrecordimportjob",
    "delete_stockrecordimportjob",
    "confirm_importjob",
)


def upload(client: APIClient, data: bytes, importer: str = IMPORTER, name: str = "s.csv"):
    f = io.BytesIO(data)
    f.name = name
    return client.post(BASE, {"importer": importer, "file": f}, format="multipart")


@pytest.mark.django_db
def test_full_flow_upload_preview_errors_confirm(partner, django_capture_on_commit_callbacks):
    client = user_with(*ALL)
    with django_capture_on_commit_callbacks(execute=True):
        created = upload(client, rows(10, bad=2))
    assert created.status_code == 201, created.content
    job_id = created.json()["id"]
    job = client.get(f"{BASE}{job_id}/").json()
    assert job["state"] == JobState.PREVIEW_SUCCEEDED
    assert (job["total_rows"], job["valid_rows"], job["invalid_rows"]) == (12, 10, 2)
    assert job["can_confirm"] is False  # invalid rows block Confirm
    errors = client.get(f"{BASE}{job_id}/errors/").json()
    assert errors["count"] >= 2 and errors["results"][0]["row_number"] == 12
    report = client.get(f"{BASE}{job_id}/errors.csv")
    assert report.status_code == 200 and b"notaprice" in b"".join(report.streaming_content)
    xlsx = client.get(f"{BASE}{job_id}/errors.xlsx")
    assert xlsx.status_code == 200 and b"".join(xlsx.streaming_content)[:2] == b"PK"
    refused = client.post(f"{BASE}{job_id}/confirm/")
    assert refused.status_code == 409 and refused.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        job_id = upload(client, rows(10)).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        confirmed = client.post(f"{BASE}{job_id}/confirm/")
    assert confirmed.status_code == 200, confirmed.content
    job = client.get(f"{BASE}{job_id}/").json()
    assert job["state"] == JobState.IMPORT_SUCCEEDED
    assert job["progress"] == {"settled_chunks": job["chunk_count"], "chunks": job["chunk_count"]}
    assert StockRecord.objects.count() == 10
    again = client.post(f"{BASE}{job_id}/confirm/")
    assert again.status_code == 409 and again.json()["detail"]


@pytest.mark.django_db
def test_upload_over_size_limit_is_400(settings):
    settings.DATA_EXCHANGE_MAX_FILE_BYTES = 50
    response = upload(user_with(*ALL), rows(10))
    assert response.status_code == 400
    assert "limit" in str(response.json())
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_anonymous_is_refused():
    assert APIClient().get(BASE).status_code in (401, 403)


@pytest.mark.django_db
def test_list_shows_only_importers_the_user_may_view(partner, run_on_commit):
    owner = user_with(*ALL)
    run_on_commit(upload, owner, rows(3))
    assert len(owner.get(BASE).json()["results"]) == 1
    stranger = user_with("view_memberimportjob")
    assert stranger.get(BASE).json()["results"] == []
    nobody = user_with()
    assert nobody.get(BASE).status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("missing", "method", "suffix"),
    [
        ("view_stockrecordimportjob", "get", ""),
        ("view_stockrecordimportjob", "get", "errors/"),
        ("view_stockrecordimportjob", "get", "errors.csv"),
        ("confirm_importjob", "post", "confirm/"),
        ("change_stockrecordimportjob", "post", "confirm/"),
        ("confirm_importjob", "post", "cancel/"),
        ("confirm_importjob", "post", "resume/"),
        ("delete_stockrecordimportjob", "delete", ""),
    ],
)
def test_each_permission_refusal_is_403(partner, run_on_commit, missing, method, suffix):
    job_id = run_on_commit(upload, user_with(*ALL), rows(3)).json()["id"]
    client = user_with(*(p for p in ALL if p != missing), "view_memberimportjob")
    response = getattr(client, method)(f"{BASE}{job_id}/{suffix}")
    assert response.status_code == 403
    assert ImportJob.objects.get(pk=job_id).state == JobState.PREVIEW_SUCCEEDED


@pytest.mark.django_db
def test_upload_without_add_permission_is_403():
    client = user_with(*(p for p in ALL if p != "add_stockrecordimportjob"))
    assert upload(client, rows(3)).status_code == 403
    assert not ImportJob.objects.exists()


@pytest.mark.django_db
def test_upload_for_unknown_importer_is_400():
    assert upload(user_with(*ALL), rows(3), importer="testapp.Nope").status_code == 400


@pytest.mark.django_db
def test_delete_with_permission_removes_job(partner, run_on_commit):
    client = user_with(*ALL)
    job_id = run_on_commit(upload, client, rows(3)).json()["id"]
    assert client.delete(f"{BASE}{job_id}/").status_code == 204
    assert not ImportJob.objects.filter(pk=job_id).exists()
