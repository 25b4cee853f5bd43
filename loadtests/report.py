"""The benchmark's figures: measurements, checks and targets, as text, Markdown and JSON."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MB = 1024 * 1024
OURS = "data-exchange-tool"
IMPORT_EXPORT = "django-import-export"
COPY = "PostgreSQL COPY"


@dataclass
class Measure:
    """One timed phase of one tool."""

    tool: str
    phase: str
    rows: int
    seconds: float
    rss: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def peak_rss(self) -> int:
        return max(self.rss.values(), default=0)


@dataclass
class Check:
    """Something the run must have got right (not a timing)."""

    name: str
    ok: bool
    detail: str


@dataclass
class Target:
    """A goal of the issue, the figure measured for it and whether it is met."""

    goal: str
    measured: str
    met: bool | None  # None: not applicable to this run


@dataclass
class Report:
    context: dict[str, Any]
    measures: list[Measure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: str = ""

    def find(self, tool: str, phase: str) -> Measure | None:
        return next((m for m in self.measures if m.tool == tool and m.phase == phase), None)


# -- formatting ------------------------------------------------------------------------------------


def fmt_rss(rss: dict[str, int]) -> str:
    if not rss:
        return "—"
    return " · ".join(f"{role} {size / MB:.0f}" for role, size in rss.items())


def fmt_ratio(value: float | None, suffix: str = "×") -> str:
    return "—" if value is None else f"{value:,.1f}{suffix}"


def ratio(ours: Measure | None, peer: Measure | None) -> float | None:
    """How many times faster (rows/s) ``ours`` is than ``peer``."""
    if ours is None or peer is None or not peer.rate:
        return None
    return ours.rate / peer.rate


def slowdown(ours: Measure | None, peer: Measure | None) -> float | None:
    """How many times longer per row ``ours`` takes than ``peer`` (the COPY yardstick)."""
    if ours is None or peer is None or not ours.rate:
        return None
    return peer.rate / ours.rate


PEER_OF_PHASE = {"preview": "dry run", "import": "import", "preview + import": "import"}
HEADERS = [
    "tool", "phase", "rows", "seconds", "rows/s", "peak RSS MB (per process)",
    "× import-export rows/s", "time ÷ COPY's",
]  # fmt: skip


def table_rows(report: Report) -> list[list[str]]:
    copy = report.find(COPY, "total")
    rows = []
    for m in report.measures:
        vs_ie = vs_copy = None
        if m.tool == OURS and m.phase in PEER_OF_PHASE:
            vs_ie = ratio(m, report.find(IMPORT_EXPORT, PEER_OF_PHASE[m.phase]))
            if m.phase != "preview":
                vs_copy = slowdown(m, copy)
        rows.append(
            [
                m.tool,
                m.phase + (f" ({m.note})" if m.note else ""),
                f"{m.rows:,}",
                f"{m.seconds:,.2f}",
                f"{m.rate:,.0f}",
                fmt_rss(m.rss),
                fmt_ratio(vs_ie),
                fmt_ratio(vs_copy),
            ]
        )
    return rows


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _mark(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[met]


def sections(report: Report) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    measures = table_rows(report)
    targets = [[t.goal, t.measured, _mark(t.met)] for t in report.targets]
    checks = [[c.name, "ok" if c.ok else "FAILED", c.detail] for c in report.checks]
    return measures, targets, checks


def render(report: Report, markdown: bool) -> str:
    table = markdown_table if markdown else text_table
    measures, targets, checks = sections(report)
    context = ", ".join(f"{k}={v}" for k, v in report.context.items() if not isinstance(v, dict))
    parts = [("### " if markdown else "") + f"Benchmark: {context}", table(HEADERS, measures)]
    if targets:
        parts.append(table(["goal", "measured", "status"], targets))
    if checks:
        parts.append(table(["check", "result", "detail"], checks))
    if report.failure:
        parts.append(
            ("**Failure:**\n```\n" if markdown else "FAILURE:\n")
            + report.failure
            + ("\n```" if markdown else "")
        )
    versions = report.context.get("versions")
    notes = [*report.notes, *([f"versions: {versions}"] if versions else [])]
    parts.append("\n".join(("- " if markdown else "note: ") + n for n in notes))
    return "\n\n".join(parts)


def append_json(report: Report, path: Path) -> None:
    record = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "context": report.context,
        "measures": [{**asdict(m), "rows_per_s": round(m.rate, 1)} for m in report.measures],
        "targets": [asdict(t) for t in report.targets],
        "checks": [asdict(c) for c in report.checks],
        "notes": report.notes,
        "failure": report.failure,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
