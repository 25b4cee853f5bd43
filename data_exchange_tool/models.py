"""The job, its chunk ledger, its row errors and the audit of its state moves.

``ImportJob.state`` is assigned only by :mod:`data_exchange_tool.services.transitions`;
saving a job never starts work. This module imports only what lies below it: the states and
the importer registry.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from . import registry  # below the models: a table of importer options, no models imported
from .states import TERMINAL_STATES, ChunkState, FailureKind, JobState, Phase

if TYPE_CHECKING:
    from .options import ImporterOptions

__all__ = ["ImportChunk", "ImportJob", "JobEvent", "RowError"]


class ImportJobManager(models.Manager):
    """On an importer proxy, only that importer's jobs."""

    def get_queryset(self) -> models.QuerySet:
        qs = super().get_queryset()
        if getattr(self.model._meta, "target_model", None) is not None:
            qs = qs.filter(importer=self.model._meta.label)
        return qs


class ImportJob(models.Model):
    """One uploaded file on its way into a target model."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    importer = models.CharField(
        _("importer"), max_length=200, help_text=_("Label of the importer proxy model.")
    )
    content_type = models.ForeignKey(
        ContentType,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("target"),
        help_text=_("The model the rows are imported into."),
    )
    state = models.CharField(
        _("state"),
        max_length=32,
        choices=JobState.choices,
        default=JobState.CREATED,
        db_index=True,
        editable=False,
    )
    failure_kind = models.CharField(
        _("failure kind"), max_length=16, choices=FailureKind.choices, blank=True, editable=False
    )
    error_summary = models.TextField(_("error"), blank=True, editable=False)

    # The source file, pinned at upload.
    source_key = models.CharField(_("storage key"), max_length=500, editable=False)
    original_name = models.CharField(_("file name"), max_length=255, editable=False)
    file_format = models.CharField(_("format"), max_length=16, editable=False)
    file_size = models.BigIntegerField(_("size (bytes)"), default=0, editable=False)
    checksum = models.CharField(_("SHA-256"), max_length=64, blank=True, editable=False)
    source_etag = models.CharField(_("ETag"), max_length=200, blank=True, editable=False)

    # Reading options (blank: detected).
    encoding = models.CharField(_("encoding"), max_length=40, blank=True)
    delimiter = models.CharField(_("delimiter"), max_length=1, blank=True)
    sheet_name = models.CharField(_("sheet"), max_length=100, blank=True)

    # What the preview found.
    header = models.JSONField(_("header"), default=list, blank=True, editable=False)
    column_map = models.JSONField(
        _("column map"),
        default=dict,
        blank=True,
        editable=False,
        help_text=_("Serializer field → column as written in the file."),
    )
    ignored_columns = models.JSONField(
        _("ignored columns"),
        default=list,
        blank=True,
        editable=False,
        help_text=_("Columns of the file that match no field of the importer and are not read."),
    )
    detected_delimiter = models.CharField(max_length=1, blank=True, editable=False)
    chunk_count = models.PositiveIntegerField(_("chunks"), null=True, editable=False)
    total_rows = models.PositiveBigIntegerField(_("rows"), null=True, editable=False)
    valid_rows = models.PositiveBigIntegerField(_("valid rows"), null=True, editable=False)
    invalid_rows = models.PositiveBigIntegerField(_("invalid rows"), null=True, editable=False)
    imported_rows = models.PositiveBigIntegerField(_("imported rows"), null=True, editable=False)
    preview_sample = models.JSONField(default=list, blank=True, editable=False)

    # The import's hold on its target: the fencing number of the current attempt, and the
    # token of the Redis lock.
    fence = models.PositiveIntegerField(default=0, editable=False)
    lock_token = models.CharField(max_length=64, blank=True, editable=False)

    # Liveness, for the reconcile step: the last real progress (a state moved, a chunk stored
    # by the split; chunks settling count through ImportChunk.settled_at), the last time the
    # missing work was sent again (never progress), and split attempts whose worker died.
    progress_at = models.DateTimeField(null=True, blank=True, editable=False)
    resent_at = models.DateTimeField(null=True, blank=True, editable=False)
    unfinished_splits = models.PositiveIntegerField(
        default=0, editable=False, help_text="Split attempts begun and never ended."
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("created by"),
        editable=False,
    )
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("confirmed by"),
        editable=False,
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    preview_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    preview_finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    import_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    import_finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    files_removed_at = models.DateTimeField(
        _("files removed"),
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "When the stored source and chunks were removed (DATA_EXCHANGE_KEEP_FILES_FOR)."
        ),
    )

    objects = ImportJobManager()

    class Meta:
        verbose_name = _("import job")
        verbose_name_plural = _("import jobs")
        ordering = ("-created_at",)
        constraints = (
            models.UniqueConstraint(
                fields=("content_type",),
                condition=Q(state="IMPORT_IN_PROGRESS"),
                name="data_exchange_one_import_per_target",
            ),
        )
        permissions = (("confirm_importjob", "Can confirm an import"),)

    def __str__(self) -> str:
        return f"{self.original_name or self.pk} → {self.importer_verbose_name}"

    @property
    def importer_verbose_name(self) -> str:
        """The importer as people read it ("Customer import job"), never its label."""
        try:
            return str(capfirst(apps.get_model(self.importer)._meta.verbose_name))
        except (LookupError, ValueError):
            return self.importer

    @property
    def importer_options(self) -> ImporterOptions:
        return registry.get_importer(self.importer)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class ImportChunk(models.Model):
    """One fixed-size slice of a job's rows, stored as a Parquet file: the ledger entry."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    first_row = models.PositiveBigIntegerField(help_text="Spreadsheet row number of its first row.")
    row_count = models.PositiveIntegerField()
    storage_key = models.CharField(max_length=500)
    preview_state = models.CharField(
        max_length=16, choices=ChunkState.choices, default=ChunkState.PENDING
    )
    import_state = models.CharField(
        max_length=16, choices=ChunkState.choices, default=ChunkState.PENDING
    )
    valid_rows = models.PositiveIntegerField(null=True)
    invalid_rows = models.PositiveIntegerField(null=True)
    imported_rows = models.PositiveIntegerField(null=True)
    preview_attempts = models.PositiveIntegerField(default=0)
    import_attempts = models.PositiveIntegerField(default=0)
    import_fence = models.PositiveIntegerField(
        null=True, help_text="Fence the rows were written under."
    )
    last_error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, help_text="When its latest attempt began.")
    settled_at = models.DateTimeField(null=True, help_text="When it was last marked done/failed.")
    unfinished_attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts of the current phase begun and never ended."
    )
    key_hashes = models.BinaryField(
        null=True, editable=False, help_text="64-bit hashes of the valid rows' keys (preview)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("import chunk")
        ordering = ("job", "index")
        constraints = (
            models.UniqueConstraint(fields=("job", "index"), name="data_exchange_chunk_index"),
        )

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.job_id}"


class RowError(models.Model):
    """One problem with one cell (or a whole row), as the user sees it in the file."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    chunk = models.ForeignKey(
        ImportChunk, null=True, blank=True, on_delete=models.CASCADE, related_name="row_errors"
    )
    phase = models.CharField(max_length=16, choices=Phase.choices)
    row_number = models.PositiveBigIntegerField(help_text=_("Row as a spreadsheet shows it."))
    column = models.CharField(max_length=255, blank=True, help_text=_("Column as in the file."))
    field = models.CharField(max_length=255, blank=True)
    code = models.CharField(max_length=64, blank=True)
    message = models.TextField()
    value = models.TextField(blank=True)

    class Meta:
        verbose_name = _("row error")
        ordering = ("job", "row_number", "id")
        indexes = (
            models.Index(fields=("job", "phase", "row_number"), name="dxt_rowerror_job_row"),
        )

    def __str__(self) -> str:
        return f"row {self.row_number} {self.column}: {self.message}"


class JobEvent(models.Model):
    """The audit of a job's state moves: one row per move that happened."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=32, choices=JobState.choices)
    to_state = models.CharField(max_length=32, choices=JobState.choices)
    message = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("job event")
        ordering = ("job", "at", "id")

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state}"
