"""The shared signal path: wrap by hand, filter parity with scipy, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edge.errors import TensorError
from edge.signal_path import (
    TensorRecipe,
    apply_sos,
    apply_sos_batch,
    cut_lift,
    fit_standardization,
    from_matrix,
    quantize_int8,
    dequantize_int8,
    tensorize,
    tensorize_batch,
    to_matrix,
    unwrap_image,
    wrap_to_image,
)
from quantize.filter_design import design_bandpass

SOS = design_bandpass()


def unit_recipe():
    return TensorRecipe(sos=SOS, mean=np.zeros(36), std=np.ones(36))


def test_wrap_small_case_by_hand():
    # Value = row*1000 + time for depth 0; depth 1 = -value; depth 2 = 0.
    m = np.zeros((12, 750, 3), dtype=np.float32)
    m[:, :, 0] = np.arange(12)[:, None] * 1000 + np.arange(750)[None, :]
    m[:, :, 1] = -m[:, :, 0]
    img = wrap_to_image(m)
    assert img.shape == (95, 95, 3)
    # First image row: row 0, times 0..94.
    assert img[0, :, 0].tolist() == list(range(95))
    # Pixel 750 (image row 7, col 85) is matrix row 1, time 0.
    assert img[7, 85, 0] == 1000
    # Image row 7 starts at flat index 665 = row 0, time 665.
    assert img[7, 0, 0] == 665
    # Last real value is flat index 8999 = image row 94, col 69: row 11, time 749.
    assert img[94, 69, 0] == 11749
    assert img[94, 69, 1] == -11749
    # The 25 trailing pixels are zeros.
    assert np.all(img[94, 70:, :] == 0)
    assert np.array_equal(unwrap_image(img), m)


def test_matrix_rows_are_imu_instruments():
    x = np.zeros((750, 36))
    x[:, 3:6] = [1, 2, 3]  # Side gyro x, y, z
    x[:, 21] = 7  # Back_G_x: sensor 3, gyro -> row 7, depth 0
    m = to_matrix(x)
    assert m.shape == (12, 750, 3)
    assert m[1, 0].tolist() == [1, 2, 3]
    assert m[7, 10, 0] == 7
    assert np.array_equal(from_matrix(m), x)


def test_filter_matches_scipy_to_1e6():
    from scipy.signal import sosfilt, sosfilt_zi

    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 36)) * 50 + rng.normal(size=36) * 3
    ref, _ = sosfilt(SOS, x, axis=0, zi=sosfilt_zi(SOS)[:, :, None] * x[0][None, None, :])
    assert np.max(np.abs(apply_sos(SOS, x) - ref)) < 1e-6


def test_filter_has_no_startup_transient_on_constant_input():
    x = np.full((100, 36), 1.0)  # gravity on every channel
    assert np.max(np.abs(apply_sos(SOS, x))) < 1e-9


def test_batch_filter_equals_single():
    rng = np.random.default_rng(2)
    ws = [rng.normal(size=(n, 36)) for n in (5, 300, 120)]
    for a, w in zip(apply_sos_batch(SOS, ws), ws):
        assert np.array_equal(a, apply_sos(SOS, w))


def test_standardization_ignores_padding_and_uses_real_samples():
    rng = np.random.default_rng(3)
    ws = [rng.normal(loc=2.0, scale=3.0, size=(n, 36)) for n in (100, 400)]
    mean, std = fit_standardization(ws, SOS)
    from edge.signal_path import apply_sos as f
    allf = np.concatenate([f(SOS, w) for w in ws])
    assert np.allclose(mean, allf.mean(axis=0)) and np.allclose(std, allf.std(axis=0))


def test_cut_lift_margins_and_errors():
    x = np.arange(1000)[:, None] * np.ones((1, 36))
    r = unit_recipe()
    w = cut_lift(x, 100, 300, r)
    assert w[0, 0] == 50 and w[-1, 0] == 350
    assert cut_lift(x, 10, 990, r).shape[0] == 1000
    with pytest.raises(TensorError, match="do not fit"):
        cut_lift(x, 300, 100, r)


def test_tensorize_rejects_bad_input_with_message():
    r = unit_recipe()
    with pytest.raises(TensorError, match=r"expected \(n_samples, 36\)"):
        tensorize(np.zeros((10, 35)), r)
    bad = np.zeros((10, 36))
    bad[4, 7] = np.nan
    with pytest.raises(TensorError, match="sample 4, channel 7"):
        tensorize(bad, r)


def test_quantize_uses_scale_and_zero_point():
    x = np.array([-1.0, 0.0, 0.5, 100.0], dtype=np.float32)
    q = quantize_int8(x, 0.01, -3)
    assert q.dtype == np.int8
    assert q.tolist() == [-103, -3, 47, 127]
    assert np.allclose(dequantize_int8(q[:3], 0.01, -3), x[:3])


def test_recipe_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    r = TensorRecipe(sos=SOS, mean=rng.normal(size=36), std=rng.uniform(0.5, 2, size=36))
    r.save(tmp_path / "recipe.json")
    r2 = TensorRecipe.load(tmp_path / "recipe.json")
    w = rng.normal(size=(333, 36))
    assert np.array_equal(tensorize(w, r), tensorize(w, r2))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=1, max_value=2000), seed=st.integers(0, 2**16))
def test_tensorize_properties_for_any_length(n, seed):
    rng = np.random.default_rng(seed)
    r = TensorRecipe(sos=SOS, mean=rng.normal(size=36) * 0.01, std=rng.uniform(0.5, 2, size=36))
    w = rng.normal(size=(n, 36)) * 10
    img = tensorize(w, r)
    assert img.shape == (95, 95, 3) and img.dtype == np.float32
    assert np.all(np.isfinite(img))
    m = unwrap_image(img)
    real = min(n, 750)
    # Padding (after standardization) is exactly zero; the 25 wrap zeros too.
    assert np.all(m[:, real:, :] == 0)
    assert np.all(img.reshape(-1, 3)[9000:] == 0)
    # The batch path gives bit-identical output.
    assert np.array_equal(tensorize_batch([w, w[: max(1, n // 2)]], r)[0], img)


def test_clip_bounds_standardized_values_and_round_trips(tmp_path):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(300, 36))
    w[100, 5] = 1e4  # a spike of thousands of sigma
    clipped = TensorRecipe(sos=SOS, mean=np.zeros(36), std=np.ones(36), clip=6.0)
    img = tensorize(w, clipped)
    assert np.max(np.abs(img)) == pytest.approx(6.0)
    assert np.max(np.abs(tensorize(w, unit_recipe()))) > 100  # no clip: the spike passes
    clipped.save(tmp_path / "r.json")
    assert TensorRecipe.load(tmp_path / "r.json").clip == 6.0
    with pytest.raises(TensorError, match="clip"):
        TensorRecipe(sos=SOS, mean=np.zeros(36), std=np.ones(36), clip=-1.0)


def test_training_recipe_clips_at_the_default():
    from edge.signal_path import DEFAULT_CLIP
    from quantize.data import fit_recipe

    rng = np.random.default_rng(8)
    assert fit_recipe([rng.normal(size=(200, 36))]).clip == DEFAULT_CLIP
