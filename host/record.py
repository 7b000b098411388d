"""``host record --source URL --subject S --zone Z --out DIR``: record labelled lifts.

How a site builds its own training data. The worker wears the six IMUs and
performs lifts from one ACGIH zone; this command reads the live source (or a
replay), puts the streams on the 25 Hz grid with the hub's own
:class:`edge.aligner.Aligner`, finds each lift with the hub's
:class:`edge.lift_detector.LiftDetector`, and writes one trial per lift into
the data set format through :class:`edge.dataset.DatasetWriter` (trial CSV
plus a row in ``index.csv`` with subject, zone, risk and the lift's start and
end markers). Trials are cut ``--pad`` seconds either side of the lift, so
training's ``cut_lift`` margins fit inside.

Correcting the markers:

* ``--interactive``: for each lift found, shows its start and end and asks
  to accept (Enter), correct (``START END`` as row numbers of the trial as
  shown) or skip (``s``);
* ``--lift-start N --lift-end M``: no detection; the whole recording becomes
  one trial with these markers (row numbers from the first recorded row).

Recording stops when the source ends (a replay), after ``--duration``
seconds, after ``--lifts`` lifts, or on Ctrl-C. ``--out`` may be an existing
data set: new trials are added to its index.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Tuple

import numpy as np

from .common import add_json_argument, emit, say

HELP = "record labelled trials from live IMUs or a replay into the data set format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``record``'s flags."""
    parser.add_argument("--source", required=True, metavar="URL",
                        help="IMU source: serial://, ble://, witmotion-ble://, replay://PATH?speed=N")
    parser.add_argument("--subject", required=True, metavar="S", help="subject id written to the index")
    parser.add_argument("--zone", required=True, type=int, metavar="Z", help="ACGIH zone of the lifts (1..12)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="data set folder (created or extended)")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--lifts", type=int, default=None, metavar="N", help="stop after N lifts")
    parser.add_argument("--pad", type=float, default=3.0, metavar="S",
                        help="seconds kept either side of each lift (default 3)")
    parser.add_argument("--lift-start", type=int, default=None, metavar="ROW",
                        help="no detection: the lift's first row (with --lift-end)")
    parser.add_argument("--lift-end", type=int, default=None, metavar="ROW", help="the lift's last row")
    parser.add_argument("--interactive", action="store_true", help="confirm or correct each lift's markers")
    parser.add_argument("--trial-prefix", default=None, metavar="TEXT",
                        help="trial id prefix (default SUBJECT_Zzz_<time>)")
    add_json_argument(parser)


class Recording:
    """What :func:`capture` gathered: aligned rows, their runs, and the lifts found.

    Attributes:
        values: ``(n, 36)`` float64 aligned samples.
        t: ``(n,)`` grid times (host clock, seconds).
        valid: ``(n, 6)`` per-sensor validity.
        run: ``(n,)`` run number (a new run starts after each outage).
        lifts: ``(start_row, end_row)`` of each lift, rows into ``values``.
        wall_offset: Add to ``t`` to get Unix time.
        counters: Source, aligner and detector counters.
    """

    def __init__(self) -> None:
        self.values: List[np.ndarray] = []
        self.t: List[float] = []
        self.valid: List[np.ndarray] = []
        self.run: List[int] = []
        self.lifts: List[Tuple[int, int]] = []
        self.wall_offset = time.time() - time.monotonic()
        self.counters: Dict[str, Any] = {}

    def arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rows as arrays."""
        if not self.values:
            return np.zeros((0, 36)), np.zeros(0), np.zeros((0, 6), bool), np.zeros(0, int)
        return (np.vstack(self.values), np.asarray(self.t), np.vstack(self.valid), np.asarray(self.run))


async def capture(url: str, *, duration: Optional[float] = None, max_lifts: Optional[int] = None,
                  detect: bool = True, stop: Optional[asyncio.Event] = None,
                  progress: bool = True) -> Recording:
    """Read ``url`` through the hub's aligner and lift detector.

    Args:
        url: Source URL.
        duration: Stop after this many seconds of wall time.
        max_lifts: Stop once this many lifts were found.
        detect: Run the lift detector.
        stop: Set to stop early (Ctrl-C).
        progress: A line on stderr per lift and every 10 s.
    """
    from edge.aligner import Aligner, GridRow, Outage, SensorChange
    from edge.lift_detector import LiftDetector
    from edge.sources import SensorReading, open_source

    rec = Recording()
    aligner, detector = Aligner(), LiftDetector()
    index_of: Dict[int, int] = {}  # aligner row index -> our row
    run = 0
    stop = stop or asyncio.Event()
    t0 = time.monotonic()
    last_note = t0

    def take(outs: List[Any]) -> None:
        nonlocal run
        for o in outs:
            if isinstance(o, GridRow):
                index_of[o.index] = len(rec.values)
                rec.values.append(np.asarray(o.values, np.float64))
                rec.t.append(float(o.t))
                rec.valid.append(np.asarray(o.valid, bool))
                rec.run.append(run)
                wins = detector.push(o.t, o.values, o.valid) if detect else []
            elif isinstance(o, Outage):
                wins = detector.flush() if detect else []
                run += 1
            else:
                if isinstance(o, SensorChange) and progress and o.state != "connected":
                    say(f"record: sensor {o.sensor} {o.state}: {o.detail}")
                wins = []
            for w in wins:
                if w.start_index in index_of and w.end_index in index_of:
                    rec.lifts.append((index_of[w.start_index], index_of[w.end_index]))
                    if progress:
                        say(f"record: lift {len(rec.lifts)} found: rows {index_of[w.start_index]}.."
                            f"{index_of[w.end_index]} ({w.duration_s:.1f} s)")
                    if max_lifts is not None and len(rec.lifts) >= max_lifts:
                        stop.set()

    source = open_source(url)
    async with source:
        events = source.events().__aiter__()
        while not stop.is_set():
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            try:
                ev = await asyncio.wait_for(events.__anext__(), timeout=0.5)
            except asyncio.TimeoutError:
                take(aligner.tick(time.monotonic()))
                continue
            except StopAsyncIteration:
                break
            if isinstance(ev, SensorReading):
                take(aligner.add(ev))
            if progress and time.monotonic() - last_note > 10:
                last_note = time.monotonic()
                say(f"record: {len(rec.values)} rows ({len(rec.values) / 25.0:.0f} s), {len(rec.lifts)} lift(s)")
        rec.counters = {"source": source.health(), "aligner": aligner.health(), "detector": detector.health()}
    take(aligner.flush("recording ended"))
    if detect:
        take(detector.flush())
    return rec


def _ask(prompt: str, stdin: TextIO) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = stdin.readline()
    if not line:
        return ""
    return line.strip()


def plan_trials(rec: Recording, pad_rows: int, *, lift_start: Optional[int] = None,
                lift_end: Optional[int] = None, interactive: bool = False,
                stdin: Optional[TextIO] = None) -> List[Dict[str, int]]:
    """Decide each trial's rows and markers.

    Returns:
        ``{"first", "last", "start", "end"}`` per trial: recording rows
        ``first..last`` (inclusive), markers relative to ``first``.

    Raises:
        ConfigError: Markers outside the recording.
    """
    from edge.errors import ConfigError

    values, _, _, runs = rec.arrays()
    n = len(values)
    if lift_start is not None or lift_end is not None:
        if lift_start is None or lift_end is None:
            raise ConfigError("--lift-start and --lift-end go together")
        first_run = np.flatnonzero(runs == runs[0]) if n else np.zeros(0, int)
        last = int(first_run[-1]) if len(first_run) else -1
        if not 0 <= lift_start <= lift_end <= last:
            raise ConfigError(f"--lift-start {lift_start} --lift-end {lift_end}: expected 0 <= start <= end <= "
                              f"{last} (the recording's first continuous run has {last + 1} rows)")
        return [{"first": 0, "last": last, "start": lift_start, "end": lift_end}]
    plans = []
    stdin = stdin or sys.stdin
    for k, (s, e) in enumerate(rec.lifts):
        same = np.flatnonzero(runs == runs[s])
        first, last = max(int(same[0]), s - pad_rows), min(int(same[-1]), e + pad_rows)
        start, end = s - first, e - first
        if interactive:
            while True:
                answer = _ask(f"lift {k + 1}: trial rows 0..{last - first}, lift {start}..{end} "
                              f"({(end - start + 1) / 25.0:.1f} s). Enter = keep, 'START END' = correct, "
                              f"s = skip: ", stdin)
                if answer == "":
                    break
                if answer.lower() in ("s", "skip"):
                    start = None
                    break
                parts = answer.split()
                try:
                    a, b = int(parts[0]), int(parts[1])
                except (ValueError, IndexError):
                    say(f"record: {answer!r}: expected two row numbers, e.g. '40 180'")
                    continue
                if not 0 <= a <= b <= last - first:
                    say(f"record: {a}..{b} is outside the trial's rows 0..{last - first}")
                    continue
                start, end = a, b
                break
            if start is None:
                continue
        plans.append({"first": first, "last": last, "start": start, "end": end})
    return plans


def write_trials(rec: Recording, plans: List[Dict[str, int]], out: Path, subject: str, zone: int,
                 prefix: str, source_url: str) -> List[Dict[str, Any]]:
    """Append the planned trials to the data set at ``out``; return their index rows."""
    from edge.dataset import DatasetWriter, load_dataset
    from edge.layout import SENSORS

    values, t, valid, _ = rec.arrays()
    existing = []
    if (out / "index.csv").is_file():
        existing = list(load_dataset(out).trials)
    written = []
    writer = DatasetWriter(out, source=f"host record {source_url}")
    writer.metas.extend(existing)
    taken = {m.trial_id for m in existing}
    for k, p in enumerate(plans):
        rows = slice(p["first"], p["last"] + 1)
        samples = values[rows]
        if np.isnan(samples).any():
            bad = [c for c in range(6) if np.isnan(samples[:, 6 * c:6 * c + 6]).any()]
            say(f"record: lift {k + 1} skipped: sensor(s) {', '.join(SENSORS[c] for c in bad)} never "
                f"delivered during it")
            continue
        trial_id = f"{prefix}_{k + 1}"
        n = 1
        while trial_id in taken:
            n += 1
            trial_id = f"{prefix}_{k + 1}_{n}"
        taken.add(trial_id)
        stamps = t[rows] + rec.wall_offset
        meta = writer.add_trial(trial_id, subject, zone, samples, stamps, p["start"], p["end"])
        gaps = {s: int((~valid[rows][:, i]).sum()) for i, s in enumerate(SENSORS)
                if (~valid[rows][:, i]).any()}
        written.append({"trial_id": meta.trial_id, "subject": meta.subject, "zone": meta.zone, "risk": meta.risk,
                        "file": str(meta.file), "rows": int(samples.shape[0]), "lift_start": meta.lift_start,
                        "lift_end": meta.lift_end, "gap_rows": gaps})
    writer.close()
    return written


def run(args: argparse.Namespace) -> int:
    """Record and write."""
    from edge.errors import ConfigError
    from edge.layout import risk_of_zone

    risk = risk_of_zone(args.zone)  # validates 1..12 with a clear message
    if args.pad < 0:
        raise ConfigError(f"--pad {args.pad}; expected >= 0 seconds")
    if args.lifts is not None and args.lifts < 1:
        raise ConfigError(f"--lifts {args.lifts}; expected at least 1")
    manual = args.lift_start is not None or args.lift_end is not None
    prefix = args.trial_prefix or (f"{args.subject}_Z{args.zone:02d}_"
                                   f"{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}")

    async def go() -> Recording:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        try:
            return await capture(args.source, duration=args.duration, max_lifts=args.lifts,
                                 detect=not manual, stop=stop)
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    say(f"record: reading {args.source} (subject {args.subject}, zone {args.zone} = {risk} risk); "
        f"Ctrl-C to stop")
    rec = asyncio.run(go())
    n_rows = len(rec.values)
    if n_rows == 0:
        raise ConfigError(f"--source {args.source}: no samples arrived; check the sensors and the URL")
    plans = plan_trials(rec, int(round(args.pad * 25)), lift_start=args.lift_start, lift_end=args.lift_end,
                        interactive=args.interactive)
    if not plans:
        raise ConfigError(f"no lift found in {n_rows} rows ({n_rows / 25.0:.1f} s) from {args.source}; "
                          f"give the markers with --lift-start/--lift-end or record again")
    written = write_trials(rec, plans, args.out, args.subject, args.zone, prefix, args.source)
    text = "\n".join(f"{w['trial_id']}: {w['rows']} rows, lift {w['lift_start']}..{w['lift_end']} "
                     f"({(w['lift_end'] - w['lift_start'] + 1) / 25.0:.1f} s), zone {w['zone']} ({w['risk']})"
                     + (f", gaps {w['gap_rows']}" if w["gap_rows"] else "") for w in written)
    text += f"\n{len(written)} trial(s) added to {args.out / 'index.csv'}"
    emit(args, {"trials": written, "rows_recorded": n_rows, "out": str(args.out)}, text)
    return 0
