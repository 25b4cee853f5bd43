"""The import chord: one flat header task per chunk, and its reducer (fenced) as body.

The preview needs no chord: the split sends each chunk's validation as soon as the chunk is
stored, and whichever of the split and the chunks settles the preview last sends
``workflows.finalize_preview`` (see ``data_exchange_tool.services.preview``).
"""

from __future__ import annotations

from typing import Any

from celery import chord, signature

from data_exchange_tool import dispatch
from data_exchange_tool.conf import app_settings

_time_limits = dispatch.chunk_time_limits


def import_chord(job_id: str, fence: int, chunk_ids: list[int]) -> Any:
    queue = app_settings.IMPORT_QUEUE
    header = [
        signature(dispatch.IMPORT_CHUNK, args=(job_id, cid, fence), queue=queue, **_time_limits())
        for cid in chunk_ids
    ]
    reducer = signature(dispatch.FINALIZE_IMPORT, args=(job_id, fence), queue=queue)
    return chord(header, reducer)
