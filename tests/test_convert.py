"""Tests of ``quantize convert``: float32 and full-integer int8 TFLite, and the parity report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_bundle_kit import run_cli, tiny_bundle


@pytest.fixture(scope="module")
def tb():
    return tiny_bundle()


def test_int8_model_has_int8_io_and_only_edgetpu_ops(tb):
    from edge.runtime import make_interpreter
    from quantize.convert import EDGETPU_OPS, model_ops

    model = (tb.run / "model_int8.tflite").read_bytes()
    interpreter, runtime = make_interpreter(model)
    d_in, d_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert np.dtype(d_in["dtype"]) == np.int8 and np.dtype(d_out["dtype"]) == np.int8
    assert list(d_in["shape"]) == [1, 95, 95, 3] and list(d_out["shape"]) == [1, 3]
    scale, zp = d_in["quantization"]
    assert 0 < scale < 1 and -128 <= zp <= 127
    ops = model_ops(model)
    assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    # batch fixed to 1: no dynamic-shape ops, every op maps to the Edge TPU
    assert not {"SHAPE", "PACK", "STRIDED_SLICE"} & set(ops)
    assert set(ops) <= EDGETPU_OPS
    # the float model stays float
    f_interp, _ = make_interpreter((tb.run / "model_float32.tflite").read_bytes())
    assert np.dtype(f_interp.get_input_details()[0]["dtype"]) == np.float32


def test_parity_report_matches_an_independent_recomputation(tb):
    from edge.runtime import make_interpreter
    from edge.signal_path import TensorRecipe, dequantize_int8, quantize_int8
    from quantize.data import load_windows, make_tensors
    from quantize.models import load_model

    parity = json.loads((tb.run / "parity.json").read_text())
    split = json.loads((tb.run / "split.json").read_text())
    assert parity["n_test"] == len(split["test"])
    assert set(parity["models"]) == {"keras", "tflite_float32", "tflite_int8", "tflite_int8_xnnpack"}
    for m in parity["models"].values():
        for key in ("accuracy", "rk", "agreement_with_keras", "max_prob_diff_vs_keras"):
            assert key in m
        for cls in ("low", "medium", "high"):
            assert set(m[cls]) >= {"precision", "recall", "f1"}

    # recompute Keras and int8 predictions on the test split by hand
    recipe = TensorRecipe.load(tb.run / "recipe.json")
    test = load_windows(tb.data, progress=False).select(split["test"])
    x = make_tensors(test.windows, recipe, progress=False)
    keras_probs = load_model(tb.run / "model.keras").predict(x, verbose=0)
    def run(kernels):
        interp, _ = make_interpreter((tb.run / "model_int8.tflite").read_bytes(), kernels=kernels)
        d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
        out = []
        for xi in x:
            interp.set_tensor(d_in["index"], quantize_int8(xi[None], *d_in["quantization"]))
            interp.invoke()
            out.append(dequantize_int8(interp.get_tensor(d_out["index"])[0], *d_out["quantization"]))
        return np.array(out)

    def decide(p):  # most probable; exact ties to the later (riskier) class, written out independently
        return np.array([max(i for i in range(len(r)) if r[i] == r.max()) for r in p])

    probs = run("builtin")  # the hub's default kernels decide the targets
    fast = run("default")
    assert parity["models"]["tflite_int8_xnnpack"]["agreement_with_keras"] == pytest.approx(
        float(np.mean(decide(fast) == decide(keras_probs))))
    agreement = float(np.mean(decide(probs) == decide(keras_probs)))
    accuracy = float(np.mean(decide(keras_probs) == test.labels))
    assert parity["models"]["tflite_int8"]["agreement_with_keras"] == pytest.approx(agreement)
    assert parity["models"]["keras"]["accuracy"] == pytest.approx(accuracy)
    assert parity["models"]["tflite_int8"]["max_prob_diff_vs_keras"] == pytest.approx(
        float(np.max(np.abs(probs - keras_probs))), abs=1e-6)
    # float TFLite is the same maths as Keras; int8 is within a few output steps
    assert parity["models"]["tflite_float32"]["max_prob_diff_vs_keras"] < 1e-4
    assert parity["models"]["tflite_int8"]["max_prob_diff_vs_keras"] < 0.1
    drop = 100 * (parity["models"]["keras"]["accuracy"] - parity["models"]["tflite_int8"]["accuracy"])
    assert parity["int8_accuracy_drop_points"] == pytest.approx(drop)
    assert parity["met"] == (agreement >= 0.99 and drop <= 0.5)
    md = (tb.run / "parity.md").read_text()
    assert "| tflite_int8 |" in md and "agreement" in md
    assert "| tflite_int8 |" in tb.convert_stdout


def test_representative_sample_is_seeded_and_from_the_given_tensors():
    from quantize.convert import representative_sample

    x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    a, b = representative_sample(x, 4, seed=3), representative_sample(x, 4, seed=3)
    assert np.array_equal(a, b) and a.shape == (4, 2)
    assert all(any(np.array_equal(r, xi) for xi in x) for r in a)
    assert len(representative_sample(x, 50, seed=0)) == 10


def test_convert_cli_errors_are_one_line(tmp_path):
    status, out, err = run_cli("quantize", ["convert", "--run", tmp_path / "nope"])
    assert status == 1
    assert err.startswith("quantize: error: ") and "model.keras" in err and "Traceback" not in err


def test_parity_markdown_reports_missed_targets_honestly():
    from quantize.convert import parity_markdown, parity_report

    keras = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1]])
    int8 = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    y = np.array([0, 1, 2, 0])
    p = parity_report(keras, keras, int8, y)
    assert p["models"]["tflite_int8"]["agreement_with_keras"] == pytest.approx(0.75)
    assert p["int8_accuracy_drop_points"] == pytest.approx(25.0)
    assert not p["met"]
    assert "MISSED" in parity_markdown(p)


def test_empirical_bias_correction_reduces_the_int8_error(tb):
    """Bias correction (measured on training tensors only) brings int8 closer to the float model."""
    from edge.signal_path import TensorRecipe
    from quantize.convert import (convert_int8, convert_int8_bias_corrected, layer_mean_error, _reference_fn,
                                  tflite_probs)
    from quantize.data import load_windows, make_tensors
    from quantize.models import load_model

    split = json.loads((tb.run / "split.json").read_text())
    recipe = TensorRecipe.load(tb.run / "recipe.json")
    x = make_tensors(load_windows(tb.data, progress=False).select(split["train"]).windows, recipe, progress=False)
    model = load_model(tb.run / "model.keras")
    plain = convert_int8(model, x)
    corrected, corrections = convert_int8_bias_corrected(model, x, threshold_steps=0.0, progress=False)
    assert corrections, "expected at least one layer with a measurable mean error"
    for c in corrections:
        layer = model.get_layer(c["layer"])
        before = layer_mean_error(plain, _reference_fn(model, layer), layer.name, x)
        after = layer_mean_error(corrected, _reference_fn(model, layer), layer.name, x)
        assert np.abs(after[0]).mean() / after[1] < np.abs(before[0]).mean() / before[1] + 1e-9
    keras_probs = model.predict(x, verbose=0)
    err_plain = np.abs(tflite_probs(plain, x) - keras_probs).mean()
    err_corrected = np.abs(tflite_probs(corrected, x) - keras_probs).mean()
    assert err_corrected <= err_plain
    assert model.get_layer(corrections[0]["layer"]).get_weights()[1].tolist() == \
        load_model(tb.run / "model.keras").get_layer(corrections[0]["layer"]).get_weights()[1].tolist()


def test_recurrent_models_are_refused_before_the_converter_crashes():
    from edge.errors import ConfigError
    from quantize.convert import convert_int8
    from quantize.models import build_model

    with pytest.raises(ConfigError, match="LSTM layer .* only the CNN models"):
        convert_int8(build_model("cnn_lstm", seed=0), np.zeros((1, 95, 95, 3), np.float32))


def test_parity_decides_exact_int8_ties_for_the_higher_risk_as_the_hub_does():
    """An int8 output that ties two classes counts as the riskier one, in the report as on the hub."""
    from quantize.convert import parity_report

    keras = np.array([[0.49, 0.51, 0.0], [0.0, 0.495, 0.505], [0.8, 0.1, 0.1]])
    int8 = np.array([[0.4961, 0.4961, 0.0078], [0.0078, 0.4961, 0.4961], [0.8, 0.1, 0.1]])
    p = parity_report(keras, keras, int8, np.array([1, 2, 0]))
    assert p["models"]["tflite_int8"]["agreement_with_keras"] == pytest.approx(1.0)
    assert p["models"]["tflite_int8"]["accuracy"] == pytest.approx(1.0)


def _chain_model(seed=3):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((95, 95, 3), name="image")
    x = keras.layers.Conv2D(6, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.AveragePooling2D(2, name="p1")(x)
    x = keras.layers.Dropout(0.3, name="d1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = keras.layers.AveragePooling2D(2, name="p2")(x)
    x = keras.layers.Conv2D(8, 5, activation="relu", name="c3")(x)
    x = keras.layers.AveragePooling2D(2, name="p3")(x)
    x = keras.layers.Flatten(name="f")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="chain")


def test_average_pooling_folded_into_the_next_convolution_is_the_same_function():
    from quantize.convert import fold_average_pooling

    model = _chain_model()
    x = np.random.default_rng(0).normal(size=(6, 95, 95, 3)).astype(np.float32)
    folded, names = fold_average_pooling(model, x)
    assert names == ["c2", "c3"]
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert kinds == ["InputLayer", "Conv2D", "Conv2D", "Conv2D", "AveragePooling2D", "Flatten", "Dense"]
    assert folded.get_layer("c2").get_config()["kernel_size"] == (6, 6)
    assert folded.get_layer("c3").get_config()["strides"] == (2, 2)
    assert folded.get_layer("c3").get_weights()[0].shape == (10, 10, 8, 8)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    # the trained model itself is untouched
    assert model.get_layer("c2").get_weights()[0].shape == (3, 3, 6, 8)


def test_models_that_are_not_a_chain_are_converted_as_they_are():
    import keras
    from quantize.convert import fold_average_pooling

    inputs = keras.Input((95, 95, 3))
    a = keras.layers.AveragePooling2D(2)(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    b = keras.layers.Conv2D(4, 3, padding="same")(a)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(keras.layers.Add()([a, b])))
    model = keras.Model(inputs, out)
    assert fold_average_pooling(model) == (model, [])


def test_folding_takes_pooled_tensors_out_of_the_int8_model_and_lowers_its_error(tb):
    """The folded int8 model has fewer pooling ops and is closer to the float model (training tensors)."""
    from edge.signal_path import TensorRecipe
    from quantize.convert import convert_int8, fold_average_pooling, model_ops, tflite_probs
    from quantize.data import load_windows, make_tensors
    from quantize.models import load_model

    split = json.loads((tb.run / "split.json").read_text())
    recipe = TensorRecipe.load(tb.run / "recipe.json")
    x = make_tensors(load_windows(tb.data, progress=False).select(split["train"]).windows, recipe, progress=False)
    model = load_model(tb.run / "model.keras")
    folded, names = fold_average_pooling(model, x)
    assert len(names) == 1
    plain_bytes, folded_bytes = convert_int8(model, x), convert_int8(folded, x)
    def pools(model_bytes):
        from edge.runtime import make_interpreter

        interp, _ = make_interpreter(model_bytes, kernels="builtin")
        return sum(op["op_name"] == "AVERAGE_POOL_2D" for op in interp._get_ops_details())

    assert (pools(plain_bytes), pools(folded_bytes)) == (2, 1)
    assert set(model_ops(folded_bytes)) <= set(model_ops(plain_bytes))
    keras_probs = model.predict(x, verbose=0)
    err_plain = np.abs(tflite_probs(plain_bytes, x) - keras_probs).mean()
    err_folded = np.abs(tflite_probs(folded_bytes, x) - keras_probs).mean()
    assert err_folded <= err_plain
    parity = json.loads((tb.run / "parity.json").read_text())
    assert parity["int8_model"]["pooling_folded_into"] == names


def test_relu_ranges_clipped_at_a_percentile_keep_the_function_below_it(tb):
    """ReLU6 rescaling (through pooling, flatten, dropout and batch norm) changes only the saturated values."""
    from quantize.convert import clip_activation_ranges, fold_average_pooling
    from quantize.models import load_model

    model = load_model(tb.run / "model.keras")  # conv, avg-pool, conv, avg-pool, dense, batch norm, softmax
    x = np.random.default_rng(4).normal(size=(12, 95, 95, 3)).astype(np.float32)
    chain, _ = fold_average_pooling(model, x)
    same, clip = clip_activation_ranges(chain, x, percentile=100 - 1e-9)  # ranges end at the largest value seen
    assert set(clip) == {l.name for l in chain.layers if type(l).__name__ in ("Conv2D", "Dense")
                         and l.get_config().get("activation") == "relu"}
    assert all(l.get_config()["activation"] == "relu6" for l in same.layers if l.name in clip)
    np.testing.assert_allclose(same.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    tight, _ = clip_activation_ranges(chain, x, percentile=50.0)  # half of every activation saturates
    assert np.abs(tight.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-3
    assert clip_activation_ranges(chain, x, percentile=100.0) == (chain, {})


def _confident_chain_model(x, seed=3, largest=30.0):
    """The chain model with a last layer giving logits (t, -t, 0) with |t| up to ``largest`` on ``x``.

    Like a trained model: one class far ahead on most windows, tens of logits of range.
    """
    import keras

    model = _chain_model(seed)
    last = model.get_layer("out")
    kernel, bias = last.get_weights()
    w = np.random.default_rng(seed).normal(size=kernel.shape[0]).astype(np.float32)
    t = keras.Model(model.inputs, last.input).predict(x, verbose=0) @ w
    w *= largest / np.abs(t).max()
    last.set_weights([np.stack([w, -w, np.zeros_like(w)], axis=1), np.zeros_like(bias)])
    return model


def test_bounded_logits_keep_every_decision_and_each_probability_within_one_output_step():
    """Bounds from the calibration windows' top-two logits, +- the margin: decisions and probabilities kept."""
    import keras
    from quantize.convert import bound_logit_range

    x = np.random.default_rng(5).normal(size=(40, 95, 95, 3)).astype(np.float32)
    model = _confident_chain_model(x)
    copy, convertible, info = bound_logit_range(model, x, margin=6.0)
    logits = keras.Model(model.inputs, model.get_layer("out").input).predict(x, verbose=0) \
        @ model.get_layer("out").get_weights()[0] + model.get_layer("out").get_weights()[1]
    ordered = np.sort(logits, axis=1)
    assert info["low"] == pytest.approx(ordered[:, -1].min() - 6.0, abs=1e-3)
    assert info["high"] == pytest.approx(ordered[:, -2].max() + 6.0, abs=1e-3)
    assert info["step_after"] < info["step_before"]
    assert info["softmax_beta"] == pytest.approx((info["high"] - info["low"]) / 6.0, rel=1e-4)
    p, q = model.predict(x, verbose=0), copy.predict(x, verbose=0)
    np.testing.assert_array_equal(np.argmax(q, 1), np.argmax(p, 1))
    assert np.abs(p - q).max() < 1.0 / 256 + 1e-3
    # the model to convert has no Rescaling: its softmax sees the ReLU6-scaled logits, beta left to the converted file
    kinds = [type(layer).__name__ for layer in convertible.layers]
    assert "Rescaling" not in kinds and "Rescaling" in [type(layer).__name__ for layer in copy.layers]
    assert convertible.get_layer("out_bounded").get_config()["activation"] == "relu6"
    # nothing to gain on a model whose logits are already small; margin 0 turns it off
    small = _chain_model()
    assert bound_logit_range(small, x, margin=6.0) == (small, small, {})
    assert bound_logit_range(model, x, margin=0.0) == (model, model, {})


def test_softmax_beta_puts_the_bounds_into_the_int8_model_at_the_finer_step():
    """Converted without a MUL, SOFTMAX beta carries the scale, and the logits get 255 steps over the bounds."""
    from edge.runtime import make_interpreter
    from quantize.convert import EDGETPU_OPS, bound_logit_range, convert_int8, model_ops, set_softmax_beta, tflite_probs

    x = np.random.default_rng(5).normal(size=(40, 95, 95, 3)).astype(np.float32)
    model = _confident_chain_model(x)
    copy, convertible, info = bound_logit_range(model, x)
    raw = convert_int8(convertible, x)
    patched = set_softmax_beta(raw, info["softmax_beta"])
    assert set(model_ops(patched)) <= EDGETPU_OPS and "MUL" not in model_ops(patched)
    interp, _ = make_interpreter(patched, preserve_all_tensors=True)
    logits = [d for d in interp.get_tensor_details() if list(d["shape"]) == [1, 3]
              and "out_bounded" in d["name"]]
    assert len(logits) == 1 and logits[0]["quantization"][0] == pytest.approx(6.0 / 255, rel=1e-4)
    keras_probs = model.predict(x, verbose=0)
    with_beta, without_beta = tflite_probs(patched, x), tflite_probs(raw, x)
    assert np.abs(with_beta - keras_probs).mean() < 0.02
    assert np.abs(without_beta - keras_probs).mean() > 2 * np.abs(with_beta - keras_probs).mean()


def test_softmax_beta_refuses_a_model_without_exactly_one_softmax():
    import keras
    from edge.errors import ConfigError
    from quantize.convert import convert_int8, set_softmax_beta

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    with pytest.raises(ConfigError, match="0 SOFTMAX operators; expected exactly 1"):
        set_softmax_beta(convert_int8(model, x), 2.0)


def test_parity_names_each_window_int8_decides_otherwise_with_the_float_margin():
    from quantize.convert import parity_markdown, parity_report

    keras = np.array([[0.52, 0.47, 0.01], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    int8 = np.array([[0.45, 0.54, 0.01], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    p = parity_report(keras, keras, int8, np.array([1, 2, 2]), ids=["S01_Z05_R1", "S01_Z10_R1", "S02_Z12_R3"])
    assert p["disagreements"] == [{"window": 0, "id": "S01_Z05_R1", "true": 1, "keras": [0.52, 0.47, 0.01],
                                   "int8": [0.45, 0.54, 0.01], "keras_margin": 0.05}]
    md = parity_markdown(p)
    assert "S01_Z05_R1 (true medium; Keras 0.520 / 0.470 / 0.010, margin 0.050; int8 0.450 / 0.540 / 0.010)" in md
    assert parity_report(keras, keras, keras, np.array([1, 2, 2]))["disagreements"] == []
