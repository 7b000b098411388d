"""``quantize table4``: the paper's Table 4 study on our data, over several seeds and both splits.

Example::

    nice python -m quantize table4 --data /tmp/sim --seeds 3 --out runs/table4 --epochs 40

For every split kind (``random``: the paper's stratified 75/25; ``subject``:
held-out workers) and every seed, the split is made once, the recipe is fitted
on its training trials once, and all selected models are trained and tested
on exactly those tensors. Results are appended to ``results.jsonl`` as each
model finishes, so an interrupted study resumes where it stopped (same
``--out``, same settings).

Outputs in ``--out``: ``table4.md`` (ours as mean ± sd over seeds beside the
paper's numbers, one table per split), ``table4.csv`` (one row per split x
seed x model), ``table4_summary.csv`` (mean, sd per split x model x figure),
``confusion_<split>.png`` (row-normalised, summed over seeds, all models; the
paper's Fig 8), ``swarm_<split>.png`` (the proposed model's test outputs by
true class, all seeds; Fig 7), ``preds/`` (test probabilities per run) and
``report.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from edge.errors import ConfigError

HELP = "train all five models on identical splits over several seeds; Table 4 (markdown + CSV) beside the paper's, heatmap, swarm plot"

FIGURES = ("low_f1", "medium_f1", "high_f1", "accuracy", "rk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``quantize table4``."""
    from .models import MODEL_NAMES
    from .train import add_bn_statistics_argument

    parser.add_argument("--data", required=True, type=Path, help="data set directory")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (splits and weights) per split kind (default 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--out", required=True, type=Path, help="study folder (resumes if it holds results.jsonl)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES),
                        help=f"comma-separated models (default all: {','.join(MODEL_NAMES)})")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs per model; early stopping as in train (default 40)")
    parser.add_argument("--splits", default="random,subject", help="comma-separated split kinds (default random,subject)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed trials")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    add_bn_statistics_argument(parser)


def parse_list(text: str, allowed: Sequence[str], flag: str) -> List[str]:
    """Parse a comma-separated list, checking every item is allowed."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{flag} is empty; expected some of {', '.join(allowed)}")
    for t in items:
        if t not in allowed:
            raise ConfigError(f"{flag}: {t!r} is not known; expected some of {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def read_results(path: Path) -> List[dict]:
    """Read ``results.jsonl`` (one finished run per line)."""
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise ConfigError(f"{path}, line {i}: not JSON; delete the line or use another --out") from None
    return rows


def summarize(rows: List[dict]) -> Dict[tuple, Dict[str, np.ndarray]]:
    """Group rows by (split, model): figure -> values over seeds."""
    from .report import flat_row

    groups: Dict[tuple, Dict[str, list]] = {}
    for r in rows:
        g = groups.setdefault((r["split"], r["model"]), {f: [] for f in FIGURES})
        for f, v in flat_row(r["metrics"]).items():
            g[f].append(v)
    return {k: {f: np.asarray(v, dtype=np.float64) for f, v in g.items()} for k, g in groups.items()}


def table_markdown(rows: List[dict], split: str, models: Sequence[str]) -> str:
    """Table 4 layout for one split kind: cells 'ours mean ± sd / paper'."""
    from .models import PAPER_TITLES
    from .report import PAPER_TABLE4, TABLE4_ROWS, fmt, mean_sd

    summary = summarize(rows)
    present = [m for m in models if (split, m) in summary]
    if not present:
        return f"(no finished runs for the {split} split yet)"
    header = "| Risk level | " + " | ".join(PAPER_TITLES[m] for m in present) + " |"
    lines = [header, "|---" * (len(present) + 1) + "|"]
    for key, title in TABLE4_ROWS:
        cells = [f"{mean_sd(summary[(split, m)][key])} / {fmt(PAPER_TABLE4[m][key])}" for m in present]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in rows if r["split"] == split})
    n_runs = [len(summary[(split, m)]["rk"]) for m in present]
    epochs = [r["epochs_run"] for r in rows if r["split"] == split]
    test_sizes = sorted({r["metrics"]["n"] for r in rows if r["split"] == split})
    lines += ["", f"Cells: ours as mean ± sd over seeds {seeds} ({min(n_runs)}-{max(n_runs)} runs per model) / "
              f"the paper's single figure. Test trials per run: {', '.join(map(str, test_sizes))}. "
              f"Epochs run: {min(epochs)}-{max(epochs)} (cap {rows[0]['epochs_max']})."]
    return "\n".join(lines)


def write_csvs(out: Path, rows: List[dict], models: Sequence[str]) -> None:
    """``table4.csv`` (per run) and ``table4_summary.csv`` (mean, sd)."""
    from .report import PAPER_TABLE4, flat_row

    with open(out / "table4.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "seed", "model", *FIGURES, "n_test", "epochs_run", "train_seconds"])
        for r in rows:
            fr = flat_row(r["metrics"])
            w.writerow([r["split"], r["seed"], r["model"], *[f"{fr[f]:.4f}" for f in FIGURES],
                        r["metrics"]["n"], r["epochs_run"], f"{r['seconds']:.1f}"])
    summary = summarize(rows)
    with open(out / "table4_summary.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["split", "model", "figure", "mean", "sd", "n_seeds", "paper"])
        for (split, model), figs in sorted(summary.items()):
            for f in FIGURES:
                v = figs[f]
                w.writerow([split, model, f, f"{v.mean():.4f}", f"{v.std(ddof=1):.4f}" if v.size > 1 else "",
                            v.size, PAPER_TABLE4[model][f]])


def plot_confusions(out: Path, rows: List[dict], split: str, models: Sequence[str]) -> Path:
    """Row-normalised confusion of every model, summed over seeds (Fig 8 style)."""
    from .metrics import row_normalize
    from .models import PAPER_TITLES
    from .report import _plt
    from edge.layout import CLASS_NAMES

    plt = _plt()
    present = [m for m in models if any(r["split"] == split and r["model"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(present), figsize=(3.3 * len(present), 3.4), squeeze=False)
    for ax, m in zip(axes[0], present):
        c = sum(np.asarray(r["metrics"]["confusion"]) for r in rows if r["split"] == split and r["model"] == m)
        shown = row_normalize(c)
        ax.imshow(shown, cmap="viridis", vmin=0, vmax=1)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{shown[i, j]:.2f}", ha="center", va="center",
                        color="white" if shown[i, j] < 0.5 else "black", fontsize=9)
        ax.set_xticks(range(3), CLASS_NAMES, fontsize=8)
        ax.set_yticks(range(3), CLASS_NAMES, fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(PAPER_TITLES[m], fontsize=9)
    fig.suptitle(f"{split} split: row-normalised confusion, summed over seeds", fontsize=10)
    fig.tight_layout()
    path = out / f"confusion_{split}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(out: Path, rows: List[dict], models: Sequence[str], splits: Sequence[str], config: dict) -> None:
    """Rewrite tables, plots and report.md from the finished runs."""
    from .report import plot_swarm, write_markdown

    write_csvs(out, rows, models)
    sections = [f"# Table 4 study on `{config['data']}`",
                f"Models {', '.join(models)}; seeds {config['first_seed']}..{config['first_seed'] + config['seeds'] - 1}; "
                f"at most {config['epochs']} epochs (early stopping on training loss, patience 10, best weights "
                f"restored); batch {config['batch_size']}. Every model of a (split, seed) pair is trained and "
                "tested on the same tensors; the recipe is fitted on that split's training trials only."]
    table_sections = []
    for split in splits:
        if not any(r["split"] == split for r in rows):
            continue
        title = ("Random stratified 75/25 split (the paper's protocol)" if split == "random"
                 else "Subject-wise split (held-out workers: what a hub meets)")
        table = table_markdown(rows, split, models)
        table_sections.append(f"## {title}\n\n{table}")
        conf = plot_confusions(out, rows, split, models)
        section = f"{table}\n\n![confusion {split}]({conf.name})"
        preds = sorted((out / "preds").glob(f"{split}_s*_proposed.npz"))
        if preds:
            y = np.concatenate([np.load(p)["y_true"] for p in preds])
            probs = np.concatenate([np.load(p)["probs"] for p in preds])
            swarm = plot_swarm(y, probs, out / f"swarm_{split}.png",
                               f"proposed, {split} split: test outputs by true class ({len(preds)} seeds)")
            section += f"\n\n![swarm {split}]({swarm.name})"
        sections.append(f"## {title}\n\n{section}")
    write_markdown(out / "table4.md", [f"# Table 4: ours (mean ± sd over seeds) / the paper's"] + table_sections)
    sections.append("Per-run figures: `table4.csv`; mean and sd: `table4_summary.csv`; test probabilities: `preds/`.")
    write_markdown(out / "report.md", sections)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``quantize table4``."""
    from . import models as M
    from .metrics import compute_metrics
    from .train import fit, load, log, make_run_split, predict, prepare, split_sentence

    models = parse_list(args.models, M.MODEL_NAMES, "--models")
    splits = parse_list(args.splits, ("random", "subject"), "--splits")
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds} must be at least 1")
    if not Path(args.data).is_dir():
        raise ConfigError(f"--data {args.data}: not a directory; expected a data set folder with index.csv")
    out = Path(args.out)
    (out / "preds").mkdir(parents=True, exist_ok=True)
    config = {"data": str(Path(args.data).resolve()), "epochs": args.epochs, "batch_size": args.batch_size,
              "first_seed": args.first_seed, "seeds": args.seeds, "models": models, "splits": splits}
    cfg_path = out / "config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        for key in ("data", "epochs", "batch_size"):
            if old.get(key) != config[key]:
                raise ConfigError(f"{out} holds a study with {key}={old.get(key)!r}, not {config[key]!r}; "
                                  f"use another --out or the same settings to resume")
    cfg_path.write_text(json.dumps(config, indent=1) + "\n")
    results_path = out / "results.jsonl"
    rows = read_results(results_path)
    done = {(r["split"], r["seed"], r["model"]) for r in rows}
    todo = [(s, seed) for s in splits for seed in range(args.first_seed, args.first_seed + args.seeds)]
    total = len(todo) * len(models)
    log(f"table4: {total} runs ({len(done & {(s, k, m) for s, k in todo for m in models})} already done) in {out}")
    lw = load(args.data, args.skip_bad)
    count = 0
    t_start = time.perf_counter()
    for split_kind, seed in todo:
        missing = [m for m in models if (split_kind, seed, m) not in done]
        count += len(models) - len(missing)
        if not missing:
            continue
        split = make_run_split(lw, split_kind, seed, data=config["data"])
        log(split_sentence(split))
        prep = prepare(lw, split, progress=not args.quiet)
        for model_name in missing:
            count += 1
            label = f"[{count}/{total} {split_kind} s{seed} {model_name}] "
            model = M.build_model(model_name, seed=seed)
            result = fit(model, prep.x_train, prep.y_train, epochs=args.epochs, batch_size=args.batch_size,
                         seed=seed, label=label, quiet=args.quiet, bn_statistics=args.bn_statistics)
            probs = predict(model, prep.x_test)
            metrics = compute_metrics(prep.y_test, probs.argmax(axis=1))
            np.savez_compressed(out / "preds" / f"{split_kind}_s{seed}_{model_name}.npz", probs=probs,
                                y_true=prep.y_test, trial_ids=np.asarray(split.test))
            row = {"split": split_kind, "seed": seed, "model": model_name, "metrics": metrics,
                   "epochs_run": result["epochs_run"], "epochs_max": args.epochs,
                   "seconds": round(result["seconds"], 2), "n_train": len(split.train),
                   "test_subjects": split.test_subjects}
            with open(results_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            rows.append(row)
            log(f"{label}accuracy {metrics['accuracy']:.3f} RK {metrics['rk']:.3f} "
                f"({result['epochs_run']} epochs, {result['seconds']:.0f} s; study {time.perf_counter() - t_start:.0f} s)")
            write_outputs(out, rows, models, splits, config)
            del model
            import keras

            keras.backend.clear_session()
    write_outputs(out, rows, models, splits, config)
    print((out / "table4.md").read_text())
    print(f"report: {out / 'report.md'}")
    return 0
