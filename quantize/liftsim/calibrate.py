"""``quantize calibrate``: calibrate the difficulty knob kappa with a fast proxy classifier.

For every kappa and seed, a cohort is simulated in memory and every lift goes
through the paper's signal path exactly as training does: cut with the
recipe's margins (:func:`edge.signal_path.cut_lift`), the order-2 2-12 Hz
Butterworth band-pass (:func:`quantize.filter_design.design_bandpass`,
applied causally by :func:`edge.signal_path.apply_sos_batch`) and per-channel
standardisation fitted on the training split only. The proxy classifier is a
scikit-learn logistic regression on six statistics of every filtered,
standardised channel (216 features), trained on a random 75/25 split (as in
the paper). Accepted kappas give mean accuracy in [0.85, 0.93] with recall
ordered low < medium <= high.

The CNN recalibration belongs to the training pipeline (``quantize train``);
its rows go into the table in ``docs/simulator.md`` where marked.

Also: ``--band-power`` prints the 2-12 Hz band power per sensor, and
``--plot`` draws one trial per risk class (all 36 channels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

HELP = "calibrate the simulator's difficulty kappa with a proxy classifier; band power and example plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``quantize calibrate``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for calibration.json / .md and PNGs")
    parser.add_argument("--kappas", default="0.5,1,1.5,2",
                        help="comma-separated difficulties to try (default 0.5,1,1.5,2)")
    parser.add_argument("--seeds", type=int, default=5, help="cohorts per kappa (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here (default 0)")
    parser.add_argument("--subjects", type=int, default=10, help="subjects per cohort (default 10)")
    parser.add_argument("--reps", type=int, default=6, help="repetitions per zone (default 6)")
    parser.add_argument("--step-scale", type=float, default=1.0,
                        help="multiplier on the propensity to step toward far loads (default 1)")
    parser.add_argument("--hold-spread", type=float, default=0.0,
                        help="SD of the destination height as a fraction of stature (default 0)")
    parser.add_argument("--origins", choices=("spread", "paper"), default=None,
                        help="lift origins: spread (around each zone's target) or paper (NIOSH protocol); "
                             "default: the generator's default")
    parser.add_argument("--split", default="random",
                        help="comma-separated: random (75/25, the paper) and/or subject (leave one out)")
    parser.add_argument("--workers", type=int, default=1, help="processes for simulation (default 1)")
    parser.add_argument("--band-power", action="store_true", help="also write the 2-12 Hz band-power table")
    parser.add_argument("--plot", action="store_true", help="also plot one trial per risk class (36 channels)")
    parser.add_argument("--skip-calibration", action="store_true", help="only --band-power / --plot")


# --------------------------------------------------------------------------- features

def lift_windows(trials: Sequence, pre: int = 50, post: int = 50) -> List[np.ndarray]:
    """Cut every trial's lift as training and the hub do (:func:`edge.signal_path.cut_lift`)."""
    from edge.signal_path import cut_lift

    return [cut_lift(t.samples, t.lift_start, t.lift_end, pre_samples=pre, post_samples=post) for t in trials]


def filtered_windows(windows: Sequence[np.ndarray], sos: np.ndarray) -> List[np.ndarray]:
    """Band-pass every window causally from steady state (the signal path's filter)."""
    from edge.signal_path import apply_sos_batch

    return apply_sos_batch(sos, list(windows))


def proxy_features(filtered: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Six statistics per standardised channel: SD, min, max, 10th/90th percentile, mean |diff|."""
    rows = []
    for f in filtered:
        z = (f - mean) / std
        rows.append(np.concatenate([z.std(0), z.min(0), z.max(0), np.percentile(z, 10, axis=0),
                                    np.percentile(z, 90, axis=0), np.abs(np.diff(z, axis=0)).mean(0)]))
    return np.asarray(rows)


def evaluate_proxy(trials: Sequence, seed: int, sos: np.ndarray, split: str = "random") -> Dict[str, object]:
    """Fit and test the proxy; standardisation is always fitted on the training part only.

    Returns ``accuracy``, ``recall`` per class, the class ``confusion`` matrix and
    ``per_zone``: zone -> test trials predicted low / medium / high.

    Args:
        trials: Simulated trials.
        seed: Seed of the random split.
        sos: Band-pass coefficients.
        split: ``"random"`` (75/25, the paper) or ``"subject"`` (leave one subject out;
            predictions of every fold pooled).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from edge.layout import CLASS_NAMES, ZONE_RISK
    from edge.signal_path import fit_standardization

    y = np.array([CLASS_NAMES.index(ZONE_RISK[t.zone]) for t in trials])
    windows = lift_windows(trials)
    filt = filtered_windows(windows, sos)
    if split == "random":
        idx_train, idx_test = train_test_split(np.arange(len(trials)), test_size=0.25, random_state=seed)
        folds = [(idx_train, idx_test)]
    elif split == "subject":
        subjects = np.array([t.subject_id for t in trials])
        folds = [(np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)) for s in sorted(set(subjects))]
    else:
        raise ValueError(f"split {split!r}; expected 'random' or 'subject'")
    truth, pred, zones = [], [], []
    trial_zones = np.array([t.zone for t in trials])
    for idx_train, idx_test in folds:
        mean, std = fit_standardization([windows[i] for i in idx_train], sos)  # training part only
        X = proxy_features(filt, mean, std)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
        clf.fit(X[idx_train], y[idx_train])
        truth.append(y[idx_test])
        pred.append(clf.predict(X[idx_test]))
        zones.append(trial_zones[idx_test])
    truth, pred, zones = np.concatenate(truth), np.concatenate(pred), np.concatenate(zones)
    rec = recall_score(truth, pred, labels=[0, 1, 2], average=None, zero_division=0)
    return {"split": split, "accuracy": float(accuracy_score(truth, pred)),
            "recall": {c: float(r) for c, r in zip(CLASS_NAMES, rec)},
            "confusion": confusion_matrix(truth, pred, labels=[0, 1, 2]).tolist(),
            "per_zone": {int(z): np.bincount(pred[zones == z], minlength=3).tolist() for z in sorted(set(zones))}}


def calibrate(kappas: Sequence[float], seeds: int, n_subjects: int = 10, reps: int = 6, workers: int = 1,
              progress: bool = True, splits: Sequence[str] = ("random",),
              base_options: Optional[Dict[str, object]] = None, first_seed: int = 0) -> Dict[str, object]:
    """Run the proxy over kappas x seeds (x splits); returns per-run results and summaries.

    ``base_options`` are other :class:`SimOptions` fields held fixed (e.g. ``step_scale``).
    """
    from quantize.filter_design import design_bandpass

    from .options import SimOptions
    from .trials import generate_cohort

    sos = design_bandpass()
    runs = []
    for k in kappas:
        for seed in range(first_seed, first_seed + seeds):
            t0 = time.perf_counter()
            opts = SimOptions(difficulty=k, **(base_options or {}))
            trials = list(generate_cohort(n_subjects, reps, seed, opts, workers=workers))
            for split in splits:
                res = evaluate_proxy(trials, seed, sos, split)
                res.update(kappa=k, seed=seed)
                runs.append(res)
                if progress:
                    r = res["recall"]
                    print(f"calibrate: kappa {k:g} seed {seed} {split}: accuracy {res['accuracy']:.3f} recall "
                          f"{r['low']:.2f}/{r['medium']:.2f}/{r['high']:.2f} ({time.perf_counter() - t0:.0f} s)",
                          file=sys.stderr)
    return {"proxy": "logistic regression (C=0.1) on 216 statistics of the filtered, standardised lift window",
            "splits": {"random": "random 75/25 per seed", "subject": "leave one subject out, pooled"},
            "cohort": {"subjects": n_subjects, "reps": reps}, "options": dict(base_options or {}),
            "runs": runs, "summary": summarize(runs)}


def summarize(runs: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """Per (kappa, split): mean/SD/min/max accuracy, mean recalls, ordering and acceptance."""
    out = []
    keys = sorted({(r["kappa"], r.get("split", "random")) for r in runs}, key=lambda x: (x[1] != "random", x))
    for k, split in keys:
        sel = [r for r in runs if r["kappa"] == k and r.get("split", "random") == split]
        accs = [r["accuracy"] for r in sel]
        rm = np.mean([[r["recall"][c] for c in ("low", "medium", "high")] for r in sel], axis=0)
        ordered = bool(rm[0] < rm[1] <= rm[2])
        mean_acc = float(np.mean(accs))
        out.append({"kappa": k, "split": split, "seeds": len(sel), "accuracy_mean": mean_acc,
                    "accuracy_sd": float(np.std(accs)), "accuracy_min": float(np.min(accs)),
                    "accuracy_max": float(np.max(accs)), "recall_low": float(rm[0]),
                    "recall_medium": float(rm[1]), "recall_high": float(rm[2]), "recall_ordered": ordered,
                    "accepted": bool(0.85 <= mean_acc <= 0.93 and ordered)})
    return out


def summary_markdown(result: Dict[str, object]) -> str:
    """The calibration table as markdown."""
    lines = ["| kappa | split | seeds | accuracy mean +- SD (min-max) | recall low / medium / high | ordered | accepted |",
             "|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        lines.append(f"| {s['kappa']:g} | {s.get('split', 'random')} | {s.get('seeds', '')} | "
                     f"{s['accuracy_mean']:.3f} +- {s['accuracy_sd']:.3f} "
                     f"({s['accuracy_min']:.3f}-{s['accuracy_max']:.3f}) | {s['recall_low']:.2f} / "
                     f"{s['recall_medium']:.2f} / {s['recall_high']:.2f} | {'yes' if s['recall_ordered'] else 'no'} "
                     f"| {'yes' if s['accepted'] else 'no'} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- band power

def band_power(trials: Sequence, sos: np.ndarray) -> Dict[str, Dict[str, float]]:
    """RMS of the 2-12 Hz band-passed signal per sensor over lift windows and quiet standing.

    Returns:
        sensor -> {"accel_lift_mg", "gyro_lift_dps", "accel_rest_mg", "gyro_rest_dps"}; accel is
        the RMS of the vector magnitude of the three filtered axes, in mg; gyro likewise in deg/s.
    """
    from edge.layout import SENSORS

    windows = lift_windows(trials, 0, 0)
    filt = filtered_windows([t.samples for t in trials], sos)
    out = {}
    for si, name in enumerate(SENSORS):
        acc_l, gyr_l, acc_r, gyr_r = [], [], [], []
        for t, f in zip(trials, filt):
            x = f.reshape(-1, 6, 6)[:, si]
            lift = x[t.lift_start:t.lift_end + 1]
            rest = x[25:max(26, t.lift_start - 5)]  # after the filter settles, before the reach
            acc_l.append(np.sum(lift[:, :3] ** 2, axis=1))
            gyr_l.append(np.sum(lift[:, 3:] ** 2, axis=1))
            acc_r.append(np.sum(rest[:, :3] ** 2, axis=1))
            gyr_r.append(np.sum(rest[:, 3:] ** 2, axis=1))
        out[name] = {"accel_lift_mg": float(np.sqrt(np.mean(np.concatenate(acc_l))) * 1000),
                     "gyro_lift_dps": float(np.sqrt(np.mean(np.concatenate(gyr_l)))),
                     "accel_rest_mg": float(np.sqrt(np.mean(np.concatenate(acc_r))) * 1000),
                     "gyro_rest_dps": float(np.sqrt(np.mean(np.concatenate(gyr_r))))}
    del windows
    return out


def band_power_markdown(with_art: Dict[str, Dict[str, float]], without: Dict[str, Dict[str, float]]) -> str:
    """Band-power table: default model vs the same cohort without artefacts."""
    lines = ["| sensor | accel lift (mg) | accel lift, no artefacts | accel standing | gyro lift (deg/s) | "
             "gyro lift, no artefacts | gyro standing |", "|---|---|---|---|---|---|---|"]
    for name, v in with_art.items():
        w = without[name]
        lines.append(f"| {name} | {v['accel_lift_mg']:.0f} | {w['accel_lift_mg']:.0f} | {v['accel_rest_mg']:.0f} | "
                     f"{v['gyro_lift_dps']:.1f} | {w['gyro_lift_dps']:.1f} | {v['gyro_rest_dps']:.1f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots

def plot_examples(trials_by_class: Dict[str, object], path: Path) -> None:
    """One trial per risk class, all 36 channels (12 rows: sensor x A/G; x, y, z lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.layout import SENSORS

    fig, axes = plt.subplots(12, 3, figsize=(15, 20), sharex="col")
    for col, (risk, tr) in enumerate(trials_by_class.items()):
        t = np.arange(tr.samples.shape[0]) / 25.0
        x = tr.samples.reshape(-1, 6, 2, 3)
        for si, sensor in enumerate(SENSORS):
            for ki, kind in enumerate(("A", "G")):
                ax = axes[2 * si + ki, col]
                for ai, axis in enumerate("xyz"):
                    ax.plot(t, x[:, si, ki, ai], lw=0.8, label=axis)
                ax.axvline(tr.lift_start / 25.0, color="k", lw=0.8)
                ax.axvline(tr.lift_end / 25.0, color="k", lw=0.8)
                ax.set_ylabel(f"{sensor}_{kind}\n({'g' if kind == 'A' else 'deg/s'})", fontsize=7)
                ax.tick_params(labelsize=6)
                if 2 * si + ki == 0:
                    ax.set_title(f"{risk}: {tr.trial_id} (zone {tr.zone})", fontsize=9)
                    if col == 0:
                        ax.legend(fontsize=6, ncol=3, loc="upper right")
        axes[-1, col].set_xlabel("time (s)")
    fig.suptitle("LiftSim: one simulated trial per risk class, raw 25 Hz channels; black lines = lift_start/lift_end")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_calibration(result: Dict[str, object], path: Path) -> None:
    """Accuracy per seed against kappa, with the accepted band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rnd = [r for r in result["runs"] if r.get("split", "random") == "random"]
    ax.scatter([r["kappa"] for r in rnd], [r["accuracy"] for r in rnd], s=12, alpha=0.6, label="seed")
    s = [x for x in result["summary"] if x.get("split", "random") == "random"]
    ax.plot([x["kappa"] for x in s], [x["accuracy_mean"] for x in s], "o-", color="C1", label="mean")
    ax.axhspan(0.85, 0.93, color="green", alpha=0.15, label="paper band 0.85-0.93")
    ax.set_xlabel("difficulty kappa")
    ax.set_ylabel("proxy accuracy (random 75/25)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run the calibration (and optional band power / plots) and write the results."""
    from edge.errors import ConfigError

    from quantize.filter_design import design_bandpass

    from .options import SimOptions
    from .trials import generate_cohort

    try:
        kappas = [float(k) for k in args.kappas.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(f"--kappas {args.kappas!r}; expected comma-separated numbers like 0.5,1,1.5") from None
    if not kappas or any(not (0 <= k <= 5) for k in kappas):
        raise ConfigError(f"--kappas {args.kappas!r}; expected numbers from 0 to 5")
    splits = [x.strip() for x in args.split.split(",") if x.strip()]
    if not splits or any(x not in ("random", "subject") for x in splits):
        raise ConfigError(f"--split {args.split!r}; expected random, subject or random,subject")
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}; expected at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_calibration:
        result = calibrate(kappas, args.seeds, args.subjects, args.reps, max(1, args.workers), splits=splits,
                           base_options={"step_scale": args.step_scale,
                                         "hold_spread": args.hold_spread,
                                         **({"origins": args.origins} if args.origins else {})},
                           first_seed=args.first_seed)
        (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        md = summary_markdown(result)
        (out / "calibration.md").write_text(md, encoding="utf-8")
        plot_calibration(result, out / "sim_calibration.png")
        print(md)
    if args.band_power or args.plot:
        sos = design_bandpass()
        trials = list(generate_cohort(args.subjects, 1, 0, SimOptions()))
        if args.band_power:
            print("calibrate: band power (seed 0, 1 rep per zone) ...", file=sys.stderr)
            plain = list(generate_cohort(args.subjects, 1, 0, SimOptions(artefacts=False)))
            bp, bp0 = band_power(trials, sos), band_power(plain, sos)
            (out / "band_power.json").write_text(json.dumps({"default": bp, "no_artefacts": bp0}, indent=1) + "\n",
                                                 encoding="utf-8")
            md = band_power_markdown(bp, bp0)
            (out / "band_power.md").write_text(md, encoding="utf-8")
            print(md)
        if args.plot:
            from edge.layout import ZONE_RISK

            chosen = {}
            for risk, zone in (("low", 5), ("medium", 8), ("high", 11)):
                chosen[risk] = next(t for t in trials if t.zone == zone and ZONE_RISK[t.zone] == risk)
            plot_examples(chosen, out / "sim_trials.png")
            print(f"calibrate: wrote {out / 'sim_trials.png'}", file=sys.stderr)
    return 0
