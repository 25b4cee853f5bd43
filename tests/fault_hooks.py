"""Fault hooks the worker loads through ``DATA_EXCHANGE_FAULT_HOOKS=tests.fault_hooks.hooks``.

A test plans a fault in Redis (:meth:`FaultControl.plan`): when a hook fires for that phase and
chunk index, the worker blocks until the test releases it (or sleeps a while, or kills its own
process). Every planned
firing is logged in Redis with the worker process's pid and, on PostgreSQL, its backend pid, so
the test can kill the process or its connection and prove the fault fired. The worker imports
this module at start (``CELERY_IMPORTS``), so a ``task_prerun`` receiver also logs every task
start: duplicate deliveries show up there.

Only ``redis`` and ``celery`` are imported at module level: ``tests.settings`` names the module
before Django is set up. Keys live in the test Redis database (env ``DATA_EXCHANGE_TEST_REDIS``)
and are cleared between end-to-end tests with everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

import redis
from celery.signals import task_prerun

PREFIX = "dxt-fault:"
LOG_KEY = PREFIX + "log"
STARTS_KEY = PREFIX + "starts"
HOOKS_PATH = "tests.fault_hooks.hooks"
MAX_BLOCK_SECONDS = 60.0
POLL_SECONDS = 0.05

_clients: dict[str, redis.Redis] = {}


def redis_client(url: str | None = None) -> redis.Redis:
    """A client of the test Redis database (``url`` or env ``DATA_EXCHANGE_TEST_REDIS``)."""
    url = url or os.environ.get("DATA_EXCHANGE_TEST_REDIS", "redis://127.0.0.1:6379/11")
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=10)
    return _clients[url]


def _phase(value: Any) -> str:
    return str(getattr(value, "value", value))


def fault_key(hook: str, phase: str, chunk_index: int | None, part: str) -> str:
    """The Redis key of ``part`` (plan, taken, release) of one planned fault."""
    where = "job" if chunk_index is None else str(chunk_index)
    return f"{PREFIX}{part}:{hook}:{phase}:{where}"


def _backend_pid() -> int | None:
    """The PostgreSQL backend pid of this process's default connection (None on SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        return int(cursor.fetchone()[0])


class FaultHooks:
    """The hook object: each method looks up a planned fault and carries it out."""

    def after_chunk_marked(self, *, job_id: Any, chunk_index: int, phase: Any) -> None:
        self._fire("after_chunk_marked", job_id, _phase(phase), chunk_index)

    def before_chunk_commit(self, *, job_id: Any, chunk_index: int, phase: Any) -> None:
        self._fire("before_chunk_commit", job_id, _phase(phase), chunk_index)

    def before_finalize(self, *, job_id: Any, phase: Any) -> None:
        self._fire("before_finalize", job_id, _phase(phase), None)

    def after_chunk_stored(self, *, job_id: Any, chunk_index: int, phase: Any) -> None:
        self._fire("after_chunk_stored", job_id, _phase(phase), chunk_index)

    def _fire(self, hook: str, job_id: Any, phase: str, chunk_index: int | None) -> None:
        conn = redis_client()
        raw = conn.get(fault_key(hook, phase, chunk_index, "plan"))
        if raw is None:
            return
        plan = json.loads(raw)
        if plan.get("once", True) and not conn.set(
            fault_key(hook, phase, chunk_index, "taken"), os.getpid(), nx=True
        ):
            return
        entry = {
            "hook": hook,
            "phase": phase,
            "chunk": chunk_index,
            "job": str(job_id),
            "pid": os.getpid(),
            "backend_pid": _backend_pid(),
            "action": plan["action"],
            "at": time.time(),
        }
        conn.rpush(LOG_KEY, json.dumps(entry))
        if plan["action"] == "block":
            release = fault_key(hook, phase, chunk_index, "release")
            deadline = time.monotonic() + min(plan.get("seconds", MAX_BLOCK_SECONDS), 300)
            while not conn.exists(release) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
        elif plan["action"] == "sleep":
            time.sleep(plan["seconds"])
        elif plan["action"] == "kill":  # the process dies at once, as the OOM killer does it
            os.kill(os.getpid(), signal.SIGKILL)


hooks = FaultHooks()


@task_prerun.connect
def _record_start(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    """Log every task start (name, arguments, pool pid, redelivered flag) in Redis."""
    request = getattr(task, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    entry = {
        "task": getattr(task, "name", ""),
        "id": task_id,
        "args": list(args or []),
        "pid": os.getpid(),
        "retries": getattr(request, "retries", 0),
        "redelivered": bool(delivery.get("redelivered")),
        "at": time.time(),
    }
    with contextlib.suppress(redis.RedisError):
        redis_client().rpush(STARTS_KEY, json.dumps(entry, default=str))


class FaultControl:
    """The test's side: plan faults, release blocked hooks, read what fired."""

    def __init__(self, url: str) -> None:
        self.redis = redis_client(url)

    def plan(
        self,
        hook: str,
        phase: str,
        chunk_index: int | None = None,
        *,
        action: str = "block",
        seconds: float = MAX_BLOCK_SECONDS,
        once: bool = True,
    ) -> None:
        """Make ``hook`` block (until released, at most ``seconds``), sleep ``seconds``, or
        ``kill`` its process (SIGKILL)."""
        plan = {"action": action, "seconds": seconds, "once": once}
        self.redis.set(fault_key(hook, phase, chunk_index, "plan"), json.dumps(plan))

    def release(self, hook: str, phase: str, chunk_index: int | None = None) -> None:
        self.redis.set(fault_key(hook, phase, chunk_index, "release"), 1)

    def fired(self, hook: str | None = None, chunk_index: int | None = None) -> list[dict]:
        """Logged firings, optionally of one hook and chunk index."""
        entries = [json.loads(e) for e in self.redis.lrange(LOG_KEY, 0, -1)]
        return [
            e
            for e in entries
            if (hook is None or e["hook"] == hook)
            and (chunk_index is None or e["chunk"] == chunk_index)
        ]

    def starts(self, task: str, *args: Any) -> list[dict]:
        """Logged starts of ``task`` whose arguments begin with ``args``."""
        entries = [json.loads(e) for e in self.redis.lrange(STARTS_KEY, 0, -1)]
        wanted = [str(a) for a in args]
        return [
            e
            for e in entries
            if e["task"] == task and [str(a) for a in e["args"][: len(wanted)]] == wanted
        ]
