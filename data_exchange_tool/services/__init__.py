"""Services: the only code that moves jobs between states and does their work.

Entry points for admin, API and commands: :func:`create_job`, :func:`confirm_import`,
:func:`confirm_refusals`, :func:`resume_import`, :func:`cancel_job`, :func:`delete_job`.
Workflow tasks call :mod:`.preview`, :mod:`.importing` and :mod:`.reconcile`, and
:func:`record_chunk_fault` when a chunk's task gives up on a fault.
"""

from .chunk_work import record_fault as record_chunk_fault
from .jobs import (
    cancel_job,
    confirm_import,
    confirm_refusals,
    create_job,
    delete_job,
    resume_import,
)

__all__ = [
    "cancel_job",
    "confirm_import",
    "confirm_refusals",
    "create_job",
    "delete_job",
    "record_chunk_fault",
    "resume_import",
]
