"""The only Redis lock code: one lock per target content type, owned by an import job.

The lock is a Redis key set with ``NX`` and a timeout, holding the job's token. Any process that
knows the token (stored on the job) can renew it (a heartbeat) or release it; nobody else can.
The database constraint "one IMPORT_IN_PROGRESS job per content type" backs it, so two imports
of one model never run at once even if Redis loses the key. With ``DATA_EXCHANGE_REDIS_URL``
unset (the embedded default), the database constraint alone guards imports.
"""

from __future__ import annotations

import logging
from typing import Any

from .conf import app_settings
from .exceptions import TransitionRefused

logger = logging.getLogger(__name__)

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

_clients: dict[str, Any] = {}


class LockUnavailable(TransitionRefused):
    """The lock cannot be taken because Redis is unreachable."""


def _client() -> Any | None:
    url = app_settings.REDIS_URL
    if not url:
        return None
    if url not in _clients:
        import redis

        _clients[url] = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=15
        )
    return _clients[url]


def lock_key(content_type_id: int) -> str:
    return f"data_exchange:import_lock:{content_type_id}"


class ContentTypeLock:
    """The import lock of one content type."""

    def __init__(self, content_type_id: int) -> None:
        self.key = lock_key(content_type_id)
        self.redis = _client()

    @property
    def timeout_ms(self) -> int:
        return int(app_settings.LOCK_TIMEOUT * 1000)

    def acquire(self, token: str) -> bool:
        """Take the lock for ``token``; False if another token holds it.

        Raises :class:`LockUnavailable` when Redis cannot be reached.
        """
        if self.redis is None:
            return True
        try:
            return bool(self.redis.set(self.key, token, nx=True, px=self.timeout_ms))
        except Exception as exc:
            raise LockUnavailable(
                "The import lock service (Redis) cannot be reached; try again in a moment."
            ) from exc

    def renew(self, token: str) -> bool:
        """Heartbeat: extend the lock if ``token`` still holds it; retake it if it expired."""
        if self.redis is None or not token:
            return True
        try:
            if self.redis.eval(_RENEW, 1, self.key, token, self.timeout_ms):
                return True
            return self.acquire(token)
        except Exception:  # Redis down: the database constraint and the fence still guard
            logger.warning("Could not renew %s.", self.key, exc_info=True)
            return False

    def release(self, token: str) -> bool:
        """Release if ``token`` holds the lock. Releasing a lock not held is not an error."""
        if self.redis is None or not token:
            return True
        try:
            return bool(self.redis.eval(_RELEASE, 1, self.key, token))
        except Exception:  # Redis down: the key expires on its own; the DB is the guard
            logger.warning("Could not release %s; it will expire.", self.key, exc_info=True)
            return False

    def holder(self) -> str | None:
        if self.redis is None:
            return None
        try:
            value = self.redis.get(self.key)
        except Exception:
            return None
        return value.decode() if value is not None else None
