"""``quantize saliency``: Simonyan gradient saliency per class, IMU ranking, and fewer-sensor runs.

Example::

    python -m quantize saliency --run runs/proposed_random_s0 --sensors top3 Back,LtWt,RtWt

For each class ``c`` the saliency of a test image ``I0`` is ``|dS_c/dI|`` at
``I0`` (Simonyan et al. 2014; the paper's Eqs 6-8), where ``S_c`` is the
*pre-softmax* class score (the softmax layer's logit, computed from its input
and weights so the softmax does not couple the classes). Maps are averaged
over the test trials whose true class is ``c``; gradients on the zero padding
after a trial's real samples are left out, so maps and the IMU ranking
describe measured data only.

Outputs in ``RUN/saliency`` (or ``--out``):

* ``saliency_image.png`` -- per class, the 95x95 map (max over the 3 depths), like the paper's Fig 9;
* ``saliency_rows.png`` -- per class, the same gradients put back through
  :func:`edge.signal_path.unwrap_image` as 12 rows (sensor x accelerometer /
  gyroscope, max over axes) x 750 time steps, like Fig 10;
* ``ranking.csv`` and ``saliency.md`` -- the six IMUs ranked by their share of
  total saliency (all classes, and per class);
* ``saliency.npz`` -- the raw mean maps ``(3, 95, 95, 3)``.

With ``--sensors``, the run's model is retrained on the *same split and seed*
with only those sensors (``top3`` = the three highest-ranked IMUs; or a list
such as ``Back,LtWt,RtWt``; several sets allowed; ``all3`` tries all 20
three-sensor sets) and the results are tabulated against the all-six run in
``sensors.md``, answering the paper's open question of how few sensors suffice.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import ConfigError
from edge.layout import CLASS_NAMES, KINDS, SENSORS

HELP = "gradient saliency per class (95x95 and 12 rows x time), IMU ranking, and retraining with fewer sensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``quantize saliency``."""
    parser.add_argument("--run", required=True, type=Path, help="run folder written by 'quantize train'")
    parser.add_argument("--data", type=Path, default=None, help="data set (default: the one recorded in split.json)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN/saliency)")
    parser.add_argument("--max-trials", type=int, default=100, help="at most this many test trials per class (default 100)")
    parser.add_argument("--sensors", nargs="*", default=None, metavar="SET",
                        help="retrain with sensor subsets: 'top3', 'all3' or lists like Back,LtWt,RtWt (default top3 when given bare)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs for --sensors runs (default: the run's cap)")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed trials")


def load_run(run_dir: Path) -> Tuple[dict, dict, object]:
    """Read a run folder's config, split and recipe.

    Raises:
        ConfigError: If a file is missing or unreadable.
    """
    from edge.signal_path import TensorRecipe

    run_dir = Path(run_dir)
    out = []
    for name in ("config.json", "split.json", "recipe.json"):
        path = run_dir / name
        try:
            out.append(json.loads(path.read_text()))
        except OSError:
            raise ConfigError(f"{path}: missing; expected a run folder written by 'quantize train'") from None
        except ValueError as exc:
            raise ConfigError(f"{path}: not JSON ({exc})") from None
    return out[0], out[1], TensorRecipe.from_dict(out[2])


def valid_mask(n_samples: int) -> np.ndarray:
    """Image-space mask ``(95, 95, 3)``: 1 where the image holds one of the first ``n_samples`` samples."""
    from edge.layout import N_DEPTH, N_ROWS, WINDOW_SAMPLES
    from edge.signal_path import wrap_to_image

    m = np.zeros((N_ROWS, WINDOW_SAMPLES, N_DEPTH))
    m[:, :min(int(n_samples), WINDOW_SAMPLES), :] = 1.0
    return wrap_to_image(m)


def class_saliency(model, images: np.ndarray, class_index: int, batch: int = 16,
                   lengths: Optional[Sequence[int]] = None) -> np.ndarray:
    """Mean ``|dS_c/dI|`` over ``images`` for the pre-softmax score of class ``class_index``.

    Args:
        model: A model from :mod:`quantize.models` (last layer ``softmax`` Dense).
        images: ``(n, 95, 95, 3)`` float32.
        class_index: Class c.
        batch: Images per gradient batch.
        lengths: Real samples per image; if given, gradients on the zero
            padding after them are dropped so maps and rankings describe
            measured data only.

    Returns:
        ``(95, 95, 3)`` float64 mean absolute gradient.
    """
    import keras
    import tensorflow as tf

    head = model.get_layer("softmax")
    features = keras.Model(model.input, head.input)
    kernel = tf.convert_to_tensor(head.kernel)
    bias = tf.convert_to_tensor(head.bias)
    total = np.zeros(images.shape[1:], dtype=np.float64)
    for s in range(0, len(images), batch):
        x = tf.convert_to_tensor(images[s:s + batch])
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.matmul(features(x, training=False), kernel) + bias
            score = tf.reduce_sum(logits[:, class_index])  # samples are independent in inference mode
        grad = np.abs(tape.gradient(score, x).numpy())
        if lengths is not None:
            grad *= np.stack([valid_mask(n) for n in lengths[s:s + batch]])
        total += grad.sum(axis=0)
    return total / max(1, len(images))


def to_rows(saliency_image: np.ndarray) -> np.ndarray:
    """Image-space saliency ``(95, 95, 3)`` -> ``(12, 750)`` (rows sensor x A/G, max over axes)."""
    from edge.signal_path import unwrap_image

    return np.asarray(unwrap_image(saliency_image)).max(axis=2)


def sensor_shares(saliency_image: np.ndarray) -> Dict[str, float]:
    """Share of the total saliency carried by each IMU (sum over its 2 rows, 750 steps, 3 axes)."""
    from edge.signal_path import unwrap_image

    m = np.asarray(unwrap_image(saliency_image))  # (12, 750, 3)
    per_row = m.sum(axis=(1, 2))
    per_sensor = per_row.reshape(len(SENSORS), len(KINDS)).sum(axis=1)
    total = per_sensor.sum() or 1.0
    return {s: float(v / total) for s, v in zip(SENSORS, per_sensor)}


def row_labels() -> List[str]:
    """Labels of the 12 matrix rows: 'Side A', 'Side G', ..."""
    return [f"{s} {k}" for s in SENSORS for k in KINDS]


def plot_maps(out: Path, maps: np.ndarray, run_name: str) -> Tuple[Path, Path]:
    """Write the 95x95 and 12-row saliency figures."""
    from .report import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for c, ax in enumerate(axes):
        im = ax.imshow(maps[c].max(axis=2), cmap="viridis")
        ax.set_title(f"{CLASS_NAMES[c]}-risk saliency (95x95, max over depth)", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{run_name}: |dS_c/dI| averaged over test trials of each class", fontsize=10)
    fig.tight_layout()
    p1 = out / "saliency_image.png"
    fig.savefig(p1, dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    for c, ax in enumerate(axes):
        rows = to_rows(maps[c])
        im = ax.imshow(rows, aspect="auto", cmap="coolwarm", interpolation="nearest")
        ax.set_yticks(range(12), row_labels(), fontsize=7)
        ax.set_title(f"{CLASS_NAMES[c]}-risk saliency, 12 sensor rows x time (via edge.signal_path.unwrap_image)",
                     fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02)
    axes[-1].set_xlabel("sample (25 Hz) within the 750-sample window")
    fig.tight_layout()
    p2 = out / "saliency_rows.png"
    fig.savefig(p2, dpi=100)
    plt.close(fig)
    return p1, p2


def parse_sensor_sets(values: Sequence[str], ranking: Sequence[str]) -> List[Tuple[str, ...]]:
    """Expand ``--sensors`` values into sensor tuples in layout order."""
    from .train import parse_sensors

    sets: List[Tuple[str, ...]] = []
    for v in (values or ["top3"]):
        if v == "top3":
            sets.append(parse_sensors(",".join(ranking[:3])))
        elif v == "all3":
            sets += [tuple(c) for c in itertools.combinations(SENSORS, 3)]
        else:
            sets.append(parse_sensors(v))
    return list(dict.fromkeys(sets))


def run(args: argparse.Namespace) -> int:
    """Entry point of ``quantize saliency``."""
    from .data import load_windows, make_tensors
    from .models import load_model
    from .report import fmt, write_markdown
    from .train import log, train_run

    config, split, recipe = load_run(args.run)
    if args.max_trials < 1:
        raise ConfigError(f"--max-trials {args.max_trials} must be at least 1")
    data = Path(args.data or split.get("data", ""))
    if not data.is_dir():
        raise ConfigError(f"data set {data} (from {args.run}/split.json) is not a directory; pass --data DIR")
    out = Path(args.out or Path(args.run) / "saliency")
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(Path(args.run) / "model.keras")
    lw = load_windows(data, skip_bad=args.skip_bad)
    missing = [t for t in split["test"] if t not in set(lw.trial_ids)]
    if missing:
        raise ConfigError(f"test trial {missing[0]!r} of {args.run}/split.json is not in {data}")
    test = lw.select(split["test"])
    images = make_tensors(test.windows, recipe, progress=True)
    rng = np.random.default_rng(0)
    maps = np.zeros((len(CLASS_NAMES),) + images.shape[1:], dtype=np.float64)
    counts = []
    for c in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(test.labels == c)
        if len(idx) > args.max_trials:
            idx = np.sort(rng.choice(idx, args.max_trials, replace=False))
        counts.append(len(idx))
        log(f"saliency of class {CLASS_NAMES[c]} over {len(idx)} test trials")
        if len(idx):
            maps[c] = class_saliency(model, images[idx], c, lengths=[len(test.windows[i]) for i in idx])
    np.savez_compressed(out / "saliency.npz", maps=maps, class_names=np.asarray(CLASS_NAMES))
    p1, p2 = plot_maps(out, maps, Path(args.run).name)
    overall = sensor_shares(maps.sum(axis=0))
    per_class = [sensor_shares(maps[c]) for c in range(len(CLASS_NAMES))]
    ranking = sorted(SENSORS, key=lambda s: -overall[s])
    with open(out / "ranking.csv", "w") as fh:
        fh.write("rank,sensor,share_all," + ",".join(f"share_{c}" for c in CLASS_NAMES) + "\n")
        for i, s in enumerate(ranking, 1):
            fh.write(f"{i},{s},{overall[s]:.4f}," + ",".join(f"{pc[s]:.4f}" for pc in per_class) + "\n")
    table = ["| rank | IMU | share of saliency (all) | " + " | ".join(CLASS_NAMES) + " |",
             "|---|---|---|" + "---|" * len(CLASS_NAMES)]
    for i, s in enumerate(ranking, 1):
        table.append(f"| {i} | {s} | {overall[s]:.3f} | " + " | ".join(f"{pc[s]:.3f}" for pc in per_class) + " |")
    note = ""
    if len(config.get("sensors", SENSORS)) < len(SENSORS):
        note = ("\n\nNote: this run was trained on sensors " + ", ".join(config["sensors"]) +
                " only; the others are zero in its input, so their ranking means little.")
    sections = [f"# Saliency of `{Path(args.run).name}` ({config.get('model')}, {config.get('split')} split)",
                f"Test trials per class: " + ", ".join(f"{c} {n}" for c, n in zip(CLASS_NAMES, counts)) +
                ". Saliency = |d(pre-softmax score)/d(input)| averaged over trials of the class.",
                "## IMU ranking\n\n" + "\n".join(table) + note,
                f"## Maps\n\n![95x95]({p1.name})\n\n![12 rows x time]({p2.name})"]
    print("IMU ranking by saliency: " + ", ".join(f"{s} {overall[s]:.3f}" for s in ranking))
    if args.sensors is not None:
        base = json.loads((Path(args.run) / "metrics.json").read_text())
        sets = parse_sensor_sets(args.sensors, ranking)
        rows = [("all six", base)]
        for sensors in sets:
            name = "sensors_" + "-".join(sensors)
            log(f"training {config['model']} with sensors {', '.join(sensors)} on the same split (seed {config['seed']})")
            metrics = train_run(data, config["model"], config["split"], int(config["seed"]), out / name,
                                epochs=int(args.epochs or config["epochs_max"]), sensors=sensors,
                                fold=int(config.get("fold", 0)), n_folds=config.get("n_folds"),
                                batch_size=int(config.get("batch_size", 32)), l2=config.get("l2"),
                                dropout=config.get("dropout"), learning_rate=config.get("learning_rate"),
                                quiet=True, windows=lw,
                                bn_statistics=config.get("bn_statistics", "moving"))
            rows.append((", ".join(sensors), metrics))
        best = max(rows[1:], key=lambda r: r[1]["rk"])
        lines = ["| sensors | accuracy | RK | low F | medium F | high F |", "|---|---|---|---|---|---|"]
        for label, m in rows:
            lines.append(f"| {label} | {fmt(m['accuracy'])} | {fmt(m['rk'])} | {fmt(m['low']['f1'])} | "
                         f"{fmt(m['medium']['f1'])} | {fmt(m['high']['f1'])} |")
        summary = (f"Best reduced set: **{best[0]}**: accuracy {best[1]['accuracy']:.3f} (RK {best[1]['rk']:.3f}) "
                   f"against all six {base['accuracy']:.3f} (RK {base['rk']:.3f}); same split, seed and epoch cap "
                   f"({args.epochs or config['epochs_max']}).")
        write_markdown(out / "sensors.md", ["# How few sensors suffice?", "\n".join(lines), summary])
        sections.append("## Fewer sensors\n\n" + "\n".join(lines) + "\n\n" + summary +
                        "\n\nRun folders: " + ", ".join(f"`{'sensors_' + '-'.join(s)}/report.md`" for s in sets))
        print("\n".join(lines))
        print(summary)
    write_markdown(out / "saliency.md", sections)
    print(f"report: {out / 'saliency.md'}")
    return 0
