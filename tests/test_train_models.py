"""Tests of quantize.models: the five models build, train a step, save and reload identically."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.layout import CHANNELS, IMAGE_SHAPE
from edge.signal_path import from_matrix, unwrap_image, wrap_to_image
from quantize.models import MODEL_NAMES, build_model, load_model, time_order_indices


@pytest.fixture(scope="module")
def tiny_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6,) + IMAGE_SHAPE).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    return x, y


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_builds_and_trains_one_step(name, tiny_batch):
    x, y = tiny_batch
    model = build_model(name, seed=1)
    assert model.input_shape == (None,) + IMAGE_SHAPE
    assert model.output_shape == (None, 3)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    loss = float(np.atleast_1d(loss)[0])
    assert np.isfinite(loss) and loss > 0
    after = model.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), "one step changed no weight"
    probs = model.predict(x, verbose=0)
    assert probs.shape == (6, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_proposed_matches_table_2():
    model = build_model("proposed", seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 5 and kinds.count("AveragePooling2D") == 3
    assert kinds.count("MaxPooling2D") == 0 and kinds.count("BatchNormalization") == 1
    assert model.get_layer("fc1024").units == 1024
    assert model.get_layer("softmax").kernel_regularizer is not None
    assert all(model.get_layer(f"drop{i}").rate == 0.25 for i in range(1, 5))
    assert 8.6e6 < model.count_params() < 8.8e6  # 'valid' padding: about 8.7 M
    maxpool = build_model("maxpool", seed=0)
    assert [type(layer).__name__ for layer in maxpool.layers].count("MaxPooling2D") == 3
    assert maxpool.count_params() == model.count_params()


def test_same_seed_same_initial_weights():
    a = build_model("cnn", seed=5).get_weights()
    b = build_model("cnn", seed=5).get_weights()
    c = build_model("cnn", seed=6).get_weights()
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_cnn_lstm_sees_the_12x750x3_matrix_in_time_order():
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(12, 750, 3))
    image = wrap_to_image(matrix).astype(np.float32)
    expected = from_matrix(unwrap_image(image))  # (750, 36), CHANNELS order
    idx = time_order_indices()
    assert np.array_equal(image.reshape(-1)[idx].reshape(750, len(CHANNELS)), expected)
    import keras

    model = build_model("cnn_lstm", seed=0)
    sub = keras.Model(model.input, model.get_layer("time_order").output)
    got = sub.predict(image[None], verbose=0)[0]
    assert np.array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize("name", ["proposed", "cnn_lstm"])
def test_saved_model_reloads_with_identical_predictions(name, tiny_batch, tmp_path):
    from quantize.train import save_model

    x, y = tiny_batch
    model = build_model(name, seed=3)
    model.train_on_batch(x, y)
    before = model.predict(x, verbose=0)
    path = save_model(model, tmp_path / "model.keras")
    loaded = load_model(path)
    assert np.array_equal(loaded.predict(x, verbose=0), before)


def test_bad_model_arguments_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="model 'resnet' is not known"):
        build_model("resnet")
    with pytest.raises(ConfigError, match="dropout 1.5 is out of range"):
        build_model("mlp", dropout=1.5)
    with pytest.raises(ConfigError, match="no such model file"):
        load_model(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_text("not a zip")
    with pytest.raises(ConfigError, match="cannot load as a Keras model"):
        load_model(tmp_path / "junk.keras")


def test_batchnorm_statistics_are_set_exactly_from_the_training_tensors(tiny_batch):
    """After fit(), the BN layer normalises the training tensors to mean 0 and variance 1 in inference."""
    import keras

    from quantize.train import fit

    x, y_hot = tiny_batch
    y = np.argmax(y_hot, axis=1)
    model = build_model("proposed", seed=3)
    result = fit(model, x, y, epochs=1, batch_size=3, seed=3, quiet=True)
    assert result["bn_statistics"] == "train" and result["bn_layers"] == 1
    bn = model.get_layer("bn")
    gamma, beta = (np.asarray(w, dtype=np.float64) for w in bn.get_weights()[:2])
    out = np.asarray(keras.Model(model.inputs, bn.output).predict(x, verbose=0), dtype=np.float64)
    unit = (out - beta) / gamma  # the normalised input, before scale and shift
    var_in = np.asarray(bn.get_weights()[3], dtype=np.float64)
    live = var_in > 1e-6  # units the six tensors do not leave constant
    assert live.sum() > 100
    mean_in = np.asarray(bn.get_weights()[2], dtype=np.float64)
    scale = np.sqrt(var_in + bn.epsilon)
    assert np.allclose(unit.mean(axis=0) * scale, 0.0, atol=1e-5 + 1e-3 * np.abs(mean_in).max())
    expected_var = var_in / (var_in + bn.epsilon)  # exactly 1 without BN's epsilon
    assert np.allclose(unit.var(axis=0)[live], expected_var[live], rtol=2e-2, atol=1e-6)


def test_moving_batchnorm_statistics_are_kept_when_asked(tiny_batch):
    import keras

    from quantize.train import fit

    x, y_hot = tiny_batch
    y = np.argmax(y_hot, axis=1)
    model = build_model("proposed", seed=3)
    result = fit(model, x, y, epochs=1, batch_size=3, seed=3, quiet=True, bn_statistics="moving")
    assert result["bn_statistics"] == "moving" and result["bn_layers"] == 0
    bn = model.get_layer("bn")
    z = np.asarray(keras.Model(model.inputs, bn.input).predict(x, verbose=0), dtype=np.float64)
    # two batches at momentum 0.99 leave the moving mean close to its zero start, far from the data's
    assert not np.allclose(bn.get_weights()[2], z.mean(axis=0), atol=1e-3)


def test_models_without_batchnorm_and_bad_mode(tiny_batch):
    from quantize.train import fit, recompute_batchnorm_statistics

    x, y_hot = tiny_batch
    model = build_model("mlp", seed=0)
    assert recompute_batchnorm_statistics(model, x) == 0
    with pytest.raises(ConfigError, match="--bn-statistics 'exact'"):
        fit(model, x, np.argmax(y_hot, axis=1), epochs=1, quiet=True, bn_statistics="exact")
    with pytest.raises(ConfigError, match="at least one training tensor"):
        recompute_batchnorm_statistics(build_model("proposed", seed=0), x[:0])
