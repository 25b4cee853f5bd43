"""Services: the only code that moves jobs between states and does their work.

Entry points for admin, API and commands: :func:`create_job`, :func:`confirm_import`,
:func:`confirm_refusals`, :func:`resume_import`, :func:`cancel_job`, :func:`delete_job`; the
guards :func:`can_confirm`, :func:`can_resume`, :func:`can_cancel`, :func:`can_delete` say
whether each is allowed now (a :class:`Verdict`). Workflow tasks call :mod:`.preview`,
:mod:`.importing` and :mod:`.reconcile`, and :func:`record_chunk_fault` when a chunk's task
gives up on a fault.
"""

from .chunk_ledger import record_fault as record_chunk_fault
from .jobs import (
    cancel_job,
    confirm_import,
    confirm_refusals,
    create_job,
    delete_job,
    resume_import,
)
from .transitions import Verdict, can_cancel, can_confirm, can_delete, can_resume

__all__ = [
    "Verdict",
    "can_cancel",
    "can_confirm",
    "can_delete",
    "can_resume",
    "cancel_job",
    "confirm_import",
    "confirm_refusals",
    "create_job",
    "delete_job",
    "record_chunk_fault",
    "resume_import",
]
