"""What the benchmark starts and watches: the S3 endpoint's and worker's environment, RSS
samplers, CPU meters, the database and Redis.

moto_server and the Celery worker are started by the test suite's own helpers
(``tests.fixtures``): each in its own session on loopback, stopped by its process group id, and
signalled if the runner dies.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.fixtures import S3Endpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parent / ".data"
QUEUE = "data_exchange_shared_queue"
S3_BUCKET = "bench"


# -- child processes -------------------------------------------------------------------------------


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The runner's environment for a child: repository on the path, bench settings."""
    env = {**os.environ, **extra}
    path = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    env["DJANGO_SETTINGS_MODULE"] = "loadtests.settings"
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- the S3 endpoint -------------------------------------------------------------------------------


def s3_env(endpoint: S3Endpoint) -> dict[str, str]:
    """What the bench settings and the AWS SDKs read to use ``endpoint``."""
    env = {k: v for k, v in endpoint.env().items() if k.startswith("AWS_")}
    return {**env, "DXT_BENCH_S3_ENDPOINT": endpoint.url, "DXT_BENCH_S3_BUCKET": endpoint.bucket}


# -- memory ----------------------------------------------------------------------------------------


@dataclass
class PeakRss:
    """Peak resident memory, in bytes, per process id and per phase."""

    peaks: dict[str, dict[int, int]] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)
    timeline: list[tuple[float, str, int, int]] = field(default_factory=list)

    def record(self, phase: str, pid: int, role: str, rss: int) -> None:
        self.timeline.append((time.monotonic(), phase, pid, rss))
        by_pid = self.peaks.setdefault(phase, {})
        by_pid[pid] = max(by_pid.get(pid, 0), rss)
        self.roles.setdefault(pid, role)

    def of(self, phase: str) -> dict[int, int]:
        return dict(self.peaks.get(phase, {}))

    def by_role(self, phase: str) -> dict[str, int]:
        """{"main": bytes, "pool 1": bytes, …}: pool processes numbered by pid order."""
        peaks = self.of(phase)
        return {role: peaks[pid] for role, pid in self._role_pids(phase).items()}

    def peak_offsets(self, phase: str) -> dict[str, float]:
        """{role: seconds from the phase's first sample to that process's peak}."""
        samples = [s for s in self.timeline if s[1] == phase]
        if not samples:
            return {}
        start = samples[0][0]
        best: dict[int, tuple[int, float]] = {}
        for at, _phase, pid, rss in samples:
            if rss > best.get(pid, (-1, 0.0))[0]:
                best[pid] = (rss, at - start)
        names = {pid: role for role, pid in self._role_pids(phase).items()}
        return {names[pid]: offset for pid, (_rss, offset) in best.items() if pid in names}

    def _role_pids(self, phase: str) -> dict[str, int]:
        peaks = self.of(phase)
        main = [pid for pid in peaks if self.roles.get(pid) == "main"]
        pool = sorted(pid for pid in peaks if self.roles.get(pid) != "main")
        out = {"main": main[0]} if main else {}
        out.update({f"pool {n}": pid for n, pid in enumerate(pool, 1)})
        return out

    def write_timeline(self, path: Path) -> None:
        """``seconds,phase,pid,role,rss_mb`` per sample, to see when a peak happened."""
        start = self.timeline[0][0] if self.timeline else 0.0
        with path.open("w", encoding="utf-8") as fh:
            fh.write("seconds,phase,pid,role,rss_mb\n")
            for at, phase, pid, rss in self.timeline:
                role = self.roles.get(pid, "")
                fh.write(f"{at - start:.2f},{phase},{pid},{role},{rss / 1048576:.1f}\n")


class RssSampler:
    """Samples the RSS of a process and its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.phase = "baseline"
        self.result = PeakRss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> None:
        try:
            main = psutil.Process(self.pid)
            self.result.record(self.phase, main.pid, "main", main.memory_info().rss)
            for child in main.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.result.record(self.phase, child.pid, "pool", child.memory_info().rss)
        except psutil.NoSuchProcess:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


@dataclass(frozen=True)
class CpuUse:
    """Core-seconds used over a span of wall time: by the benchmark's processes, by the
    PostgreSQL and Redis servers (whoever their clients are), and by everything else."""

    wall: float
    ours: float
    servers: float
    others: float
    cores: int
    s3: float = 0.0

    def describe(self) -> str:
        capacity = self.wall * self.cores
        return (
            f"benchmark processes {self.ours:.1f} (the S3 endpoint {self.s3:.1f}), "
            f"PostgreSQL + Redis {self.servers:.1f}, "
            f"other processes {self.others:.1f} core-s, of {capacity:.1f} "
            f"({self.cores} cores × {self.wall:.1f} s)"
        )


SERVER_NAMES = ("postgres", "redis-server")


class CpuMeter:
    """CPU used by the benchmark versus the servers and the rest of the machine.

    "Ours" is this process and its descendants (the runner, moto_server, the worker and its
    pool, the peers). "Servers" is PostgreSQL and Redis, counted with the processes they
    already reaped (so short-lived backends are not lost). Anything else busy at the same time
    (another test run) is "others", and skews the figures.
    """

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        names = ("user", "nice", "system", "irq", "softirq", "steal")
        return sum(getattr(t, name, 0.0) for name in names)

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            return t.user + t.system + t.children_user + t.children_system
        return 0.0

    def _ours(self) -> float:
        me = psutil.Process()
        return sum(self._cpu(p) for p in [me, *me.children(recursive=True)])

    def _servers(self) -> float:
        total = 0.0
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] in SERVER_NAMES:
                total += self._cpu(proc) if self._is_root(proc) else self._own(proc)
        return total

    @staticmethod
    def _is_root(proc: psutil.Process) -> bool:
        with contextlib.suppress(psutil.Error):
            parent = proc.parent()
            return parent is None or parent.name() != proc.name()
        return False

    @staticmethod
    def _own(proc: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            return t.user + t.system
        return 0.0

    def _s3(self) -> float:
        """CPU of the S3 endpoint (``moto_server``), one of our children."""
        total = 0.0
        for proc in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any("moto" in part for part in proc.cmdline()):
                    total += self._own(proc)
        return total

    def _read(self) -> tuple[float, float, float, float, float]:
        return time.monotonic(), self._busy(), self._ours(), self._servers(), self._s3()

    def stop(self) -> CpuUse:
        end = self._read()
        wall, busy, ours, servers, s3 = (b - a for a, b in zip(self._start, end, strict=True))
        others = max(busy - ours - servers, 0.0)
        return CpuUse(wall, ours, servers, others, psutil.cpu_count() or 1, s3)


# -- databases -------------------------------------------------------------------------------------


def ensure_database(settings_dict: dict[str, Any]) -> bool:
    """Create the benchmark's PostgreSQL database if missing; True if it was created."""
    import psycopg
    from psycopg import sql

    params = {
        "host": settings_dict.get("HOST") or "127.0.0.1",
        "port": settings_dict.get("PORT") or "5432",
        "user": settings_dict.get("USER") or "postgres",
        "dbname": "postgres",
        "autocommit": True,
    }
    name = settings_dict["NAME"]
    with psycopg.connect(**params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


class RedisWitness:
    """Notices whether the benchmark's Redis database was emptied or Redis restarted.

    Another process that flushes the same database (or restarts Redis) drops the queued tasks
    and the chord counters of a running job, which then never finishes: the runner says so.
    """

    KEY = "dxt-bench:witness"

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.token = uuid.uuid4().hex
        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self.run_id = self._client.info("server")["run_id"]
        self._client.set(self.KEY, self.token)

    def problems(self) -> list[str]:
        try:
            run_id = self._client.info("server")["run_id"]
            token = self._client.get(self.KEY)
        except Exception as exc:
            return [f"Redis at {self.url} does not answer: {exc}"]
        found = []
        if run_id != self.run_id:
            found.append(f"Redis restarted during the run (run_id {self.run_id} → {run_id})")
        elif token is None or token.decode() != self.token:
            found.append(f"another process emptied or rewrote {self.url} during the run")
        return found

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.delete(self.KEY)
        self._client.close()


def flush_redis(url: str) -> None:
    """Empty the benchmark's own Redis database (the db number in ``url``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
