"""The golden-vector self-test of an exported bundle passes on tflite-runtime 2.14 with numpy<2."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from test_bundle_kit import tiny_bundle


def legacy(python, *args, timeout=120):
    """Run the legacy python; return the completed process."""
    return subprocess.run([str(python), *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tb():
    return tiny_bundle()


def test_legacy_environment_is_what_old_hubs_have(legacy_python):
    code = ("import importlib.util as u, numpy, tflite_runtime, sys; "
            "print(numpy.__version__, tflite_runtime.__version__, "
            "u.find_spec('ai_edge_litert') is None, u.find_spec('tensorflow') is None)")
    out = legacy(legacy_python, "-c", code)
    assert out.returncode == 0, out.stderr
    numpy_version, tflite_version, no_litert, no_tf = out.stdout.split()
    assert numpy_version.startswith("1.") and tflite_version == "2.14.0"
    assert no_litert == "True" and no_tf == "True"


def test_golden_self_test_on_tflite_runtime_2_14(legacy_python, tb):
    t0 = time.perf_counter()
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", tb.bundle, "--trust", tb.pub, "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["runtime"] == "tflite_runtime" and s["runtime_version"] == "2.14.0"
    assert s["numpy"].startswith("1.")
    assert s["selftest"] == "passed"
    assert len(s["golden"]) >= 3 and all(g["max_steps"] <= 1 for g in s["golden"])
    # built-in kernels: the int8 arithmetic of 2.14 equals LiteRT 2.3's, bit for bit
    assert s["kernels"] == "builtin" and all(g["max_steps"] == 0 for g in s["golden"])
    print(f"legacy self-test subprocess took {time.perf_counter() - t0:.2f} s")


def test_legacy_hub_refuses_a_bad_bundle_in_one_line(legacy_python, tb, tmp_path):
    data = tb.bundle.read_bytes()
    bad = tmp_path / "cut.lgb"
    bad.write_bytes(data[: len(data) // 2])
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", bad, "--trust", tb.pub)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("edge: error: ") and "truncated or corrupt" in out.stderr
    assert "Traceback" not in out.stderr
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", tb.bundle, "--trust", tb.other_pub)
    assert out.returncode == 1 and "unknown key" in out.stderr


def test_proposed_model_bundle_self_tests_on_tflite_runtime_2_14(legacy_python, tmp_path):
    """The paper's full Table 2 network, through every conversion step of TF 2.21, runs on the old runtime.

    Untrained weights, with the last layer made confident (logits of tens, as a trained model's) so that
    the conversion folds pooling, clips ReLU ranges and bounds the logits (SOFTMAX with beta != 1).
    """
    import keras
    import numpy as np

    from edge import bundle as bundle_mod
    from quantize.convert import convert_model
    from quantize.data import fit_recipe
    from quantize.export import build_manifest, golden_vectors
    from quantize.keygen import generate_keypair, load_private_key
    from quantize.models import build_model

    rng = np.random.default_rng(1)
    windows = [rng.normal(size=(int(rng.integers(200, 900)), 36)) * 0.3 for _ in range(20)]
    recipe = fit_recipe(windows[:16])
    from edge.signal_path import tensorize_batch

    calibration = tensorize_batch(windows[:16], recipe)
    model = build_model("proposed", seed=0)
    last = model.layers[-1]
    kernel, bias = last.get_weights()
    t = keras.Model(model.inputs, last.input).predict(calibration, verbose=0) @ kernel[:, 0]
    w = kernel[:, 0] * (30.0 / np.abs(t).max())
    last.set_weights([np.stack([w, -w, np.zeros_like(w)], axis=1), np.zeros_like(bias)])
    _, model_bytes, _, folded, ranges = convert_model(model, calibration, n_representative=16, bias_correction=False,
                                                      activation_percentile=99.99)
    assert folded and ranges["layers"] and ranges["logit_bounds"]["softmax_beta"] > 1.0
    inputs, outputs, io_info = golden_vectors(model_bytes, windows[16:], recipe)
    generate_keypair(tmp_path / "key")
    manifest = build_manifest(model_id="proposed-legacy", model_version="1.0.0", recipe=recipe, io_info=io_info,
                              metrics={}, golden_count=4, source={"tool": "legacy test"})
    path = tmp_path / "proposed.lgb"
    bundle_mod.write_bundle(path, manifest, {bundle_mod.MODEL_MEMBER: model_bytes,
                                             bundle_mod.GOLDEN_MEMBER: bundle_mod.golden_npz_bytes(
                                                 windows[16:], inputs, outputs)},
                            load_private_key(tmp_path / "key"))
    out = legacy(legacy_python, "-m", "edge", "selftest", "--bundle", path, "--trust", tmp_path / "key.pub", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["runtime"] == "tflite_runtime" and s["selftest"] == "passed" and len(s["golden"]) == 4
    assert all(g["max_steps"] == 0 for g in s["golden"])  # deep net too: bit-exact with the exporter's kernels
