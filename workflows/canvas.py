"""The chords: one flat header task per chunk, and a reducer as body."""

from __future__ import annotations

from typing import Any

from celery import chord, signature

from data_exchange_tool import dispatch
from data_exchange_tool.conf import app_settings


def _time_limits() -> dict[str, int]:
    soft = int(app_settings.CHUNK_TIME_LIMIT)
    return {"soft_time_limit": soft, "time_limit": soft + 30}


def preview_chord(job_id: str, chunk_ids: list[int]) -> Any:
    queue = app_settings.PREVIEW_QUEUE
    header = [
        signature(dispatch.VALIDATE_CHUNK, args=(job_id, cid), queue=queue, **_time_limits())
        for cid in chunk_ids
    ]
    return chord(header, signature("workflows.finalize_preview", args=(job_id,), queue=queue))


def import_chord(job_id: str, fence: int, chunk_ids: list[int]) -> Any:
    queue = app_settings.IMPORT_QUEUE
    header = [
        signature(dispatch.IMPORT_CHUNK, args=(job_id, cid, fence), queue=queue, **_time_limits())
        for cid in chunk_ids
    ]
    return chord(header, signature("workflows.finalize_import", args=(job_id,), queue=queue))
