"""Record benchmark figures into ``benchmarks/results.json`` and ``results.md``.

Every figure is one entry keyed by its name: value, unit, target, whether the
target is met, the machine and the date. Benchmarks call :func:`record`; the
markdown table is rewritten from the JSON each time.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Optional

RESULTS_JSON = Path(__file__).with_name("results.json")
RESULTS_MD = Path(__file__).with_name("results.md")


def machine() -> str:
    """Describe this machine in one line."""
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def record(name: str, value: float, unit: str, target: Optional[str] = None,
           met: Optional[bool] = None, note: str = "",
           path: Path = RESULTS_JSON) -> dict:
    """Store one figure and rewrite the markdown table.

    Args:
        name: Stable identifier, e.g. ``"tensorize_720_trials"``.
        value: The measured number.
        unit: Its unit, e.g. ``"s"``.
        target: The target as text, e.g. ``"< 2 s"``.
        met: Whether the target is met.
        note: How it was measured.
        path: Where the JSON lives.

    Returns:
        The stored entry.
    """
    data = json.loads(path.read_text()) if path.exists() else {}
    entry = {
        "figure": name, "value": value, "unit": unit, "target": target, "met": met,
        "note": note, "machine": machine(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    data[name] = entry
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    write_markdown(data, path.with_suffix(".md"))
    return entry


def write_markdown(data: dict, path: Path = RESULTS_MD) -> None:
    """Rewrite the human-readable table from the JSON data."""
    lines = ["# Benchmark results", "", "Written by `make bench`; one row per figure.", "",
             "| figure | value | unit | target | met | date | note |", "|---|---|---|---|---|---|---|"]
    for name in sorted(data):
        e = data[name]
        v = e["value"]
        vs = f"{v:.4g}" if isinstance(v, float) else str(v)
        met = {True: "yes", False: "NO", None: ""}[e.get("met")]
        lines.append(f"| {name} | {vs} | {e['unit']} | {e.get('target') or ''} | {met} | {e['date'][:10]} | {e.get('note', '')} |")
    path.write_text("\n".join(lines) + "\n")
