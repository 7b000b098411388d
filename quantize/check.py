"""``quantize check --data DIR``: validate a data set and summarise it.

Prints a summary (trials per zone, risk and subject; length distribution) and
every problem, each naming the file, row or column, the bad value and what
was expected. Exits 1 when there are errors, 0 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

HELP = "validate a data set (either layout) and print a summary and every problem"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``check``'s flags."""
    parser.add_argument("--data", required=True, type=Path, help="data set folder")
    parser.add_argument("--json", action="store_true", help="print the summary and problems as JSON")


def summarize(data_dir: Path) -> dict:
    """Validate ``data_dir`` and return the summary and problems as a dict."""
    from edge.dataset import _scan, read_trial_csv
    from edge.errors import DataError

    try:
        layout, metas, problems = _scan(Path(data_dir))
    except DataError as exc:
        return {"data": str(data_dir), "layout": None, "trials": 0, "errors": 1, "warnings": 0,
                "problems": [{"severity": "error", "where": str(data_dir), "message": str(exc)}]}
    lengths = np.array([read_trial_csv(m.file, m.sample_rate).samples.shape[0] for m in metas]) if metas else np.zeros(0)
    lift_lengths = np.array([m.lift_end - m.lift_start + 1 for m in metas]) if metas else np.zeros(0)

    def dist(a: np.ndarray) -> dict:
        if a.size == 0:
            return {}
        s = a / 25.0
        return {"min_s": round(float(s.min()), 2), "median_s": round(float(np.median(s)), 2),
                "max_s": round(float(s.max()), 2), "share_10_15_s": round(float(np.mean((s >= 10) & (s <= 15))), 3),
                "over_30_s": int(np.sum(s > 30))}

    return {
        "data": str(data_dir),
        "layout": layout,
        "trials": len(metas),
        "per_zone": dict(sorted(collections.Counter(m.zone for m in metas).items())),
        "per_risk": {r: sum(m.risk == r for m in metas) for r in ("low", "medium", "high")},
        "per_subject": dict(sorted(collections.Counter(m.subject for m in metas).items())),
        "length": dist(lengths),
        "lift_length": dist(lift_lengths),
        "errors": sum(p.severity == "error" for p in problems),
        "warnings": sum(p.severity == "warning" for p in problems),
        "problems": [{"severity": p.severity, "where": p.where, "message": p.message} for p in problems],
    }


def run(args: argparse.Namespace) -> int:
    """Run the check; 1 if the data set has errors."""
    s = summarize(args.data)
    if args.json:
        print(json.dumps(s, indent=1))
        return 1 if s["errors"] else 0
    print(f"data set {s['data']} ({s['layout']} layout): {s['trials']} usable trial(s)")
    if s["trials"]:
        print("  per zone:    " + ", ".join(f"{z}: {n}" for z, n in s["per_zone"].items()))
        print("  per risk:    " + ", ".join(f"{r}: {n}" for r, n in s["per_risk"].items()))
        print("  per subject: " + ", ".join(f"{k}: {n}" for k, n in s["per_subject"].items()))
        L = s["length"]
        print(f"  trial length: min {L['min_s']} s, median {L['median_s']} s, max {L['max_s']} s; "
              f"{L['share_10_15_s'] * 100:.0f}% within 10-15 s; {L['over_30_s']} over the 30 s window")
        LL = s["lift_length"]
        print(f"  lift length:  min {LL['min_s']} s, median {LL['median_s']} s, max {LL['max_s']} s")
    for p in s["problems"]:
        print(f"{p['severity']}: {p['where']}: {p['message']}", file=sys.stderr if p["severity"] == "error" else sys.stdout)
    print(f"{s['errors']} error(s), {s['warnings']} warning(s)")
    return 1 if s["errors"] else 0
