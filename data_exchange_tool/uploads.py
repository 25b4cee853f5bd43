"""The upload size limit, enforced while the request body streams in.

Django stores an uploaded file (in memory, then in a temporary file) before any view or form
sees it, so a limit checked on the finished upload lets a too-big body fill the disk first.
:class:`MaxSizeUploadHandler` stands first among the request's upload handlers: it refuses a
body whose declared length is already beyond the limit before reading the file, and stops the
upload as soon as the file's bytes pass the limit, before the handlers behind it store them.
"""

from __future__ import annotations

from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest
from django.utils.translation import gettext as _

#: Room left in the declared body length for the form's other fields and the multipart framing.
FORM_BYTES_MARGIN = 64 * 1024


class MaxSizeUploadHandler(FileUploadHandler):
    """Stop an upload whose file is larger than ``limit`` bytes; ``refused`` says it did.

    The rest of the body is not read (``StopUpload(connection_reset=True)``): the view answers
    with the form error at once. Fields sent after the file are lost with it.
    """

    def __init__(self, request: HttpRequest | None = None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.refused = False
        self.declared_too_big = False

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: bytes,
        encoding: str | None = None,
    ) -> None:
        self.declared_too_big = content_length > self.limit + FORM_BYTES_MARGIN

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if self.declared_too_big:
            self._refuse()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self._refuse()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the handlers behind this one make the file

    def _refuse(self) -> None:
        self.refused = True
        raise StopUpload(connection_reset=True)

    def refusal(self) -> str:
        """The form error for a refused upload."""
        return _(
            "The file is larger than the upload limit of %(limit)s bytes; nothing was stored."
        ) % {"limit": f"{self.limit:,}"}


def limit_uploads(request: HttpRequest, limit: int) -> MaxSizeUploadHandler:
    """Put a size-limiting handler first among ``request``'s upload handlers.

    Call it before anything reads ``request.POST`` or ``request.FILES``.
    """
    handler = MaxSizeUploadHandler(request, limit=limit)
    request.upload_handlers.insert(0, handler)
    return handler


def refused_upload(request: HttpRequest) -> str:
    """The form error of an upload the limit stopped, or empty."""
    for handler in getattr(request, "upload_handlers", ()):
        if isinstance(handler, MaxSizeUploadHandler) and handler.refused:
            return handler.refusal()
    return ""
