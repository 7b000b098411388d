"""``quantize export``: pack a converted run into a signed deploy bundle (``.lgb``).

``python -m quantize export --run RUN --out FILE.lgb --sign KEY [--model-version V]``

Takes ``RUN/model_int8.tflite`` (from ``quantize convert``), ``RUN/recipe.json``,
``RUN/metrics.json`` and ``RUN/parity.json``, draws golden vectors from the
run's *test* split (raw windows, their int8 input through
:mod:`edge.signal_path` with the model's own scale and zero point, and the int8
output the model gives), writes the manifest (format in ``docs/bundle.md``),
signs it with the Ed25519 key, and finally loads the written file back through
:func:`edge.bundle.load_bundle` (signature, hashes, layout, interpreter,
golden self-test) so a bundle that would not load on a hub is never reported
as exported. If ``RUN/gate.json`` exists (``quantize train-gate``), it is
checked against the run's recipe and goes into the manifest as ``lift_gate``;
without it the bundle has no gate.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edge.errors import ConfigError

HELP = "pack RUN's int8 model, recipe, metrics and golden vectors into a signed .lgb bundle"

#: Golden vectors written by default.
DEFAULT_GOLDEN = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``export``'s flags."""
    parser.add_argument("--run", required=True, type=Path, help="run folder (after 'quantize convert')")
    parser.add_argument("--out", required=True, type=Path, help="bundle file to write (*.lgb)")
    parser.add_argument("--sign", required=True, type=Path, metavar="KEY", help="Ed25519 private key from 'quantize keygen'")
    parser.add_argument("--model-version", default=None,
                        help="dotted numeric version, e.g. 1.4.0 (default: UTC time as YYYY.MMDD.HHMMSS)")
    parser.add_argument("--model-id", default=None, help="model id (default: <run name>-<sha256 of the model, 8 hex>)")
    parser.add_argument("--data", type=Path, default=None, help="data set folder (default: the one in RUN/split.json)")
    parser.add_argument("--golden", type=int, default=DEFAULT_GOLDEN, metavar="N", help="golden vectors to include")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing golden windows")
    parser.add_argument("--edgetpu-model", type=Path, default=None,
                        help="optional *_edgetpu.tflite compiled from RUN/model_int8.tflite by edgetpu_compiler")


def run(args: argparse.Namespace) -> int:
    """Export and print a summary line."""
    manifest = export_run(args.run, args.out, args.sign, model_version=args.model_version, model_id=args.model_id,
                          data_dir=args.data, n_golden=args.golden, seed=args.seed,
                          edgetpu_model=args.edgetpu_model)
    print(f"exported {args.out}: model {manifest['model_id']} version {manifest['model_version']}, "
          f"{manifest['golden']['count']} golden vectors, signed by key {manifest['_signed_by']}, "
          f"self-test passed with {manifest['_runtime']}")
    return 0


def default_version(now: Optional[_dt.datetime] = None) -> str:
    """A version that grows with time: ``YYYY.MMDD.HHMMSS`` (UTC)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now.year}.{now.month:02d}{now.day:02d}.{now.hour:02d}{now.minute:02d}{now.second:02d}"


def choose_golden_windows(windows: Sequence[np.ndarray], n: int, seed: int, window: int) -> List[np.ndarray]:
    """Pick golden raw windows from the test split.

    The shortest and the longest window are always included (padding and, if
    any window is longer than ``window``, cutting are both exercised); the
    rest are drawn with the seed. If no test window is longer than
    ``window``, one more is made by joining the two longest, so the hub's
    cut-to-750 path is covered too.
    """
    if n < 1:
        raise ConfigError(f"--golden {n}: expected at least 1 golden vector")
    if not windows:
        raise ConfigError("the test split has no windows to draw golden vectors from")
    lengths = np.array([len(w) for w in windows])
    order = [int(np.argmin(lengths)), int(np.argmax(lengths))]
    rng = np.random.default_rng(seed)
    for i in rng.permutation(len(windows)):
        if len(order) >= n:
            break
        if int(i) not in order:
            order.append(int(i))
    picked = [np.asarray(windows[i], dtype=np.float64) for i in dict.fromkeys(order[:max(n, 1)])]
    if max(len(w) for w in picked) <= window and len(windows) >= 1:
        longest = np.argsort(lengths)[::-1][:2]
        joined = np.concatenate([np.asarray(windows[i], dtype=np.float64) for i in longest], axis=0)
        if len(joined) <= window:
            joined = np.concatenate([joined] * (window // len(joined) + 1), axis=0)
        picked.append(joined[: window + 60])
    return picked


def golden_vectors(model_bytes: bytes, raw_windows: Sequence[np.ndarray], recipe: Any):
    """Compute golden int8 inputs and outputs with the hub's own code path.

    The expected outputs come from TFLite's built-in kernels (identical in
    every runtime version); the largest difference the runtime's default
    kernels (XNNPACK) show on the same inputs is returned too.

    Returns:
        ``(input_int8 (k,95,95,3), output_int8 (k,classes), io)`` where io holds
        the model's input/output scales and zero points and
        ``default_kernels_max_steps``.
    """
    from edge.runtime import make_interpreter
    from edge.signal_path import quantize_int8, tensorize

    interpreter, runtime = make_interpreter(model_bytes, num_threads=1, kernels="builtin")
    d_in, d_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    if np.dtype(d_in["dtype"]) != np.int8 or np.dtype(d_out["dtype"]) != np.int8:
        raise ConfigError(f"model input/output are {np.dtype(d_in['dtype']).name}/{np.dtype(d_out['dtype']).name}; "
                          f"a bundle needs the full-integer int8 model from 'quantize convert'")
    s_in, z_in = float(d_in["quantization"][0]), int(d_in["quantization"][1])
    s_out, z_out = float(d_out["quantization"][0]), int(d_out["quantization"][1])
    inputs = np.stack([quantize_int8(tensorize(w, recipe), s_in, z_in) for w in raw_windows])
    def run_all(interp: Any) -> np.ndarray:
        got = []
        for q in inputs:
            interp.set_tensor(d_in["index"], q[np.newaxis])
            interp.invoke()
            got.append(np.array(interp.get_tensor(d_out["index"])[0], dtype=np.int8))
        return np.stack(got)

    outputs = run_all(interpreter)
    fast, _ = make_interpreter(model_bytes, num_threads=1, kernels="default")
    spread = int(np.max(np.abs(run_all(fast).astype(np.int32) - outputs.astype(np.int32))))
    io_info = {"input": {"shape": [int(v) for v in d_in["shape"]], "dtype": "int8", "scale": s_in, "zero_point": z_in},
               "output": {"shape": [int(v) for v in d_out["shape"]], "dtype": "int8", "scale": s_out,
                          "zero_point": z_out},
               "runtime": runtime, "default_kernels_max_steps": spread}
    return inputs, outputs, io_info


def _converter_version() -> str:
    try:
        from importlib.metadata import version
        return f"tensorflow {version('tensorflow-cpu')}"
    except Exception:
        try:
            from importlib.metadata import version
            return f"tensorflow {version('tensorflow')}"
        except Exception:
            return "unknown"


def build_manifest(*, model_id: str, model_version: str, recipe: Any, io_info: Dict[str, Any],
                   metrics: Dict[str, Any], golden_count: int, source: Dict[str, Any],
                   created: Optional[str] = None, edgetpu: bool = False,
                   required_sensors: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The manifest (without ``members``, which :func:`edge.bundle.write_bundle` fills in).

    ``required_sensors`` defaults to the sensors the recipe does not mask
    (:func:`quantize.train.recipe_sensors`): a run trained with ``--sensors``
    fits hubs that have only those.
    """
    if required_sensors is None:
        from .train import recipe_sensors

        required_sensors = recipe_sensors(recipe)
    from edge import bundle, layout

    return {
        "format": bundle.BUNDLE_FORMAT,
        "schema_version": bundle.SCHEMA_VERSION,
        "model_id": model_id,
        "model_version": model_version,
        "created": created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_file": bundle.MODEL_MEMBER,
        "edgetpu_model_file": bundle.EDGETPU_MEMBER if edgetpu else None,
        "class_names": list(layout.CLASS_NAMES),
        "layout": bundle.layout_section(required_sensors),
        "sample_rate_hz": float(recipe.sample_rate_hz),
        "window": int(recipe.window),
        "recipe_version": recipe.version,
        "recipe": recipe.to_dict(),
        "input": io_info["input"],
        "output": io_info["output"],
        "metrics": metrics,
        "golden": {"file": bundle.GOLDEN_MEMBER, "count": int(golden_count),
                   "kernels": "builtin", "tolerance_steps": bundle.GOLDEN_TOLERANCE_STEPS,
                   "default_kernels_tolerance_steps": int(io_info.get("default_kernels_max_steps", 0)) + 1},
        "source": source,
    }


def _read_optional_json(path: Path) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable JSON ({exc})") from None


def export_run(run_dir: Path, out: Path, sign_key: Path, *, model_version: Optional[str] = None,
               model_id: Optional[str] = None, data_dir: Optional[Path] = None, n_golden: int = DEFAULT_GOLDEN,
               seed: int = 0, edgetpu_model: Optional[Path] = None) -> Dict[str, Any]:
    """Write a signed bundle for ``run_dir`` and prove it loads.

    Returns:
        The manifest as written, plus ``_signed_by`` (key id) and
        ``_runtime`` (runtime that ran the self-test).
    """
    from cryptography.hazmat.primitives import serialization

    from edge import bundle
    from edge.signal_path import TensorRecipe

    from .convert import INT8_MODEL, PARITY_JSON, load_run_windows, read_split
    from .keygen import load_private_key

    run_dir, out = Path(run_dir), Path(out)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    model_path = run_dir / INT8_MODEL
    if not model_path.is_file():
        raise ConfigError(f"{model_path}: missing; run 'quantize convert --run {run_dir}' first")
    if out.suffix != bundle.BUNDLE_SUFFIX:
        raise ConfigError(f"--out {out}: bundle files end in {bundle.BUNDLE_SUFFIX}")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
    version = model_version or default_version()
    bundle.parse_version(version, "--model-version")  # raises BundleError with the expected form
    private_key = load_private_key(sign_key)
    model_bytes = model_path.read_bytes()
    recipe = TensorRecipe.load(run_dir / "recipe.json")
    mid = model_id or f"{run_dir.resolve().name}-{hashlib.sha256(model_bytes).hexdigest()[:8]}"

    print("export: drawing golden vectors from the test split ...", file=sys.stderr, flush=True)
    _, _, test = load_run_windows(run_dir, data_dir, progress=False)
    golden_raw = choose_golden_windows(test.windows, n_golden, seed, recipe.window)
    inputs, outputs, io_info = golden_vectors(model_bytes, golden_raw, recipe)

    split = read_split(run_dir)
    metrics = {"run": _read_optional_json(run_dir / "metrics.json") or {}}
    parity = _read_optional_json(run_dir / PARITY_JSON)
    if parity:
        m8 = parity["models"]["tflite_int8"]
        metrics["int8_parity"] = {"n_test": parity["n_test"], "accuracy": m8["accuracy"], "rk": m8["rk"],
                                  "agreement_with_keras": m8["agreement_with_keras"],
                                  "accuracy_drop_points": parity["int8_accuracy_drop_points"],
                                  "met": parity["met"]}
    source = {"run": run_dir.resolve().name, "split_kind": split.get("kind"), "split_seed": split.get("seed"),
              "converter": _converter_version(), "tool": "quantize export"}
    members = {bundle.MODEL_MEMBER: model_bytes,
               bundle.GOLDEN_MEMBER: bundle.golden_npz_bytes(golden_raw, inputs, outputs)}
    if edgetpu_model is not None:
        if not Path(edgetpu_model).name.endswith("_edgetpu.tflite"):
            raise ConfigError(f"--edgetpu-model {edgetpu_model}: expected a *_edgetpu.tflite from edgetpu_compiler")
        members[bundle.EDGETPU_MEMBER] = Path(edgetpu_model).read_bytes()
    manifest = build_manifest(model_id=mid, model_version=version, recipe=recipe, io_info=io_info, metrics=metrics,
                              golden_count=len(golden_raw), source=source, edgetpu=edgetpu_model is not None)
    gate_path = run_dir / "gate.json"
    if gate_path.is_file():
        # the lift gate from 'quantize train-gate' (checked against this run's recipe); absent: no gate
        from edge.lift_gate import LiftGate

        try:
            gate_doc = json.loads(gate_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{gate_path}: cannot be read as JSON ({exc}); expected 'quantize train-gate' output")
        LiftGate.from_dict(gate_doc, where=str(gate_path), recipe=recipe)
        manifest["lift_gate"] = gate_doc
        print(f"export: lift gate from {gate_path} (threshold {gate_doc['threshold']:.4f})", file=sys.stderr)
    written = bundle.write_bundle(out, manifest, members, private_key)

    print("export: loading the written bundle as a hub would ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        pub = Path(tmp) / "signer.pub"
        pub.write_bytes(private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
        try:
            loaded = bundle.load_bundle(out, trusted_keys=[pub], use_edgetpu=None)
        except Exception:
            out.unlink(missing_ok=True)
            raise
    written = dict(written, _signed_by=loaded.key_id, _runtime=loaded.runtime)
    loaded.close()
    return written
