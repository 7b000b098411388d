"""Round trip: keygen, export, verify, load, self-test, predict, classify; runtimes and CLIs."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from test_bundle_kit import run_cli, tiny_bundle


@pytest.fixture(scope="module")
def tb():
    return tiny_bundle()


def test_keygen_writes_private_0600_and_refuses_to_overwrite(tmp_path):
    status, out, err = run_cli("quantize", ["keygen", "--out", tmp_path / "k"])
    assert status == 0, err
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (tmp_path / "k").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    before = (tmp_path / "k").read_bytes()
    status, out, err = run_cli("quantize", ["keygen", "--out", tmp_path / "k"])
    assert status == 1 and "already exists" in err and (tmp_path / "k").read_bytes() == before


def test_bundle_file_layout_and_manifest(tb):
    from edge import layout
    from edge.signal_path import TensorRecipe

    with zipfile.ZipFile(tb.bundle) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    assert names == {"manifest.json", "signature.json", "model_int8.tflite", "golden.npz"}
    assert manifest["format"] == "liftguard-bundle" and manifest["schema_version"] == 1
    assert manifest["model_version"] == "1.2.0" and manifest["model_id"]
    assert manifest["class_names"] == list(layout.CLASS_NAMES)
    assert manifest["layout"]["channels"] == list(layout.CHANNELS)
    assert manifest["layout"]["units"] == {"A": "g", "G": "deg/s"}
    assert manifest["sample_rate_hz"] == 25.0 and manifest["window"] == 750
    recipe = TensorRecipe.from_dict(manifest["recipe"])
    saved = TensorRecipe.load(tb.run / "recipe.json")
    for field in ("sos", "mean", "std"):
        assert np.array_equal(getattr(recipe, field), getattr(saved, field))  # bit-exact through JSON
    assert manifest["recipe_version"] == "lg-tensor-1"
    assert manifest["input"]["dtype"] == "int8" and manifest["input"]["shape"] == [1, 95, 95, 3]
    assert manifest["output"]["shape"] == [1, 3]
    assert "accuracy" in manifest["metrics"]["run"] and "agreement_with_keras" in manifest["metrics"]["int8_parity"]
    assert set(manifest["members"]) == {"model_int8.tflite", "golden.npz"}
    assert manifest["members"]["model_int8.tflite"]["sha256"] and manifest["golden"]["count"] >= 3


def test_verify_and_load_round_trip(tb):
    from edge.bundle import load_bundle, verify_bundle

    manifest = verify_bundle(tb.bundle, trusted_keys=[tb.pub])
    assert manifest["model_version"] == "1.2.0"
    loaded = load_bundle(tb.bundle, trusted_keys=[tb.other_pub, tb.pub], installed_version="1.1.9")
    assert loaded.runtime == "ai_edge_litert"
    assert loaded.model_version == "1.2.0" and loaded.class_names == ("low", "medium", "high")
    assert len(loaded.selftest) == manifest["golden"]["count"]
    assert all(g["max_steps"] <= 1 for g in loaded.selftest)
    # golden windows cover padding (short) and cutting (longer than 750 samples)
    lengths = [g["samples"] for g in loaded.selftest]
    assert min(lengths) < 750 < max(lengths)
    assert loaded.input_zero_point == manifest["input"]["zero_point"]


def test_predict_quantizes_with_the_models_own_scale_and_zero_point(tb):
    from edge.bundle import load_bundle, read_bundle
    from edge.signal_path import dequantize_int8, quantize_int8, tensorize

    loaded = load_bundle(tb.bundle, trusted_keys=[tb.pub])
    with np.load(io.BytesIO(read_bundle(tb.bundle).members["golden.npz"])) as z:
        raw, lengths, expected_in, expected_out = z["raw"], z["lengths"], z["input_int8"], z["output_int8"]
    window = raw[0, : lengths[0]]
    image = tensorize(window, loaded.recipe)
    q = quantize_int8(image, loaded.input_scale, loaded.input_zero_point)
    assert np.array_equal(q, expected_in[0])
    assert not np.array_equal(image.astype(np.int8), q)  # a plain cast is not the model's input
    probs = loaded.predict(image)
    assert probs.dtype == np.float32 and probs.shape == (3,)
    assert np.abs(probs - dequantize_int8(expected_out[0], loaded.output_scale, loaded.output_zero_point)).max() \
        <= loaded.output_scale + 1e-7
    verdict = loaded.classify(window)
    assert verdict.risk == ("low", "medium", "high")[int(np.argmax(probs))]
    assert np.array_equal(verdict.probs, probs) and verdict.latency_ms > 0


def test_edge_selftest_and_host_verify_cli(tb):
    status, out, err = run_cli("edge", ["selftest", "--bundle", tb.bundle, "--trust", tb.pub, "--json"])
    assert status == 0, err
    s = json.loads(out)
    assert s["selftest"] == "passed" and s["runtime"] == "ai_edge_litert" and s["model_version"] == "1.2.0"
    status, out, err = run_cli("host", ["verify", tb.bundle, "--trust", tb.pub])
    assert status == 0, err
    assert out.startswith("OK ") and "self-test passed" in out
    status, out, err = run_cli("host", ["verify", tb.bundle, "--trust", tb.pub, "--no-selftest"])
    assert status == 0 and "golden-input" in out
    status, out, err = run_cli("host", ["verify", tb.bundle, "--trust", tb.other_pub])
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("host: error: ") and "unknown key" in err


def test_edge_selftest_from_a_bundle_store(tb, tmp_path):
    from edge.store import BundleStore

    store = BundleStore(tmp_path / "store")
    store.provision(tb.pub.read_bytes(), "hub-1")
    store.install(tb.bundle)
    status, out, err = run_cli("edge", ["selftest", "--bundle-store", tmp_path / "store"])
    assert status == 0, err
    assert "self-test passed" in out and "version 1.2.0" in out


def test_tensorflow_lite_runtime_gives_the_same_golden_outputs(tb):
    from edge.bundle import load_bundle

    loaded = load_bundle(tb.bundle, trusted_keys=[tb.pub], prefer="tensorflow.lite")
    assert loaded.runtime == "tensorflow.lite"
    assert all(g["max_steps"] <= 1 for g in loaded.selftest)


def test_no_runtime_says_what_was_tried(tb, monkeypatch):
    from edge import runtime
    from edge.errors import RuntimeMissing

    def missing(name):
        def loader():
            raise ImportError(f"No module named {name!r}")
        return loader

    monkeypatch.setattr(runtime, "_LOADERS", {n: missing(n) for n in runtime.RUNTIME_ORDER})
    with pytest.raises(RuntimeMissing) as info:
        runtime.make_interpreter((tb.run / "model_int8.tflite").read_bytes())
    msg = str(info.value)
    assert "ai_edge_litert" in msg and "tflite_runtime" in msg and "tensorflow.lite" in msg
    assert "No module named" in msg


def test_edgetpu_model_without_libedgetpu_is_refused_clearly(tb, tmp_path):
    from edge.errors import RuntimeMissing
    from edge.runtime import make_interpreter

    tpu = tmp_path / "model_int8_edgetpu.tflite"
    tpu.write_bytes((tb.run / "model_int8.tflite").read_bytes())
    with pytest.raises(RuntimeMissing, match=r"compiled for the Edge TPU.*libedgetpu\.so\.1"):
        make_interpreter(tpu)


def test_bundle_with_edgetpu_member_falls_back_or_refuses(tb, tmp_path):
    from edge.bundle import load_bundle
    from edge.errors import RuntimeMissing

    tpu = tmp_path / "model_int8_edgetpu.tflite"
    tpu.write_bytes((tb.run / "model_int8.tflite").read_bytes())
    out = tmp_path / "tpu.lgb"
    status, _, err = run_cli("quantize", ["export", "--run", tb.run, "--out", out, "--sign", tb.key,
                                          "--model-version", "1.2.1", "--golden", 1, "--edgetpu-model", tpu])
    assert status == 0, err
    loaded = load_bundle(out, trusted_keys=[tb.pub])
    assert loaded.model_member == "model_int8.tflite"
    assert loaded.notes and "Edge TPU model not used" in loaded.notes[0]
    with pytest.raises(RuntimeMissing, match="libedgetpu"):
        load_bundle(out, trusted_keys=[tb.pub], use_edgetpu=True)


def test_versions_compare_numerically():
    from edge.bundle import compare_versions, parse_version
    from edge.errors import BundleError

    assert compare_versions("1.10.0", "1.9.9") == 1
    assert compare_versions("2026.1126.132000", "2026.1126.131959") == 1
    assert compare_versions("1.2", "1.2.0") == 0
    with pytest.raises(BundleError, match="1 to 4 dot-separated integers"):
        parse_version("v1.2-beta")


def test_edge_imports_no_tensorflow_for_bundles():
    import subprocess
    import sys

    code = ("import sys, edge.bundle, edge.runtime, edge.bundle_cli; "
            "assert 'tensorflow' not in sys.modules and 'scipy' not in sys.modules; print('clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "clean" in out.stdout, out.stderr


def test_host_verify_checks_the_target_hubs_sensors(tb):
    status, out, err = run_cli("host", ["verify", tb.bundle, "--trust", tb.pub, "--sensors", "Side,Back"])
    assert status == 1 and "which this hub lacks" in err and "LtWt" in err
    status, out, err = run_cli("host", ["verify", tb.bundle, "--trust", tb.pub, "--sensors", "Side,Bak"])
    assert status == 1 and "'Bak' is not a sensor" in err


def test_passphrase_protected_signing_key(tmp_path, monkeypatch):
    from edge.errors import ConfigError
    from quantize.keygen import PASSPHRASE_ENV, load_private_key

    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    status, out, err = run_cli("quantize", ["keygen", "--out", tmp_path / "k", "--passphrase-env"])
    assert status == 0, err
    assert "ENCRYPTED" in (tmp_path / "k").read_text()
    assert load_private_key(tmp_path / "k") is not None
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(ConfigError, match="passphrase is wrong"):
        load_private_key(tmp_path / "k")
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(ConfigError, match=PASSPHRASE_ENV):
        load_private_key(tmp_path / "k")


def test_bundle_of_a_sensor_subset_run_fits_a_hub_with_only_those_sensors(tb, tmp_path):
    """A run trained with --sensors (others masked through the recipe) needs only its sensors."""
    import shutil

    from edge.bundle import load_bundle
    from edge.errors import BundleError
    from edge.signal_path import TensorRecipe
    from quantize.train import mask_recipe

    run = tmp_path / "run"
    shutil.copytree(tb.run, run)
    kept = ("Side", "LtWt", "RtWt", "Back", "UArm")
    mask_recipe(TensorRecipe.load(run / "recipe.json"), kept).save(run / "recipe.json")
    out = tmp_path / "five.lgb"
    status, _, err = run_cli("quantize", ["export", "--run", run, "--out", out, "--sign", tb.key,
                                          "--model-version", "1.3.0", "--golden", 1])
    assert status == 0, err
    loaded = load_bundle(out, trusted_keys=[tb.pub], hub_sensors=kept)
    assert loaded.manifest["layout"]["required_sensors"] == list(kept)
    assert loaded.manifest["layout"]["channels"][-1] == "Thig_G_z"  # the tensor layout stays 36 channels
    with pytest.raises(BundleError, match="needs sensor\\(s\\) UArm which this hub lacks"):
        load_bundle(out, trusted_keys=[tb.pub], hub_sensors=("Side", "LtWt", "RtWt", "Back", "Thig"))


def test_builtin_kernels_reproduce_golden_outputs_exactly(tb):
    """Golden outputs come from the built-in kernels: the hub's default reproduces them bit for bit."""
    from edge.bundle import load_bundle

    loaded = load_bundle(tb.bundle, trusted_keys=[tb.pub])
    assert loaded.kernels == "builtin" and all(g["max_steps"] == 0 for g in loaded.selftest)
    tol = loaded.manifest["golden"]["default_kernels_tolerance_steps"]
    fast = load_bundle(tb.bundle, trusted_keys=[tb.pub], kernels="default", num_threads=2)
    assert fast.kernels == "default" and 1 <= tol <= 16
    assert all(g["max_steps"] <= tol for g in fast.selftest)
    status, out, err = run_cli("edge", ["selftest", "--bundle", tb.bundle, "--trust", tb.pub, "--kernels", "default"])
    assert status == 0 and "(default kernels)" in out
