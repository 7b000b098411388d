"""Butterworth band-pass design (scipy), stored as numbers for the hub.

The paper filters every channel with an order-2 Butterworth band-pass from 2
to 12 Hz at 25 Hz. The design happens here, on the workstation; the
coefficients travel in the recipe and the bundle, and the hub only applies
them with :func:`edge.signal_path.apply_sos`.
"""

from __future__ import annotations

import numpy as np

from edge.errors import ConfigError
from edge.layout import SAMPLE_RATE_HZ


def design_bandpass(order: int = 2, low_hz: float = 2.0, high_hz: float = 12.0,
                    fs_hz: float = SAMPLE_RATE_HZ) -> np.ndarray:
    """Design the band-pass as second-order sections.

    Args:
        order: Butterworth order (the paper's 2 gives 2 sections for a band-pass).
        low_hz: Lower corner, Hz.
        high_hz: Upper corner, Hz; must be below Nyquist.
        fs_hz: Sample rate, Hz.

    Returns:
        ``(n_sections, 6)`` float64 SOS array.

    Raises:
        ConfigError: If the corners are not 0 < low < high < fs/2.
    """
    from scipy.signal import butter

    nyquist = fs_hz / 2.0
    if not (0 < low_hz < high_hz < nyquist):
        raise ConfigError(f"band-pass corners {low_hz}-{high_hz} Hz at {fs_hz} Hz; "
                          f"expected 0 < low < high < {nyquist} Hz (Nyquist)")
    return np.asarray(butter(order, [low_hz, high_hz], btype="bandpass", fs=fs_hz, output="sos"),
                      dtype=np.float64)
