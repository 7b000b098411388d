"""``quantize synth-shift``: a simulated continuous recording of a work shift.

Writes, into ``--out``::

    shift.csv        the recording: the trial CSV layout (36 channels + Time_stp), 25 Hz
    events.csv       ground truth covering every sample exactly once:
                     start,end,kind,zone,risk,start_time,end_time
                     (start/end are 0-based sample indices into shift.csv, end inclusive;
                     kind is stand|walk|turn|bend|reach|lift; zone 0 and risk "none" unless a lift)
    lifts/index.csv  a data set of the shift's lifts: one row per lift pointing at ../shift.csv
                     with its lift_start/lift_end, so `quantize check --data OUT/lifts` and the
                     training loader can cut the lifts out of the continuous stream
    shift.json       seed, options, rate and the subject

``replay://OUT`` plays the folder as one continuous stream (one recording CSV
beside events.csv).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

HELP = "simulate a continuous shift recording with lifts, walking, bending and reaching, plus events.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``quantize synth-shift``."""
    from .cli_synth import add_options_arguments

    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--minutes", required=True, type=float, metavar="M", help="length of the recording")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0)")
    parser.add_argument("--lifts-per-minute", type=float, default=2.0,
                        help="mean lift rate, Poisson (default 2; realistic 1-4)")
    parser.add_argument("--subject", type=int, default=1, metavar="I",
                        help="which subject of cohort --seed wears the sensors (default 1)")
    add_options_arguments(parser)


def write_shift(out: Path, minutes: float, seed: int, options, lifts_per_minute: float = 2.0,
                subject_number: int = 1) -> dict:
    """Simulate and write a shift; returns a summary dict."""
    from edge.dataset import TrialMeta, write_index, write_trial_csv

    from .shift import simulate_shift

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"synth-shift: simulating {minutes:g} min (seed {seed}) ...", file=sys.stderr)
    sh = simulate_shift(minutes, seed, options, lifts_per_minute, subject_number - 1)
    print(f"synth-shift: writing {sh.samples.shape[0]} samples ...", file=sys.stderr)
    write_trial_csv(out / "shift.csv", sh.samples, sh.timestamps)
    with open(out / "events.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["start", "end", "kind", "zone", "risk", "start_time", "end_time"])
        for e in sh.events:
            w.writerow([e.start, e.end, e.kind, e.zone, e.risk, f"{sh.timestamps[e.start]:.4f}",
                        f"{sh.timestamps[e.end]:.4f}"])
    lifts = [e for e in sh.events if e.kind == "lift"]
    source = f"liftsim shift seed={seed} difficulty={options.difficulty:g}"
    metas = [TrialMeta(f"shift_L{i + 1:03d}", sh.subject.subject_id, e.zone, e.risk, out / "shift.csv",
                       e.start, e.end, 25.0, source) for i, e in enumerate(lifts)]
    (out / "lifts").mkdir(exist_ok=True)
    write_index(out / "lifts", metas)
    counts = {}
    for e in sh.events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    summary = {"seed": seed, "minutes": minutes, "samples": int(sh.samples.shape[0]), "sample_rate": 25.0,
               "lifts_per_minute": lifts_per_minute, "event_counts": counts,
               "subject": {"id": sh.subject.subject_id, "sex": sh.subject.sex,
                           "stature_m": round(sh.subject.stature, 3), "mass_kg": round(sh.subject.mass, 1),
                           "handed": "left" if sh.subject.left_handed else "right"},
               "options": dataclasses.asdict(options)}
    (out / "shift.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def run(args: argparse.Namespace) -> int:
    """Write the shift folder and print a one-line summary."""
    from edge.errors import ConfigError

    from .cli_synth import options_from_args

    if not (0 < args.minutes <= 24 * 60):
        raise ConfigError(f"--minutes {args.minutes}; expected more than 0 and at most 1440")
    if not (0 < args.lifts_per_minute <= 20):
        raise ConfigError(f"--lifts-per-minute {args.lifts_per_minute}; expected more than 0 and at most 20")
    if args.subject < 1:
        raise ConfigError(f"--subject {args.subject}; expected 1 or more")
    summary = write_shift(args.out, args.minutes, args.seed, options_from_args(args), args.lifts_per_minute,
                          args.subject)
    c = summary["event_counts"]
    print(f"wrote {args.minutes:g} min ({summary['samples']} samples) to {args.out}: "
          + ", ".join(f"{c[k]} {k}" for k in sorted(c)))
    return 0
