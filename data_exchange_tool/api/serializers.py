"""What the API shows of a job and of its row errors."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..models import ImportJob, RowError
from ..services import transitions
from ..states import ChunkState, JobState


class ImportJobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    can_confirm = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = (
            "id", "importer", "state", "failure_kind", "error_summary", "original_name",
            "file_format", "file_size", "chunk_count", "total_rows", "valid_rows",
            "invalid_rows", "imported_rows", "created_at", "updated_at", "progress",
            "can_confirm",
        )  # fmt: skip
        read_only_fields = fields

    def get_progress(self, job: ImportJob) -> dict[str, Any]:
        """Chunks settled in the current phase, out of the job's chunks."""
        field = "import_state" if job.state != JobState.CREATED else "preview_state"
        settled = job.chunks.exclude(**{field: ChunkState.PENDING}).count()
        return {"settled_chunks": settled, "chunks": job.chunk_count or 0}

    def get_can_confirm(self, job: ImportJob) -> bool:
        return bool(transitions.can_confirm(job))


class RowErrorSerializer(serializers.ModelSerializer):
    class Meta:
        model = RowError
        fields = ("row_number", "column", "message", "value", "phase")
        read_only_fields = fields
