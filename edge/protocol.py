"""The LiftGuard sensor-hub serial protocol: framing, messages and a decoder.

One protocol serves two links:

* the belt's microcontroller **sensor hub** talking to the hub computer
  (``Hello``/``Capabilities``, ``SampleFrame``, ``Status``, ``Fault``,
  ``Buzz``, ``Ack``/``Nak``), read by :mod:`edge.sources.serial_hub`;
* a technician's laptop talking to the hub computer over USB serial
  (``ManagementRequest``/``ManagementResponse`` and the ``Flash*`` transfer
  messages), used by ``host flash`` and :mod:`edge.manage`.

Wire format (the full specification with test vectors is ``docs/protocol.md``)::

    frame  = COBS(body) 0x00
    body   = version:u8  type:u8  payload:bytes  crc:u16le
    crc    = CRC-16/CCITT-FALSE(version type payload)
             (poly 0x1021, init 0xFFFF, no reflection, xorout 0;
              check value of ASCII "123456789" is 0x29B1)

All integers are little-endian. Strings are UTF-8 with a one-byte length
prefix unless noted. COBS is the ``cobs`` package (C extension); the CRC is
:func:`binascii.crc_hqx`, which computes exactly CRC-16/CCITT-FALSE when
seeded with 0xFFFF.

Typical use::

    from edge.protocol import FrameDecoder, SampleFrame, encode_message

    wire = encode_message(Buzz(buzz_id=7, pattern_ms=(200, 100, 200)))
    decoder = FrameDecoder()
    for message in decoder.feed(serial_port.read(4096)):
        ...
    decoder.counters["bad_crc"]   # everything odd is counted, nothing raises
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
import json
import struct
import zlib
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type

import numpy as np
from cobs import cobs

from .errors import BadFrame, ProtocolError
from .layout import ACCEL_FULL_SCALE_G, GYRO_FULL_SCALE_DPS, SAMPLE_RATE_HZ, SENSORS

#: Value of the version byte of every frame this module writes and accepts.
PROTOCOL_VERSION = 1

#: Frame delimiter.
DELIMITER = b"\x00"

#: Largest payload (between the type byte and the CRC) any message may carry.
MAX_PAYLOAD = 8192

#: Largest body: version + type + payload + CRC.
MAX_BODY = MAX_PAYLOAD + 4

#: Largest COBS-encoded frame (without the delimiter): one overhead byte per
#: 254 bytes plus one.
MAX_ENCODED = MAX_BODY + MAX_BODY // 254 + 2

#: Largest data block of one :class:`FlashChunk`.
MAX_FLASH_CHUNK = 4096

#: Chunk size ``host flash`` should use unless it knows better.
DEFAULT_FLASH_CHUNK = 1024

#: Number of sensors in a :class:`SampleFrame` (edge.layout.SENSORS).
N_SENSORS = len(SENSORS)

#: Values per sensor in a :class:`SampleFrame`: accel x, y, z then gyro x, y, z.
VALUES_PER_SENSOR = 6

#: Raw value a sensor hub sends for "no reading"; never a valid measurement.
RAW_INVALID = -32768

#: int16 counts per full scale (raw = value / full_scale * RAW_SCALE).
RAW_SCALE = 32768.0

#: Most entries (on and off durations) in one :class:`Buzz` pattern.
MAX_BUZZ_ENTRIES = 32

#: Longest single on or off duration of a buzz pattern, ms.
MAX_BUZZ_MS = 10_000

#: A backward step of the sample sequence number up to this size counts as a
#: reordered (stale) frame; a larger one as a restart of the sensor hub.
REORDER_WINDOW = 256

#: A forward jump of the sequence number larger than this (about 7.8 days at
#: 25 Hz) counts as a restart, not as a gap.
MAX_SEQUENCE_GAP = 1 << 24

#: Sentinel for ``Fault.sensor`` meaning the whole sensor hub.
WHOLE_HUB = 0xFF

#: ``Status.battery_pct`` value meaning "no battery / unknown".
BATTERY_UNKNOWN = 0xFF


class Feature(enum.IntFlag):
    """Capability bits of :attr:`Capabilities.features`."""

    BUZZ = 0x01  #: drives the belt's vibration motor (accepts Buzz)
    BATTERY = 0x02  #: reports battery in Status
    MANAGE = 0x04  #: answers ManagementRequest
    FLASH = 0x08  #: accepts the Flash* transfer


class SensorState(enum.IntEnum):
    """Per-sensor state in :attr:`Status.sensor_states`."""

    OK = 0
    MISSING = 1  #: not answering on its bus
    STUCK = 2  #: output frozen at one value
    SATURATED = 3  #: at full scale for a long time
    INIT = 4  #: starting up
    ERROR = 5  #: bus or self-test error


class FaultCode(enum.IntEnum):
    """Fault codes of :class:`Status` and :class:`Fault`; unknown codes are kept as ints."""

    IMU_BUS_ERROR = 1
    IMU_NOT_FOUND = 2
    IMU_FIFO_OVERFLOW = 3
    IMU_STUCK = 4
    LOW_BATTERY = 5
    BROWNOUT = 6
    WATCHDOG_RESET = 7
    CLOCK_DRIFT = 8
    TX_OVERFLOW = 9
    RX_BAD_FRAME = 10
    MOTOR_FAULT = 11


class NakReason(enum.IntEnum):
    """Reason code of a :class:`Nak`."""

    BAD_FRAME = 1  #: the last frame failed COBS/CRC/length checks
    UNKNOWN_TYPE = 2
    BAD_VERSION = 3
    BAD_PAYLOAD = 4
    OUT_OF_RANGE = 5
    BUSY = 6
    UNSUPPORTED = 7
    BAD_OFFSET = 8  #: FlashChunk offset is not the expected next offset
    CHUNK_CRC = 9  #: FlashChunk crc32 does not match its data
    NO_TRANSFER = 10  #: transfer id unknown or already finished
    VERIFY_FAILED = 11
    UNAUTHORIZED = 12
    INTERNAL = 13


#: Counter names of :class:`FrameDecoder` (all present from the start, at 0).
COUNTER_NAMES: Tuple[str, ...] = (
    "bytes_in",  # every byte fed
    "frames_ok",  # frames that became messages
    "garbage_bytes",  # bytes of frames that were rejected, incl. oversize runs
    "bad_cobs",  # COBS decoding failed other than by running short (only decode_frame() input with a 0x00 inside)
    "truncated",  # frame ended early: COBS code ran past the end, or body < 4 bytes
    "oversize",  # no delimiter within MAX_ENCODED bytes
    "bad_crc",
    "bad_version",
    "unknown_type",
    "bad_payload",  # payload does not parse as its type (length, UTF-8, JSON)
    "out_of_range",  # a field parsed but its value is impossible
    "seq_repeat",  # SampleFrame with the same sequence number as the last one (dropped)
    "seq_reorder",  # SampleFrame older than the last one (dropped)
    "seq_gap",  # a forward jump of more than one
    "seq_missed",  # sum of sequence numbers skipped by gaps
    "seq_reset",  # large backward jump: the sensor hub restarted
    "internal_errors",  # a bug in this module caught by feed(); must stay 0 (the fuzz test checks)
)


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF, check 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


def crc32(data: bytes) -> int:
    """CRC-32 (ISO-HDLC, as zlib; check value of "123456789" is 0xCBF43926)."""
    return zlib.crc32(data) & 0xFFFFFFFF


class _PayloadError(ProtocolError):
    """A payload that does not parse; ``kind`` names the decoder counter."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _bad(message: str) -> _PayloadError:
    return _PayloadError("bad_payload", message)


def _range(message: str) -> _PayloadError:
    return _PayloadError("out_of_range", message)


class _Reader:
    """Sequential little-endian reader over a payload; raises _PayloadError."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, fmt: str) -> Tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise _bad(f"{self.what}: payload of {len(self.data)} bytes ends at byte {self.pos}, "
                       f"expected {size} more")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def u8(self) -> int:
        return self.take("<B")[0]

    def u16(self) -> int:
        return self.take("<H")[0]

    def u32(self) -> int:
        return self.take("<I")[0]

    def u64(self) -> int:
        return self.take("<Q")[0]

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _bad(f"{self.what}: payload of {len(self.data)} bytes ends at byte {self.pos}, "
                       f"expected {n} more")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def string(self, field: str) -> str:
        n = self.u8()
        blob = self.raw(n)
        try:
            return blob.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"{self.what}.{field}: {blob!r} is not UTF-8") from None

    def rest(self) -> bytes:
        out = bytes(self.data[self.pos:])
        self.pos = len(self.data)
        return out

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _bad(f"{self.what}: {len(self.data) - self.pos} unexpected trailing bytes "
                       f"after byte {self.pos}")


def _pack_str(value: str, what: str) -> bytes:
    blob = value.encode("utf-8")
    if len(blob) > 255:
        raise ProtocolError(f"{what}: {len(blob)} bytes of UTF-8 is too long; expected at most 255")
    return bytes((len(blob),)) + blob


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise _range(message)


def _json_body(blob: bytes, what: str) -> Dict[str, Any]:
    if not blob:
        return {}
    try:
        body = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad(f"{what}.body: not UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise _bad(f"{what}.body: JSON {type(body).__name__} where an object was expected")
    return body


def _dump_json(body: Dict[str, Any], what: str) -> bytes:
    if not isinstance(body, dict):
        raise ProtocolError(f"{what}.body: {type(body).__name__} where a dict was expected")
    try:
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{what}.body is not JSON-able: {exc}") from None


class Message:
    """Base of every protocol message.

    Subclasses are dataclasses with a unique :attr:`TYPE` byte and implement
    :meth:`pack_payload` and :meth:`unpack_payload`.
    """

    TYPE: ClassVar[int] = 0

    def pack_payload(self) -> bytes:  # pragma: no cover - abstract
        """Return the payload bytes (between the type byte and the CRC).

        Raises:
            ProtocolError: If a field cannot be represented on the wire.
        """
        raise NotImplementedError

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Message":  # pragma: no cover - abstract
        """Build the message from payload bytes.

        Raises:
            ProtocolError: With ``kind`` ``"bad_payload"`` or ``"out_of_range"``.
        """
        raise NotImplementedError


#: TYPE byte -> message class.
MESSAGE_TYPES: Dict[int, Type[Message]] = {}


def _register(cls: Type[Message]) -> Type[Message]:
    if cls.TYPE in MESSAGE_TYPES:
        raise RuntimeError(f"duplicate message type 0x{cls.TYPE:02x}")
    MESSAGE_TYPES[cls.TYPE] = cls
    return cls


# ---------------------------------------------------------------- link setup


@_register
@dataclasses.dataclass(frozen=True)
class Hello(Message):
    """Ask the other side for its :class:`Capabilities` (type 0x01).

    Payload: ``host_id`` string. The sensor hub answers with Capabilities and
    resets nothing else; the host sends Hello after opening the port.

    Attributes:
        host_id: Free text naming the asking side (e.g. ``"liftguard-hub"``).
    """

    TYPE: ClassVar[int] = 0x01
    host_id: str = ""

    def pack_payload(self) -> bytes:
        return _pack_str(self.host_id, "Hello.host_id")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Hello":
        r = _Reader(payload, "Hello")
        host_id = r.string("host_id")
        r.end()
        return cls(host_id=host_id)


@_register
@dataclasses.dataclass(frozen=True)
class Capabilities(Message):
    """What a device is (type 0x02): sent on boot and in answer to Hello.

    Payload: ``device_id`` str, ``firmware_version`` str,
    ``sample_rate_mhz`` u32 (rate in milli-hertz: 25000 = 25 Hz),
    ``accel_full_scale_g`` u16, ``gyro_full_scale_dps`` u16, ``features`` u16,
    ``max_payload`` u16, sensor count u8 then each sensor name as str.

    Attributes:
        device_id: Unique id of the device (serial number).
        firmware_version: Firmware version text.
        sample_rate_hz: Output rate of every IMU, Hz (0.001 Hz resolution).
        accel_full_scale_g: Accelerometer full scale: raw 32768 = this many g.
        gyro_full_scale_dps: Gyroscope full scale: raw 32768 = this many deg/s.
        features: :class:`Feature` bits.
        max_payload: Largest payload the device accepts.
        sensors: Names of the sensors in SampleFrame order.
    """

    TYPE: ClassVar[int] = 0x02
    device_id: str = ""
    firmware_version: str = ""
    sample_rate_hz: float = SAMPLE_RATE_HZ
    accel_full_scale_g: int = int(ACCEL_FULL_SCALE_G)
    gyro_full_scale_dps: int = int(GYRO_FULL_SCALE_DPS)
    features: int = int(Feature.BUZZ | Feature.BATTERY)
    max_payload: int = 256
    sensors: Tuple[str, ...] = SENSORS

    def pack_payload(self) -> bytes:
        rate = int(round(self.sample_rate_hz * 1000))
        if not 0 < rate <= 0xFFFFFFFF:
            raise ProtocolError(f"Capabilities.sample_rate_hz {self.sample_rate_hz!r} out of range; "
                                "expected 0.001 to 4e6 Hz")
        if len(self.sensors) > 16:
            raise ProtocolError(f"Capabilities.sensors: {len(self.sensors)} sensors; expected at most 16")
        try:
            head = struct.pack("<IHHHH", rate, self.accel_full_scale_g, self.gyro_full_scale_dps,
                               self.features, self.max_payload)
        except struct.error as exc:
            raise ProtocolError(f"Capabilities: a field does not fit u16: {exc}") from None
        return (_pack_str(self.device_id, "Capabilities.device_id")
                + _pack_str(self.firmware_version, "Capabilities.firmware_version")
                + head + bytes((len(self.sensors),))
                + b"".join(_pack_str(s, "Capabilities.sensors") for s in self.sensors))

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Capabilities":
        r = _Reader(payload, "Capabilities")
        device_id = r.string("device_id")
        firmware = r.string("firmware_version")
        rate, accel, gyro, features, max_payload = r.take("<IHHHH")
        n = r.u8()
        _check(n <= 16, f"Capabilities: {n} sensors; expected at most 16")
        sensors = tuple(r.string("sensors") for _ in range(n))
        r.end()
        _check(rate > 0, "Capabilities.sample_rate: 0 mHz; expected a positive rate")
        _check(accel > 0, "Capabilities.accel_full_scale_g: 0; expected a positive full scale")
        _check(gyro > 0, "Capabilities.gyro_full_scale_dps: 0; expected a positive full scale")
        return cls(device_id=device_id, firmware_version=firmware, sample_rate_hz=rate / 1000.0,
                   accel_full_scale_g=accel, gyro_full_scale_dps=gyro, features=features,
                   max_payload=max_payload, sensors=sensors)


# ---------------------------------------------------------------- samples

_SAMPLE_HEAD = struct.Struct("<IQB")
_SAMPLE_VALUES = N_SENSORS * VALUES_PER_SENSOR
_RAW_DTYPE = np.dtype("<i2")  # as sent on the wire; numpy arithmetic handles either byte order
SAMPLE_PAYLOAD_SIZE = _SAMPLE_HEAD.size + 2 * _SAMPLE_VALUES  # 85


@_register
@dataclasses.dataclass(frozen=True, eq=False)
class SampleFrame(Message):
    """One sample of all six IMUs (type 0x10), sent by the sensor hub at the sample rate.

    Payload (85 bytes): ``seq`` u32, ``t_us`` u64, ``valid_mask`` u8, then 36
    int16: for each sensor in :data:`edge.layout.SENSORS` order, accel x, y, z
    then gyro x, y, z, scaled by the full scales of :class:`Capabilities`.

    Bit *i* of ``valid_mask`` is set when sensor *i*'s six values are a real
    reading. A sensor without a reading sends mask bit 0 and values
    :data:`RAW_INVALID`. A valid sensor whose values include RAW_INVALID, and
    mask bits 6 and 7, are out of range: the decoder clears them and counts
    ``out_of_range``.

    Attributes:
        seq: Sequence number, +1 per sample period even when a frame is not sent.
        t_us: Sensor-hub clock at the sample instant, microseconds.
        valid_mask: Bit per sensor, bit 0 = ``SENSORS[0]``.
        raw: int16 array (6, 6): row per sensor, columns ax ay az gx gy gz.
    """

    TYPE: ClassVar[int] = 0x10
    seq: int = 0
    t_us: int = 0
    valid_mask: int = (1 << N_SENSORS) - 1
    raw: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((N_SENSORS, VALUES_PER_SENSOR), np.int16))

    def pack_payload(self) -> bytes:
        raw = np.asarray(self.raw)
        if raw.shape != (N_SENSORS, VALUES_PER_SENSOR):
            raise ProtocolError(f"SampleFrame.raw has shape {raw.shape}; expected "
                                f"({N_SENSORS}, {VALUES_PER_SENSOR})")
        if not (0 <= self.seq <= 0xFFFFFFFF and 0 <= self.t_us < 1 << 64
                and 0 <= self.valid_mask < 1 << N_SENSORS):
            raise ProtocolError(f"SampleFrame seq={self.seq} t_us={self.t_us} "
                                f"valid_mask=0x{self.valid_mask:x} out of range; expected u32, u64 "
                                f"and a {N_SENSORS}-bit mask")
        return _SAMPLE_HEAD.pack(self.seq, self.t_us, self.valid_mask) + raw.astype("<i2").tobytes()

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "SampleFrame":
        if len(payload) != SAMPLE_PAYLOAD_SIZE:
            raise _bad(f"SampleFrame: payload of {len(payload)} bytes; expected {SAMPLE_PAYLOAD_SIZE}")
        seq, t_us, mask = _SAMPLE_HEAD.unpack_from(payload, 0)
        # A read-only view (the message is immutable); native int16 on little-endian hosts.
        raw = np.frombuffer(payload, _RAW_DTYPE, _SAMPLE_VALUES, _SAMPLE_HEAD.size).reshape(
            N_SENSORS, VALUES_PER_SENSOR)
        return cls(seq=seq, t_us=t_us, valid_mask=mask, raw=raw)

    def sanitized(self) -> Tuple["SampleFrame", Optional[str]]:
        """Clear impossible validity bits (see the class docs).

        Returns:
            The frame (itself when nothing changed) and a description of what
            was out of range, or None.
        """
        mask = self.valid_mask
        invalid = self.raw == RAW_INVALID
        if not mask >> N_SENSORS and not invalid.any():  # the common case, kept cheap
            return self, None
        problems = []
        if mask >> N_SENSORS:
            problems.append(f"valid_mask 0x{mask:02x} has bits above sensor {N_SENSORS - 1}")
            mask &= (1 << N_SENSORS) - 1
        bad_rows = np.any(invalid, axis=1)
        for i in np.flatnonzero(bad_rows):
            if mask >> int(i) & 1:
                problems.append(f"sensor {SENSORS[i]} marked valid but has raw value {RAW_INVALID}")
                mask &= ~(1 << int(i))
        if not problems:
            return self, None
        return dataclasses.replace(self, valid_mask=mask), "; ".join(problems)

    def is_valid(self, sensor: int) -> bool:
        """Whether sensor index ``sensor`` has a reading in this frame."""
        return bool(self.valid_mask >> sensor & 1)

    def scaled(self, accel_full_scale_g: float = ACCEL_FULL_SCALE_G,
               gyro_full_scale_dps: float = GYRO_FULL_SCALE_DPS) -> np.ndarray:
        """Return float32 (6, 6): accel in g, gyro in deg/s (invalid sensors included as is)."""
        return raw_to_units(self.raw, accel_full_scale_g, gyro_full_scale_dps)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleFrame):
            return NotImplemented
        return (self.seq == other.seq and self.t_us == other.t_us
                and self.valid_mask == other.valid_mask
                and np.array_equal(np.asarray(self.raw), np.asarray(other.raw)))

    __hash__ = None  # type: ignore[assignment]


def _scale_vector(accel_full_scale_g: float, gyro_full_scale_dps: float) -> np.ndarray:
    return np.array([accel_full_scale_g] * 3 + [gyro_full_scale_dps] * 3, np.float64) / RAW_SCALE


def raw_to_units(raw: np.ndarray, accel_full_scale_g: float = ACCEL_FULL_SCALE_G,
                 gyro_full_scale_dps: float = GYRO_FULL_SCALE_DPS) -> np.ndarray:
    """Convert raw int16 (..., 6) [ax ay az gx gy gz] to float32 g and deg/s."""
    return (np.asarray(raw, np.float64) * _scale_vector(accel_full_scale_g, gyro_full_scale_dps)
            ).astype(np.float32)


def units_to_raw(values: np.ndarray, accel_full_scale_g: float = ACCEL_FULL_SCALE_G,
                 gyro_full_scale_dps: float = GYRO_FULL_SCALE_DPS) -> np.ndarray:
    """Convert float (..., 6) g and deg/s to raw int16, rounding and clipping to ±32767.

    NaN becomes :data:`RAW_INVALID`; callers should clear that sensor's mask bit.
    """
    values = np.asarray(values, np.float64)
    scaled = values / _scale_vector(accel_full_scale_g, gyro_full_scale_dps)
    nan = np.isnan(scaled)
    out = np.clip(np.rint(np.where(nan, 0.0, scaled)), -32767, 32767).astype(np.int16)
    out[nan] = RAW_INVALID
    return out


# ---------------------------------------------------------------- health


@_register
@dataclasses.dataclass(frozen=True)
class Status(Message):
    """Periodic health of the sensor hub (type 0x11), about once a second.

    Payload: ``uptime_s`` u32, ``battery_pct`` u8 (0..100, 255 = unknown),
    ``battery_mv`` u16 (0 = unknown), sensor count u8 then one
    :class:`SensorState` u8 per sensor, fault count u8 then u16 fault codes.

    Attributes:
        uptime_s: Seconds since the sensor hub booted.
        battery_pct: Charge 0..100, or :data:`BATTERY_UNKNOWN`.
        battery_mv: Battery voltage in mV, 0 when unknown.
        sensor_states: One :class:`SensorState` value per sensor.
        faults: Active :class:`FaultCode` values (unknown codes kept as ints).
    """

    TYPE: ClassVar[int] = 0x11
    uptime_s: int = 0
    battery_pct: int = BATTERY_UNKNOWN
    battery_mv: int = 0
    sensor_states: Tuple[int, ...] = (SensorState.OK,) * N_SENSORS
    faults: Tuple[int, ...] = ()

    def pack_payload(self) -> bytes:
        if not (0 <= self.battery_pct <= 100 or self.battery_pct == BATTERY_UNKNOWN):
            raise ProtocolError(f"Status.battery_pct {self.battery_pct!r}; expected 0..100 or 255")
        if len(self.sensor_states) > 16 or len(self.faults) > 32:
            raise ProtocolError("Status: at most 16 sensor states and 32 faults")
        try:
            return (struct.pack("<IBHB", self.uptime_s, self.battery_pct, self.battery_mv,
                                len(self.sensor_states))
                    + bytes(int(s) for s in self.sensor_states)
                    + bytes((len(self.faults),))
                    + b"".join(struct.pack("<H", int(f)) for f in self.faults))
        except (struct.error, ValueError) as exc:
            raise ProtocolError(f"Status: a field does not fit its width: {exc}") from None

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Status":
        r = _Reader(payload, "Status")
        uptime, pct, mv, n = r.take("<IBHB")
        _check(n <= 16, f"Status: {n} sensor states; expected at most 16")
        states = tuple(r.raw(n))
        nf = r.u8()
        _check(nf <= 32, f"Status: {nf} faults; expected at most 32")
        faults = tuple(r.u16() for _ in range(nf))
        r.end()
        _check(pct <= 100 or pct == BATTERY_UNKNOWN,
               f"Status.battery_pct {pct}; expected 0..100 or 255 (unknown)")
        known = {int(s) for s in SensorState}
        for i, s in enumerate(states):
            _check(s in known, f"Status.sensor_states[{i}] = {s}; expected 0..{max(known)}")
        return cls(uptime_s=uptime, battery_pct=pct, battery_mv=mv,
                   sensor_states=tuple(SensorState(s) for s in states),
                   faults=tuple(_fault(f) for f in faults))


def _fault(code: int) -> int:
    try:
        return FaultCode(code)
    except ValueError:
        return code


@_register
@dataclasses.dataclass(frozen=True)
class Fault(Message):
    """A fault as it happens (type 0x12).

    Payload: ``sensor`` u8 (index, or 255 for the whole hub), ``code`` u16,
    ``t_us`` u64, ``detail`` str.

    Attributes:
        sensor: Sensor index into SENSORS, or :data:`WHOLE_HUB`.
        code: A :class:`FaultCode` (unknown codes kept as ints).
        t_us: Sensor-hub clock when it happened, microseconds.
        detail: Free text.
    """

    TYPE: ClassVar[int] = 0x12
    sensor: int = WHOLE_HUB
    code: int = 0
    t_us: int = 0
    detail: str = ""

    def pack_payload(self) -> bytes:
        try:
            head = struct.pack("<BHQ", self.sensor, int(self.code), self.t_us)
        except struct.error as exc:
            raise ProtocolError(f"Fault: a field does not fit its width: {exc}") from None
        return head + _pack_str(self.detail, "Fault.detail")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Fault":
        r = _Reader(payload, "Fault")
        sensor, code, t_us = r.take("<BHQ")
        detail = r.string("detail")
        r.end()
        _check(sensor < N_SENSORS or sensor == WHOLE_HUB,
               f"Fault.sensor {sensor}; expected 0..{N_SENSORS - 1} or 255 (whole hub)")
        return cls(sensor=sensor, code=_fault(code), t_us=t_us, detail=detail)


# ---------------------------------------------------------------- commands


@_register
@dataclasses.dataclass(frozen=True)
class Buzz(Message):
    """Drive the belt's vibration motor (type 0x20), host to sensor hub.

    Payload: ``buzz_id`` u16, entry count u8 (1..32), then u16 durations in
    ms (each ≤ 10000), alternating on, off, on, ... starting with on. The
    sensor hub answers Ack(of_type=0x20, ref=buzz_id) or a Nak. A new Buzz
    replaces a pattern still playing.

    Attributes:
        buzz_id: Id echoed in the Ack.
        pattern_ms: On/off durations in ms, starting with on.
    """

    TYPE: ClassVar[int] = 0x20
    buzz_id: int = 0
    pattern_ms: Tuple[int, ...] = (200,)

    def pack_payload(self) -> bytes:
        pattern = tuple(int(p) for p in self.pattern_ms)
        if not 1 <= len(pattern) <= MAX_BUZZ_ENTRIES:
            raise ProtocolError(f"Buzz.pattern_ms has {len(pattern)} entries; expected 1 to "
                                f"{MAX_BUZZ_ENTRIES}")
        bad = [p for p in pattern if not 0 <= p <= MAX_BUZZ_MS]
        if bad:
            raise ProtocolError(f"Buzz.pattern_ms entry {bad[0]} ms; expected 0 to {MAX_BUZZ_MS}")
        if not 0 <= self.buzz_id <= 0xFFFF:
            raise ProtocolError(f"Buzz.buzz_id {self.buzz_id}; expected 0..65535")
        return struct.pack(f"<HB{len(pattern)}H", self.buzz_id, len(pattern), *pattern)

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Buzz":
        r = _Reader(payload, "Buzz")
        buzz_id, n = r.take("<HB")
        pattern = r.take(f"<{n}H")
        r.end()
        _check(1 <= n <= MAX_BUZZ_ENTRIES, f"Buzz: {n} entries; expected 1 to {MAX_BUZZ_ENTRIES}")
        for p in pattern:
            _check(p <= MAX_BUZZ_MS, f"Buzz.pattern_ms entry {p} ms; expected at most {MAX_BUZZ_MS}")
        return cls(buzz_id=buzz_id, pattern_ms=tuple(pattern))


@_register
@dataclasses.dataclass(frozen=True)
class Ack(Message):
    """Positive acknowledgement (type 0x30).

    Payload: ``of_type`` u8 (type byte acknowledged), ``ref`` u32 (the id in
    that message: buzz_id, request_id, transfer_id; 0 when it has none).
    """

    TYPE: ClassVar[int] = 0x30
    of_type: int = 0
    ref: int = 0

    def pack_payload(self) -> bytes:
        try:
            return struct.pack("<BI", self.of_type, self.ref)
        except struct.error as exc:
            raise ProtocolError(f"Ack: a field does not fit its width: {exc}") from None

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Ack":
        r = _Reader(payload, "Ack")
        of_type, ref = r.take("<BI")
        r.end()
        return cls(of_type=of_type, ref=ref)


@_register
@dataclasses.dataclass(frozen=True)
class Nak(Message):
    """Negative acknowledgement (type 0x31).

    Payload: ``of_type`` u8, ``ref`` u32, ``reason`` u8 (:class:`NakReason`),
    ``detail`` str.
    """

    TYPE: ClassVar[int] = 0x31
    of_type: int = 0
    ref: int = 0
    reason: int = NakReason.INTERNAL
    detail: str = ""

    def pack_payload(self) -> bytes:
        try:
            head = struct.pack("<BIB", self.of_type, self.ref, int(self.reason))
        except struct.error as exc:
            raise ProtocolError(f"Nak: a field does not fit its width: {exc}") from None
        return head + _pack_str(self.detail, "Nak.detail")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "Nak":
        r = _Reader(payload, "Nak")
        of_type, ref, reason = r.take("<BIB")
        detail = r.string("detail")
        r.end()
        try:
            reason = NakReason(reason)
        except ValueError:
            raise _range(f"Nak.reason {reason}; expected 1..{max(NakReason)}") from None
        return cls(of_type=of_type, ref=ref, reason=reason, detail=detail)


# ---------------------------------------------------------------- management


@_register
@dataclasses.dataclass(frozen=True)
class ManagementRequest(Message):
    """A management call, laptop to hub (type 0x40).

    Payload: ``request_id`` u16, ``op`` str (``status``, ``logs``,
    ``provision``, ``rollback``, ...), then the rest of the payload is the
    body as a UTF-8 JSON object (empty = ``{}``).
    """

    TYPE: ClassVar[int] = 0x40
    request_id: int = 0
    op: str = "status"
    body: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def pack_payload(self) -> bytes:
        if not self.op:
            raise ProtocolError("ManagementRequest.op is empty; expected e.g. 'status'")
        if not 0 <= self.request_id <= 0xFFFF:
            raise ProtocolError(f"ManagementRequest.request_id {self.request_id}; expected 0..65535")
        return (struct.pack("<H", self.request_id) + _pack_str(self.op, "ManagementRequest.op")
                + _dump_json(self.body, "ManagementRequest"))

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "ManagementRequest":
        r = _Reader(payload, "ManagementRequest")
        request_id = r.u16()
        op = r.string("op")
        if not op:
            raise _bad("ManagementRequest.op is empty; expected an operation name")
        return cls(request_id=request_id, op=op, body=_json_body(r.rest(), "ManagementRequest"))


@_register
@dataclasses.dataclass(frozen=True)
class ManagementResponse(Message):
    """The answer to a ManagementRequest (type 0x41).

    Payload: ``request_id`` u16, ``ok`` u8 (0/1), ``part`` u16, ``final`` u8
    (0/1), then the body as a UTF-8 JSON object. Long answers (logs) come as
    parts 0, 1, ... with ``final`` set on the last; each part's body is a
    complete JSON object.
    """

    TYPE: ClassVar[int] = 0x41
    request_id: int = 0
    ok: bool = True
    body: Dict[str, Any] = dataclasses.field(default_factory=dict)
    part: int = 0
    final: bool = True

    def pack_payload(self) -> bytes:
        try:
            head = struct.pack("<HBHB", self.request_id, int(bool(self.ok)), self.part,
                               int(bool(self.final)))
        except struct.error as exc:
            raise ProtocolError(f"ManagementResponse: a field does not fit its width: {exc}") from None
        return head + _dump_json(self.body, "ManagementResponse")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "ManagementResponse":
        r = _Reader(payload, "ManagementResponse")
        request_id, ok, part, final = r.take("<HBHB")
        _check(ok <= 1 and final <= 1, f"ManagementResponse ok={ok} final={final}; expected 0 or 1")
        return cls(request_id=request_id, ok=bool(ok), part=part, final=bool(final),
                   body=_json_body(r.rest(), "ManagementResponse"))


# ---------------------------------------------------------------- flash transfer


@_register
@dataclasses.dataclass(frozen=True)
class FlashBegin(Message):
    """Start or resume a bundle transfer, laptop to hub (type 0x50).

    Payload: ``transfer_id`` u32, ``total_size`` u32, ``sha256`` 32 bytes,
    ``name`` str. The hub answers FlashAck(transfer_id, next_offset): 0 for a
    new transfer, or where a partial transfer of the same sha256 stopped (the
    resume point), or Nak (BUSY, OUT_OF_RANGE, UNAUTHORIZED, ...).
    """

    TYPE: ClassVar[int] = 0x50
    transfer_id: int = 0
    total_size: int = 0
    sha256: bytes = b"\x00" * 32
    name: str = ""

    def pack_payload(self) -> bytes:
        if len(self.sha256) != 32:
            raise ProtocolError(f"FlashBegin.sha256 has {len(self.sha256)} bytes; expected 32")
        try:
            head = struct.pack("<II", self.transfer_id, self.total_size)
        except struct.error as exc:
            raise ProtocolError(f"FlashBegin: a field does not fit u32: {exc}") from None
        return head + bytes(self.sha256) + _pack_str(self.name, "FlashBegin.name")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "FlashBegin":
        r = _Reader(payload, "FlashBegin")
        transfer_id, total = r.take("<II")
        digest = r.raw(32)
        name = r.string("name")
        r.end()
        _check(total > 0, "FlashBegin.total_size 0; expected a positive size")
        return cls(transfer_id=transfer_id, total_size=total, sha256=digest, name=name)


@_register
@dataclasses.dataclass(frozen=True)
class FlashChunk(Message):
    """One block of a transfer (type 0x51).

    Payload: ``transfer_id`` u32, ``offset`` u32, ``crc32`` u32 of the data
    (CRC-32/ISO-HDLC as zlib), then the data (1..4096 bytes; 1024 by default).
    The decoder does not check ``crc32``; the receiver does (:attr:`crc_ok`)
    and answers FlashAck(next_offset) or Nak(CHUNK_CRC / BAD_OFFSET).
    """

    TYPE: ClassVar[int] = 0x51
    transfer_id: int = 0
    offset: int = 0
    data: bytes = b""
    crc32: Optional[int] = None

    def __post_init__(self) -> None:
        if self.crc32 is None:
            object.__setattr__(self, "crc32", crc32(bytes(self.data)))

    @property
    def crc_ok(self) -> bool:
        """Whether :attr:`crc32` matches :attr:`data`."""
        return crc32(bytes(self.data)) == self.crc32

    def pack_payload(self) -> bytes:
        if not 1 <= len(self.data) <= MAX_FLASH_CHUNK:
            raise ProtocolError(f"FlashChunk.data has {len(self.data)} bytes; expected 1 to "
                                f"{MAX_FLASH_CHUNK}")
        try:
            head = struct.pack("<III", self.transfer_id, self.offset, self.crc32)
        except struct.error as exc:
            raise ProtocolError(f"FlashChunk: a field does not fit u32: {exc}") from None
        return head + bytes(self.data)

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "FlashChunk":
        r = _Reader(payload, "FlashChunk")
        transfer_id, offset, crc = r.take("<III")
        data = r.rest()
        _check(1 <= len(data) <= MAX_FLASH_CHUNK,
               f"FlashChunk: {len(data)} data bytes; expected 1 to {MAX_FLASH_CHUNK}")
        return cls(transfer_id=transfer_id, offset=offset, data=data, crc32=crc)


@_register
@dataclasses.dataclass(frozen=True)
class FlashAck(Message):
    """Receiver's progress (type 0x52): all bytes before ``next_offset`` are stored.

    Payload: ``transfer_id`` u32, ``next_offset`` u32.
    """

    TYPE: ClassVar[int] = 0x52
    transfer_id: int = 0
    next_offset: int = 0

    def pack_payload(self) -> bytes:
        try:
            return struct.pack("<II", self.transfer_id, self.next_offset)
        except struct.error as exc:
            raise ProtocolError(f"FlashAck: a field does not fit u32: {exc}") from None

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "FlashAck":
        r = _Reader(payload, "FlashAck")
        transfer_id, next_offset = r.take("<II")
        r.end()
        return cls(transfer_id=transfer_id, next_offset=next_offset)


@_register
@dataclasses.dataclass(frozen=True)
class FlashEnd(Message):
    """All bytes sent; verify and install (type 0x53).

    Payload: ``transfer_id`` u32, ``flags`` u8 (bit 0 dry run: check without
    installing; bit 1 force: accept an older or same version). The hub
    checks the size and sha256 given in FlashBegin, verifies the bundle, runs
    its self-test, switches atomically (unless ``dry_run``) and answers
    FlashResult.
    """

    TYPE: ClassVar[int] = 0x53
    transfer_id: int = 0
    dry_run: bool = False
    force: bool = False

    def pack_payload(self) -> bytes:
        try:
            return struct.pack("<IB", self.transfer_id, int(bool(self.dry_run)) | int(bool(self.force)) << 1)
        except struct.error as exc:
            raise ProtocolError(f"FlashEnd: a field does not fit u32: {exc}") from None

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "FlashEnd":
        r = _Reader(payload, "FlashEnd")
        transfer_id, flags = r.take("<IB")
        r.end()
        _check(flags <= 3, f"FlashEnd.flags 0x{flags:02x}; expected bits 0 (dry run) and 1 (force) only")
        return cls(transfer_id=transfer_id, dry_run=bool(flags & 1), force=bool(flags & 2))


@_register
@dataclasses.dataclass(frozen=True)
class FlashResult(Message):
    """Outcome of a transfer (type 0x54).

    Payload: ``transfer_id`` u32, ``ok`` u8 (0/1), ``active_version`` str (the
    bundle version active after the outcome, "" if none), ``message`` as the
    rest of the payload (UTF-8).
    """

    TYPE: ClassVar[int] = 0x54
    transfer_id: int = 0
    ok: bool = False
    message: str = ""
    active_version: str = ""

    def pack_payload(self) -> bytes:
        try:
            head = struct.pack("<IB", self.transfer_id, int(bool(self.ok)))
        except struct.error as exc:
            raise ProtocolError(f"FlashResult: a field does not fit u32: {exc}") from None
        return head + _pack_str(self.active_version, "FlashResult.active_version") + self.message.encode("utf-8")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "FlashResult":
        r = _Reader(payload, "FlashResult")
        transfer_id, ok = r.take("<IB")
        version = r.string("active_version")
        blob = r.rest()
        _check(ok <= 1, f"FlashResult.ok {ok}; expected 0 or 1")
        try:
            message = blob.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(f"FlashResult.message {blob[:40]!r} is not UTF-8") from None
        return cls(transfer_id=transfer_id, ok=bool(ok), message=message, active_version=version)


@_register
@dataclasses.dataclass(frozen=True)
class FlashAbort(Message):
    """Abandon a transfer and discard its partial data (type 0x55).

    Payload: ``transfer_id`` u32, ``reason`` str. Either side may send it.
    """

    TYPE: ClassVar[int] = 0x55
    transfer_id: int = 0
    reason: str = ""

    def pack_payload(self) -> bytes:
        try:
            head = struct.pack("<I", self.transfer_id)
        except struct.error as exc:
            raise ProtocolError(f"FlashAbort: a field does not fit u32: {exc}") from None
        return head + _pack_str(self.reason, "FlashAbort.reason")

    @classmethod
    def unpack_payload(cls, payload: bytes) -> "FlashAbort":
        r = _Reader(payload, "FlashAbort")
        transfer_id = r.u32()
        reason = r.string("reason")
        r.end()
        return cls(transfer_id=transfer_id, reason=reason)


# ---------------------------------------------------------------- framing


def encode_body(message: Message, *, version: int = PROTOCOL_VERSION) -> bytes:
    """Return the unstuffed body: version, type, payload, CRC-16 little-endian.

    Raises:
        ProtocolError: If a field cannot be represented or the payload is too long.
    """
    payload = message.pack_payload()
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"{type(message).__name__}: payload of {len(payload)} bytes; expected "
                            f"at most {MAX_PAYLOAD}")
    head = bytes((version & 0xFF, message.TYPE)) + payload
    return head + struct.pack("<H", crc16(head))


def encode_message(message: Message, *, version: int = PROTOCOL_VERSION) -> bytes:
    """Return the wire bytes of ``message``: COBS-stuffed body and a 0x00 delimiter.

    Raises:
        ProtocolError: If a field cannot be represented on the wire.
    """
    return cobs.encode(encode_body(message, version=version)) + DELIMITER


def decode_body(body: bytes) -> Message:
    """Parse one unstuffed body (version, type, payload, CRC).

    Raises:
        BadFrame: With ``.kind`` set to the decoder counter it maps to
            (``truncated``, ``bad_crc``, ``bad_version``, ``unknown_type``,
            ``bad_payload``, ``out_of_range``).
    """
    if len(body) < 4:
        raise _frame_error("truncated", f"frame body of {len(body)} bytes; expected at least 4 "
                           "(version, type, CRC)")
    got = body[-2] | body[-1] << 8
    want = crc16(body[:-2])
    if got != want:
        raise _frame_error("bad_crc", f"CRC 0x{got:04x} != 0x{want:04x} over {len(body) - 2} bytes")
    if body[0] != PROTOCOL_VERSION:
        raise _frame_error("bad_version", f"version byte {body[0]}; expected {PROTOCOL_VERSION}")
    cls = MESSAGE_TYPES.get(body[1])
    if cls is None:
        raise _frame_error("unknown_type", f"message type 0x{body[1]:02x} is unknown")
    try:
        return cls.unpack_payload(bytes(body[2:-2]))
    except _PayloadError as exc:
        raise _frame_error(exc.kind, str(exc)) from None


def decode_frame(frame: bytes) -> Message:
    """Parse one COBS frame (with or without its trailing 0x00).

    Raises:
        BadFrame: See :func:`decode_body`; ``kind`` may also be ``bad_cobs``.
    """
    if frame.endswith(DELIMITER):
        frame = frame[:-1]
    return decode_body(_unstuff(frame))


def _frame_error(kind: str, message: str) -> BadFrame:
    exc = BadFrame(message)
    exc.kind = kind  # type: ignore[attr-defined]
    return exc


def _unstuff(frame: bytes) -> bytes:
    try:
        return cobs.decode(frame)
    except cobs.DecodeError as exc:
        text = str(exc)
        kind = "truncated" if "not enough input" in text else "bad_cobs"
        raise _frame_error(kind, f"COBS: {text}") from None


class SequenceTracker:
    """Classify SampleFrame sequence numbers (u32, wrapping).

    ``check(seq)`` returns ``"first"``, ``"next"``, ``"gap"``, ``"repeat"``,
    ``"reorder"`` or ``"reset"`` and updates the last accepted number for
    everything except repeats and reorders.
    """

    def __init__(self, reorder_window: int = REORDER_WINDOW) -> None:
        self.reorder_window = reorder_window
        self.last: Optional[int] = None
        self.skipped = 0

    def reset(self) -> None:
        """Forget the last number (after a sensor-hub restart or a reopen)."""
        self.last = None

    def check(self, seq: int) -> str:
        """Classify ``seq`` against the last accepted one (see class docs)."""
        if self.last is None:
            self.last = seq
            return "first"
        diff = (seq - self.last) & 0xFFFFFFFF
        if diff == 0:
            return "repeat"
        if diff == 1:
            self.last = seq
            return "next"
        if 0x100000000 - diff <= self.reorder_window:
            return "reorder"
        if diff <= MAX_SEQUENCE_GAP:
            self.skipped = diff - 1
            self.last = seq
            return "gap"
        self.last = seq
        return "reset"


class FrameDecoder:
    """Turn a byte stream into messages; never raises on any input.

    Bytes are split at 0x00; each piece is COBS-decoded, CRC-checked and
    parsed. Every rejected piece is counted in :attr:`counters` (see
    :data:`COUNTER_NAMES`) and its description kept in :attr:`last_problem`.
    SampleFrames are also checked for repeated, reordered (both dropped) and
    skipped sequence numbers, and sanitized (impossible validity bits cleared
    and counted as ``out_of_range``). A Capabilities message resets the
    sequence check (the sensor hub restarted or was replaced).

    Args:
        max_payload: Longest accepted payload; longer runs without a 0x00 are
            discarded as ``oversize``.
        track_sequence: Check SampleFrame sequence numbers.
    """

    def __init__(self, *, max_payload: int = MAX_PAYLOAD, track_sequence: bool = True) -> None:
        self.max_encoded = max_payload + 4 + (max_payload + 4) // 254 + 2
        self.track_sequence = track_sequence
        self.counters: Dict[str, int] = {name: 0 for name in COUNTER_NAMES}
        self.last_problem: str = ""
        self.sequence = SequenceTracker()
        self._pending = bytearray()
        self._skipping = False  # inside an oversize run: drop until the next 0x00

    def reset(self) -> None:
        """Drop any partial frame and the sequence state (after a reopen)."""
        self._pending.clear()
        self._skipping = False
        self.sequence.reset()

    def _reject(self, kind: str, nbytes: int, message: str) -> None:
        self.counters[kind] += 1
        self.counters["garbage_bytes"] += nbytes
        self.last_problem = f"{kind}: {message}"

    def feed(self, data: bytes) -> List[Message]:
        """Consume ``data`` and return the complete messages it finished.

        Never raises for any content of ``data`` (bytes-like).
        """
        out: List[Message] = []
        try:
            self._feed(bytes(data), out)
        except Exception as exc:  # pragma: no cover - defensive: a bug must not stop the hub
            self.counters["internal_errors"] += 1
            self.last_problem = f"internal_errors: {type(exc).__name__}: {exc}"
            self._pending.clear()
            self._skipping = False
        return out

    def _feed(self, data: bytes, out: List[Message]) -> None:
        self.counters["bytes_in"] += len(data)
        pieces = data.split(DELIMITER)
        # pieces[:-1] end at a delimiter; pieces[-1] is an unfinished tail.
        for i, piece in enumerate(pieces):
            complete = i < len(pieces) - 1
            if self._skipping:
                self.counters["garbage_bytes"] += len(piece)
                if complete:
                    self._skipping = False
                continue
            if self._pending:
                self._pending += piece
                frame = bytes(self._pending) if complete else None
            else:
                frame = piece if complete else None
                if not complete:
                    self._pending += piece
            if frame is None:
                if len(self._pending) > self.max_encoded:
                    self._reject("oversize", len(self._pending),
                                 f"{len(self._pending)} bytes without a 0x00 delimiter; expected "
                                 f"at most {self.max_encoded}")
                    self._pending.clear()
                    self._skipping = True
                continue
            self._pending.clear()
            if not frame:
                continue  # back-to-back delimiters are allowed (resync padding)
            if len(frame) > self.max_encoded:
                self._reject("oversize", len(frame), f"frame of {len(frame)} bytes; expected at most "
                             f"{self.max_encoded}")
                continue
            self._decode_one(frame, out)

    def _decode_one(self, frame: bytes, out: List[Message]) -> None:
        try:
            message = decode_body(_unstuff(frame))
        except BadFrame as exc:
            self._reject(getattr(exc, "kind", "bad_payload"), len(frame) + 1, str(exc))
            return
        if isinstance(message, SampleFrame):
            message, problem = message.sanitized()
            if problem:
                self.counters["out_of_range"] += 1
                self.last_problem = f"out_of_range: {problem}"
            if self.track_sequence:
                verdict = self.sequence.check(message.seq)
                if verdict == "repeat":
                    self.counters["seq_repeat"] += 1
                    self.last_problem = f"seq_repeat: sequence {message.seq} again"
                    return
                if verdict == "reorder":
                    self.counters["seq_reorder"] += 1
                    self.last_problem = (f"seq_reorder: sequence {message.seq} after "
                                         f"{self.sequence.last}")
                    return
                if verdict == "gap":
                    self.counters["seq_gap"] += 1
                    self.counters["seq_missed"] += self.sequence.skipped
                elif verdict == "reset":
                    self.counters["seq_reset"] += 1
        elif isinstance(message, Capabilities):
            self.sequence.reset()
        self.counters["frames_ok"] += 1
        out.append(message)


__all__ = [
    "Ack", "BATTERY_UNKNOWN", "Buzz", "COUNTER_NAMES", "Capabilities", "DEFAULT_FLASH_CHUNK",
    "Fault", "FaultCode", "Feature", "FlashAbort", "FlashAck", "FlashBegin", "FlashChunk",
    "FlashEnd", "FlashResult", "FrameDecoder", "Hello", "MAX_FLASH_CHUNK", "MAX_PAYLOAD",
    "MESSAGE_TYPES", "ManagementRequest", "ManagementResponse", "Message", "Nak", "NakReason",
    "PROTOCOL_VERSION", "RAW_INVALID", "SampleFrame", "SensorState", "SequenceTracker", "Status",
    "WHOLE_HUB", "crc16", "crc32", "decode_body", "decode_frame", "encode_body", "encode_message",
    "raw_to_units", "units_to_raw",
]
