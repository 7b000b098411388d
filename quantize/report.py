"""Plots and markdown for run folders: curves, confusion heatmaps, swarm plots, tables.

Every run folder gets a ``report.md`` a person can read on its own, linking
the PNGs beside it. The paper's Table 4 numbers live here as
:data:`PAPER_TABLE4` so that every table can show ours next to theirs.
matplotlib is imported inside the plotting functions (Agg backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from edge.layout import CLASS_NAMES

#: Table 4 of the paper (Snyder et al. 2021): F-measure per class, accuracy, RK.
PAPER_TABLE4: Dict[str, Dict[str, float]] = {
    "proposed": {"low_f1": 0.776, "medium_f1": 0.862, "high_f1": 0.964, "accuracy": 0.906, "rk": 0.839},
    "cnn_lstm": {"low_f1": 0.800, "medium_f1": 0.783, "high_f1": 0.923, "accuracy": 0.861, "rk": 0.770},
    "maxpool": {"low_f1": 0.746, "medium_f1": 0.692, "high_f1": 0.815, "accuracy": 0.766, "rk": 0.650},
    "cnn": {"low_f1": 0.444, "medium_f1": 0.635, "high_f1": 0.765, "accuracy": 0.667, "rk": 0.530},
    "mlp": {"low_f1": 0.367, "medium_f1": 0.500, "high_f1": 0.667, "accuracy": 0.567, "rk": 0.280},
}

#: Row order and titles of the Table 4 layout.
TABLE4_ROWS = (("low_f1", "Low F-measure"), ("medium_f1", "Medium F-measure"),
               ("high_f1", "High F-measure"), ("accuracy", "Accuracy"), ("rk", "RK"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def flat_row(metrics: Mapping) -> Dict[str, float]:
    """Pick the Table 4 figures out of a ``metrics.json`` dict."""
    return {"low_f1": metrics["low"]["f1"], "medium_f1": metrics["medium"]["f1"],
            "high_f1": metrics["high"]["f1"], "accuracy": metrics["accuracy"], "rk": metrics["rk"]}


def plot_history(history: Mapping[str, Sequence[float]], path: Path, title: str = "") -> Path:
    """Training curves: loss and accuracy per epoch (best epoch marked)."""
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss = list(history.get("loss", []))
    epochs = np.arange(1, len(loss) + 1)
    ax_loss.plot(epochs, loss, label="training loss")
    if "val_loss" in history:
        ax_loss.plot(epochs, history["val_loss"], label="test loss (not used for stopping)")
    if loss:
        best = int(np.argmin(loss))
        ax_loss.axvline(best + 1, color="grey", ls=":", label=f"best epoch {best + 1} (weights kept)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("categorical cross-entropy")
    ax_loss.legend(fontsize=8)
    ax_acc.plot(epochs, history.get("accuracy", []), label="training accuracy")
    if "val_accuracy" in history:
        ax_acc.plot(epochs, history["val_accuracy"], label="test accuracy")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend(fontsize=8)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion(confusion: np.ndarray, path: Path, title: str = "",
                   class_names: Sequence[str] = CLASS_NAMES, normalize: bool = True) -> Path:
    """Confusion heatmap (rows true, columns predicted), row-normalised as in Fig 8."""
    from .metrics import row_normalize

    plt = _plt()
    c = np.asarray(confusion, dtype=np.float64)
    shown = row_normalize(c) if normalize else c
    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(shown, cmap="viridis", vmin=0, vmax=1 if normalize else None)
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            txt = f"{shown[i, j]:.2f}\n({int(c[i, j])})" if normalize else f"{int(c[i, j])}"
            ax.text(j, i, txt, ha="center", va="center",
                    color="white" if shown[i, j] < 0.5 * (shown.max() or 1) else "black", fontsize=9)
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or ("row-normalised confusion" if normalize else "confusion"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def risk_score(probs: np.ndarray) -> np.ndarray:
    """Expected class index ``sum_c c * p_c`` (0 = low ... 2 = high), the swarm plot's y axis."""
    p = np.asarray(probs, dtype=np.float64)
    return p @ np.arange(p.shape[1], dtype=np.float64)


def plot_swarm(y_true: Sequence[int], probs: np.ndarray, path: Path, title: str = "",
               class_names: Sequence[str] = CLASS_NAMES, seed: int = 0) -> Path:
    """Swarm plot of model output by true class (the paper's Fig 7).

    x: true class; y: expected class index ``sum_c c p_c``, with the bands
    [0, 0.5), [0.5, 1.5), [1.5, 2] labelled by class. Points are coloured by
    the predicted (argmax) class, which near a band edge can differ from the
    band. Horizontal spread is a deterministic beeswarm-like jitter.
    """
    plt = _plt()
    y_true = np.asarray(y_true, dtype=np.int64)
    score = risk_score(probs)
    pred = np.asarray(probs).argmax(axis=1)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colours = ["tab:green", "tab:orange", "tab:red"]
    for c in range(len(class_names)):
        sel = np.flatnonzero(y_true == c)
        if not sel.size:
            continue
        ys = score[sel]
        order = np.argsort(ys)
        xs = np.empty_like(ys)
        # beeswarm-ish: alternate left/right within bins of similar y
        bins = np.floor(ys[order] / 0.04).astype(int)
        step = min(0.035, 0.84 / max(1, np.bincount(bins - bins.min()).max()))  # widest bin fits in 0.84
        counter: Dict[int, int] = {}
        for i, b in zip(order, bins):
            k = counter.get(b, 0)
            counter[b] = k + 1
            offset = ((k + 1) // 2) * step * (1 if k % 2 else -1)
            xs[i] = c + np.clip(offset, -0.42, 0.42)
        ax.scatter(xs, ys, s=10, c=[colours[int(p) % 3] for p in pred[sel]], alpha=0.8, linewidths=0)
    for edge in (0.5, 1.5):
        ax.axhline(edge, color="grey", lw=0.8, ls="--")
    for c, (lo, hi) in enumerate(((0, 0.5), (0.5, 1.5), (1.5, 2.0))):
        ax.text(-0.45, (lo + hi) / 2, class_names[c], fontsize=8, color="grey", va="center")
    ax.set_xticks(range(len(class_names)), [f"true {n}" for n in class_names])
    ax.set_ylabel("model output: expected class index  Σ c·p_c")
    ax.set_ylim(-0.05, 2.05)
    ax.set_xlim(-0.5, len(class_names) - 0.5)
    ax.set_title(title or "predictions by true class (colour = predicted class)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def fmt(x: Optional[float], digits: int = 3) -> str:
    """Format a number or '–' for missing."""
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def table4_row_markdown(model: str, ours: Mapping[str, float]) -> str:
    """One model's Table 4 figures next to the paper's, as a small markdown table."""
    paper = PAPER_TABLE4.get(model, {})
    lines = ["| figure | ours | paper |", "|---|---|---|"]
    for key, title in TABLE4_ROWS:
        lines.append(f"| {title} | {fmt(ours.get(key))} | {fmt(paper.get(key))} |")
    return "\n".join(lines)


def metrics_markdown(metrics: Mapping, class_names: Sequence[str] = CLASS_NAMES) -> str:
    """Per-class precision/recall/F table plus accuracy and RK."""
    lines = ["| class | precision | recall | F-measure | test trials |", "|---|---|---|---|---|"]
    for name in class_names:
        m = metrics[name]
        lines.append(f"| {name} | {fmt(m['precision'])} | {fmt(m['recall'])} | {fmt(m['f1'])} | {m.get('support', '')} |")
    lines += ["", f"Accuracy **{fmt(metrics['accuracy'])}**, RK **{fmt(metrics['rk'])}** "
              f"on {metrics.get('n', '?')} test trials."]
    return "\n".join(lines)


def mean_sd(values: Iterable[float]) -> str:
    """``mean ± sd`` (sample sd, n-1) of a list, or ``mean`` when there is one value."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def write_markdown(path: Path, sections: List[str]) -> Path:
    """Join sections with blank lines and write them."""
    Path(path).write_text("\n\n".join(s.rstrip() for s in sections) + "\n")
    return Path(path)
