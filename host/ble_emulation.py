"""BLE without a radio: bumble-emulated IMUs and a bleak backend over bumble.

This machine (and CI) has no Bluetooth in its kernel and no BlueZ, so the
hub's BLE sources are exercised against bumble's own controllers joined by a
:class:`bumble.link.LocalLink`, through *unchanged* bleak calls:

* :class:`LiftGuardImuPeripheral` — a bumble peripheral implementing our
  profile (:mod:`edge.sources.ble_profile`): advertises ``LG-IMU-<site>``,
  streams a recording's six channels as batched notifications at its rate,
  honours the config characteristic and answers the site characteristic.
* :class:`WitMotionPeripheral` — a WT901BLECL look-alike: ``0000ffe5``
  service, 20-byte ``0x55 0x61`` packets on ``ffe4``, commands (unlock, rate
  register 0x03, save) on ``ffe9``; starts at the factory 10 Hz.
* :class:`BumbleScanner` (a :class:`bleak.backends.scanner.BaseBleakScanner`)
  and :class:`BumbleClient` (a :class:`bleak.backends.client.BaseBleakClient`):
  the bleak backend classes. ``BleakScanner(backend=world.scanner_backend)``
  and ``BleakClient(device, backend=world.client_backend)`` then scan,
  connect, discover, read, write and subscribe over the emulated link.
* :class:`EmulatedBleWorld` — one LocalLink, N peripherals, one central
  (the hub's adapter), disconnect injection (:meth:`EmulatedBleWorld.drop`).

Cross-process: bumble 0.0.236 no longer has a link relay (``RemoteLink`` and
the ``link-relay:`` transport were removed; ``open_transport_or_link`` is a
deprecated alias of ``open_transport``). The replacement that works is to
export the *central's controller* over an HCI transport:
:meth:`EmulatedBleWorld.serve_central_hci` puts a controller for the hub on
the world's LocalLink and speaks HCI over ``tcp-server:HOST:PORT`` (any
bumble transport spec); another process calls :func:`open_remote_central`
(``tcp-client:HOST:PORT``) and gets scanner/client backend classes for bleak
there. The boundary: the hub process must then use these bleak backends
(not BlueZ), because the kernel has no HCI device to hand to BlueZ.

Only ``host`` and tests import this module; the hub's sources never import
bumble.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from edge.errors import ConfigError, DataError, SourceError
from edge.layout import CHANNELS, SAMPLE_RATE_HZ, SENSORS
from edge.sources import ble_profile, witmotion

logger = logging.getLogger(__name__)

# bumble and bleak are imported at module level: this module *is* the
# emulation, and host commands import it lazily inside run().
from bleak.backends.characteristic import BleakGATTCharacteristic  # noqa: E402
from bleak.backends.client import BaseBleakClient, NotifyCallback  # noqa: E402
from bleak.backends.descriptor import BleakGATTDescriptor  # noqa: E402
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner  # noqa: E402
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection  # noqa: E402
from bleak.exc import BleakError  # noqa: E402
from bumble.controller import Controller  # noqa: E402
from bumble.core import AdvertisingData, UUID  # noqa: E402
from bumble.device import Device, Peer  # noqa: E402
from bumble.gatt import Characteristic, CharacteristicValue, Service  # noqa: E402
from bumble.hci import Address  # noqa: E402
from bumble.host import Host  # noqa: E402
from bumble.link import LocalLink  # noqa: E402
from bumble.transport.common import AsyncPipeSink  # noqa: E402

#: Advertising interval of the emulated peripherals, ms (real IMUs: 100-1000).
ADVERTISING_INTERVAL_MS = 50.0

_PROPERTY_NAMES = [
    (0x01, "broadcast"), (0x02, "read"), (0x04, "write-without-response"), (0x08, "write"),
    (0x10, "notify"), (0x20, "indicate"), (0x40, "authenticated-signed-writes"),
    (0x80, "extended-properties"),
]


def sensor_streams(samples: np.ndarray) -> Dict[str, np.ndarray]:
    """Split a trial's (n, 36) samples into one (n, 6) array per site.

    Raises:
        DataError: If ``samples`` is not (n, 36).
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] != len(CHANNELS):
        raise DataError(f"recording has shape {samples.shape}; expected (n, {len(CHANNELS)})")
    return {site: samples[:, 6 * k: 6 * k + 6] for k, site in enumerate(SENSORS)}


def load_recording(path: Union[str, "Any"], trial: Optional[str] = None) -> np.ndarray:
    """Read a recording through :mod:`edge.dataset`: a trial CSV or a data set folder.

    Args:
        path: A trial CSV file, or a data set directory (index.csv).
        trial: Trial id in a data set (default: the first trial).

    Returns:
        The (n, 36) float64 samples.

    Raises:
        DataError: If the file or trial is missing or malformed.
    """
    from pathlib import Path

    from edge import dataset

    path = Path(path)
    if path.is_dir():
        ds = dataset.load_dataset(path)
        if not ds.trials:
            raise DataError(f"{path}: data set has no trials; expected at least one")
        metas = [m for m in ds.trials if trial is None or m.trial_id == trial]
        if not metas:
            raise DataError(f"{path}: no trial {trial!r}; expected one of "
                            f"{', '.join(m.trial_id for m in ds.trials[:10])}...")
        return ds.read(metas[0]).samples
    return dataset.read_trial_csv(path).samples


def _address_for(index: int, prefix: str = "C0:4C:47:00") -> str:
    """Random static address (top bits 11) for emulated device ``index``."""
    return f"{prefix}:{(index >> 8) & 0xFF:02X}:{index & 0xFF:02X}"


# ---------------------------------------------------------------------------
# Peripherals
# ---------------------------------------------------------------------------
class EmulatedPeripheral:
    """Base of the emulated IMUs: a bumble Device with its own controller.

    Samples are taken on the peripheral's own clock at its current rate by
    interpolating the 25 Hz recording; the sample counter keeps running while
    nobody listens, so a reconnecting hub sees the gap.

    Args:
        world: The world (link) it lives in.
        name: Advertised complete local name.
        address: Its random static address, ``"C0:..."``.
        samples: (n, 6) acceleration g then angular rate deg/s at 25 Hz.
        loop: Replay the recording forever (else stop streaming at its end).
        clock_offset_s: Offset of its clock from the world's start.
        drift_ppm: Clock drift, parts per million.
        drop_fraction: Share of samples not sent (lost on air), 0..1.
        garbage_fraction: Share of notifications followed by a malformed one.
        fault_seed: Seed of the fault injection.
    """

    kind = "generic"

    def __init__(self, world: "EmulatedBleWorld", name: str, address: str,
                 samples: np.ndarray, *, loop: bool = True, clock_offset_s: float = 0.0,
                 drift_ppm: float = 0.0, drop_fraction: float = 0.0,
                 garbage_fraction: float = 0.0, fault_seed: int = 0) -> None:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[1] != 6 or len(samples) < 2:
            raise DataError(f"emulated IMU {name}: samples of shape {samples.shape}; "
                            "expected (n >= 2, 6)")
        self.world = world
        self.name = name
        self.address = address
        self.samples = samples
        self.loop = loop
        self.clock_offset_s = clock_offset_s
        self.drift = drift_ppm * 1e-6
        for label, share in (("drop_fraction", drop_fraction), ("garbage_fraction", garbage_fraction)):
            if not 0.0 <= share <= 1.0:
                raise ConfigError(f"emulated IMU {name}: {label}={share!r}; expected 0 to 1")
        self.drop_fraction = drop_fraction
        self.garbage_fraction = garbage_fraction
        self.fault_rng = np.random.default_rng(fault_seed)
        self.dropped = 0
        self.garbage_sent = 0
        self.rate_hz = SAMPLE_RATE_HZ
        self.sent = 0
        self.index = 0  # samples taken (the sequence counter)
        self.position = 0.0  # where in the 25 Hz recording the clock is
        self.finished = False
        self.advertise_enabled = True
        self._resume_at = 0.0
        self._task: Optional[asyncio.Task] = None
        self._restart_task: Optional[asyncio.Task] = None
        self.controller = Controller(name, link=world.link, public_address=address)
        self.device = Device(name=name, address=Address(address),
                             host=Host(self.controller, AsyncPipeSink(self.controller)))
        self.device.on("connection", lambda connection: connection.on(
            "disconnection", self._on_disconnection))
        self._build_gatt()

    # -- to override ------------------------------------------------------
    def _build_gatt(self) -> None:
        raise NotImplementedError

    def _advertising_data(self) -> bytes:
        return bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
        ]))

    async def _emit(self, index: int, t_s: float, values: np.ndarray) -> None:
        raise NotImplementedError

    def _streaming(self) -> bool:
        return True

    async def _finish(self) -> None:
        """Called once when a non-looping recording ends."""

    async def _emit_garbage(self) -> None:
        """Send one malformed notification (fault injection)."""

    # -- lifecycle ----------------------------------------------------------
    async def start(self, clock_start: Optional[float] = None) -> None:
        """Power on, advertise and start the sampling clock.

        Args:
            clock_start: ``time.monotonic()`` instant its clock counts from
                (the world passes one instant to all its IMUs); default now.
        """
        await self.power_on()
        self.start_clock(clock_start)

    async def power_on(self) -> None:
        """Power on and advertise, without starting the sampling clock."""
        await self.device.power_on()
        await self._advertise()

    def start_clock(self, clock_start: Optional[float] = None) -> None:
        """Start sampling, counting from ``clock_start`` (monotonic; default now)."""
        self._task = asyncio.create_task(
            self._sample_loop(time.monotonic() if clock_start is None else clock_start),
            name=f"emu-{self.name}")

    async def _advertise(self) -> None:
        if self.device.is_advertising or not self.advertise_enabled:
            return
        await self.device.start_advertising(
            advertising_data=self._advertising_data(),
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS)

    async def stop(self) -> None:
        """Stop sampling, disconnect and stop advertising."""
        for task in (self._task, self._restart_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self.advertise_enabled = False
        for connection in list(self.device.connections.values()):
            try:
                await connection.disconnect()
            except Exception:
                pass
        try:
            if self.device.is_advertising:
                await self.device.stop_advertising()
        except Exception:
            pass

    def _on_disconnection(self, *args: Any) -> None:
        delay = max(0.0, self._resume_at - time.monotonic())
        self._restart_task = asyncio.create_task(self._restart_advertising(delay))

    async def _restart_advertising(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            await self._advertise()
        except Exception as exc:  # the device may be shutting down
            logger.debug("%s: advertising restart failed: %s", self.name, exc)

    async def drop(self, down_s: float = 0.0) -> None:
        """Drop every connection (as if out of range) and stay silent ``down_s`` s."""
        self._resume_at = time.monotonic() + down_s
        for connection in list(self.device.connections.values()):
            await connection.disconnect()

    # -- sampling -----------------------------------------------------------
    def sample_at(self, pos: float) -> np.ndarray:
        """Value at recording position ``pos`` (in 25 Hz samples), interpolated."""
        n = len(self.samples)
        if self.loop:
            pos = pos % n
        pos = min(pos, n - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1) if not self.loop else (lo + 1) % n
        frac = pos - lo
        return self.samples[lo] * (1 - frac) + self.samples[hi] * frac

    def _recording_done(self, pos: float) -> bool:
        return not self.loop and pos > len(self.samples) - 1 + 1e-9

    async def _sample_loop(self, start: float) -> None:
        speed = self.world.speed
        t_dev = 0.0  # device clock seconds since start
        while True:
            period = 1.0 / self.rate_hz
            t_dev += period
            wait = start + t_dev / speed - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._recording_done(self.position):
                try:
                    await self._finish()
                except Exception as exc:
                    logger.debug("%s: final flush failed: %s", self.name, exc)
                self.finished = True
                return
            values = self.sample_at(self.position)
            t_s = self.clock_offset_s + t_dev * (1.0 + self.drift)
            lost = self.drop_fraction and self.fault_rng.random() < self.drop_fraction
            if lost:
                self.dropped += 1
            if self.device.connections and self._streaming() and not lost:
                try:
                    await self._emit(self.index, t_s, values)
                    if self.garbage_fraction and self.fault_rng.random() < self.garbage_fraction:
                        await self._emit_garbage()
                except Exception as exc:  # connection went away meanwhile
                    logger.debug("%s: notify failed: %s", self.name, exc)
            self.index += 1
            self.position += SAMPLE_RATE_HZ / self.rate_hz


class LiftGuardImuPeripheral(EmulatedPeripheral):
    """An IMU speaking our profile (:mod:`edge.sources.ble_profile`).

    Args:
        site: Body site; advertised as ``LG-IMU-<site>`` unless
            ``advertise_site`` is False (then ``LG-IMU-<serial>``; the site is
            only in the Site characteristic).
    """

    kind = "liftguard"

    def __init__(self, world: "EmulatedBleWorld", site: str, address: str,
                 samples: np.ndarray, *, advertise_site: bool = True, serial: str = "0000",
                 **kwargs: Any) -> None:
        self.site = site
        self.config = ble_profile.ImuConfig(rate_hz=int(SAMPLE_RATE_HZ), batch=1, streaming=True)
        self._pending: List[ble_profile.ImuRecord] = []
        self.config_writes: List[ble_profile.ImuConfig] = []
        name = ble_profile.advertised_name(site if advertise_site else serial)
        super().__init__(world, name, address, samples, **kwargs)

    def _build_gatt(self) -> None:
        props = Characteristic.Properties
        self.data_char = Characteristic(
            ble_profile.DATA_CHAR_UUID, props.NOTIFY, Characteristic.READABLE, b"")
        self.config_char = Characteristic(
            ble_profile.CONFIG_CHAR_UUID, props.READ | props.WRITE,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(read=lambda _c: ble_profile.encode_config(self.config),
                                write=self._write_config))
        self.site_char = Characteristic(
            ble_profile.SITE_CHAR_UUID, props.READ | props.WRITE,
            Characteristic.READABLE | Characteristic.WRITEABLE,
            CharacteristicValue(read=lambda _c: self.site.encode(),
                                write=lambda _c, v: setattr(self, "site", bytes(v).decode())))
        self.info_char = Characteristic(
            ble_profile.INFO_CHAR_UUID, props.READ, Characteristic.READABLE,
            ble_profile.encode_info((1, 0, 0)))
        self.device.add_service(Service(ble_profile.SERVICE_UUID, [
            self.data_char, self.config_char, self.site_char, self.info_char]))

    def _advertising_data(self) -> bytes:
        return bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
            (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
             bytes(UUID(ble_profile.SERVICE_UUID).to_bytes(force_128=True))),
        ]))

    def _write_config(self, _connection: Any, value: bytes) -> None:
        config = ble_profile.decode_config(value)  # ProtocolError -> ATT error
        self.config_writes.append(config)
        if config.rate_hz != self.config.rate_hz:
            self.rate_hz = float(config.rate_hz)
        self.config = config
        self._pending = []

    def _streaming(self) -> bool:
        return self.config.streaming

    async def _emit(self, index: int, t_s: float, values: np.ndarray) -> None:
        t_us = int(round(t_s * 1e6)) & 0xFFFFFFFF
        self._pending.append(ble_profile.ImuRecord(index & 0xFFFF, t_us,
                                                   ble_profile.physical_to_raw(values)))
        if len(self._pending) >= self.config.batch:
            await self._send_pending()

    async def _finish(self) -> None:
        if self._pending and self.device.connections:
            await self._send_pending()

    async def _emit_garbage(self) -> None:
        # 1..17 bytes: never the 1 + 18 N of a well-formed notification.
        n = int(self.fault_rng.integers(1, 18))
        await self.device.notify_subscribers(self.data_char, self.fault_rng.bytes(n))
        self.garbage_sent += 1

    async def _send_pending(self) -> None:
        # Firmware caps a batch at what the smallest connection MTU carries.
        mtu = min((c.att_mtu for c in self.device.connections.values()), default=23)
        per = max(1, min(ble_profile.MAX_BATCH, (mtu - 3 - 1) // ble_profile.RECORD_SIZE))
        pending, self._pending = self._pending, []
        for k in range(0, len(pending), per):
            payload = ble_profile.encode_samples(pending[k:k + per])
            await self.device.notify_subscribers(self.data_char, payload)
            self.sent += 1


class WitMotionPeripheral(EmulatedPeripheral):
    """A WitMotion WT901BLECL look-alike (protocol in :mod:`edge.sources.witmotion`).

    Starts at the factory rate of 10 Hz; the rate command is honoured only
    after the unlock command, as on the device. Angles are estimated from the
    recording: roll and pitch from gravity, yaw by integrating z rate.
    """

    kind = "witmotion"

    def __init__(self, world: "EmulatedBleWorld", name: str, address: str,
                 samples: np.ndarray, **kwargs: Any) -> None:
        self.commands: List[bytes] = []
        self.unlocked = False
        self.saved = False
        self._yaw = 0.0
        super().__init__(world, name, address, samples, **kwargs)
        self.rate_hz = 10.0

    def _build_gatt(self) -> None:
        props = Characteristic.Properties
        self.notify_char = Characteristic(
            witmotion.NOTIFY_CHAR_UUID, props.NOTIFY | props.READ, Characteristic.READABLE, b"")
        self.write_char = Characteristic(
            witmotion.WRITE_CHAR_UUID, props.WRITE | props.WRITE_WITHOUT_RESPONSE,
            Characteristic.WRITEABLE, CharacteristicValue(write=self._on_command))
        self.device.add_service(Service(witmotion.SERVICE_UUID,
                                        [self.notify_char, self.write_char]))

    def _on_command(self, _connection: Any, value: bytes) -> None:
        value = bytes(value)
        self.commands.append(value)
        if len(value) != 5 or value[:2] != b"\xff\xaa":
            return
        register, data = value[2], value[3] | (value[4] << 8)
        if value == witmotion.UNLOCK_COMMAND:
            self.unlocked = True
        elif register == 0x00 and data == 0:
            self.saved = True
            self.unlocked = False
        elif register == witmotion.RATE_REGISTER and self.unlocked:
            for rate, code in witmotion.RATE_CODES.items():
                if code == data:
                    self.rate_hz = float(rate)

    async def _emit(self, index: int, t_s: float, values: np.ndarray) -> None:
        acc, gyro = values[:3], values[3:]
        roll = math.degrees(math.atan2(acc[1], acc[2]))
        pitch = math.degrees(math.atan2(-acc[0], math.hypot(acc[1], acc[2])))
        self._yaw = (self._yaw + gyro[2] / self.rate_hz + 180.0) % 360.0 - 180.0
        packet = witmotion.encode_packet(acc, gyro, [roll, pitch, self._yaw])
        await self.device.notify_subscribers(self.notify_char, packet)
        self.sent += 1

    async def _emit_garbage(self) -> None:
        n = int(self.fault_rng.integers(1, 20))
        await self.device.notify_subscribers(self.notify_char, self.fault_rng.bytes(n))
        self.garbage_sent += 1


# ---------------------------------------------------------------------------
# The central side and the bleak backends
# ---------------------------------------------------------------------------
class BumbleCentral:
    """The hub's adapter: a bumble Device shared by every bleak client/scanner.

    Scanning is reference-counted (several BleakScanners may run at once) and
    connection attempts are serialized, as bumble allows one pending LE
    connection at a time (like BlueZ).
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.connect_lock = asyncio.Lock()
        self._scan_users = 0
        self._scan_lock = asyncio.Lock()
        self._listeners: List[Callable[[Any], None]] = []
        device.on("advertisement", self._on_advertisement)

    def _on_advertisement(self, advertisement: Any) -> None:
        for listener in list(self._listeners):
            listener(advertisement)

    async def start_scan(self, listener: Callable[[Any], None]) -> None:
        """Deliver advertisements to ``listener`` until :meth:`stop_scan`."""
        async with self._scan_lock:
            self._listeners.append(listener)
            self._scan_users += 1
            if self._scan_users == 1:
                await self.device.start_scanning(filter_duplicates=False)

    async def stop_scan(self, listener: Callable[[Any], None]) -> None:
        """Stop delivering to ``listener``; stop scanning when nobody listens."""
        async with self._scan_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
                self._scan_users -= 1
                if self._scan_users == 0:
                    await self.device.stop_scanning()


def _normalize(uuid: Any) -> str:
    from bleak.uuids import normalize_uuid_str

    raw = bytes(uuid.to_bytes(force_128=True))[::-1].hex()
    return normalize_uuid_str(f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}")


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend over a :class:`BumbleCentral` (bound per world).

    Use the class from :attr:`EmulatedBleWorld.scanner_backend` (or
    :func:`open_remote_central`), which carries the central to use.
    """

    central: Optional[BumbleCentral] = None

    def __init__(self, detection_callback: Any = None, service_uuids: Optional[List[str]] = None,
                 scanning_mode: str = "active", **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        if self.central is None:
            raise BleakError("BumbleScanner is not bound to an emulated world; use "
                             "EmulatedBleWorld.scanner_backend")

    def _on_advertisement(self, advertisement: Any) -> None:
        data = advertisement.data
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or \
            data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        uuids: List[str] = []
        for tag in (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                    AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS):
            for uuid in data.get(tag) or []:
                uuids.append(_normalize(uuid))
        if not self.is_allowed_uuid(uuids):
            return
        tx_power = data.get(AdvertisingData.TX_POWER_LEVEL)
        adv = AdvertisementData(
            local_name=name, manufacturer_data={}, service_data={}, service_uuids=uuids,
            tx_power=tx_power if isinstance(tx_power, int) else None,
            rssi=int(advertisement.rssi), platform_data=(advertisement,))
        address = advertisement.address.to_string(False)
        device = self.create_or_update_device(address, address, name, advertisement, adv)
        self.call_detection_callbacks(device, adv)

    async def start(self) -> None:
        """Start delivering advertisements."""
        self.seen_devices = {}
        await self.central.start_scan(self._on_advertisement)

    async def stop(self) -> None:
        """Stop delivering advertisements."""
        await self.central.stop_scan(self._on_advertisement)


class BumbleClient(BaseBleakClient):
    """bleak client backend over a :class:`BumbleCentral` (bound per world)."""

    central: Optional[BumbleCentral] = None

    def __init__(self, address_or_ble_device: Any, *, disconnected_callback: Any = None,
                 timeout: float = 10.0, services: Any = None, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback,
                         timeout=timeout)
        if self.central is None:
            raise BleakError("BumbleClient is not bound to an emulated world; use "
                             "EmulatedBleWorld.client_backend")
        self._connection: Any = None
        self._peer: Optional[Peer] = None
        self._closing = False
        self._name = getattr(address_or_ble_device, "name", None) or self.address
        self._subscriptions: Dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        """The advertised name when known, else the address."""
        return self._name

    @property
    def mtu_size(self) -> int:
        """The ATT MTU of the connection (23 until exchanged)."""
        return int(self._connection.att_mtu) if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        """Whether the LE connection is up."""
        return self._connection is not None

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        """Connect, then discover services, characteristics and descriptors."""
        self._closing = False
        async with self.central.connect_lock:
            try:
                connection = await asyncio.wait_for(
                    self.central.device.connect(Address(self.address), timeout=self._timeout),
                    self._timeout + 1.0)
            except asyncio.TimeoutError:
                raise BleakError(f"connection to {self.address} timed out after "
                                 f"{self._timeout:g} s") from None
            except Exception as exc:
                raise BleakError(f"connection to {self.address} failed: {exc}") from None
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        try:
            self._peer = Peer(connection)
            # BlueZ exchanges the MTU on connect; do the same (up to 247).
            await self._peer.request_mtu(247)
            await self._peer.discover_all()
            self.services = self._build_services()
        except Exception:
            await self.disconnect()
            raise

    def _on_disconnection(self, *_args: Any) -> None:
        self._connection = None
        self._peer = None
        self.services = None
        if not self._closing and self._disconnected_callback is not None:
            self._disconnected_callback()

    def _build_services(self) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service_proxy in self._peer.services:
            service = BleakGATTService(service_proxy, service_proxy.handle,
                                       _normalize(service_proxy.uuid))
            collection.add_service(service)
            for char_proxy in service_proxy.characteristics:
                props = [n for bit, n in _PROPERTY_NAMES if int(char_proxy.properties) & bit]
                char = BleakGATTCharacteristic(
                    char_proxy, char_proxy.handle, _normalize(char_proxy.uuid), props,
                    lambda: self.mtu_size - 3, service)
                collection.add_characteristic(char)
                for desc_proxy in char_proxy.descriptors:
                    collection.add_descriptor(BleakGATTDescriptor(
                        desc_proxy, desc_proxy.handle, _normalize(desc_proxy.type), char))
        return collection

    def _require(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def disconnect(self) -> None:
        """Disconnect (no disconnected callback, as bleak specifies)."""
        self._closing = True
        connection = self._connection
        if connection is None:
            return
        try:
            await connection.disconnect()
        except Exception as exc:
            logger.debug("disconnect %s: %s", self.address, exc)
        self._connection = None
        self._peer = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pairing is not emulated."""
        raise BleakError("pairing is not supported by the bumble emulation backend")

    async def unpair(self) -> None:
        """Pairing is not emulated."""
        raise BleakError("pairing is not supported by the bumble emulation backend")

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        """Read a characteristic's value."""
        peer = self._require()
        return bytearray(await peer.read_value(characteristic.obj))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        """Read a descriptor's value."""
        peer = self._require()
        return bytearray(await peer.read_value(descriptor.obj))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any,
                              response: bool) -> None:
        """Write a characteristic, with or without response."""
        peer = self._require()
        await peer.write_value(characteristic.obj, bytes(data), with_response=bool(response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        """Write a descriptor (with response)."""
        peer = self._require()
        await peer.write_value(descriptor.obj, bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        """Subscribe (CCCD write) and deliver each notification to ``callback``."""
        peer = self._require()

        def on_value(value: bytes) -> None:
            callback(bytearray(value))

        self._subscriptions[characteristic.handle] = on_value
        await peer.subscribe(characteristic.obj, on_value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe."""
        peer = self._require()
        subscriber = self._subscriptions.pop(characteristic.handle, None)
        await peer.unsubscribe(characteristic.obj, subscriber)


def bind_backends(central: BumbleCentral) -> "tuple[type, type]":
    """Return (scanner backend class, client backend class) bound to ``central``."""
    scanner = type("BumbleScanner", (BumbleScanner,), {"central": central})
    client = type("BumbleClient", (BumbleClient,), {"central": central})
    return scanner, client


# ---------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------
class EmulatedBleWorld:
    """One LocalLink with N emulated IMUs and the hub's central.

    Example::

        async with EmulatedBleWorld() as world:
            world.add_liftguard_imus(samples36)          # six LG-IMU-<site>
            await world.start()
            async with BleImuSource("ble://?name_prefix=LG-IMU",
                                    backend=world.client_backend,
                                    scanner_backend=world.scanner_backend) as src:
                ...
            await world.drop("Back", down_s=0.5)          # disconnect injection

    Args:
        speed: Sample clock speed-up (1 = real time).
        seed: Seed of the per-device clock offsets.
    """

    def __init__(self, *, speed: float = 1.0, seed: int = 0) -> None:
        if speed <= 0:
            raise ConfigError(f"emulation speed {speed!r}; expected > 0")
        self.speed = float(speed)
        self.rng = np.random.default_rng(seed)
        self.link = LocalLink()
        self.peripherals: List[EmulatedPeripheral] = []
        self._central_controller = Controller("hub", link=self.link,
                                              public_address="C0:4C:47:FF:FF:01")
        self._central_device = Device(
            name="LiftGuard hub", address=Address("C0:4C:47:FF:FF:01"),
            host=Host(self._central_controller, AsyncPipeSink(self._central_controller)))
        self.central = BumbleCentral(self._central_device)
        self.scanner_backend, self.client_backend = bind_backends(self.central)
        self._started = False
        self._servers: List[Any] = []
        self._scheduled: List[asyncio.Task] = []

    # -- building -------------------------------------------------------------
    def add_liftguard_imu(self, site: str, samples: np.ndarray, *, address: Optional[str] = None,
                          advertise_site: bool = True, **kwargs: Any) -> LiftGuardImuPeripheral:
        """Add one IMU of our profile for ``site`` streaming ``samples`` (n, 6)."""
        if site not in SENSORS:
            raise ConfigError(f"emulated IMU site {site!r}; expected one of {', '.join(SENSORS)}")
        index = len(self.peripherals) + 1
        kwargs.setdefault("clock_offset_s", float(self.rng.uniform(0, 100)))
        p = LiftGuardImuPeripheral(self, site, address or _address_for(index), samples,
                                   advertise_site=advertise_site, serial=f"{index:04X}", **kwargs)
        self.peripherals.append(p)
        return p

    def add_liftguard_imus(self, samples36: np.ndarray, sites: Sequence[str] = SENSORS,
                           **kwargs: Any) -> List[LiftGuardImuPeripheral]:
        """Add one IMU per site fed from a (n, 36) recording."""
        streams = sensor_streams(samples36)
        return [self.add_liftguard_imu(s, streams[s], **kwargs) for s in sites]

    def add_witmotion(self, samples: np.ndarray, *, name: Optional[str] = None,
                      address: Optional[str] = None, **kwargs: Any) -> WitMotionPeripheral:
        """Add one WitMotion WT901BLECL look-alike streaming ``samples`` (n, 6)."""
        index = len(self.peripherals) + 1
        p = WitMotionPeripheral(self, name or f"WT901BLE{66 + index}",
                                address or _address_for(index, "C0:57:49:00"), samples, **kwargs)
        self.peripherals.append(p)
        return p

    def peripheral(self, key: str) -> EmulatedPeripheral:
        """Find a peripheral by site, name or address.

        Raises:
            ConfigError: If none matches.
        """
        for p in self.peripherals:
            if key in (getattr(p, "site", None), p.name, p.address):
                return p
        raise ConfigError(f"no emulated peripheral {key!r}; expected a site, name or address of "
                          + ", ".join(p.name for p in self.peripherals))

    # -- running ----------------------------------------------------------------
    async def start(self) -> None:
        """Power on the central and every peripheral; start advertising and clocks."""
        if not self._started:
            await self._central_device.power_on()
            self._started = True
        # Every IMU powers on, then all clocks start at one instant (offsets
        # between them are `clock_offset_s`, not start-up order).
        new = [p for p in self.peripherals if p._task is None]
        for p in new:
            await p.power_on()
        clock_start = time.monotonic()
        for p in new:
            p.start_clock(clock_start)

    async def drop(self, key: str, down_s: float = 0.0) -> None:
        """Disconnect one peripheral from its side and keep it silent ``down_s`` s."""
        await self.peripheral(key).drop(down_s)

    def schedule_drop(self, key: str, at_s: float, down_s: float) -> asyncio.Task:
        """Drop ``key`` ``at_s`` seconds from now for ``down_s`` seconds (a task)."""
        peripheral = self.peripheral(key)

        async def later() -> None:
            await asyncio.sleep(at_s)
            await peripheral.drop(down_s)

        task = asyncio.create_task(later(), name=f"drop-{key}")
        self._scheduled.append(task)
        return task

    async def serve_central_hci(self, spec: str = "tcp-server:127.0.0.1:0") -> Any:
        """Expose a hub controller on this link over an HCI transport (cross-process).

        Another process opens the matching client spec with
        :func:`open_remote_central`. Only ``tcp-server:`` gets its bound port
        reported back (``.port``); other bumble server specs work too.

        Returns:
            The bumble transport (``.close()`` it when done).
        """
        from bumble.transport import open_transport

        transport = await open_transport(spec)
        Controller("hub-remote", host_source=transport.source, host_sink=transport.sink,
                   link=self.link, public_address="C0:4C:47:FF:FF:02")
        self._servers.append(transport)
        return transport

    async def close(self) -> None:
        """Stop every peripheral and server."""
        for task in self._scheduled:
            task.cancel()
        for p in self.peripherals:
            await p.stop()
        for t in self._servers:
            try:
                await t.close()
            except Exception:
                pass
        self._servers = []

    async def __aenter__(self) -> "EmulatedBleWorld":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def open_remote_central(spec: str) -> "tuple[type, type, Any]":
    """Connect to a world's :meth:`EmulatedBleWorld.serve_central_hci` from another process.

    Args:
        spec: bumble transport spec, e.g. ``tcp-client:127.0.0.1:8765``.

    Returns:
        (scanner backend class, client backend class, transport). Pass the
        classes to bleak or to ``BleImuSource(backend=..., scanner_backend=...)``.

    Raises:
        SourceError: If the transport cannot be opened.
    """
    from bumble.transport import open_transport

    try:
        transport = await open_transport(spec)
    except Exception as exc:
        raise SourceError(f"emulated BLE link {spec!r} cannot be opened: {exc}; expected a "
                          "running `host emulate --ble` serving that spec") from None
    device = Device.with_hci("LiftGuard hub (remote)", Address("C0:4C:47:FF:FF:03"),
                             transport.source, transport.sink)
    await device.power_on()
    scanner, client = bind_backends(BumbleCentral(device))
    return scanner, client, transport


# ---------------------------------------------------------------------------
# Serving a world to another process
# ---------------------------------------------------------------------------
def transport_port(transport: Any) -> Optional[int]:
    """The bound TCP port of a ``tcp-server:`` transport (None for other kinds)."""
    server = getattr(transport, "server", None)
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else None


async def serve_ble(samples36: np.ndarray, *, spec: str = "tcp-server:127.0.0.1:0",
                    sites: Sequence[str] = SENSORS, witmotion_sites: Sequence[str] = (),
                    speed: float = 1.0, seed: int = 0, drop_fraction: float = 0.0,
                    garbage_fraction: float = 0.0, drift_ppm: float = 0.0,
                    disconnects: Sequence["tuple[str, float, float]"] = (),
                    on_ready: Optional[Callable[[EmulatedBleWorld, Optional[int]], None]] = None,
                    stop: Optional[asyncio.Event] = None) -> None:
    """Run six (or the given) emulated IMUs and serve the hub's controller over HCI.

    The world streams ``samples36`` (n, 36), one site per IMU: LiftGuard
    profile IMUs for ``sites`` and WitMotion look-alikes for
    ``witmotion_sites``. A hub in another process reaches them with
    ``open_remote_central("tcp-client:HOST:PORT")``. Runs until ``stop`` is
    set (or forever).

    Args:
        drop_fraction: Share of samples each IMU loses on air (seeded).
        garbage_fraction: Share of notifications followed by a malformed one.
        drift_ppm: Clock drift of each IMU, parts per million (alternating sign).
        disconnects: ``(site, at_s, down_s)``: drop that IMU at ``at_s`` seconds
            after start for ``down_s`` seconds.
        on_ready: Called with the world and the bound TCP port once serving.
    """
    streams = sensor_streams(samples36)
    world = EmulatedBleWorld(speed=speed, seed=seed)
    for k, site in enumerate(list(sites) + list(witmotion_sites)):
        faults = dict(drop_fraction=drop_fraction, garbage_fraction=garbage_fraction,
                      drift_ppm=drift_ppm * (1 if k % 2 == 0 else -1), fault_seed=seed + k)
        if k < len(sites):
            world.add_liftguard_imu(site, streams[site], **faults)
        else:
            world.add_witmotion(streams[site], name=f"WT901BLE-{site}", **faults)
    async with world:
        transport = await world.serve_central_hci(spec)
        await world.start()
        for site, at_s, down_s in disconnects:
            key = site if site in sites else f"WT901BLE-{site}"
            world.schedule_drop(key, at_s, down_s)
        if on_ready is not None:
            on_ready(world, transport_port(transport))
        await (stop.wait() if stop is not None else asyncio.get_running_loop().create_future())


def parse_disconnect(text: str) -> "tuple[str, float, float]":
    """Parse ``SITE@AT:DOWN`` (e.g. ``Back@5:2``) into (site, at_s, down_s).

    Raises:
        ConfigError: If the text is not in that form or the site is unknown.
    """
    try:
        site, rest = text.split("@", 1)
        at_s, down_s = (float(x) for x in rest.split(":", 1))
    except ValueError:
        raise ConfigError(f"disconnect {text!r}; expected SITE@AT:DOWN, e.g. Back@5:2") from None
    if site not in SENSORS or at_s < 0 or down_s < 0:
        raise ConfigError(f"disconnect {text!r}; expected a site of {', '.join(SENSORS)} "
                          "and non-negative seconds")
    return site, at_s, down_s


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m host.ble_emulation``: serve emulated IMUs to another process.

    Prints ``serving tcp-client:HOST:PORT`` on stdout once ready (the spec the
    hub side passes to :func:`open_remote_central`), then runs until killed.
    """
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m host.ble_emulation", description=main.__doc__)
    parser.add_argument("--data", required=True, help="trial CSV or data set folder to stream")
    parser.add_argument("--trial", help="trial id within a data set (default: the first)")
    parser.add_argument("--spec", default="tcp-server:127.0.0.1:0", help="bumble HCI server spec")
    parser.add_argument("--sites", default=",".join(SENSORS), help="LiftGuard IMU sites")
    parser.add_argument("--witmotion-sites", default="", help="WitMotion IMU sites")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drop-fraction", type=float, default=0.0,
                        help="share of samples lost on air per IMU (0..1)")
    parser.add_argument("--garbage-fraction", type=float, default=0.0,
                        help="share of notifications followed by a malformed one (0..1)")
    parser.add_argument("--drift-ppm", type=float, default=0.0, help="IMU clock drift, ppm")
    parser.add_argument("--disconnect", action="append", default=[], metavar="SITE@AT:DOWN",
                        help="drop SITE AT seconds after start for DOWN seconds (repeatable)")
    args = parser.parse_args(argv)
    try:
        disconnects = [parse_disconnect(d) for d in args.disconnect]
        samples = load_recording(args.data, args.trial)
        sites = [s for s in args.sites.split(",") if s]
        wit = [s for s in args.witmotion_sites.split(",") if s]
        for s in sites + wit:
            if s not in SENSORS:
                raise ConfigError(f"site {s!r}; expected one of {', '.join(SENSORS)}")
    except (ConfigError, DataError) as exc:
        print(f"ble_emulation: error: {exc}", file=sys.stderr)
        return 1
    host = args.spec.split(":")[1] if args.spec.count(":") >= 2 else "127.0.0.1"

    def ready(_world: EmulatedBleWorld, port: Optional[int]) -> None:
        print(f"serving tcp-client:{host}:{port}" if port else f"serving {args.spec}", flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_ble(samples, spec=args.spec, sites=sites, witmotion_sites=wit,
                        speed=args.speed, seed=args.seed, drop_fraction=args.drop_fraction,
                        garbage_fraction=args.garbage_fraction, drift_ppm=args.drift_ppm,
                        disconnects=disconnects, on_ready=ready, stop=stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
