"""``quantize sweep``: the L2 / dropout / learning-rate study of the paper's Fig 5, judged by RK.

Example::

    nice python -m quantize sweep --data /tmp/sim --out runs/sweep --epochs 40

Modes:

* ``single`` (default): the paper's defaults (L2 1e-5, dropout 0.25,
  lr 1e-3) plus one-at-a-time variation of each hyperparameter over its list.
* ``grid``: every combination of the three lists (multiple-value variation).

All settings use the same split, seed and tensors, so differences come from
the hyperparameters (and the seed's luck: use ``--seeds`` > 1 to see the
spread). Results are appended to ``results.jsonl`` (resumable). Outputs:
``sweep.csv``, ``sweep.md`` (ranked by RK), ``fig5.png`` (A: RK per setting,
B: RK against accuracy) and ``fig6.png`` (training loss per epoch for each
learning rate, the paper's Fig 6), ``report.md``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from edge.errors import ConfigError

HELP = "hyperparameter study (L2, dropout, learning rate) of the paper's Fig 5, judged by RK, with plots"

DEFAULT_L2S = "1e-3,1e-4,1e-5,1e-6,1e-7"
DEFAULT_DROPOUTS = "0.1,0.25,0.4,0.5"
DEFAULT_LRS = "1e-2,1e-3,1e-4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``quantize sweep``."""
    from .models import MODEL_NAMES
    from .train import add_bn_statistics_argument

    parser.add_argument("--data", required=True, type=Path, help="data set directory")
    parser.add_argument("--out", required=True, type=Path, help="study folder (resumes if it holds results.jsonl)")
    parser.add_argument("--model", default="proposed", choices=MODEL_NAMES, help="model (default proposed)")
    parser.add_argument("--split", default="random", choices=("random", "subject"), help="split kind (default random)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per setting (default 1)")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs per setting (default 40)")
    parser.add_argument("--mode", default="single", choices=("single", "grid"),
                        help="one-at-a-time variation around the defaults, or the full grid (default single)")
    parser.add_argument("--l2", default=DEFAULT_L2S, help=f"L2 values (default {DEFAULT_L2S})")
    parser.add_argument("--dropout", default=DEFAULT_DROPOUTS, help=f"dropout values (default {DEFAULT_DROPOUTS})")
    parser.add_argument("--lr", default=DEFAULT_LRS, help=f"learning rates (default {DEFAULT_LRS})")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed trials")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    add_bn_statistics_argument(parser)


def parse_floats(text: str, flag: str) -> List[float]:
    """Parse ``"1e-3,1e-4"``; raise ConfigError naming the flag on bad input."""
    try:
        values = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected comma-separated numbers such as 1e-3,1e-4") from None
    if not values:
        raise ConfigError(f"{flag} is empty; expected comma-separated numbers")
    return values


def settings(mode: str, l2s: List[float], dropouts: List[float], lrs: List[float]) -> List[Dict[str, float]]:
    """The hyperparameter settings to train, defaults first."""
    from .models import DEFAULT_DROPOUT, DEFAULT_L2, DEFAULT_LEARNING_RATE

    base = {"l2": DEFAULT_L2, "dropout": DEFAULT_DROPOUT, "lr": DEFAULT_LEARNING_RATE}
    if mode == "grid":
        out = [{"l2": a, "dropout": b, "lr": c} for a, b, c in itertools.product(l2s, dropouts, lrs)]
    else:
        out = [dict(base)]
        for key, values in (("l2", l2s), ("dropout", dropouts), ("lr", lrs)):
            out += [{**base, key: v} for v in values if v != base[key]]
    unique: List[Dict[str, float]] = []
    for s in out:
        if s not in unique:
            unique.append(s)
    return unique


def label(s: Dict[str, float]) -> str:
    """Short label of a setting, e.g. ``L2=1e-05 d=0.25 lr=0.001``."""
    return f"L2={s['l2']:g} d={s['dropout']:g} lr={s['lr']:g}"


def varied(s: Dict[str, float]) -> str:
    """Which hyperparameter differs from the defaults ('default' if none, 'several' if many)."""
    from .models import DEFAULT_DROPOUT, DEFAULT_L2, DEFAULT_LEARNING_RATE

    diff = [k for k, d in (("l2", DEFAULT_L2), ("dropout", DEFAULT_DROPOUT), ("lr", DEFAULT_LEARNING_RATE))
            if not np.isclose(s[k], d)]
    return "default" if not diff else diff[0] if len(diff) == 1 else "several"


def aggregate(rows: List[dict]) -> List[Tuple[Dict[str, float], float, float, float, int]]:
    """(setting, mean RK, sd RK, mean accuracy, n) per setting, best RK first."""
    groups: Dict[str, list] = {}
    for r in rows:
        groups.setdefault(label(r["setting"]), []).append(r)
    out = []
    for rs in groups.values():
        rks = np.array([r["metrics"]["rk"] for r in rs])
        accs = np.array([r["metrics"]["accuracy"] for r in rs])
        out.append((rs[0]["setting"], float(rks.mean()), float(rks.std(ddof=1)) if len(rs) > 1 else 0.0,
                    float(accs.mean()), len(rs)))
    return sorted(out, key=lambda t: -t[1])


def plot_fig5(out: Path, rows: List[dict]) -> Path:
    """A: mean RK per setting (bars, grouped by varied parameter); B: RK vs accuracy per run."""
    from .report import _plt

    plt = _plt()
    agg = aggregate(rows)
    agg_sorted = sorted(agg, key=lambda t: (varied(t[0]), t[0]["l2"], t[0]["dropout"], t[0]["lr"]))
    colours = {"default": "black", "l2": "tab:blue", "dropout": "tab:orange", "lr": "tab:green", "several": "tab:purple"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    xs = np.arange(len(agg_sorted))
    a.bar(xs, [t[1] for t in agg_sorted], yerr=[t[2] for t in agg_sorted],
          color=[colours[varied(t[0])] for t in agg_sorted])
    a.set_xticks(xs, [label(t[0]).replace(" ", "\n") for t in agg_sorted], fontsize=6)
    a.set_ylabel("RK (test)")
    a.set_title("A: RK per setting (colour = varied parameter)", fontsize=10)
    a.set_ylim(min(0.0, min(t[1] for t in agg_sorted) - 0.05), 1.0)
    from matplotlib.patches import Patch

    a.legend(handles=[Patch(color=col, label=key) for key, col in colours.items()], fontsize=7, loc="upper left", ncol=5)
    for r in rows:
        b.scatter(r["metrics"]["accuracy"], r["metrics"]["rk"], color=colours[varied(r["setting"])], s=18)
    b.plot([0, 1], [0, 1], color="grey", lw=0.6, ls=":")
    b.set_xlabel("accuracy")
    b.set_ylabel("RK")
    b.set_title("B: RK against accuracy (one point per run)", fontsize=10)
    fig.tight_layout()
    path = out / "fig5.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_fig6(out: Path, rows: List[dict]) -> Path:
    """Training loss per epoch for each learning rate (other settings at defaults)."""
    from .report import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if varied(r["setting"]) in ("default", "lr"):
            ax.plot(np.arange(1, len(r["loss"]) + 1), r["loss"], label=f"lr {r['setting']['lr']:g}, seed {r['seed']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training categorical cross-entropy")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("training loss by learning rate (paper's Fig 6)", fontsize=10)
    fig.tight_layout()
    path = out / "fig6.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(out: Path, rows: List[dict], config: dict) -> None:
    """Rewrite sweep.csv, sweep.md, the plots and report.md."""
    from .report import write_markdown

    with open(out / "sweep.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["l2", "dropout", "lr", "seed", "rk", "accuracy", "epochs_run", "final_loss", "seconds"])
        for r in rows:
            s = r["setting"]
            w.writerow([s["l2"], s["dropout"], s["lr"], r["seed"], f"{r['metrics']['rk']:.4f}",
                        f"{r['metrics']['accuracy']:.4f}", r["epochs_run"], f"{min(r['loss']):.4f}", f"{r['seconds']:.1f}"])
    lines = ["| rank | setting | varied | RK mean | RK sd | accuracy | runs |", "|---|---|---|---|---|---|---|"]
    for i, (s, m, sd, acc, n) in enumerate(aggregate(rows), 1):
        sd_text = f"{sd:.3f}" if n > 1 else "–"
        lines.append(f"| {i} | {label(s)} | {varied(s)} | {m:.3f} | {sd_text} | {acc:.3f} | {n} |")
    table = "\n".join(lines)
    write_markdown(out / "sweep.md", ["# Hyperparameter sweep, ranked by RK", table])
    fig5 = plot_fig5(out, rows)
    fig6 = plot_fig6(out, rows)
    write_markdown(out / "report.md", [
        f"# Hyperparameter sweep ({config['mode']}) of `{config['model']}` on `{config['data']}`",
        f"{config['split']} split, seeds {config['seed']}..{config['seed'] + config['seeds'] - 1}, at most "
        f"{config['epochs']} epochs with early stopping on training loss. Judged by RK on the test trials, as in "
        "the paper; the paper chose L2 1e-5, dropout 0.25, lr 1e-3.",
        table, f"![fig5]({fig5.name})", f"![fig6]({fig6.name})"])


def run(args: argparse.Namespace) -> int:
    """Entry point of ``quantize sweep``."""
    from . import models as M
    from .metrics import compute_metrics
    from .train import fit, load, log, make_run_split, predict, prepare, split_sentence

    l2s = parse_floats(args.l2, "--l2")
    dropouts = parse_floats(args.dropout, "--dropout")
    lrs = parse_floats(args.lr, "--lr")
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be at least 1")
    if not Path(args.data).is_dir():
        raise ConfigError(f"--data {args.data}: not a directory; expected a data set folder with index.csv")
    todo = settings(args.mode, l2s, dropouts, lrs)
    for s in todo:  # validate every setting before the first long training
        if not 0 <= s["dropout"] < 1 or s["l2"] < 0 or s["lr"] <= 0:
            raise ConfigError(f"setting {label(s)} is out of range; expected 0<=dropout<1, L2>=0, lr>0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"data": str(Path(args.data).resolve()), "model": args.model, "split": args.split, "seed": args.seed,
              "seeds": args.seeds, "epochs": args.epochs, "mode": args.mode, "batch_size": args.batch_size}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    results = out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    done = {(label(r["setting"]), r["seed"]) for r in rows}
    lw = load(args.data, args.skip_bad)
    total = len(todo) * args.seeds
    k = 0
    for seed in range(args.seed, args.seed + args.seeds):
        split = make_run_split(lw, args.split, seed, data=config["data"])
        prep = None
        for s in todo:
            k += 1
            if (label(s), seed) in done:
                continue
            if prep is None:
                log(split_sentence(split))
                prep = prepare(lw, split, progress=not args.quiet)
            tag = f"[{k}/{total} {label(s)} seed {seed}] "
            model = M.build_model(args.model, l2=s["l2"], dropout=s["dropout"], learning_rate=s["lr"], seed=seed)
            res = fit(model, prep.x_train, prep.y_train, epochs=args.epochs, batch_size=args.batch_size,
                      seed=seed, label=tag, quiet=args.quiet, bn_statistics=args.bn_statistics)
            metrics = compute_metrics(prep.y_test, predict(model, prep.x_test).argmax(axis=1))
            row = {"setting": s, "seed": seed, "metrics": metrics, "epochs_run": res["epochs_run"],
                   "loss": res["history"]["loss"], "seconds": round(res["seconds"], 2)}
            with open(results, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            rows.append(row)
            log(f"{tag}RK {metrics['rk']:.3f} accuracy {metrics['accuracy']:.3f} ({res['epochs_run']} epochs)")
            write_outputs(out, rows, config)
            import keras

            keras.backend.clear_session()
    if not rows:
        raise ConfigError("no setting was trained")
    write_outputs(out, rows, config)
    print((out / "sweep.md").read_text())
    print(f"report: {out / 'report.md'}")
    return 0
