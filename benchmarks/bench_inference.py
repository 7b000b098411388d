"""Benchmark: int8 and float32 inference latency per TFLite runtime, and bundle load time.

Model: the paper's proposed network (Table 2) from
``quantize.models.build_model('proposed', seed=0)``, converted by
:mod:`quantize.convert` (``convert_model``, the steps ``quantize convert`` takes: average
pooling folded into the next convolution, default activation ranges, logit bounds where
they narrow the range; no bias correction; batch 1; int8 calibrated on 64 tensors made by
:mod:`edge.signal_path` from seeded random raw windows: latency does not depend
on the weights' values). For each runtime present — ``ai_edge_litert`` and
``tensorflow.lite`` in the main environment, ``tflite_runtime`` 2.14 in
``.venv-legacy`` when ``make test-legacy`` has built it — and 1 and 2
threads, the median of 200 calls (set input, invoke, read output; after 10
warm-up calls) is recorded: int8 with the built-in kernels (what the hub
runs by default, reproducible) and with the runtime's default kernels
(XNNPACK), float32 with the default kernels.

Then a signed bundle of that int8 model is written and the time of
:func:`edge.bundle.load_bundle` (container, signature, hashes, layout,
interpreter, golden self-test with 4 vectors) is recorded as the median of 5
loads, and :func:`edge.bundle.verify_bundle` alone likewise.

Targets: a lift alert is due within about a second of the lift's end, and the
hub also tensorizes and detects; we give inference at most 100 ms of that on
this machine, and loading a new bundle at most 2 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.harness import record

RUNS = 200
WARMUP = 10
THREADS = (1, 2)
LEGACY_PYTHON = Path(__file__).resolve().parents[1] / ".venv-legacy" / "bin" / "python"
INFERENCE_TARGET_MS = 100.0
LOAD_TARGET_S = 2.0

# Runs inside the legacy interpreter (tflite_runtime 2.14, numpy 1.x).
_LEGACY_SCRIPT = r"""
import json, statistics, sys, time
import numpy as np
from edge.runtime import make_interpreter
out = {}
for kind, kernels, path in (("int8", "builtin", sys.argv[1]), ("int8", "default", sys.argv[1]),
                            ("float32", "default", sys.argv[2])):
    for threads in (1, 2):
        interp, runtime = make_interpreter(path, num_threads=threads, prefer="tflite_runtime", kernels=kernels)
        d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
        x = np.random.default_rng(0).integers(-128, 128, size=d_in["shape"]).astype(d_in["dtype"]) \
            if kind == "int8" else np.random.default_rng(0).normal(size=d_in["shape"]).astype(np.float32)
        times = []
        for i in range(int(sys.argv[3]) + int(sys.argv[4])):
            t0 = time.perf_counter()
            interp.set_tensor(d_in["index"], x)
            interp.invoke()
            interp.get_tensor(d_out["index"])
            if i >= int(sys.argv[4]):
                times.append(time.perf_counter() - t0)
        out[f"{kind}_{kernels}_{threads}"] = [runtime, statistics.median(times) * 1000]
print(json.dumps(out))
"""


def time_interpreter(model: bytes, runtime: str, threads: int, x: np.ndarray, kernels: str) -> float:
    """Median milliseconds of set_tensor + invoke + get_tensor over :data:`RUNS` calls."""
    from edge.runtime import make_interpreter

    interp, got = make_interpreter(model, num_threads=threads, prefer=runtime, kernels=kernels)
    if got != runtime:
        raise RuntimeError(f"asked for {runtime}, got {got}")
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    times: List[float] = []
    for i in range(RUNS + WARMUP):
        t0 = time.perf_counter()
        interp.set_tensor(d_in["index"], x)
        interp.invoke()
        interp.get_tensor(d_out["index"])
        if i >= WARMUP:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def _record_latency(kind: str, kernels: str, runtime: str, threads: int, ms: float, version: str) -> None:
    name = f"inference_{kind}_{runtime.replace('.', '_')}_{kernels}_{threads}t_ms"
    what = ("built-in kernels (the hub's default: reproducible int8)" if kernels == "builtin"
            else "runtime default kernels (XNNPACK where it applies)")
    record(name, round(ms, 3), "ms", f"< {INFERENCE_TARGET_MS:g} ms", ms < INFERENCE_TARGET_MS,
           f"proposed model (Table 2), {kind} TFLite, {runtime} {version}, {what}, {threads} thread(s), "
           f"median of {RUNS} set+invoke+get")
    print(f"  {kind:8s} {kernels:8s} {runtime:16s} {threads} thread(s): {ms:8.2f} ms", file=sys.stderr, flush=True)


def main() -> None:
    """Measure and record the inference and bundle-load figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edge import bundle as bundle_mod
    from edge.runtime import available_runtimes, runtime_version
    from edge.signal_path import quantize_int8, tensorize_batch
    from quantize.convert import convert_model, model_ops
    from quantize.data import fit_recipe
    from quantize.export import build_manifest, golden_vectors
    from quantize.keygen import generate_keypair, load_private_key
    from quantize.models import build_model

    rng = np.random.default_rng(0)
    windows = [rng.normal(size=(int(rng.integers(250, 800)), 36)) * 0.3 for _ in range(68)]
    recipe = fit_recipe(windows[:64])
    tensors = tensorize_batch(windows[:64], recipe)
    print("bench_inference: building and converting the proposed model ...", file=sys.stderr, flush=True)
    model = build_model("proposed", seed=0)
    t0 = time.perf_counter()
    # the graph quantize convert writes (bias correction only moves bias values, so it is left out here)
    float_bytes, int8_bytes, _, _, _ = convert_model(model, tensors, n_representative=len(tensors),
                                                     bias_correction=False)
    convert_s = time.perf_counter() - t0
    print(f"bench_inference: converted in {convert_s:.1f} s; int8 {len(int8_bytes) / 1e6:.1f} MB, "
          f"float {len(float_bytes) / 1e6:.1f} MB; ops {', '.join(model_ops(int8_bytes))}", file=sys.stderr)
    record("proposed_int8_model_bytes", len(int8_bytes), "bytes", None, None,
           f"int8 .tflite of the proposed model (float32: {len(float_bytes)} bytes)")

    from edge.runtime import make_interpreter
    probe, _ = make_interpreter(int8_bytes)
    d_in = probe.get_input_details()[0]
    x_int8 = quantize_int8(tensors[:1], d_in["quantization"][0], d_in["quantization"][1])
    x_float = tensors[:1]

    for runtime in available_runtimes():
        version = runtime_version(runtime)
        for threads in THREADS:
            for kernels in ("builtin", "default"):
                _record_latency("int8", kernels, runtime, threads,
                                time_interpreter(int8_bytes, runtime, threads, x_int8, kernels), version)
            _record_latency("float32", "default", runtime, threads,
                            time_interpreter(float_bytes, runtime, threads, x_float, "default"), version)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "m8.tflite").write_bytes(int8_bytes)
        (tmp_path / "mf.tflite").write_bytes(float_bytes)
        if LEGACY_PYTHON.exists():
            out = subprocess.run([str(LEGACY_PYTHON), "-c", _LEGACY_SCRIPT, tmp_path / "m8.tflite",
                                  tmp_path / "mf.tflite", str(RUNS), str(WARMUP)],
                                 capture_output=True, text=True, timeout=600)
            if out.returncode == 0:
                for key, (runtime, ms) in json.loads(out.stdout).items():
                    kind, kernels, threads = key.split("_")
                    _record_latency(kind, kernels, runtime, int(threads), ms, "2.14.0 (legacy env, numpy 1.x)")
            else:
                print(f"bench_inference: legacy runtime failed: {out.stderr.strip().splitlines()[-1:]}",
                      file=sys.stderr)
        else:
            print(f"bench_inference: no {LEGACY_PYTHON}; run `make test-legacy` to measure tflite_runtime",
                  file=sys.stderr)

        # a signed bundle of the proposed int8 model
        generate_keypair(tmp_path / "key")
        key = load_private_key(tmp_path / "key")
        golden_raw = windows[64:68]
        inputs, outputs, io_info = golden_vectors(int8_bytes, golden_raw, recipe)
        manifest = build_manifest(model_id="proposed-bench", model_version="1.0.0", recipe=recipe,
                                  io_info=io_info, metrics={}, golden_count=len(golden_raw),
                                  source={"tool": "benchmarks/bench_inference.py"})
        path = tmp_path / "proposed.lgb"
        bundle_mod.write_bundle(path, manifest, {bundle_mod.MODEL_MEMBER: int8_bytes,
                                                 bundle_mod.GOLDEN_MEMBER: bundle_mod.golden_npz_bytes(
                                                     golden_raw, inputs, outputs)}, key)
        trust = [tmp_path / "key.pub"]
        loads: Dict[str, List[float]] = {"load": [], "verify": []}
        runtime_used = ""
        for _ in range(5):
            t0 = time.perf_counter()
            loaded = bundle_mod.load_bundle(path, trusted_keys=trust, num_threads=1)
            loads["load"].append(time.perf_counter() - t0)
            runtime_used = loaded.runtime
            loaded.close()
            t0 = time.perf_counter()
            bundle_mod.verify_bundle(path, trusted_keys=trust)
            loads["verify"].append(time.perf_counter() - t0)
        load_s, verify_s = statistics.median(loads["load"]), statistics.median(loads["verify"])
        size = path.stat().st_size
    record("bundle_load_verify_selftest_s", round(load_s, 3), "s", f"< {LOAD_TARGET_S:g} s", load_s < LOAD_TARGET_S,
           f"edge.bundle.load_bundle of the proposed int8 bundle ({size / 1e6:.1f} MB, 4 golden vectors): "
           f"zip, Ed25519, sha256, layout, {runtime_used} interpreter, golden self-test; median of 5")
    record("bundle_verify_only_s", round(verify_s, 3), "s", None, None,
           "edge.bundle.verify_bundle (no interpreter; includes the golden-input check); median of 5")
    print(f"bench_inference: bundle load+verify+self-test {load_s:.3f} s, verify only {verify_s:.3f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
