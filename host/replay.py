"""``host replay --data DIR --bundle FILE --trust KEY.pub``: recorded trials through the real hub.

Each trial of a data set (or one trial CSV) is streamed through the hub
daemon itself (:class:`edge.daemon.Hub` with a ``replay://`` source and the
``log`` alert): the aligner, the lift detector finding the lift in the
stream, the shared tensorizer and the int8 interpreter of the signed
bundle. One row per trial: the labelled risk, the lifts the hub found and
the risk it gave each. ``--json`` prints the rows and a summary;
``--out FILE.csv`` writes them.

Unlike ``edge classify`` (which cuts each trial with the index's markers),
nothing here uses the labels' lift markers: this is what a belt would do
with the same motion. ``--speed 0`` (default) replays as fast as possible;
``--speed 1`` in real time.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import add_json_argument, emit

HELP = "replay recorded trials through the real hub code and print its classifications"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``replay``'s flags."""
    parser.add_argument("--data", type=Path, required=True, metavar="DIR|CSV", help="data set folder or one trial CSV")
    parser.add_argument("--bundle", type=Path, required=True, metavar="FILE", help="signed bundle (*.lgb)")
    parser.add_argument("--trust", type=Path, action="append", required=True, metavar="KEY.pub",
                        help="trusted public key (repeatable)")
    parser.add_argument("--speed", type=float, default=0.0, help="multiple of real time (0 = as fast as possible)")
    parser.add_argument("--trial", action="append", default=None, metavar="ID", help="only these trials (repeatable)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N trials")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.csv", help="also write the rows as CSV")
    add_json_argument(parser)


def _trials(data: Path, wanted: Optional[List[str]], limit: Optional[int]) -> List[Dict[str, Any]]:
    """(id, csv path, zone, risk) of each trial to replay."""
    from edge.dataset import load_dataset
    from edge.errors import ConfigError

    if data.is_file():
        return [{"trial_id": data.stem, "file": data, "zone": None, "risk": None}]
    if not data.is_dir():
        raise ConfigError(f"--data {data}: no such file or folder; expected a data set folder or a trial CSV")
    ds = load_dataset(data)
    metas = list(ds.trials)
    if wanted:
        known = {m.trial_id for m in metas}
        missing = [w for w in wanted if w not in known]
        if missing:
            raise ConfigError(f"--trial {missing[0]!r} is not in {data}/index.csv")
        metas = [m for m in metas if m.trial_id in set(wanted)]
    if limit is not None:
        metas = metas[: max(0, limit)]
    return [{"trial_id": m.trial_id, "file": Path(m.file), "zone": m.zone, "risk": m.risk} for m in metas]


def replay_trials(trials: List[Dict[str, Any]], bundle_path: Path, trust: List[Path], *,
                  speed: float = 0.0, progress: bool = True) -> List[Dict[str, Any]]:
    """Run each trial through :class:`edge.daemon.Hub`; return one row per trial."""
    import asyncio

    from edge.bundle import load_bundle
    from edge.daemon import Hub
    from edge.hub_config import HubConfig

    bundle = load_bundle(bundle_path, trusted_keys=trust, force=True)  # loaded and self-tested once
    rows = []
    with tempfile.TemporaryDirectory(prefix="lg-replay-") as tmp:
        for i, trial in enumerate(trials):
            cfg = HubConfig(source=f"replay://{Path(trial['file']).resolve()}?speed={speed:g}",
                            bundle=bundle_path, trust=list(trust), events=Path(tmp) / f"events{i}.jsonl",
                            alert_outputs=["log"])
            hub = Hub(cfg, bundle_loader=lambda *a, **k: bundle)
            lifts: List[Dict[str, Any]] = []
            hub.on_lift.append(lifts.append)
            asyncio.run(hub.run())
            predicted = [l["risk"] for l in lifts]
            main = max(lifts, key=lambda l: l["lift"]["duration_s"]) if lifts else None
            row = {"trial_id": trial["trial_id"], "zone": trial["zone"], "risk": trial["risk"],
                   "lifts": len(lifts), "skipped": hub.counts.get("skipped", 0),
                   "predicted": main["risk"] if main else "none", "all_predicted": predicted,
                   "probs": main["probs"] if main else None,
                   "latency_ms": round(main["latency_ms"], 3) if main else None,
                   "start": main["lift"]["start"] if main else None, "end": main["lift"]["end"] if main else None,
                   "buzzed": any(l["buzzed"] for l in lifts)}
            rows.append(row)
            if progress:
                print(f"replay {i + 1}/{len(trials)} {trial['trial_id']}: {len(lifts)} lift(s) "
                      f"{' '.join(predicted) or '-'} (label {trial['risk'] or '?'})", file=sys.stderr, flush=True)
    bundle.close()
    return rows


def summarize(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Trials, lifts found, and agreement with the labels where labelled."""
    labelled = [r for r in rows if r["risk"]]
    found = [r for r in labelled if r["lifts"]]
    correct = sum(r["predicted"] == r["risk"] for r in found)
    return {"trials": len(rows), "trials_with_a_lift": sum(1 for r in rows if r["lifts"]),
            "lifts": sum(r["lifts"] for r in rows), "buzzed_trials": sum(1 for r in rows if r["buzzed"]),
            "labelled": len(labelled), "accuracy_where_found": round(correct / len(found), 4) if found else None}


def run(args: argparse.Namespace) -> int:
    """Replay and print."""
    from edge.errors import ConfigError

    if args.speed < 0:
        raise ConfigError(f"--speed {args.speed}; expected >= 0")
    trials = _trials(args.data, args.trial, args.limit)
    if not trials:
        raise ConfigError(f"--data {args.data}: no trials to replay")
    rows = replay_trials(trials, args.bundle, args.trust, speed=args.speed)
    summary = summarize(rows)
    if args.out is not None:
        with open(args.out, "w", newline="") as fh:
            fields = ["trial_id", "zone", "risk", "lifts", "predicted", "latency_ms", "start", "end", "buzzed"]
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    lines = [f"{'trial':<14} {'zone':>4} {'label':<7} {'lifts':>5} {'hub says':<9} {'p(low/med/high)':<20} buzz"]
    for r in rows:
        probs = "/".join(f"{p:.2f}" for p in r["probs"].values()) if r["probs"] else "-"
        lines.append(f"{r['trial_id']:<14} {r['zone'] if r['zone'] is not None else '-':>4} "
                     f"{r['risk'] or '-':<7} {r['lifts']:>5} {r['predicted']:<9} {probs:<20} "
                     f"{'yes' if r['buzzed'] else 'no'}")
    lines.append(f"{summary['trials']} trials, {summary['lifts']} lifts found in {summary['trials_with_a_lift']}; "
                 f"agreement with labels where a lift was found: "
                 f"{summary['accuracy_where_found'] if summary['accuracy_where_found'] is not None else '-'}")
    emit(args, {"rows": rows, "summary": summary}, "\n".join(lines))
    return 0
