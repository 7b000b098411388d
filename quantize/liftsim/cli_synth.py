"""``quantize synth``: write a simulated NIOSH-style lifting data set.

Defaults are the paper's cohort: 10 subjects (5 female, 5 male), 12 zones x
6 repetitions = 720 trials (120 low, 240 medium, 360 high), written with
:class:`edge.dataset.DatasetWriter` (``index.csv`` + ``trials/*.csv``) plus
``subjects.json`` (options and who the simulated people are) and ``events.csv`` (every
trial's event samples). The same seed writes byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

HELP = "simulate six-IMU lifting trials (the 720-trial NIOSH-style cohort by default)"


def add_options_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of :class:`quantize.liftsim.options.SimOptions` (shared with calibrate)."""
    from .options import SimOptions

    d = SimOptions()
    parser.add_argument("--difficulty", type=float, default=d.difficulty, metavar="K",
                        help=f"kappa: one multiplier on origin, style and mounting spreads (default {d.difficulty})")
    parser.add_argument("--origin-spread", type=float, default=d.origin_spread,
                        help=f"origin SD as a fraction of the zone's extent, before kappa (default {d.origin_spread})")
    parser.add_argument("--left-handed-share", type=float, default=d.left_handed_share, metavar="P",
                        help=f"probability a subject is left-handed (default {d.left_handed_share})")
    parser.add_argument("--dropout-rate", type=float, default=d.dropout_rate,
                        help=f"per-sample, per-sensor chance a dropout starts (default {d.dropout_rate})")
    parser.add_argument("--dropout-mean-ms", type=float, default=d.dropout_mean_ms,
                        help=f"mean dropout length, ms (default {d.dropout_mean_ms:g})")
    parser.add_argument("--clock-offset-ms", type=float, default=d.clock_offset_ms,
                        help=f"SD of each sensor's clock offset, ms (default {d.clock_offset_ms:g})")
    parser.add_argument("--mount-error-scale", type=float, default=d.mount_error_scale,
                        help=f"multiplier on mounting rotation/position errors (default {d.mount_error_scale:g})")
    parser.add_argument("--trunk-mount-scale", type=float, default=d.trunk_mount_scale,
                        help=f"further multiplier on the Back, Side and Thig mounting errors; wrist and upper-arm "
                             f"straps keep --mount-error-scale (default {d.trunk_mount_scale:g})")
    parser.add_argument("--no-sensor-errors", action="store_true",
                        help="ideal sensors: no bias, scale, cross-axis, noise or quantisation")
    parser.add_argument("--no-artefacts", action="store_true",
                        help="no transients, heel strikes, tremor or soft-tissue motion")
    parser.add_argument("--step-scale", type=float, default=d.step_scale,
                        help=f"multiplier on the propensity to step toward far loads (default {d.step_scale:g})")
    parser.add_argument("--squat-scale", type=float, default=d.squat_scale,
                        help=f"multiplier on the squat-index spreads, on top of kappa (default {d.squat_scale:g}; "
                             f"1/kappa keeps the spec's)")
    parser.add_argument("--hold-spread", type=float, default=d.hold_spread,
                        help=f"SD of the destination height as a fraction of stature (default {d.hold_spread:g}: "
                             f"the spec's fixed 0.55 H)")
    parser.add_argument("--hold-height", type=float, default=d.hold_height, metavar="FRACTION",
                        help="mean height of the destination grip as a fraction of stature (default: 0.55 H "
                             "with P1/P3, 0.44 H with P2)")
    parser.add_argument("--protocol", choices=("P1", "P2", "P3"), default=d.protocol,
                        help="P1 lift-hold-return (default), P2 place at 0.44 H without return, P3 lift and hold")
    parser.add_argument("--origins", choices=("spread", "paper"), default=d.origins,
                        help=f"spread: origins drawn around each zone's target (x kappa); paper: the NIOSH "
                             f"protocol, midpoints except per-subject altered zones 1-3, 4, 7, 10 "
                             f"(default {d.origins})")
    parser.add_argument("--midpoints", action="store_true", help="every origin on its zone's target point")


def options_from_args(args: argparse.Namespace):
    """Build :class:`SimOptions` from parsed flags (raises ConfigError on bad values)."""
    from .options import SimOptions

    return SimOptions(difficulty=args.difficulty, origin_spread=args.origin_spread,
                      left_handed_share=args.left_handed_share, dropout_rate=args.dropout_rate,
                      dropout_mean_ms=args.dropout_mean_ms, clock_offset_ms=args.clock_offset_ms,
                      mount_error_scale=args.mount_error_scale, trunk_mount_scale=args.trunk_mount_scale,
                      sensor_errors=not args.no_sensor_errors,
                      artefacts=not args.no_artefacts, midpoints=args.midpoints, step_scale=args.step_scale,
                      squat_scale=args.squat_scale,
                      hold_spread=args.hold_spread, hold_height=args.hold_height, protocol=args.protocol,
                      origins=args.origins)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``quantize synth``."""
    parser.add_argument("--out", required=True, type=Path, help="output data set folder")
    parser.add_argument("--subjects", type=int, default=10, metavar="N", help="number of subjects (default 10)")
    parser.add_argument("--reps", type=int, default=6, metavar="R", help="repetitions per zone (default 6)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="cohort seed (default 0)")
    parser.add_argument("--first-subject", type=int, default=1, metavar="I",
                        help="number of the first subject (default 1); others give people unseen elsewhere")
    parser.add_argument("--workers", type=int, default=1, help="processes (output identical for any value)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_options_arguments(parser)


def write_cohort(out: Path, n_subjects: int, reps: int, seed: int, options, first_subject: int = 1,
                 workers: int = 1, progress: bool = True) -> int:
    """Generate and write a cohort; returns the number of trials written."""
    from edge.dataset import DatasetWriter

    from .subjects import make_cohort
    from .trials import generate_cohort

    out = Path(out)
    _remove_previous_output(out)
    total = n_subjects * 12 * reps
    trials = generate_cohort(n_subjects, reps, seed, options, first_subject - 1, workers)
    if progress:
        from tqdm import tqdm

        trials = tqdm(trials, total=total, desc="synth", unit="trial", file=sys.stderr)
    source = f"liftsim seed={seed} difficulty={options.difficulty:g} origins={options.origins}"
    event_rows = []
    with DatasetWriter(out, source=source) as writer:
        for tr in trials:
            writer.add_trial(tr.trial_id, tr.subject_id, tr.zone, tr.samples, tr.timestamps,
                             tr.lift_start, tr.lift_end)
            p = tr.plan
            event_rows.append([tr.trial_id] + [tr.events[k] for k in ("move_start", "grasp", "lift_start", "hold",
                                                                        "release", "end")]
                              + [f"{p.h:.3f}", f"{p.v:.3f}", f"{p.hold_v:.3f}", f"{p.step:.3f}", p.atypical])
    with open(out / "events.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["trial_id", "move_start", "grasp", "lift_start", "hold", "release", "end",
                    "origin_h_m", "origin_v_m", "hold_v_m", "step_m", "atypical"])
        w.writerows(event_rows)
    people = [{"subject": s.subject_id, "sex": s.sex, "stature_m": round(s.stature, 3), "mass_kg": round(s.mass, 1),
               "handed": "left" if s.left_handed else "right", "squat_index": round(s.style.squat_index, 3),
               "rho": round(s.style.rho, 3), "speed": round(s.speed, 3)}
              for s in make_cohort(n_subjects, seed, options, first_subject - 1)]
    (out / "subjects.json").write_text(json.dumps({"source": source, "options": dataclasses.asdict(options),
                                                   "subjects": people}, indent=1) + "\n", encoding="utf-8")
    return len(event_rows)


def _remove_previous_output(out: Path) -> None:
    """Delete the trial CSVs a previous ``synth`` listed in ``out/index.csv``, so none go stale."""
    index = out / "index.csv"
    if not index.is_file():
        return
    with open(index, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rel = (row.get("file") or "").strip()
            target = (out / rel).resolve()
            if rel.startswith("trials/") and target.parent == (out / "trials").resolve() and target.is_file():
                target.unlink()


def run(args: argparse.Namespace) -> int:
    """Write the data set; prints a one-line summary."""
    from edge.errors import ConfigError

    if args.subjects < 1 or args.reps < 1:
        raise ConfigError(f"--subjects {args.subjects} / --reps {args.reps}; expected at least 1 each")
    if args.first_subject < 1:
        raise ConfigError(f"--first-subject {args.first_subject}; expected 1 or more")
    options = options_from_args(args)
    n = write_cohort(args.out, args.subjects, args.reps, args.seed, options, args.first_subject,
                     max(1, args.workers), not args.no_progress)
    print(f"wrote {n} trials to {args.out} (seed {args.seed}, difficulty {options.difficulty:g}, "
          f"origins {options.origins})")
    return 0
