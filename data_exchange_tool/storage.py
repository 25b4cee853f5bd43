"""The only file I/O of the library: where sources and chunks are stored, and how they are read.

With ``MODEL_DATA_EXCHANGE_S3_BUCKET_NAME`` set, files go to that bucket through django-storages
(``S3Storage``, honouring the usual ``AWS_*`` settings such as ``AWS_S3_ENDPOINT_URL``), under
``MODEL_DATA_EXCHANGE_S3_BASE_PATH/<job id>/``. Unset, they go to the storage aliased
``"data_exchange"`` in ``STORAGES`` if the project defines one, else to a private folder
(``DATA_EXCHANGE_FILES_DIR``, by default ``data_exchange_private`` beside ``MEDIA_ROOT``) that
nothing serves, under the same prefix. Keys are always made here, never taken from an uploaded
name. Sources are read as a stream (smart-open for S3 and local files); nothing reads a whole
source into memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.signals import setting_changed
from django.dispatch import receiver

from .conf import app_settings, media_root
from .exceptions import SourceChanged
from .readers import EXTENSIONS

if TYPE_CHECKING:
    from uuid import UUID

HASH_BLOCK = 1024 * 1024
STORAGE_ALIAS = "data_exchange"  # the STORAGES alias a project may define for import files
PRIVATE_DIR_NAME = "data_exchange_private"
SOURCE_EXTENSIONS = {ext.removeprefix(".") for ext in EXTENSIONS} | {"gz"}


@dataclass(frozen=True)
class StoredSource:
    """What was recorded about a source at upload, to pin it for later reads."""

    key: str
    size: int
    checksum: str
    etag: str


class ImportStorage:
    """Sources and chunks of import jobs, in one storage, under one key prefix."""

    def __init__(self, storage: Storage, prefix: str, bucket: str | None) -> None:
        self.storage = storage
        self.prefix = prefix
        self.bucket = bucket

    # keys -------------------------------------------------------------------------------

    def job_key(self, job_id: UUID | str, name: str) -> str:
        return f"{self.prefix}{job_id}/{name}"

    def source_key(self, job_id: UUID | str, original_name: str) -> str:
        return self.job_key(job_id, f"source.{source_extension(original_name)}")

    def chunk_key(self, job_id: UUID | str, index: int) -> str:
        return self.job_key(job_id, f"chunks/{index:06d}.parquet")

    # writes -----------------------------------------------------------------------------

    def save_source(
        self, job_id: UUID | str, original_name: str, upload: IO[bytes]
    ) -> StoredSource:
        """Store an uploaded file under a key made from the job id; hash it on the way."""
        key = self.source_key(job_id, original_name)
        digest, size = _hash_file(upload)
        self._put(key, File(upload))
        return StoredSource(key=key, size=size, checksum=digest, etag=self._etag(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        self._put(key, ContentFile(data))

    def _put(self, key: str, content: File) -> None:
        if self.bucket is None and self.storage.exists(key):
            self.storage.delete(key)  # a re-run rewrites its own chunk
        saved = self.storage.save(key, content)
        if saved != key:
            raise RuntimeError(f"Storage saved {key!r} as {saved!r}; keys must be kept as made.")

    # reads ------------------------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes:
        """Read a small object (a chunk) whole."""
        with self.storage.open(key, "rb") as fh:
            return fh.read()

    def open_source(self, key: str, *, size: int | None = None, etag: str = "") -> IO[bytes]:
        """Open a source as a binary stream, refusing it if it changed since upload."""
        if self.bucket is not None:
            return self._open_s3(key, size=size, etag=etag)
        if isinstance(self.storage, FileSystemStorage):
            import smart_open

            path = self.storage.path(key)
            self.verify_source(key, size=size, etag=etag)
            return smart_open.open(path, "rb", compression="disable")
        return self.storage.open(key, "rb")

    def verify_source(self, key: str, *, size: int | None = None, etag: str = "") -> None:
        """Raise :class:`SourceChanged` if the stored source's size or ETag is not the recorded
        one (or the source is gone)."""
        if self.bucket is not None:
            self._head_s3(key, size=size, etag=etag)
            return
        try:
            stored_size = self.storage.size(key)
        except FileNotFoundError:
            raise SourceChanged(_changed_message(key)) from None
        if size is not None and stored_size != size:
            raise SourceChanged(_changed_message(key))

    def _head_s3(self, key: str, *, size: int | None, etag: str) -> None:
        from botocore.exceptions import ClientError

        try:
            head = self._s3_client().head_object(Bucket=self.bucket, Key=self._s3_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise SourceChanged(_changed_message(key)) from None
            raise
        if (size is not None and head["ContentLength"] != size) or (etag and head["ETag"] != etag):
            raise SourceChanged(_changed_message(key))

    def _open_s3(self, key: str, *, size: int | None, etag: str) -> IO[bytes]:
        import smart_open

        client = self._s3_client()
        full_key = self._s3_key(key)
        self._head_s3(key, size=size, etag=etag)
        return smart_open.open(
            f"s3://{self.bucket}/{full_key}",
            "rb",
            compression="disable",
            transport_params={"client": client},
        )

    def delete_job_files(self, job_id: UUID | str, source_key: str = "") -> None:
        """Remove a job's chunks and source. Missing files are not an error."""
        chunks_dir = self.job_key(job_id, "chunks")
        try:
            _dirs, files = self.storage.listdir(chunks_dir)
        except (FileNotFoundError, NotImplementedError):
            files = []
        for name in files:
            self.storage.delete(f"{chunks_dir}/{name}")
        if source_key:
            self.storage.delete(source_key)
        if isinstance(self.storage, FileSystemStorage):
            self._remove_empty_dirs(chunks_dir, self.job_key(job_id, ""))

    def _remove_empty_dirs(self, *keys: str) -> None:
        for key in keys:
            with contextlib.suppress(OSError):
                Path(self.storage.path(key.rstrip("/"))).rmdir()

    # S3 details -------------------------------------------------------------------------

    def _s3_client(self) -> Any:
        return self.storage.connection.meta.client  # type: ignore[attr-defined]

    def _s3_key(self, key: str) -> str:
        return self.storage._normalize_name(key)  # type: ignore[attr-defined]

    def _etag(self, key: str) -> str:
        if self.bucket is None:
            return ""
        return self._s3_client().head_object(Bucket=self.bucket, Key=self._s3_key(key))["ETag"]


def _changed_message(key: str) -> str:
    return (
        f"The stored file {key} changed after it was uploaded; refusing to import a file "
        "other than the one previewed. Upload it again as a new job."
    )


def _hash_file(upload: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    upload.seek(0)
    while block := upload.read(HASH_BLOCK):
        digest.update(block)
        size += len(block)
    upload.seek(0)
    return digest.hexdigest(), size


def source_extension(original_name: str) -> str:
    """The extension used in the server-made key: a known one, else ``bin``."""
    name = original_name.lower()
    if name.endswith(".csv.gz"):
        return "csv.gz"
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    return ext if ext in SOURCE_EXTENSIONS else "bin"


_UNSAFE = re.compile(r"[^\w.\- ()]+")


def display_name(name: str, max_length: int = 200) -> str:
    """A user's file name made safe to store and show: no path, no control or bidi characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip(" .") or "upload"
    if len(name) > max_length:
        _stem, dot, ext = name.rpartition(".")
        keep = ("." + ext) if dot and len(ext) <= 10 else ""
        name = name[: max_length - len(keep)] + keep
    return name


class PrivateStorage(FileSystemStorage):
    """A folder whose files have no URL: import files are read by the library only."""

    def url(self, name: str | None) -> str:
        raise ValueError("Import files are private: they are not served and have no URL.")


def private_location() -> Path:
    """The folder of the private storage: ``DATA_EXCHANGE_FILES_DIR``, else
    ``data_exchange_private`` beside ``MEDIA_ROOT`` (in the working directory without one)."""
    if app_settings.FILES_DIR:
        return Path(app_settings.FILES_DIR).resolve()
    media = media_root()
    base = Path(media).resolve().parent if media else Path.cwd()
    return base / PRIVATE_DIR_NAME


def storage_alias_defined() -> bool:
    return STORAGE_ALIAS in storages.backends


_cached: ImportStorage | None = None


def import_storage() -> ImportStorage:
    """The import storage for the current settings."""
    global _cached
    if _cached is None:
        _cached = _build_storage()
    return _cached


def _build_storage() -> ImportStorage:
    bucket = app_settings.S3_BUCKET_NAME
    base = (app_settings.S3_BASE_PATH or "").strip("/")
    if bucket:
        try:
            from storages.backends.s3 import S3Storage
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError(
                "MODEL_DATA_EXCHANGE_S3_BUCKET_NAME is set but django-storages[s3] is not "
                "installed: pip install 'django-storages[s3]' boto3"
            ) from exc
        storage = S3Storage(bucket_name=bucket, location=base, file_overwrite=True)
        return ImportStorage(storage, prefix="", bucket=bucket)
    if storage_alias_defined():
        storage = storages[STORAGE_ALIAS]
    else:
        storage = PrivateStorage(location=private_location())
    return ImportStorage(storage, prefix=f"{base}/" if base else "", bucket=None)


@receiver(setting_changed)
def _reset_storage(*, setting: str, **kwargs: object) -> None:
    global _cached
    if setting.startswith(("AWS_", "MODEL_DATA_EXCHANGE_", "STORAGES", "MEDIA_ROOT")) or (
        setting == "DATA_EXCHANGE_FILES_DIR"
    ):
        _cached = None
