"""``preview_finished`` and ``import_finished``: sent once per ending, after the commit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from data_exchange_tool import signals
from data_exchange_tool.services import importing, transitions
from data_exchange_tool.states import JobState
from tests.test_flow import HEADER, confirm, csv_rows, preview
from tests.testapp.models import StockRecordImportJob

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _local_storage(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DATA_EXCHANGE_CHUNK_SIZE = 7


@pytest.fixture
def received() -> Iterator[list[tuple[str, Any, str, dict]]]:
    """Every signal sent while the test runs: (name, sender, state, counts)."""
    sent: list[tuple[str, Any, str, dict]] = []

    def on_preview(sender: Any, job: Any, state: str, counts: dict, **kwargs: Any) -> None:
        sent.append(("preview_finished", sender, state, counts))

    def on_import(sender: Any, job: Any, state: str, counts: dict, **kwargs: Any) -> None:
        assert job.state == state  # the receiver reads the committed job
        sent.append(("import_finished", sender, state, counts))

    signals.preview_finished.connect(on_preview, dispatch_uid="test-preview")
    signals.import_finished.connect(on_import, dispatch_uid="test-import")
    try:
        yield sent
    finally:
        signals.preview_finished.disconnect(dispatch_uid="test-preview")
        signals.import_finished.disconnect(dispatch_uid="test-import")


def test_each_phase_ending_is_sent_once_with_the_importer_and_counts(
    run_on_commit: Any, partner: Any, received: list
) -> None:
    job = preview(run_on_commit, HEADER + csv_rows(20))
    assert received == [
        (
            "preview_finished",
            StockRecordImportJob,
            JobState.PREVIEW_SUCCEEDED,
            {"total_rows": 20, "valid_rows": 20, "invalid_rows": 0, "imported_rows": None},
        )
    ]
    confirm(run_on_commit, job)
    assert received[1:] == [
        (
            "import_finished",
            StockRecordImportJob,
            JobState.IMPORT_SUCCEEDED,
            {"total_rows": 20, "valid_rows": 20, "invalid_rows": 0, "imported_rows": 20},
        )
    ]


def test_a_failed_preview_is_sent_with_its_state(
    run_on_commit: Any, partner: Any, received: list
) -> None:
    preview(run_on_commit, "sku\nX\n")  # the required columns are missing
    assert [(name, state) for name, _, state, _ in received] == [
        ("preview_finished", JobState.PREVIEW_FAILED)
    ]


def test_a_second_reducer_of_an_ended_job_sends_nothing(
    run_on_commit: Any, partner: Any, received: list
) -> None:
    job = confirm(run_on_commit, preview(run_on_commit, HEADER + csv_rows(3)))
    assert len(received) == 2
    # A duplicate reducer (a redelivered message) finds the job ended and moves nothing.
    assert not run_on_commit(transitions.move, job.pk, JobState.IMPORT_SUCCEEDED)
    run_on_commit(importing.finalize_import, job.pk, job.fence)
    assert len(received) == 2


def test_an_ending_rolled_back_sends_nothing(
    run_on_commit: Any, partner: Any, received: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = preview(run_on_commit, HEADER + csv_rows(3))
    received.clear()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        transitions.move(job.pk, JobState.IMPORT_IN_PROGRESS)
        transitions.move(job.pk, JobState.IMPORT_FAILED)
        raise RuntimeError("rolled back")
    assert received == []
