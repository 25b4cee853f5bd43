"""Where the time goes: pyinstrument on one chunk in-process, py-spy on the live worker.

Both give the top functions by self time (time spent in the function's own code) and by total
time (including what it calls), as ``(seconds or samples, share, "function (file:line)")``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Hotspots:
    """Self and total weight per function; ``unit`` is "s" or "samples"."""

    unit: str
    total: float = 0.0
    self_weight: Counter[str] = field(default_factory=Counter)
    total_weight: Counter[str] = field(default_factory=Counter)

    def top(self, n: int = 10, *, by: str = "self") -> list[tuple[float, float, str]]:
        """The ``n`` heaviest functions; by total time, only the library's own functions."""
        if by == "self":
            weights = self.self_weight.most_common()
        else:
            weights = [(k, w) for k, w in self.total_weight.most_common() if is_library(k)]
        total = self.total or 1.0
        return [(w, w / total, name) for name, w in weights[:n]]

    def lines(self, n: int = 10) -> list[str]:
        fmt = "  {:8,.3f} {:6.1%}  {}" if self.unit == "s" else "  {:8,.0f} {:6.1%}  {}"
        out = [f"top {n} by self time ({self.unit}; all: {self.total:,.3g}):"]
        out += [fmt.format(*row) for row in self.top(n)]
        out.append(f"top {n} library functions by total time (with what they call):")
        out += [fmt.format(*row) for row in self.top(n, by="total")]
        return out


LIBRARY_MARKERS = ("(data_exchange_tool/", "(workflows/")


def is_library(name: str) -> bool:
    return any(marker in name for marker in LIBRARY_MARKERS)


# -- pyinstrument ----------------------------------------------------------------------------------


def profile_call(func: Callable[[], Any], html: Path | None = None) -> Hotspots:
    """Run ``func`` under pyinstrument; optionally save the HTML report."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        func()
    finally:
        session = profiler.stop()
    if html is not None:
        html.write_text(profiler.output_html())
    root = profiler.last_session.root_frame() if session is None else session.root_frame()
    spots = Hotspots(unit="s", total=root.time if root else 0.0)
    if root is not None:
        _walk_pyinstrument(root, spots, ())
    return spots


def _frame_name(frame: Any) -> str:
    path = frame.file_path_short or frame.file_path or "?"
    return f"{frame.function} ({path}:{frame.line_no})"


def _walk_pyinstrument(frame: Any, spots: Hotspots, above: tuple[str, ...]) -> None:
    if frame.is_synthetic:
        return
    name = _frame_name(frame)
    if name not in above:
        spots.total_weight[name] += frame.time
    spots.self_weight[name] += frame.total_self_time
    for child in frame.children:
        _walk_pyinstrument(child, spots, (*above, name))


# -- py-spy ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def py_spy(pid: int, output: Path, log: Path) -> Iterator[None]:
    """Sample ``pid`` and its subprocesses with py-spy while the block runs (raw stacks)."""
    command = Path(sys.executable).parent / "py-spy"
    argv = [
        str(command), "record", "--pid", str(pid), "--subprocesses", "--function",
        "--nonblocking", "--rate", "100", "--format", "raw", "--output", str(output),
    ]  # fmt: skip
    with log.open("ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def read_collapsed(path: Path) -> Hotspots:
    """Hotspots from py-spy's raw output (``frame;frame;… count`` per line)."""
    spots = Hotspots(unit="samples")
    with contextlib.suppress(FileNotFoundError), path.open(encoding="utf-8") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            weight = int(count)
            spots.total += weight
            spots.self_weight[frames[-1]] += weight
            for name in dict.fromkeys(frames):
                spots.total_weight[name] += weight
    return spots
