"""Every setting of django-data-exchange-tool, with its default, in one place.

This is the only module that reads ``django.conf.settings`` for the library. Other modules use
``from data_exchange_tool.conf import app_settings`` and read attributes::

    app_settings.CHUNK_SIZE
    app_settings.PREVIEW_QUEUE

Values are read lazily and cached; the cache is reset on Django's ``setting_changed`` signal,
so ``override_settings`` works in tests. Names are given without their prefix here; in a
project's settings they are spelled with it (``DATA_EXCHANGE_CHUNK_SIZE``). The two storage
settings keep the ``MODEL_DATA_EXCHANGE_`` prefix of earlier releases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class Setting:
    """One setting: its full name in the project's settings and its default."""

    name: str
    default: Any


__all__ = ["SETTINGS", "Setting", "app_settings"]

SHARED_QUEUE = "data_exchange_shared_queue"

SETTINGS: dict[str, Setting] = {
    s.name.removeprefix("MODEL_DATA_EXCHANGE_").removeprefix("DATA_EXCHANGE_"): s
    for s in (
        # Storage: a bucket name switches the import storage to S3 (django-storages).
        Setting("MODEL_DATA_EXCHANGE_S3_BUCKET_NAME", None),
        Setting("MODEL_DATA_EXCHANGE_S3_BASE_PATH", "data_exchange"),
        # Without a bucket or a STORAGES["data_exchange"] alias: the private folder of the
        # files. None: "data_exchange_private" beside MEDIA_ROOT.
        Setting("DATA_EXCHANGE_FILES_DIR", None),
        # Seconds the stored files of a finished job are kept; None: forever.
        Setting("DATA_EXCHANGE_KEEP_FILES_FOR", 30 * 24 * 3600),
        # Celery queues for the two phases.
        Setting("DATA_EXCHANGE_PREVIEW_QUEUE", SHARED_QUEUE),
        Setting("DATA_EXCHANGE_IMPORT_QUEUE", SHARED_QUEUE),
        # Rows per chunk (an importer's Meta.chunk_size wins).
        Setting("DATA_EXCHANGE_CHUNK_SIZE", 10_000),
        # Text per chunk: a chunk is also closed once its rows have this many characters.
        Setting("DATA_EXCHANGE_CHUNK_MAX_BYTES", 8 * 1024**2),
        # Redis used for the per-content-type import lock. None: the database constraint alone.
        Setting("DATA_EXCHANGE_REDIS_URL", None),
        # Seconds the Redis lock lives without a heartbeat; chunks renew it.
        Setting("DATA_EXCHANGE_LOCK_TIMEOUT", 900),
        # Soft time limit of one chunk task, in seconds (the hard limit is 30 s more).
        Setting("DATA_EXCHANGE_CHUNK_TIME_LIMIT", 600),
        # Row errors stored per chunk; further errors are counted, not stored.
        Setting("DATA_EXCHANGE_MAX_ERRORS_PER_CHUNK", 1000),
        # Rows kept on the job to show in the admin preview.
        Setting("DATA_EXCHANGE_PREVIEW_SAMPLE_ROWS", 20),
        # Row errors shown per page in the admin.
        Setting("DATA_EXCHANGE_ERRORS_PER_PAGE", 50),
        # Attempts at one chunk (or at the split) whose worker died (out of memory, killed,
        # its host lost) before the job fails; handled errors are retried by Celery instead.
        Setting("DATA_EXCHANGE_MAX_CHUNK_ATTEMPTS", 5),
        # Reconcile: seconds without progress (a chunk finished, a state moved; never a
        # re-send) before a job's missing work is sent again, and before a job that still
        # makes no progress is failed. Longer than a chunk's hard time limit, shorter than
        # the give-up time (system checks W004, W005).
        Setting("DATA_EXCHANGE_STALE_AFTER", 900),
        Setting("DATA_EXCHANGE_GIVE_UP_AFTER", 3600),
        # Seconds after which a job whose first task no worker has started says so on its page.
        Setting("DATA_EXCHANGE_PICKUP_WARNING_AFTER", 120),
        # Hostile-input limits.
        Setting("DATA_EXCHANGE_MAX_FILE_BYTES", 10 * 1024**3),
        Setting("DATA_EXCHANGE_MAX_ROWS", 50_000_000),
        Setting("DATA_EXCHANGE_MAX_FIELD_BYTES", 1024 * 1024),
        Setting("DATA_EXCHANGE_MAX_RECORD_BYTES", 16 * 1024**2),
        Setting("DATA_EXCHANGE_XLSX_MAX_UNCOMPRESSED_BYTES", 2 * 1024**3),
        Setting("DATA_EXCHANGE_XLSX_MAX_COMPRESSION_RATIO", 200),
        Setting("DATA_EXCHANGE_XLSX_MAX_SHARED_STRINGS_BYTES", 64 * 1024**2),
        Setting("DATA_EXCHANGE_GZIP_MAX_COMPRESSION_RATIO", 200),
        # Directory for temporary spools (XLSX); None: the system default.
        Setting("DATA_EXCHANGE_TEMP_DIR", None),
        # Test-only: dotted path of the fault-injection object of the library's own tests
        # (data_exchange_tool._faults). Not a user hook; leave unset.
        Setting("DATA_EXCHANGE_FAULT_HOOKS", None),
    )
}


class AppSettings:
    """Attribute access to the library's settings, defaults applied."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, attr: str) -> Any:
        try:
            setting = SETTINGS[attr]
        except KeyError:
            raise AttributeError(f"Invalid data_exchange_tool setting: {attr!r}") from None
        if attr not in self._cache:
            self._cache[attr] = getattr(settings, setting.name, setting.default)
        return self._cache[attr]

    def reload(self) -> None:
        self._cache.clear()


app_settings = AppSettings()


def media_root() -> str:
    """Django's ``MEDIA_ROOT`` ("" when unset): the private folder of import files is placed
    beside it, never inside."""
    return str(settings.MEDIA_ROOT or "")

_FULL_NAMES = {s.name for s in SETTINGS.values()}


@receiver(setting_changed)
def _reload_app_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in _FULL_NAMES:
        app_settings.reload()
