"""Six LiftGuard BLE IMUs through bleak, one client each (``ble://``).

URL format::

    ble://?Side=C0:4C:47:00:00:01&LtWt=C0:4C:47:00:00:02&...&Thig=C0:4C:47:00:00:06
    ble://?name_prefix=LG-IMU
    ble://?name_prefix=LG-IMU&sensors=Back,Thig&timeout=20

Query parameters (all optional except that one of the two forms is needed):

============  ==============================================================
``<Site>=``   Bluetooth address of the IMU strapped to that site (a name in
              :data:`edge.layout.SENSORS`: Side, LtWt, RtWt, Back, UArm, Thig).
              Sites given by address are the sensors the source expects.
``name_prefix``  Discover by advertised name instead. The site is taken from
              the name (``LG-IMU-Back``) or, for an unassigned name such as
              ``LG-IMU-00A3``, from the Site characteristic after connecting.
``sensors``   Comma-separated sites expected in name mode (default all six).
``timeout``   Seconds to wait for discovery and connection (default 10).
``rate``      Output rate written to each IMU's config characteristic (25).
``batch``     Samples per notification requested (1..13, default 1).
``backoff``   First reconnect delay in seconds, doubled up to ``backoff_max``
              (defaults 0.5 and 30) with 20% seeded jitter.
``stall``     Seconds a connected IMU may stay silent before it is reported
              ``lost`` and reconnected (default 5; 0 disables).
``adapter``   BlueZ adapter, e.g. ``hci1`` (default: the system default).
``seed``      Seed of the jitter (default 0).
============  ==============================================================

Behaviour: :meth:`BleImuSource.open` discovers and connects the expected
sensors concurrently and returns once all are streaming, or after
``2 * timeout + 1`` seconds (one discovery plus one connection) with at least
one streaming (the others keep retrying in the background and are reported
``lost``). It raises
:class:`edge.errors.SourceError` when none could be reached, naming each
sensor's last failure, and says so plainly when there is no BlueZ/D-Bus.

After a disconnect (out of range, battery, BlueZ hiccup) the sensor yields
``SourceStatus(sensor, "lost")``, then, per attempt, ``"reconnecting"``;
it is *rediscovered* by a fresh scan (BlueZ forgets a device that went away)
and yields ``"connected"`` once notifications flow again. The other sensors
keep streaming throughout. A sensor's readings come only between its
``connected`` and its next ``lost``: samples that arrive while it is being
subscribed and configured are held and follow the ``connected`` status;
stragglers after a loss are dropped and counted (``<site>.outside_link``).
Connection attempts are serialized (BlueZ answers ``InProgress`` to
concurrent connects).

The production path is bleak on BlueZ. ``backend=`` (a
:class:`bleak.backends.client.BaseBleakClient` subclass) and
``scanner_backend=`` (a :class:`bleak.backends.scanner.BaseBleakScanner`
subclass) are passed straight to bleak, which is how the tests run this same
code over bumble's emulated controllers (:mod:`host.ble_emulation`); this
module never imports bumble.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import ConfigError, ProtocolError, SourceError
from ..layout import SENSORS
from . import ble_profile
from .base import ImuSource, SensorReading, SourceEvent, SourceStatus

logger = logging.getLogger(__name__)

_ADDRESS_CHARS = set("0123456789abcdefABCDEF:-")


def _one(query: Dict[str, List[str]], key: str, default: Optional[str]) -> Optional[str]:
    values = query.get(key)
    return values[-1] if values else default


def _number(url: str, query: Dict[str, List[str]], key: str, default: float,
            low: float, high: float, kind: Callable[[str], float] = float) -> float:
    raw = _one(query, key, None)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"source URL {url!r}: {key}={raw!r} is not a number; "
                          f"expected {low:g} to {high:g}") from None
    if not low <= value <= high:
        raise ConfigError(f"source URL {url!r}: {key}={raw!r} is out of range; "
                          f"expected {low:g} to {high:g}")
    return value


def adapter_missing_hint(exc: BaseException) -> Optional[str]:
    """Return a one-line explanation if ``exc`` means there is no usable BlueZ.

    bleak raises ``FileNotFoundError`` (no D-Bus system bus socket), a
    ``BleakDBusError`` for ``org.bluez`` not provided, or ``BleakError`` with
    "No Bluetooth adapters found"; all mean this machine cannot do BLE.
    """
    text = f"{type(exc).__name__}: {exc}"
    markers = ("FileNotFoundError", "org.bluez", "No Bluetooth adapters",
               "system_bus_socket", "ServiceUnknown", "No such file or directory")
    if any(m in text for m in markers):
        return ("no Bluetooth adapter usable here (BlueZ / the D-Bus system bus is missing: "
                f"{text}); on a hub, install and start bluez; without a radio use the "
                "bumble emulation (host scan --emulated N)")
    return None


class _SensorLink:
    """State of one IMU's connection (one bleak client)."""

    def __init__(self, site: str, address: Optional[str]) -> None:
        self.site = site
        self.address = address
        self.name: Optional[str] = None
        self.state = "idle"
        self.client: Any = None
        self.disconnected = asyncio.Event()
        self.connected_once = asyncio.Event()
        self.last_error = ""
        self.adapter_missing = False
        self.connects = 0
        self.last_data = 0.0
        self.streaming = False
        self.held: List[SensorReading] = []
        self.samples = 0
        self.local_seq = 0
        self.unwrapper = ble_profile.SequenceUnwrapper()


async def _drop_client(link: "_SensorLink") -> None:
    """Disconnect a link's bleak client, if any, ignoring errors of a link already gone."""
    if link.client is not None:
        try:
            await link.client.disconnect()
        except Exception:  # the device is gone or BlueZ forgot it; nothing to report
            pass
        link.client = None


class BleMultiSource(ImuSource):
    """Shared machinery of the BLE sources: N bleak clients, one per site.

    Subclasses provide :meth:`_matches` (is an advertisement one of ours, and
    which site), :meth:`_setup` (subscribe and configure after connecting) and
    the notification decoding. Handles discovery, serialized connects,
    disconnect detection, rediscovery with backoff and the event queue.

    Args:
        url: The source URL.
        backend: bleak client backend class (None: the platform's, BlueZ).
        scanner_backend: bleak scanner backend class (None: the platform's).
    """

    scheme = "ble"
    default_prefix = ble_profile.NAME_PREFIX

    def __init__(self, url: str, *, backend: Optional[type] = None,
                 scanner_backend: Optional[type] = None) -> None:
        super().__init__(url)
        self.backend = backend
        self.scanner_backend = scanner_backend
        parts = urlsplit(url)
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"source URL {url!r}: unexpected {parts.netloc + parts.path!r} "
                              f"before '?'; expected {self.scheme}://?Site=ADDRESS&... or "
                              f"{self.scheme}://?name_prefix=PREFIX")
        query = parse_qs(parts.query, keep_blank_values=True)
        known = set(SENSORS) | self._known_options()
        for key in query:
            if key not in known:
                raise ConfigError(f"source URL {url!r}: unknown parameter {key!r}; expected a "
                                  f"site ({', '.join(SENSORS)}) or one of "
                                  f"{', '.join(sorted(self._known_options()))}")
        self.addresses: Dict[str, str] = {}
        for site in SENSORS:
            if site in query:
                address = query[site][-1].strip()
                if len(address.replace(":", "").replace("-", "")) != 12 or \
                        not set(address) <= _ADDRESS_CHARS:
                    # macOS gives UUIDs instead of addresses; accept those too.
                    if not (len(address) == 36 and address.count("-") == 4):
                        raise ConfigError(f"source URL {url!r}: {site}={address!r} is not a "
                                          "Bluetooth address; expected AA:BB:CC:DD:EE:FF")
                self.addresses[site] = address.upper()
        self.name_prefix = _one(query, "name_prefix", None)
        if not self.addresses and self.name_prefix is None:
            raise ConfigError(f"source URL {url!r}: no sensors given; expected Site=ADDRESS "
                              f"pairs (sites {', '.join(SENSORS)}) or name_prefix=PREFIX")
        if self.addresses and self.name_prefix is not None:
            raise ConfigError(f"source URL {url!r}: give either Site=ADDRESS pairs or "
                              "name_prefix, not both")
        if self.addresses:
            self.sites = [s for s in SENSORS if s in self.addresses]
        else:
            wanted = _one(query, "sensors", ",".join(SENSORS)) or ""
            self.sites = []
            for s in (x.strip() for x in wanted.split(",") if x.strip()):
                if s not in SENSORS:
                    raise ConfigError(f"source URL {url!r}: sensors contains {s!r}; expected "
                                      f"sites from {', '.join(SENSORS)}")
                self.sites.append(s)
            if not self.sites:
                raise ConfigError(f"source URL {url!r}: sensors is empty; expected at least one site")
        self.timeout = _number(url, query, "timeout", 10.0, 0.1, 3600.0)
        self.backoff = _number(url, query, "backoff", 0.5, 0.01, 600.0)
        self.backoff_max = _number(url, query, "backoff_max", 30.0, 0.01, 3600.0)
        self.stall = _number(url, query, "stall", 5.0, 0.0, 3600.0)
        self.adapter = _one(query, "adapter", None)
        self.seed = int(_number(url, query, "seed", 0, 0, 2**32 - 1, int))
        self._parse_options(url, query)
        self._rng = np.random.default_rng(self.seed)
        self._links: Dict[str, _SensorLink] = {s: _SensorLink(s, self.addresses.get(s))
                                               for s in self.sites}
        self._queue: "asyncio.Queue[Optional[SourceEvent]]" = asyncio.Queue()
        self._tasks: List[asyncio.Task] = []
        self._connect_lock = asyncio.Lock()
        self._claimed: Dict[str, str] = {}  # address -> site (name mode)
        self._closing = False
        self._opened = False

    # -- subclass hooks -------------------------------------------------
    def _known_options(self) -> set:
        return {"name_prefix", "sensors", "timeout", "rate", "batch", "backoff",
                "backoff_max", "stall", "adapter", "seed"}

    def _parse_options(self, url: str, query: Dict[str, List[str]]) -> None:
        self.rate_hz = int(_number(url, query, "rate", 25, 1, 1000, int))
        self.batch = int(_number(url, query, "batch", 1, 1, ble_profile.MAX_BATCH, int))

    def _site_from_advert(self, name: Optional[str]) -> Tuple[bool, Optional[str]]:
        """Return (is ours, site if the advertisement tells it)."""
        if not name or not name.startswith(self.name_prefix or self.default_prefix):
            return False, None
        return True, ble_profile.site_from_name(name)

    async def _site_from_device(self, client: Any) -> Optional[str]:
        """Read the site from a connected device (name mode, unassigned names)."""
        try:
            return ble_profile.decode_site(await client.read_gatt_char(ble_profile.SITE_CHAR_UUID))
        except Exception as exc:  # a device without the characteristic
            logger.debug("site read failed: %s", exc)
            return None

    async def _setup(self, link: _SensorLink, client: Any) -> None:
        """Subscribe and configure one connected LiftGuard IMU."""
        await client.start_notify(ble_profile.DATA_CHAR_UUID,
                                  lambda _char, data: self._on_data(link, data))
        config = ble_profile.ImuConfig(rate_hz=self.rate_hz, batch=self.batch, streaming=True)
        await client.write_gatt_char(ble_profile.CONFIG_CHAR_UUID,
                                     ble_profile.encode_config(config), response=True)

    def _on_data(self, link: _SensorLink, data: bytearray) -> None:
        t_host = time.monotonic()
        try:
            records = ble_profile.decode_samples(bytes(data))
        except ProtocolError as exc:
            self.count(f"{link.site}.bad_payload")
            logger.debug("%s: %s", link.site, exc)
            return
        for record in records:
            before = link.unwrapper.missed
            fresh, t_sensor = link.unwrapper.update(record)
            if not fresh:
                self.count(f"{link.site}.repeated")
                continue
            if link.unwrapper.missed > before:
                self.count(f"{link.site}.missed", link.unwrapper.missed - before)
            self._put_reading(link, record.seq, t_sensor, t_host, record.values())

    # -- shared machinery -----------------------------------------------
    def _put_reading(self, link: _SensorLink, seq: int, t_sensor: float, t_host: float,
                     values: np.ndarray) -> None:
        reading = SensorReading(link.site, seq, t_sensor, t_host, values)
        if not link.streaming:
            # Between connect and "connected" (subscribe, configure) hold the
            # readings so they follow the status; after a loss, drop them.
            if link.client is not None and len(link.held) < 1000:
                link.held.append(reading)
            else:
                self.count(f"{link.site}.outside_link")
            return
        link.samples += 1
        link.last_data = t_host
        self._queue.put_nowait(reading)

    def _status(self, site: Optional[str], state: str, detail: str = "") -> None:
        if site is not None:
            self._links[site].state = state
        self._queue.put_nowait(SourceStatus(site, state, detail, time.monotonic()))

    def _scanner_kwargs(self) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = {}
        if self.scanner_backend is not None:
            kwargs["backend"] = self.scanner_backend
        if self.adapter:
            kwargs["bluez"] = {"adapter": self.adapter}
        return kwargs

    async def _discover(self, link: _SensorLink, timeout: float) -> Any:
        """Scan until this site's device advertises; return its BLEDevice or None."""
        from bleak import BleakScanner

        if link.address is not None and link.site in self.addresses:
            wanted = link.address.upper()
            return await BleakScanner.find_device_by_filter(
                lambda d, ad: d.address.upper() == wanted, timeout=timeout,
                **self._scanner_kwargs())

        candidates: List[Any] = []
        found = asyncio.get_running_loop().create_future()

        def on_advert(device: Any, adv: Any) -> None:
            address = device.address.upper()
            ours, site = self._site_from_advert(adv.local_name or device.name)
            if not ours or found.done():
                return
            owner = self._claimed.get(address)
            if owner is not None and owner != link.site:
                return
            if site == link.site or owner == link.site:
                link.name = adv.local_name or device.name
                found.set_result(device)
            elif site is None and all(c.address != device.address for c in candidates):
                candidates.append(device)

        async with BleakScanner(on_advert, **self._scanner_kwargs()):
            try:
                return await asyncio.wait_for(asyncio.shield(found), timeout)
            except asyncio.TimeoutError:
                pass
        # Unassigned names: connect to each candidate and read its site.
        for device in candidates:
            if device.address.upper() in self._claimed:
                continue
            try:
                client = await self._connect(link, device)
                site = await self._site_from_device(client)
                await client.disconnect()
            except Exception as exc:  # busy or gone: try the next candidate
                logger.debug("%s: site read from %s failed: %s", link.site, device.address, exc)
                continue
            if site is not None:
                self._claimed.setdefault(device.address.upper(), site)
            if site == link.site:
                return device
        return None

    async def _connect(self, link: _SensorLink, device: Any) -> Any:
        from bleak import BleakClient

        def on_disconnect(_client: Any) -> None:
            link.streaming = False
            link.disconnected.set()

        kwargs: Dict[str, Any] = {"disconnected_callback": on_disconnect, "timeout": self.timeout}
        if self.backend is not None:
            kwargs["backend"] = self.backend
        if self.adapter:
            kwargs["bluez"] = {"adapter": self.adapter}
        client = BleakClient(device, **kwargs)
        async with self._connect_lock:
            await client.connect()
        return client

    def _next_delay(self, delay: float) -> float:
        jitter = 1.0 + 0.2 * (2.0 * float(self._rng.random()) - 1.0)
        return min(self.backoff_max, delay * jitter)

    async def _run_sensor(self, link: _SensorLink) -> None:
        """Connect, stream, and after each loss rediscover with backoff."""
        delay = self.backoff
        attempt = 0
        while not self._closing:
            attempt += 1
            if link.connects or attempt > 1:
                self._status(link.site, "reconnecting",
                             f"attempt {attempt}, rediscovering {link.address or 'by name'}")
            try:
                device = await self._discover(link, self.timeout)
                if device is None:
                    raise SourceError(f"{link.site}: {link.address or self.name_prefix!r} "
                                      f"not seen in {self.timeout:g} s of scanning")
                link.address = device.address.upper()
                link.name = link.name or getattr(device, "name", None)
                self._claimed[link.address] = link.site
                link.disconnected.clear()
                if link.held:
                    self.count(f"{link.site}.outside_link", len(link.held))
                    link.held = []
                client = await self._connect(link, device)
                link.client = client
                await self._setup(link, client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any adapter or GATT failure: retry later
                hint = adapter_missing_hint(exc)
                link.adapter_missing = hint is not None
                link.last_error = hint or f"{type(exc).__name__}: {exc}"
                self.count(f"{link.site}.connect_failures")
                await _drop_client(link)
                if link.state != "lost":
                    self._status(link.site, "lost", link.last_error)
                await asyncio.sleep(delay)
                delay = self._next_delay(delay * 2.0)
                continue
            link.connects += 1
            if link.connects > 1:
                self.count(f"{link.site}.reconnects")
            link.unwrapper = ble_profile.SequenceUnwrapper()
            delay = self.backoff
            attempt = 0
            self._status(link.site, "connected", f"{link.address} ({link.name or '?'})")
            link.streaming = True
            held, link.held = link.held, []
            for reading in held:
                self._put_reading(link, reading.seq, reading.t_sensor, reading.t_host, reading.values)
            link.connected_once.set()
            link.last_data = time.monotonic()
            stalled = await self._wait_disconnect_or_stall(link)
            if self._closing:
                link.client = None
                break
            if stalled:
                detail = f"{link.address} connected but silent for {self.stall:g} s; reconnecting"
                self.count(f"{link.site}.stalls")
                link.streaming = False
                client, link.client = link.client, None
                try:
                    await client.disconnect()
                except Exception:
                    pass
            else:
                link.streaming = False
                link.client = None
                detail = f"{link.address} disconnected"
                self.count(f"{link.site}.disconnects")
            link.last_error = detail
            self._status(link.site, "lost", detail)
            await asyncio.sleep(delay)
            delay = self._next_delay(delay * 2.0)

    async def _wait_disconnect_or_stall(self, link: _SensorLink) -> bool:
        """Wait until the link drops (False) or delivers nothing for ``stall`` s (True)."""
        if not self.stall:
            await link.disconnected.wait()
            return False
        while True:
            left = link.last_data + self.stall - time.monotonic()
            if left <= 0:
                return True
            try:
                await asyncio.wait_for(link.disconnected.wait(), left)
                return False
            except asyncio.TimeoutError:
                continue

    async def open(self, *, timeout: Optional[float] = None) -> None:
        """Discover and connect the sensors; see the module docstring.

        Raises:
            SourceError: If no sensor could be reached within the timeout.
        """
        if self._opened:
            return
        self._opened = True
        self._closing = False
        wait = self.timeout if timeout is None else timeout
        self._tasks = [asyncio.create_task(self._run_sensor(link), name=f"ble-{link.site}")
                       for link in self._links.values()]
        # Discovery itself may take `timeout`; allow for one full attempt, but
        # give up at once when there is no adapter at all.
        deadline = time.monotonic() + wait * 2 + 1.0
        links = list(self._links.values())
        while time.monotonic() < deadline:
            if all(link.connected_once.is_set() for link in links):
                break
            if all(link.adapter_missing for link in links):
                break
            await asyncio.sleep(0.02)
        if not any(link.connected_once.is_set() for link in self._links.values()):
            errors = "; ".join(f"{s}: {link.last_error or 'no answer'}"
                               for s, link in self._links.items())
            await self.close()
            raise SourceError(f"source {self.url!r}: no BLE IMU could be reached ({errors})")

    async def close(self) -> None:
        """Disconnect every client; safe to call twice."""
        if self._closing and not self._tasks:
            return
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        for link in self._links.values():
            await _drop_client(link)
            link.state = "closed"
        self._opened = False
        self._queue.put_nowait(SourceStatus(None, "closed", "", time.monotonic()))
        self._queue.put_nowait(None)

    async def events(self):
        """Yield readings and status changes until :meth:`close`."""
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    def health(self) -> Dict[str, Any]:
        """Return per-sensor state, address, connects and counters."""
        out = super().health()
        out["sensors"] = {
            s: {"state": link.state, "address": link.address, "name": link.name,
                "connects": link.connects, "samples": link.samples,
                "last_error": link.last_error}
            for s, link in self._links.items()
        }
        return out


class BleImuSource(BleMultiSource):
    """Six LiftGuard BLE IMUs (our profile, :mod:`edge.sources.ble_profile`).

    Example::

        async with BleImuSource("ble://?name_prefix=LG-IMU") as source:
            async for event in source.events():
                ...
    """

    scheme = "ble"
