"""The LiftGuard exception tree.

One root, :class:`LiftGuardError`, with a subclass per phase of the data flow.
Each subclass also derives from the builtin that best describes it, so callers
that only know Python's builtins (``except ValueError``) still catch them.

Messages quote the bad value and say what was expected, e.g.::

    BadCSV("trial_0007.csv, row 12, column 'Back_A_x': 'abc' is not a number")
"""

from __future__ import annotations


class LiftGuardError(Exception):
    """Root of every error LiftGuard raises on purpose."""


class ConfigError(LiftGuardError, ValueError):
    """A setting, flag or configuration file is wrong."""


class DataError(LiftGuardError, ValueError):
    """A data set, trial or index is malformed."""


class BadCSV(DataError):
    """A trial CSV cannot be parsed or fails validation."""


class BadIndex(DataError):
    """A data set's index.csv (or authors' metadata) is malformed."""


class TensorError(LiftGuardError, ValueError):
    """Input to the signal path has the wrong shape, dtype or values."""


class ProtocolError(LiftGuardError, ValueError):
    """A sensor-hub protocol frame or message is malformed."""


class BadFrame(ProtocolError):
    """A serial frame failed COBS decoding, its CRC, or its length check."""


class SourceError(LiftGuardError, ConnectionError):
    """A sensor source (serial port, BLE device, replay file) failed."""


class SensorLost(SourceError):
    """One sensor stopped delivering samples."""


class BundleError(LiftGuardError, ValueError):
    """A deploy bundle is corrupt, unsigned, untrusted or does not fit this hub."""


class RuntimeMissing(LiftGuardError, ImportError):
    """No TFLite interpreter (or delegate) could be loaded."""


class FlashError(LiftGuardError, RuntimeError):
    """A bundle transfer or installation onto a hub failed."""
