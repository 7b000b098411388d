"""The LiftGuard BLE IMU profile: UUIDs, payload layout, encoders and decoders.

This is the GATT contract between custom LiftGuard IMU firmware and the hub
(:mod:`edge.sources.ble`); ``docs/ble.md`` is the prose version with the same
test vectors. Everything here is pure Python (``struct``), shared by the hub,
the bumble emulator (:mod:`host.ble_emulation`) and ``host scan``.

GATT layout (one primary service, 128-bit UUIDs on the base
``4c47xxxx-8d2c-4b6e-9f1a-6c6966744755``, "LG" ... "liftGU")::

    Service   4c470001-...  LiftGuard IMU
      Data    4c470002-...  NOTIFY            sample batches (below)
      Config  4c470003-...  READ | WRITE      rate, batch, streaming flag (4 bytes)
      Site    4c470004-...  READ | WRITE      UTF-8 body site, e.g. "Back"
      Info    4c470005-...  READ              firmware version and full scales

Advertising: complete local name ``LG-IMU-<site>`` (e.g. ``LG-IMU-Back``) or
``LG-IMU-<serial>`` while no site is assigned, and the service UUID.

Data notification (little-endian)::

    byte 0        header: high nibble = format version (1), low nibble = N (1..13)
    then N records of 18 bytes:
        u16  seq           sample counter, wraps at 65536
        u32  t_us          sensor clock in microseconds, wraps at 2**32 (~71.6 min)
        i16  ax, ay, az    acceleration, 32768 = 16 g
        i16  gx, gy, gz    angular rate, 32768 = 2000 deg/s

One record (19 bytes) fits the default ATT MTU of 23 (20-byte payload); 13
records (235 bytes) fit an MTU of 247. Records are in sequence order. Firmware
sends at most what the connection's MTU carries, splitting a batch if needed.

Config (read/write, 4 bytes): ``u16 rate_hz, u8 batch, u8 flags`` with flag
bit 0 = streaming on. The hub writes ``rate_hz=25, batch=1, flags=1`` after
subscribing; firmware answers a write it cannot honour with the ATT error
"Value Not Allowed" (0x13) and keeps its previous setting.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ProtocolError
from ..layout import ACCEL_FULL_SCALE_G, GYRO_FULL_SCALE_DPS, SENSORS

_BASE = "-8d2c-4b6e-9f1a-6c6966744755"

#: The LiftGuard IMU primary service.
SERVICE_UUID = "4c470001" + _BASE
#: Notify characteristic carrying sample batches.
DATA_CHAR_UUID = "4c470002" + _BASE
#: Read/write characteristic: rate, batch, flags.
CONFIG_CHAR_UUID = "4c470003" + _BASE
#: Read/write characteristic: the UTF-8 body site the IMU is strapped to.
SITE_CHAR_UUID = "4c470004" + _BASE
#: Read-only characteristic: firmware version and full scales.
INFO_CHAR_UUID = "4c470005" + _BASE

#: Prefix of the advertised local name of every LiftGuard IMU.
NAME_PREFIX = "LG-IMU"

#: Data format version carried in the header's high nibble.
FORMAT_VERSION = 1
_RECORD = struct.Struct("<HI6h")

#: Largest batch one notification may carry (1 + 13 * 18 = 235 <= 247 - 3).
MAX_BATCH = 13
#: Bytes per record.
RECORD_SIZE = _RECORD.size  # 18
_CONFIG = struct.Struct("<HBB")
_INFO = struct.Struct("<BBBHH")  # fw major, minor, patch, accel fs g, gyro fs dps

#: Scale factors from raw int16 to g and deg/s.
ACCEL_LSB_G = ACCEL_FULL_SCALE_G / 32768.0
GYRO_LSB_DPS = GYRO_FULL_SCALE_DPS / 32768.0


@dataclasses.dataclass(frozen=True)
class ImuRecord:
    """One decoded sample of the data characteristic.

    Attributes:
        seq: Sample counter (0..65535, wraps).
        t_us: Sensor clock in microseconds (0..2**32-1, wraps).
        raw: The six raw int16 values: ax, ay, az, gx, gy, gz.
    """

    seq: int
    t_us: int
    raw: Tuple[int, int, int, int, int, int]

    def values(self) -> np.ndarray:
        """Return the sample in physical units (g, deg/s) as float32 (6,)."""
        raw = np.asarray(self.raw, dtype=np.float32)
        scale = np.array([ACCEL_LSB_G] * 3 + [GYRO_LSB_DPS] * 3, dtype=np.float32)
        return raw * scale


@dataclasses.dataclass(frozen=True)
class ImuConfig:
    """The config characteristic.

    Attributes:
        rate_hz: Output rate in Hz (1..1000).
        batch: Records per notification (1..13).
        streaming: Whether notifications are sent.
    """

    rate_hz: int = 25
    batch: int = 1
    streaming: bool = True


def physical_to_raw(values: Sequence[float]) -> Tuple[int, ...]:
    """Convert (ax, ay, az in g, gx, gy, gz in deg/s) to the six int16 raw values.

    Values beyond full scale saturate at -32768 / 32767, as the sensor's ADC does.
    """
    v = np.asarray(values, dtype=np.float64).reshape(6)
    scale = np.array([ACCEL_LSB_G] * 3 + [GYRO_LSB_DPS] * 3)
    raw = np.clip(np.rint(v / scale), -32768, 32767).astype(np.int64)
    return tuple(int(x) for x in raw)


def encode_samples(records: Sequence[ImuRecord]) -> bytes:
    """Encode 1..13 records into one data notification.

    Raises:
        ProtocolError: If the batch size or a field is out of range.
    """
    n = len(records)
    if not 1 <= n <= MAX_BATCH:
        raise ProtocolError(f"BLE data batch of {n} records; expected 1 to {MAX_BATCH}")
    out = bytearray([(FORMAT_VERSION << 4) | n])
    for r in records:
        try:
            out += _RECORD.pack(r.seq & 0xFFFF, r.t_us & 0xFFFFFFFF, *r.raw)
        except struct.error as exc:
            raise ProtocolError(f"BLE record {r!r} cannot be encoded: {exc}; "
                                "expected int16 raw values") from None
    return bytes(out)


def decode_samples(payload: bytes) -> List[ImuRecord]:
    """Decode one data notification.

    Raises:
        ProtocolError: If the header's version is not 1, the count is 0, or the
            length is not ``1 + 18 * N``.
    """
    payload = bytes(payload)
    if not payload:
        raise ProtocolError("BLE data notification is empty; expected 1 + 18*N bytes")
    version, n = payload[0] >> 4, payload[0] & 0x0F
    if version != FORMAT_VERSION:
        raise ProtocolError(f"BLE data header 0x{payload[0]:02x}: format version {version}; "
                            f"expected {FORMAT_VERSION}")
    if n == 0:
        raise ProtocolError("BLE data header 0x10 announces 0 records; expected 1 to 13")
    if len(payload) != 1 + RECORD_SIZE * n:
        raise ProtocolError(f"BLE data notification of {len(payload)} bytes for {n} records; "
                            f"expected {1 + RECORD_SIZE * n}")
    records = []
    for i in range(n):
        seq, t_us, *raw = _RECORD.unpack_from(payload, 1 + RECORD_SIZE * i)
        records.append(ImuRecord(seq, t_us, tuple(raw)))
    return records


def encode_config(config: ImuConfig) -> bytes:
    """Encode the config characteristic (4 bytes).

    Raises:
        ProtocolError: If rate or batch is out of range.
    """
    if not 1 <= config.rate_hz <= 1000:
        raise ProtocolError(f"BLE config rate {config.rate_hz} Hz; expected 1 to 1000")
    if not 1 <= config.batch <= MAX_BATCH:
        raise ProtocolError(f"BLE config batch {config.batch}; expected 1 to {MAX_BATCH}")
    return _CONFIG.pack(config.rate_hz, config.batch, 1 if config.streaming else 0)


def decode_config(payload: bytes) -> ImuConfig:
    """Decode the config characteristic.

    Raises:
        ProtocolError: If it is not 4 bytes or its values are out of range.
    """
    payload = bytes(payload)
    if len(payload) != _CONFIG.size:
        raise ProtocolError(f"BLE config of {len(payload)} bytes; expected {_CONFIG.size}")
    rate, batch, flags = _CONFIG.unpack(payload)
    config = ImuConfig(rate, batch, bool(flags & 1))
    encode_config(config)  # range check
    return config


def encode_info(fw_version: Tuple[int, int, int] = (1, 0, 0)) -> bytes:
    """Encode the info characteristic: firmware version and the full scales."""
    return _INFO.pack(*fw_version, int(ACCEL_FULL_SCALE_G), int(GYRO_FULL_SCALE_DPS))


def decode_info(payload: bytes) -> dict:
    """Decode the info characteristic into a dict.

    Raises:
        ProtocolError: If it is not 7 bytes.
    """
    payload = bytes(payload)
    if len(payload) != _INFO.size:
        raise ProtocolError(f"BLE info of {len(payload)} bytes; expected {_INFO.size}")
    major, minor, patch, acc_fs, gyro_fs = _INFO.unpack(payload)
    return {"firmware": f"{major}.{minor}.{patch}", "accel_full_scale_g": acc_fs,
            "gyro_full_scale_dps": gyro_fs}


def advertised_name(site_or_serial: str) -> str:
    """Return the advertised local name for a site (``LG-IMU-Back``) or serial."""
    return f"{NAME_PREFIX}-{site_or_serial}"


def site_from_name(name: Optional[str]) -> Optional[str]:
    """Return the body site encoded in an advertised name, or None.

    ``LG-IMU-Back`` gives ``"Back"``; ``LG-IMU-00A3`` (unassigned) and names of
    other devices give None. Site names match :data:`edge.layout.SENSORS`
    case-insensitively.
    """
    if not name or not name.startswith(NAME_PREFIX + "-"):
        return None
    tail = name[len(NAME_PREFIX) + 1:]
    for site in SENSORS:
        if tail.lower() == site.lower():
            return site
    return None


def decode_site(payload: bytes) -> Optional[str]:
    """Decode the site characteristic; None when empty or not a known site."""
    try:
        text = bytes(payload).decode("utf-8").strip().strip("\x00")
    except UnicodeDecodeError:
        return None
    for site in SENSORS:
        if text.lower() == site.lower():
            return site
    return None


class SequenceUnwrapper:
    """Turn wrapping u16 sequence numbers and u32 µs clocks into running counts.

    Counts gaps (missed sequence numbers) and repeats/reorders so a source can
    report them. One instance per sensor and per connection.
    """

    def __init__(self) -> None:
        self.last_seq: Optional[int] = None
        self.last_t_us: Optional[int] = None
        self.t_wraps = 0
        self.missed = 0
        self.repeated = 0

    def update(self, record: ImuRecord) -> Tuple[bool, float]:
        """Feed one record.

        Returns:
            ``(fresh, t_sensor_s)``: ``fresh`` is False for a repeated or
            reordered record (which the source should drop), and ``t_sensor_s``
            is the unwrapped sensor time in seconds.
        """
        if self.last_seq is not None:
            step = (record.seq - self.last_seq) & 0xFFFF
            if step == 0 or step >= 0x8000:
                self.repeated += 1
                return False, self._time(record.t_us, advance=False)
            self.missed += step - 1
        self.last_seq = record.seq
        return True, self._time(record.t_us, advance=True)

    def _time(self, t_us: int, *, advance: bool) -> float:
        wraps = self.t_wraps
        if self.last_t_us is not None and t_us < self.last_t_us and \
                self.last_t_us - t_us > 0x80000000:
            wraps += 1
        if advance:
            self.t_wraps = wraps
            self.last_t_us = t_us
        return (wraps * 2**32 + t_us) / 1e6
