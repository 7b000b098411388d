"""WitMotion WT901BLECL (BLE 5.0) IMUs through bleak (``witmotion-ble://``).

URL format::

    witmotion-ble://?Side=AA:BB:CC:DD:EE:01&LtWt=...&Thig=...&rate=25
    witmotion-ble://?name_prefix=WT901&sensors=Back

Parameters are those of ``ble://`` (:mod:`edge.sources.ble`: sites by
address, ``timeout``, ``backoff``, ``backoff_max``, ``adapter``, ``seed``)
plus:

==============  ============================================================
``rate``        Output rate delivered to the hub in Hz (default 25). The
                device has no 25 Hz setting (see below): 25 is served by
                setting 50 Hz and keeping every second packet; any rate in
                :data:`RATE_CODES` is set directly.
``configure``   ``1`` (default) writes unlock / rate / save at each connect;
                ``0`` leaves the device as it is.
==============  ============================================================

WitMotion names carry no body site (they advertise e.g. ``WT901BLE68``), so
name mode (``name_prefix=WT``) only works for one sensor (``sensors=Back``);
use addresses for several, as ``host scan`` suggests.

The device (WitMotion "BLE 5.0" protocol, as used by the WT901BLECL):

* service ``0000ffe5-0000-1000-8000-00805f9a34fb``; notify characteristic
  ``0000ffe4-...`` streams packets, write characteristic ``0000ffe9-...``
  takes commands.
* Data packet, 20 bytes, no checksum: ``0x55 0x61`` then nine int16
  little-endian values: acceleration x, y, z (``v / 32768 * 16`` g), angular
  rate x, y, z (``v / 32768 * 2000`` deg/s), angle roll, pitch, yaw
  (``v / 32768 * 180`` deg). ``0x55 0x71`` packets (20 bytes) answer register
  reads (battery, magnetometer, ...) and are skipped here.
* Commands are 5 bytes ``FF AA <register> <low> <high>``: unlock
  ``FF AA 69 88 B5``, output rate register ``0x03`` (codes in
  :data:`RATE_CODES`; 10 Hz, code 0x06, is the factory default), save
  ``FF AA 00 00 00``.

Where this is uncertain: the rate codes are WitMotion's common table for its
standard protocol (0x01 0.2 Hz ... 0x09 100 Hz, 0x0B 200 Hz); there is no
25 Hz code. That a WT901BLECL sustains 50 Hz notifications to a Raspberry Pi
with six links at once is not verified here (no radio on this machine).
The packets carry no sequence number or sensor clock: ``seq`` is a local
counter and ``t_sensor`` is the host arrival time.

The byte stream is parsed with resynchronization (:class:`WitMotionParser`):
garbage, split and merged notifications are handled and counted.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError
from ..layout import ACCEL_FULL_SCALE_G, GYRO_FULL_SCALE_DPS
from .ble import BleMultiSource, _number, _one, _SensorLink

#: WitMotion BLE service, notify and write characteristics.
SERVICE_UUID = "0000ffe5-0000-1000-8000-00805f9a34fb"
NOTIFY_CHAR_UUID = "0000ffe4-0000-1000-8000-00805f9a34fb"
WRITE_CHAR_UUID = "0000ffe9-0000-1000-8000-00805f9a34fb"

#: Advertised name prefix of WitMotion BLE IMUs (``WT901BLE68`` and similar).
NAME_PREFIX = "WT"

HEADER = 0x55
TYPE_DATA = 0x61
TYPE_REGISTER = 0x71
PACKET_SIZE = 20

#: Scale of the int16 fields.
ACCEL_SCALE_G = ACCEL_FULL_SCALE_G / 32768.0
GYRO_SCALE_DPS = GYRO_FULL_SCALE_DPS / 32768.0
ANGLE_SCALE_DEG = 180.0 / 32768.0

#: Output rate (Hz) to the code written to register 0x03.
RATE_CODES: Dict[float, int] = {
    0.2: 0x01, 0.5: 0x02, 1.0: 0x03, 2.0: 0x04, 5.0: 0x05, 10.0: 0x06,
    20.0: 0x07, 50.0: 0x08, 100.0: 0x09, 200.0: 0x0B,
}
RATE_REGISTER = 0x03
UNLOCK_COMMAND = bytes([0xFF, 0xAA, 0x69, 0x88, 0xB5])
SAVE_COMMAND = bytes([0xFF, 0xAA, 0x00, 0x00, 0x00])

_DATA = struct.Struct("<9h")


def write_register_command(register: int, value: int) -> bytes:
    """Return the 5-byte command writing ``value`` (u16) to ``register``."""
    return bytes([0xFF, 0xAA, register & 0xFF, value & 0xFF, (value >> 8) & 0xFF])


def rate_commands(device_rate_hz: float) -> List[bytes]:
    """Return unlock, set-rate and save commands for a device rate in :data:`RATE_CODES`.

    Raises:
        ConfigError: If the rate has no code.
    """
    code = RATE_CODES.get(float(device_rate_hz))
    if code is None:
        raise ConfigError(f"WitMotion rate {device_rate_hz:g} Hz has no rate code; expected one "
                          f"of {', '.join(f'{r:g}' for r in RATE_CODES)}")
    return [UNLOCK_COMMAND, write_register_command(RATE_REGISTER, code), SAVE_COMMAND]


def device_rate_for(rate_hz: float) -> Tuple[float, int]:
    """Return (rate to set on the device, keep every k-th packet) for a wanted rate.

    25 Hz -> (50, 2); a rate with a code -> (rate, 1).

    Raises:
        ConfigError: If the wanted rate cannot be served.
    """
    if float(rate_hz) in RATE_CODES:
        return float(rate_hz), 1
    for device_rate in sorted(RATE_CODES):
        k = device_rate / rate_hz
        if k >= 2 and abs(k - round(k)) < 1e-9:
            return device_rate, int(round(k))
    raise ConfigError(f"WitMotion rate {rate_hz:g} Hz: no device rate is a whole multiple; "
                      f"expected one of {', '.join(f'{r:g}' for r in RATE_CODES)} or 25")


@dataclasses.dataclass(frozen=True)
class WitSample:
    """One decoded 0x61 packet.

    Attributes:
        raw: The nine int16 values (acc xyz, gyro xyz, angle roll pitch yaw).
    """

    raw: Tuple[int, ...]

    @property
    def accel_g(self) -> np.ndarray:
        """Acceleration x, y, z in g."""
        return np.asarray(self.raw[0:3], dtype=np.float64) * ACCEL_SCALE_G

    @property
    def gyro_dps(self) -> np.ndarray:
        """Angular rate x, y, z in deg/s."""
        return np.asarray(self.raw[3:6], dtype=np.float64) * GYRO_SCALE_DPS

    @property
    def angle_deg(self) -> np.ndarray:
        """Roll, pitch, yaw in degrees."""
        return np.asarray(self.raw[6:9], dtype=np.float64) * ANGLE_SCALE_DEG

    def values(self) -> np.ndarray:
        """Accelerometer then gyroscope as float32 (6,), as :class:`SensorReading` wants."""
        return np.concatenate([self.accel_g, self.gyro_dps]).astype(np.float32)


def encode_packet(accel_g, gyro_dps, angle_deg) -> bytes:
    """Encode one 0x55 0x61 packet from physical values (saturating at full scale)."""
    scaled = np.concatenate([np.asarray(accel_g, float) / ACCEL_SCALE_G,
                             np.asarray(gyro_dps, float) / GYRO_SCALE_DPS,
                             np.asarray(angle_deg, float) / ANGLE_SCALE_DEG])
    raw = np.clip(np.rint(scaled), -32768, 32767).astype(int)
    return bytes([HEADER, TYPE_DATA]) + _DATA.pack(*(int(x) for x in raw))


class WitMotionParser:
    """Stream parser for WitMotion BLE packets with resynchronization.

    Feed it bytes in any chunking; it returns the complete data packets and
    keeps a partial packet for the next call. A header is accepted when it is
    ``0x55`` followed by a known type; if more bytes follow the packet, the
    next packet must start with ``0x55`` too, unless no header inside the
    candidate is confirmed that way; this rejects a false header found in
    garbage. A packet holding a header-like byte pair waits for the next bytes
    before it is decided. Never raises on bad input. (The BLE packets carry
    no checksum, so garbage that happens to look like a packet is accepted.)

    Attributes:
        counters: ``packets``, ``register_packets``, ``garbage_bytes``.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.counters: Dict[str, int] = {"packets": 0, "register_packets": 0, "garbage_bytes": 0}

    def feed(self, data: bytes) -> List[WitSample]:
        """Parse ``data``; return the data packets completed by it."""
        buf = self._buffer
        buf += bytes(data)
        out: List[WitSample] = []
        i = 0
        n = len(buf)
        while n - i >= 2:
            if buf[i] != HEADER or buf[i + 1] not in (TYPE_DATA, TYPE_REGISTER):
                i += 1
                self.counters["garbage_bytes"] += 1
                continue
            if n - i < PACKET_SIZE:
                break
            if n - i > PACKET_SIZE and buf[i + PACKET_SIZE] != HEADER and \
                    self._better_start(buf, i, n):
                # Not followed by a header, and a header inside it is: this
                # was a false start in garbage (or a truncated packet).
                i += 1
                self.counters["garbage_bytes"] += 1
                continue
            if n - i == PACKET_SIZE and any(
                    buf[j] == HEADER and buf[j + 1] in (TYPE_DATA, TYPE_REGISTER)
                    for j in range(i + 1, i + PACKET_SIZE - 1)):
                # Nothing follows yet and a header sits inside: wait for the
                # next bytes to tell which start is real.
                break
            if buf[i + 1] == TYPE_DATA:
                out.append(WitSample(_DATA.unpack_from(buf, i + 2)))
                self.counters["packets"] += 1
            else:
                self.counters["register_packets"] += 1
            i += PACKET_SIZE
        if n - i == 1 and buf[i] != HEADER:
            i += 1
            self.counters["garbage_bytes"] += 1
        del buf[:i]
        return out

    @staticmethod
    def _better_start(buf: bytearray, i: int, n: int) -> bool:
        """True if a header inside the packet at ``i`` is confirmed by what follows it."""
        for j in range(i + 1, i + PACKET_SIZE):
            if buf[j] == HEADER and buf[j + 1] in (TYPE_DATA, TYPE_REGISTER):
                end = j + PACKET_SIZE
                if end >= n or buf[end] == HEADER:
                    return True
        return False


class WitMotionSource(BleMultiSource):
    """Up to six WitMotion WT901BLECL IMUs, one bleak client each.

    Shares discovery, reconnect with backoff and status reporting with
    :class:`edge.sources.ble.BleImuSource`; see the module docstring for the
    URL and the device protocol.
    """

    scheme = "witmotion-ble"
    default_prefix = NAME_PREFIX

    def _known_options(self) -> set:
        return (super()._known_options() - {"batch"}) | {"configure"}

    def _parse_options(self, url: str, query: Dict[str, List[str]]) -> None:
        self.rate_hz = float(_number(url, query, "rate", 25.0, 0.2, 200.0))
        self.device_rate_hz, self.keep_every = device_rate_for(self.rate_hz)
        configure = _one(query, "configure", "1")
        if configure not in ("0", "1"):
            raise ConfigError(f"source URL {url!r}: configure={configure!r}; expected 0 or 1")
        self.configure = configure == "1"
        if self.name_prefix is not None and len(self.sites) > 1 and not self.addresses:
            raise ConfigError(f"source URL {url!r}: WitMotion names carry no body site, so "
                              "name_prefix finds one sensor only; give sensors=<one site> or "
                              "Site=ADDRESS pairs (host scan suggests them)")
        self._parsers: Dict[str, WitMotionParser] = {}
        self._phase: Dict[str, int] = {}

    def _site_from_advert(self, name: Optional[str]) -> Tuple[bool, Optional[str]]:
        prefix = self.name_prefix or NAME_PREFIX
        if not name or not name.startswith(prefix):
            return False, None
        return True, self.sites[0] if len(self.sites) == 1 else None

    async def _site_from_device(self, client: Any) -> Optional[str]:
        return None

    async def _setup(self, link: _SensorLink, client: Any) -> None:
        self._parsers[link.site] = WitMotionParser()
        self._phase[link.site] = 0
        await client.start_notify(NOTIFY_CHAR_UUID, lambda _c, data: self._on_data(link, data))
        if self.configure:
            for command in rate_commands(self.device_rate_hz):
                await client.write_gatt_char(WRITE_CHAR_UUID, command, response=False)

    def _on_data(self, link: _SensorLink, data: bytearray) -> None:
        t_host = time.monotonic()
        parser = self._parsers.get(link.site)
        if parser is None:
            return
        before = parser.counters["garbage_bytes"]
        samples = parser.feed(bytes(data))
        if parser.counters["garbage_bytes"] > before:
            self.count(f"{link.site}.garbage_bytes", parser.counters["garbage_bytes"] - before)
        for sample in samples:
            phase = self._phase[link.site]
            self._phase[link.site] = (phase + 1) % self.keep_every
            if phase:
                continue
            link.local_seq = (link.local_seq + 1) & 0xFFFF
            self._put_reading(link, link.local_seq, t_host, t_host, sample.values())

    def health(self) -> Dict[str, Any]:
        """Add the parsers' counters and the device rate to the base health."""
        out = super().health()
        out["device_rate_hz"] = self.device_rate_hz
        out["keep_every"] = self.keep_every
        for site, parser in self._parsers.items():
            out["sensors"][site]["parser"] = dict(parser.counters)
        return out
