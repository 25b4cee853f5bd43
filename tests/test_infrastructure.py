"""The test infrastructure itself, against real parts: Redis, the S3 endpoint, a Celery worker."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.db import connection

from tests.fixtures import E2E, S3Endpoint, redis_db, wait_for
from tests.testapp.models import Partner

QUEUE = "data_exchange_shared_queue"
pytestmark = pytest.mark.django_db(transaction=True)


def send(e2e: E2E, name: str, *args: object) -> object:
    """Send a task by name to the worker's queue and return its result."""
    return e2e.app.send_task(name, args=args, queue=QUEUE).get(timeout=30)


@pytest.mark.django_db
def test_redis_answers(redis_url: str) -> None:
    conn = redis_db.client(redis_url)
    key = f"infra-{uuid.uuid4().hex}"
    assert conn.ping()
    conn.set(key, b"ok", ex=60)
    assert conn.get(key) == b"ok"
    conn.delete(key)


@pytest.mark.django_db
def test_s3_endpoint_stores_objects(s3_endpoint: S3Endpoint) -> None:
    assert s3_endpoint.url.startswith("http://127.0.0.1:")
    client = s3_endpoint.client()
    client.put_object(Bucket="imports", Key="infra/hello.txt", Body=b"hello")
    body = client.get_object(Bucket="imports", Key="infra/hello.txt")["Body"].read()
    assert body == b"hello"
    client.delete_object(Bucket="imports", Key="infra/hello.txt")


def test_worker_answers_ping(e2e: E2E) -> None:
    assert e2e.worker.ping(timeout=2)
    assert len(e2e.worker.children()) == 2


def test_worker_runs_builtin_task(e2e: E2E) -> None:
    assert e2e.app.conf.task_always_eager is False
    assert send(e2e, "celery.accumulate", 1, 2) == [1, 2]


@pytest.mark.parametrize("count", [3, 5])
def test_worker_reads_the_test_database(e2e: E2E, count: int) -> None:
    """Run twice: the second run also proves the rows of the first were flushed."""
    assert Partner.objects.count() == 0
    Partner.objects.bulk_create(Partner(code=f"p{n}", name=f"P {n}") for n in range(count))
    assert send(e2e, "tests.database_name") == connection.settings_dict["NAME"]
    assert send(e2e, "tests.count_partners") == count


def test_worker_and_test_process_write_at_once(e2e: E2E) -> None:
    results = [
        e2e.app.send_task("tests.create_partners", args=(prefix, 40), queue=QUEUE)
        for prefix in ("a", "b")
    ]
    for number in range(40):
        Partner.objects.create(code=f"t{number}", name=f"t {number}")
    assert [r.get(timeout=60) for r in results] == [40, 40]
    assert Partner.objects.count() == 120


def test_worker_uses_the_s3_endpoint(e2e: E2E) -> None:
    assert e2e.s3_url == settings.AWS_S3_ENDPOINT_URL
    assert settings.MODEL_DATA_EXCHANGE_S3_BUCKET_NAME == "imports"
    e2e.s3.client().put_object(Bucket="imports", Key="imports/infra.txt", Body=b"from tests")
    assert send(e2e, "tests.read_s3_object", "imports/infra.txt") == "from tests"


def test_drain_waits_for_running_tasks(e2e: E2E) -> None:
    for _ in range(3):
        e2e.app.send_task("tests.sleep", args=(0.5,), queue=QUEUE)
    assert e2e.drain(timeout=30)
    assert redis_db.pending_messages(settings.CELERY_BROKER_URL, [QUEUE]) == 0


def test_worker_survives_a_killed_pool_process(e2e: E2E) -> None:
    before = {p.pid for p in e2e.worker.children()}
    killed = e2e.worker.kill_child()
    assert killed in before
    wait_for(
        lambda: len(e2e.worker.children()) == 2 and killed not in _pids(e2e),
        timeout=30,
        message="the pool to replace the killed process",
        describe=lambda: _pids(e2e),
    )
    assert send(e2e, "celery.accumulate", 3) == [3]


def test_worker_can_be_killed_and_started_again(e2e: E2E) -> None:
    old_pid = e2e.worker.pid
    e2e.worker.kill()
    assert not e2e.worker.is_alive()
    e2e.worker.start()
    assert e2e.worker.pid != old_pid
    assert send(e2e, "celery.accumulate", 4) == [4]


def test_wait_for_reports_what_it_waited_for() -> None:
    with pytest.raises(pytest.fail.Exception, match="the answer"):
        wait_for(lambda: 0, timeout=0.2, message="the answer", describe=lambda: "still 0")


def _pids(e2e: E2E) -> set[int]:
    return {p.pid for p in e2e.worker.children()}
