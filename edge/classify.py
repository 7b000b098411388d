"""``edge classify``: classify a data set's trials offline, through the hub's own code.

::

    edge classify --bundle model.lgb --trust release.pub --data DIR --out preds.csv
    edge classify --bundle model.lgb --trust release.pub --data DIR --split RUN/split.json --out preds.csv
    edge classify ... --markers detector     # find the lift the way the hub does

Each trial goes through exactly what the running hub does with a lift:
``edge.signal_path.cut_lift`` (with the index's markers, as training cut it;
or with ``--markers detector`` the markers the hub's
:class:`~edge.lift_detector.LiftDetector` finds when the trial is streamed
through the :class:`~edge.aligner.Aligner`), then
``LoadedBundle.classify`` (``edge.signal_path.tensorize``, int8
quantization with the model's scale and zero point, the TFLite interpreter).

``preds.csv`` columns: ``trial_id, subject, zone, risk, predicted,
p_low, p_medium, p_high, latency_ms, start, end`` (``start``/``end`` are the
markers used; with ``--markers detector`` a trial in which no lift was found
has ``predicted`` = ``none``). A summary (accuracy, per-class recall,
confusion matrix) goes to stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

HELP = "classify a data set's trials offline through exactly the hub's code path"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``edge classify``."""
    parser.add_argument("--bundle", required=True, metavar="FILE", help="signed model bundle (.lgb)")
    parser.add_argument("--trust", required=True, action="append", metavar="KEY.pub",
                        help="trusted public key (repeatable)")
    parser.add_argument("--data", required=True, metavar="DIR", help="data set folder")
    parser.add_argument("--out", required=True, metavar="CSV", help="where to write the predictions")
    parser.add_argument("--split", metavar="JSON", help="a run's split.json: classify only its trials")
    parser.add_argument("--subset", choices=("test", "train", "all"), default="test",
                        help="with --split: which trials (default: test)")
    parser.add_argument("--markers", choices=("index", "detector"), default="index",
                        help="cut with the index's lift markers (default) or the hub's lift detector's")
    parser.add_argument("--skip-bad", action="store_true", help="skip trials that fail validation")
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads")


def detect_in_trial(samples: np.ndarray, timestamps: np.ndarray, recipe: Any,
                    detector_settings: Any = None) -> List[Any]:
    """Stream one trial through the hub's aligner and lift detector.

    The trial is fed as six per-sensor streams with its own time stamps, then
    the stream ends (as a replayed trial followed by a gap does).

    Returns:
        The :class:`~edge.lift_detector.LiftWindow` list, in order.
    """
    from .aligner import Aligner, GridRow, Outage
    from .layout import SENSORS
    from .lift_detector import LiftDetector
    from .sources.base import SensorReading

    aligner = Aligner()
    detector = LiftDetector(detector_settings, recipe=recipe)
    windows: List[Any] = []

    def handle(outs: List[Any]) -> None:
        for o in outs:
            if isinstance(o, GridRow):
                windows.extend(detector.push(o.t, o.values, o.valid))
            elif isinstance(o, Outage):
                windows.extend(detector.flush())

    values = np.asarray(samples, dtype=np.float64)  # as replay:// delivers them (bit-identical to the hub)
    t0 = float(timestamps[0])
    for k in range(len(samples)):
        t = float(timestamps[k])
        for j, sensor in enumerate(SENSORS):
            handle(aligner.add(SensorReading(sensor, k, t, t - t0, values[k, 6 * j: 6 * j + 6])))
    handle(aligner.flush())
    return windows


def _select(dataset: Any, split: Optional[str], subset: str) -> List[Any]:
    from .errors import ConfigError

    trials = list(dataset.trials)
    if split is None:
        return trials
    try:
        info = json.loads(Path(split).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--split {split}: cannot read it as JSON: {exc}") from None
    if subset == "all":
        return trials
    if subset not in info or not isinstance(info[subset], list):
        raise ConfigError(f"--split {split}: no list {subset!r}; expected keys 'train' and 'test' with trial ids")
    wanted = set(map(str, info[subset]))
    chosen = [t for t in trials if t.trial_id in wanted]
    missing = wanted - {t.trial_id for t in chosen}
    if missing:
        raise ConfigError(f"--split {split}: {len(missing)} {subset} trial(s) are not in the data set, e.g. "
                          f"{sorted(missing)[0]!r}")
    return chosen


def summarize(rows: Sequence[Dict[str, Any]], class_names: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, per-class recall and the confusion matrix of prediction rows."""
    idx = {c: i for i, c in enumerate(class_names)}
    conf = np.zeros((len(class_names), len(class_names)), dtype=int)
    none = 0
    for r in rows:
        if r["predicted"] not in idx:
            none += 1
            continue
        conf[idx[r["risk"]], idx[r["predicted"]]] += 1
    n = int(conf.sum())
    recall = {c: (float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None) for c, i in idx.items()}
    lat = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    return {"trials": len(rows), "classified": n, "no_lift_found": none,
            "accuracy": float(np.trace(conf) / n) if n else None, "recall": recall, "confusion": conf.tolist(),
            "latency_ms_median": float(np.median(lat)) if lat else None}


def classify_dataset(bundle: Any, data: Any, *, split: Optional[str] = None, subset: str = "test",
                     markers: str = "index", skip_bad: bool = False, progress: bool = True) -> List[Dict[str, Any]]:
    """Classify each selected trial; return one row per trial (see the module docstring)."""
    from .dataset import load_dataset
    from .signal_path import cut_lift

    dataset = load_dataset(data, skip_bad=skip_bad)
    trials = _select(dataset, split, subset)
    rows: List[Dict[str, Any]] = []
    t0 = time.perf_counter()
    for n, meta in enumerate(trials, 1):
        trial = dataset.read(meta)
        if markers == "index":
            windows: List[Tuple[int, int, np.ndarray]] = [
                (meta.lift_start, meta.lift_end, cut_lift(trial.samples, meta.lift_start, meta.lift_end, bundle.recipe))]
        else:
            found = [w for w in detect_in_trial(trial.samples, trial.timestamps, bundle.recipe)
                     if w.skip_reason is None]
            # the trial holds one lift: take the longest movement found
            found.sort(key=lambda w: w.end_index - w.start_index, reverse=True)
            windows = [(w.start_index, w.end_index, w.window) for w in found[:1]]
        row: Dict[str, Any] = {"trial_id": meta.trial_id, "subject": meta.subject, "zone": meta.zone,
                               "risk": meta.risk}
        if windows:
            start, end, window = windows[0]
            result = bundle.classify(window)
            row.update(predicted=result.risk, latency_ms=round(float(result.latency_ms), 3), start=start, end=end,
                       **{f"p_{c}": round(float(p), 6) for c, p in zip(bundle.class_names, result.probs)})
        else:
            row.update(predicted="none", latency_ms=None, start=None, end=None,
                       **{f"p_{c}": None for c in bundle.class_names})
        rows.append(row)
        if progress and (n % 25 == 0 or n == len(trials)):
            print(f"edge classify: {n}/{len(trials)} trials ({time.perf_counter() - t0:.1f} s)", file=sys.stderr,
                  flush=True)
    return rows


def write_predictions(path: Any, rows: Sequence[Dict[str, Any]], class_names: Sequence[str]) -> Path:
    """Write ``preds.csv``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["trial_id", "subject", "zone", "risk", "predicted"] + [f"p_{c}" for c in class_names] + \
        ["latency_ms", "start", "end"]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return path


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edge classify``."""
    from .bundle import load_bundle

    bundle = load_bundle(args.bundle, trusted_keys=args.trust, num_threads=args.threads)
    print(f"edge classify: model {bundle.model_id} version {bundle.model_version} ({bundle.runtime})",
          file=sys.stderr)
    rows = classify_dataset(bundle, args.data, split=args.split, subset=args.subset, markers=args.markers,
                            skip_bad=args.skip_bad)
    out = write_predictions(args.out, rows, bundle.class_names)
    s = summarize(rows, bundle.class_names)
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.4f}"
    print(f"trials {s['trials']}  classified {s['classified']}  accuracy {acc}  "
          + "  ".join(f"recall_{c} {'n/a' if v is None else f'{v:.3f}'}" for c, v in s["recall"].items())
          + (f"  no_lift_found {s['no_lift_found']}" if s["no_lift_found"] else ""))
    print("confusion (rows true, columns predicted: " + ", ".join(bundle.class_names) + "): "
          + json.dumps(s["confusion"]))
    print(f"predictions in {out}")
    return 0
