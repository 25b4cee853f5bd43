"""The import chord: one flat header task per chunk, and its reducer (fenced) as body.

The preview needs no chord: the split sends each chunk's validation as soon as the chunk is
stored, and whichever of the split and the chunks settles the preview last sends
``workflows.finalize_preview`` (see ``data_exchange_tool.services.preview``).
"""

from __future__ import annotations

from typing import Any

from celery import chord, signature

from data_exchange_tool import taskspec


def import_chord(job_id: str, fence: int, chunk_ids: list[int]) -> Any:
    chunk, reduce = taskspec.IMPORT_CHUNK, taskspec.FINALIZE_IMPORT
    header = [
        signature(chunk, args=(job_id, cid, fence), **taskspec.send_options(chunk))
        for cid in chunk_ids
    ]
    return chord(header, signature(reduce, args=(job_id, fence), **taskspec.send_options(reduce)))
