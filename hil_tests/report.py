"""The QA report of a HIL run: ``report.md``, ``figures.json`` and ``latency.png``.

pytest's own ``--junitxml`` writes the JUnit XML (the plugin points it at
``DIR/junit.xml``); this module adds the human summary: a pass/fail table
with each scenario's stated expectation, the figures the scenarios recorded
(recall, false buzzes per hour, agreement, ...) and a histogram of the time
from lift end to buzz.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import platform
from pathlib import Path
from typing import Dict, List, Optional

from .scoring import summarize


@dataclasses.dataclass
class Figure:
    """One number a scenario measured, with the expectation it was held to."""

    test: str
    name: str
    value: float
    unit: str
    expectation: str = ""
    met: Optional[bool] = None


@dataclasses.dataclass
class Outcome:
    """The result of one test."""

    nodeid: str
    outcome: str  # passed / failed / skipped / error
    duration_s: float
    expectation: str
    message: str = ""


class HilReport:
    """Collects outcomes, figures and latencies during a session and writes the report.

    Args:
        out_dir: The run folder; created when the report is written.
    """

    def __init__(self, out_dir: Optional[Path]) -> None:
        self.out_dir = Path(out_dir) if out_dir else None
        self.outcomes: Dict[str, Outcome] = {}
        self.figures: List[Figure] = []
        self.latencies: Dict[str, List[float]] = {}
        self.notes: List[str] = []
        self.started = _dt.datetime.now(_dt.timezone.utc)

    # -- collecting --------------------------------------------------------
    def add_outcome(self, nodeid: str, outcome: str, duration_s: float, expectation: str,
                    message: str = "") -> None:
        """Record (or update: setup/call/teardown phases) one test's outcome."""
        prev = self.outcomes.get(nodeid)
        if prev is not None:
            duration_s += prev.duration_s
            # the worst phase wins: failed/error over skipped over passed
            rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 2}
            if rank.get(prev.outcome, 0) >= rank.get(outcome, 0):
                outcome, message = prev.outcome, prev.message
        self.outcomes[nodeid] = Outcome(nodeid, outcome, duration_s, expectation, message)

    def add_figure(self, figure: Figure) -> None:
        """Record one measured figure."""
        self.figures.append(figure)

    def add_latencies(self, label: str, values_s: List[float]) -> None:
        """Record lift-end-to-buzz times (stream seconds) under ``label``."""
        self.latencies.setdefault(label, []).extend(float(v) for v in values_s)

    def add_note(self, text: str) -> None:
        """Record a free-text line (e.g. which rig and hub were used)."""
        self.notes.append(text)

    # -- writing -----------------------------------------------------------
    def write(self) -> Optional[Path]:
        """Write ``report.md``, ``figures.json`` and ``latency.png``; return the report path."""
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        png = self._write_histogram(self.out_dir / "latency.png")
        (self.out_dir / "figures.json").write_text(json.dumps({
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes.values()],
            "figures": [dataclasses.asdict(f) for f in self.figures],
            "latencies_s": {k: summarize(v) for k, v in self.latencies.items()},
            "notes": self.notes,
        }, indent=2, default=_json_default) + "\n")
        path = self.out_dir / "report.md"
        path.write_text(self.markdown(png))
        return path

    def markdown(self, png: Optional[Path] = None) -> str:
        """Render the report as markdown."""
        counts: Dict[str, int] = {}
        for o in self.outcomes.values():
            counts[o.outcome] = counts.get(o.outcome, 0) + 1
        verdict = "PASS" if self.outcomes and not counts.get("failed") and not counts.get("error") else "FAIL"
        lines = [
            "# LiftGuard HIL report",
            "",
            f"- Started {self.started.isoformat(timespec='seconds')}, written "
            f"{_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
            f"- Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}",
            f"- Verdict: **{verdict}** ({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'no tests'})",
            "- JUnit XML: `junit.xml`; figures: `figures.json`",
        ]
        lines += [f"- {n}" for n in self.notes]
        lines += ["", "## Scenarios", "", "| test | result | time (s) | expectation | detail |",
                  "|---|---|---|---|---|"]
        for o in self.outcomes.values():
            res = {"passed": "pass", "failed": "**FAIL**", "error": "**ERROR**"}.get(o.outcome, o.outcome)
            lines.append(f"| `{o.nodeid}` | {res} | {o.duration_s:.1f} | {_cell(o.expectation)} | "
                         f"{_cell(o.message[:300])} |")
        lines += ["", "## Figures", ""]
        if self.figures:
            lines += ["| test | figure | value | unit | expectation | met |", "|---|---|---|---|---|---|"]
            for f in self.figures:
                met = {True: "yes", False: "**NO**", None: ""}[f.met]
                lines.append(f"| `{f.test}` | {f.name} | {_fmt(f.value)} | {f.unit} | "
                             f"{_cell(f.expectation)} | {met} |")
        else:
            lines.append("No figures were recorded (no scenario got far enough to measure).")
        lines += ["", "## Lift end to buzz", ""]
        if self.latencies:
            lines += ["| stream | n | median (s) | p95 (s) | max (s) |", "|---|---|---|---|---|"]
            for k, v in self.latencies.items():
                s = summarize(v)
                lines.append(f"| {k} | {s['n']} | {_fmt(s['median'])} | {_fmt(s['p95'])} | {_fmt(s['max'])} |")
            if png is not None:
                lines += ["", f"![lift end to buzz]({png.name})"]
        else:
            lines.append("No buzz latencies were recorded.")
        return "\n".join(lines) + "\n"

    def _write_histogram(self, path: Path) -> Optional[Path]:
        values = {k: v for k, v in self.latencies.items() if v}
        if not values:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label, v in values.items():
            ax.hist(v, bins=min(30, max(5, len(v) // 3)), alpha=0.6, label=f"{label} (n={len(v)})")
        ax.set_xlabel("lift end to buzz (stream s)")
        ax.set_ylabel("buzzes")
        ax.set_title("LiftGuard HIL: time from lift end to buzz")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _fmt(v: float) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _json_default(o):
    if isinstance(o, float) and math.isnan(o):
        return None
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
