"""Session fixtures that start real parts on loopback: an S3 endpoint, Redis and a Celery worker.

End-to-end tests request ``e2e`` and are marked ``@pytest.mark.django_db(transaction=True)``, so
the worker process sees the rows they commit. Unit tests use none of this and run eager.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from django.conf import settings
from django.test import override_settings

from tests.fixtures import E2E, S3Endpoint, WorkerProcess, redis_db
from tests.fixtures.worker import worker_env

E2E_FIXTURE = "e2e"
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _broker_and_backend_urls() -> list[str]:
    return redis_db.redis_urls(
        settings.REDIS_URL,
        settings.CELERY_BROKER_URL,
        settings.CELERY_RESULT_BACKEND,
        getattr(settings, "DATA_EXCHANGE_REDIS_URL", None),
    )


def _remove_sqlite_sidecars() -> None:
    """Remove WAL/SHM files a killed run may have left beside the SQLite test database."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.sqlite3":
        return
    name = str(db.get("TEST", {}).get("NAME") or db["NAME"])
    for suffix in SQLITE_SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            Path(name + suffix).unlink()


# -- hooks ------------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``e2e`` fixture with ``@pytest.mark.e2e``."""
    for item in items:
        if E2E_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the worker's log lines of a failed e2e test to its report."""
    report = yield
    env: E2E | None = item.stash.get(_E2E_KEY, None)
    if env is not None and report.failed:
        lines = env.worker.log_tail(80, env.log_start) or "(no worker output during this test)"
        report.sections.append((f"celery worker log ({call.when})", lines))
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat the figures a test recorded as ``user_properties`` named ``soak``."""
    lines = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "soak"
    ]
    if lines:
        terminalreporter.write_sep("-", "soak figures")
        for line in lines:
            terminalreporter.write_line(line)


# -- session fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
) -> Iterator[None]:
    """Before the test database is created, and after it is destroyed: no stale SQLite WAL."""
    _remove_sqlite_sidecars()
    yield
    _remove_sqlite_sidecars()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A ``moto_server`` on 127.0.0.1 with the bucket ``imports``; ``.url`` is its endpoint."""
    server = S3Endpoint(tmp_path_factory.mktemp("s3") / "moto_server.log", bucket="imports")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis test database (``settings.REDIS_URL``), flushed once at session start."""
    redis_db.flush(_broker_and_backend_urls())
    return str(settings.REDIS_URL)


@pytest.fixture(scope="session")
def celery_app() -> Celery:
    """The test project's Celery app, as the test process uses it."""
    from tests.celery_app import app

    return app


def _test_database_env() -> dict[str, str]:
    """Environment that points tests.settings, in another process, at the test database."""
    from django.db import connections

    db = connections["default"].settings_dict
    expected = db.get("TEST", {}).get("NAME")
    if expected and db["NAME"] != expected:
        pytest.fail(
            f"the test database is not set up (NAME={db['NAME']!r}, expected {expected!r}): "
            "request the e2e fixture from a test marked django_db(transaction=True)"
        )
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return {"DATA_EXCHANGE_TEST_DB": "sqlite", "DATA_EXCHANGE_TEST_SQLITE": str(db["NAME"])}
    env = {"DATA_EXCHANGE_TEST_DB": "postgres", "DATA_EXCHANGE_TEST_PG_NAME": str(db["NAME"])}
    for key, var in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER")):
        if db.get(key):
            env[var] = str(db[key])
    return env


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_url: str,
    s3_endpoint: S3Endpoint,
    celery_app: Celery,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A real prefork worker on ``data_exchange_shared_queue``, on the tests' own database."""
    overrides = {
        **_test_database_env(),
        **s3_endpoint.env(),
        "DATA_EXCHANGE_TEST_EAGER": "0",
        "DATA_EXCHANGE_TEST_REDIS": redis_url,
        "DATA_EXCHANGE_TEST_BROKER": str(settings.CELERY_BROKER_URL),
        "DATA_EXCHANGE_TEST_LOCK_REDIS": str(settings.DATA_EXCHANGE_REDIS_URL),
        "DATA_EXCHANGE_TEST_MEDIA": str(settings.MEDIA_ROOT),
        "DATA_EXCHANGE_TEST_CHUNK_SIZE": str(settings.DATA_EXCHANGE_CHUNK_SIZE),
    }
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    worker = WorkerProcess(celery_app, worker_env(dict(os.environ), overrides), log_path)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


# -- per-test end-to-end environment --------------------------------------------------------------


_E2E_KEY = pytest.StashKey[E2E]()


def _reset_between_tests(env: E2E) -> None:
    """Leave no running task, Redis key (but queue bindings) or S3 object to the next test."""
    if not env.worker.is_alive() or not env.drain():
        env.worker.kill()
    redis_db.clear_leftovers(_broker_and_backend_urls())
    env.s3.clear()
    if not env.worker.is_alive():
        env.worker.start()


@pytest.fixture
def e2e(
    request: pytest.FixtureRequest,
    transactional_db: None,
    s3_endpoint: S3Endpoint,
    celery_worker: WorkerProcess,
    redis_url: str,
    celery_app: Celery,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[E2E]:
    """Real worker, S3 endpoint and Redis for one test; Celery not eager in the test process."""
    env = E2E(celery_worker, s3_endpoint, redis_url, celery_app)
    _reset_between_tests(env)
    env.log_start = celery_worker.log_offset()
    request.node.stash[_E2E_KEY] = env
    for key, value in s3_endpoint.env().items():
        monkeypatch.setenv(key, value)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        with override_settings(**s3_endpoint.django_settings()):
            yield env
    finally:
        celery_app.conf.task_always_eager = eager
        _reset_between_tests(env)


@pytest.fixture(autouse=True)
def _no_stale_import_locks() -> None:
    """Every test starts with no import lock held, whatever an earlier (killed) test left."""
    from django.conf import settings as django_settings

    url = getattr(django_settings, "DATA_EXCHANGE_REDIS_URL", None)
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="data_exchange:import_lock:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def partners(db: None) -> list[Any]:
    """The two partners most tests' files refer to, P1 and P2."""
    from tests.testapp.models import Partner

    return [Partner.objects.create(code=c, name=c) for c in ("P1", "P2")]


@pytest.fixture
def partner(db: None) -> Any:
    """Partner P1, for tests whose files refer to one partner."""
    from tests.testapp.models import Partner

    return Partner.objects.get_or_create(code="P1", defaults={"name": "Partner one"})[0]


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks: Any) -> Any:
    """Run a service call and the tasks it queues on commit (eagerly, in this process)."""

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run
