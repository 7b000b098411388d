"""``serial://``: a microcontroller sensor hub speaking the LiftGuard serial protocol.

URL format::

    serial:///dev/ttyACM0                    a device path (absolute)
    serial:///dev/ttyACM0?baud=921600        with options (below)
    serial://COM3?baud=921600                a Windows port name
    serial://socket://10.0.0.5:7000          any pyserial URL (serial_for_url):
    serial://rfc2217://rig-3:4000?baud=...   socket://, rfc2217://, spy://, ...

Everything after ``serial://`` up to ``?`` is handed to
:func:`serial.serial_for_url`; a path there may be a udev symlink such as
``/dev/serial/by-id/...`` (recommended: it survives re-plugging), and the
emulator's ``pty_link`` works the same way. pyserial's ``loop://`` is not
useful here: it buffers only 4 KiB.

Options (query string):

``baud``
    Baud rate (default 921600). USB CDC ports ignore it.
``hello``
    Seconds :meth:`SerialHubSource.open` waits for the sensor hub's
    ``Capabilities`` after sending ``Hello`` (default 1.0). Sample frames
    that arrive before it (a sensor hub already streaming when the hub starts
    or reopens the port) are held, in order, and converted once its full
    scales are known. Without an answer within that time the source carries
    on with :mod:`edge.layout`'s full scales (held frames included) and says
    so in a status event.
``silence``
    Seconds without any valid frame after which the link is reported
    ``lost`` (default 1.0); it is reported ``connected`` again with the next
    frame.
``stuck``
    Consecutive samples with all six raw values of a sensor identical after
    which it is reported ``fault`` ("stuck") (default 50, two seconds at
    25 Hz; a real IMU's noise changes the lowest bits every sample).
``backoff`` / ``backoff_max``
    First and largest delay between attempts to reopen a port that
    disappeared (defaults 0.2 s and 5 s, doubling).
``clock``
    ``host`` (default): ``t_host`` of each reading is the host's monotonic
    arrival time. ``device``: ``t_host`` is the host time of the first frame
    plus the sensor hub's elapsed clock, so an emulator playing N× faster
    than real time looks like real time to the aligner (tests, rigs).
    Either way :attr:`SerialHubSource.clock_anchor` (also in :meth:`health`
    and in the daemon's lift events as ``clock``) gives the pair
    ``(host_s, device_s)`` that maps host (grid) time to the sensor hub's
    clock: ``t_device = t_host - host_s + device_s``; with ``device`` it is
    exact, with ``host`` it is the newest frame (exact to the link's jitter).
    A rig on another machine puts the hub's lift windows on its own
    recording's clock with it (``hil_tests``, ``--hub-port``).
``buzz_ack``
    Seconds :meth:`SerialHubSource.send_buzz` waits for the Ack (default 0.5).
``retry_open``
    ``0`` (default): :meth:`SerialHubSource.open` fails at once with a
    :class:`~edge.errors.SourceError` when the port cannot be opened (a
    mistyped path is reported, not waited for). ``1``: it reports the link
    ``lost`` and keeps trying in the background with the backoff above, for
    a hub that may boot before its sensor belt is plugged in.
``queue``
    Most events waiting for the consumer (default 100000, over an hour of
    readings at 25 Hz); beyond it the oldest are dropped and counted
    ``overflow``, so a stalled consumer cannot exhaust memory.

What the source yields:

* six :class:`~edge.sources.base.SensorReading` per ``SampleFrame``, one per
  sensor whose validity bit is set, raw int16 scaled to g and deg/s by the
  full scales in ``Capabilities`` (``t_sensor`` is the sensor hub's clock in
  seconds, ``seq`` the frame's sequence number);
* :class:`~edge.sources.base.SourceStatus` when a sensor is lost (validity
  bit cleared, or a ``Status`` saying so) or comes back, is stuck or
  faulted (``Fault`` messages, ``Status`` fault codes); when the link goes
  silent, is unplugged (``lost``, then ``reconnecting`` per attempt with
  backoff, ``connected`` once reopened) or is closed (``closed``).

Everything odd on the wire (garbage, bad CRC, truncated frames, unknown
types, out-of-range values, repeated, reordered or skipped sequence numbers)
is counted by :class:`edge.protocol.FrameDecoder`; :meth:`health` reports
those counters with the source's own (readings, stuck, reconnects, buzzes).
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import threading
import time
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs

from ..errors import ConfigError, ProtocolError, SourceError
from ..layout import ACCEL_FULL_SCALE_G, GYRO_FULL_SCALE_DPS, SENSORS
from ..protocol import (Ack, Buzz, Capabilities, Fault, FaultCode, Feature, FrameDecoder, Hello,
                        Message, Nak, SampleFrame, SensorState, Status, encode_message, raw_to_units)
from .base import ImuSource, SensorReading, SourceEvent, SourceStatus

DEFAULT_BAUD = 921600

_OPTIONS: Dict[str, Tuple[type, Any]] = {
    "baud": (int, DEFAULT_BAUD),
    "hello": (float, 1.0),
    "silence": (float, 1.0),
    "stuck": (int, 50),
    "backoff": (float, 0.2),
    "backoff_max": (float, 5.0),
    "clock": (str, "host"),
    "buzz_ack": (float, 0.5),
    "queue": (int, 100_000),
    "retry_open": (int, 0),
}

_CLOSED = object()  # end-of-stream marker in the queue

#: Longest the reader sleeps without data before checking for silence and stop, s.
_IDLE_WAKE_S = 0.1


def _read_ready(fd: int) -> bytes:
    """Read what a readable (non-blocking, as pyserial opens it) descriptor holds.

    Raises:
        OSError: When the device is gone (EIO on an unplugged USB port or a
            closed pseudo-terminal, or end of file).
    """
    try:
        data = os.read(fd, 65536)
    except (BlockingIOError, InterruptedError):
        return b""
    if not data:
        raise OSError(f"descriptor {fd} reports readiness to read but returned no data (device disconnected?)")
    return data


def _fileno(port: Any) -> Optional[int]:
    """The port's OS descriptor when it has a selectable one (POSIX serial ports), else None."""
    if sys.platform.startswith("win"):
        return None
    try:
        fd = port.fileno()
    except Exception:  # noqa: BLE001 - pyserial URL handlers raise various errors here
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def parse_serial_url(url: str) -> Tuple[str, Dict[str, Any]]:
    """Split a ``serial://`` URL into the pyserial port (path or URL) and options.

    Args:
        url: See the module docstring.

    Returns:
        ``(port, options)`` with every option present (defaults filled in).

    Raises:
        ConfigError: Wrong scheme, empty port, unknown option or bad value,
            each named with what was expected.
    """
    prefix = "serial://"
    if not url.startswith(prefix):
        raise ConfigError(f"source URL {url!r}: expected serial://PORT (e.g. serial:///dev/ttyACM0?baud=921600)")
    rest = url[len(prefix):]
    port, _, query = rest.partition("?")
    if not port:
        raise ConfigError(f"source URL {url!r}: no port; expected serial:///dev/ttyACM0 or serial://socket://HOST:PORT")
    options: Dict[str, Any] = {key: default for key, (_, default) in _OPTIONS.items()}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in _OPTIONS:
            raise ConfigError(f"source URL {url!r}: unknown option {key!r}; expected one of "
                              + ", ".join(sorted(_OPTIONS)))
        kind = _OPTIONS[key][0]
        try:
            options[key] = kind(values[-1])
        except ValueError:
            raise ConfigError(f"source URL {url!r}: {key}={values[-1]!r} is not "
                              f"{'an integer' if kind is int else 'a number'}") from None
    if options["baud"] <= 0:
        raise ConfigError(f"source URL {url!r}: baud={options['baud']}; expected a positive rate")
    for key in ("hello", "silence", "backoff", "backoff_max", "buzz_ack"):
        if options[key] <= 0:
            raise ConfigError(f"source URL {url!r}: {key}={options[key]:g}; expected a positive number of seconds")
    if options["retry_open"] not in (0, 1):
        raise ConfigError(f"source URL {url!r}: retry_open={options['retry_open']}; expected 0 or 1")
    if options["queue"] < 10:
        raise ConfigError(f"source URL {url!r}: queue={options['queue']}; expected at least 10 events")
    if options["stuck"] < 2:
        raise ConfigError(f"source URL {url!r}: stuck={options['stuck']}; expected at least 2 samples")
    if options["clock"] not in ("host", "device"):
        raise ConfigError(f"source URL {url!r}: clock={options['clock']!r}; expected 'host' or 'device'")
    return port, options


class SerialHubSource(ImuSource):
    """The six IMUs of a microcontroller sensor hub on a serial port.

    A reader thread owns the port: it reads, decodes with
    :class:`~edge.protocol.FrameDecoder`, turns messages into events and
    hands them to the event loop; it also reopens the port after an unplug.

    Args:
        url: ``serial://PORT[?options]`` (see the module docstring).
        serial_for_url: Factory used to open the port (default
            :func:`serial.serial_for_url`); tests may inject one.
        clock: Monotonic clock, seconds.
    """

    scheme = "serial"

    def __init__(self, url: str, *, serial_for_url: Optional[Callable[..., Any]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(url)
        self.port_name, self.options = parse_serial_url(url)
        if serial_for_url is None:
            import serial  # pyserial; imported here so edge.sources stays light

            serial_for_url = serial.serial_for_url
        self._serial_for_url = serial_for_url
        self.clock = clock
        self.decoder = FrameDecoder()
        self.capabilities: Optional[Capabilities] = None
        self.last_status: Optional[Status] = None
        self.state = "closed"
        self._port: Any = None
        self._port_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: Optional[asyncio.Queue] = None
        self._caps_event = threading.Event()
        self._acks: Dict[int, "asyncio.Future[bool]"] = {}
        self._buzz_id = 0
        self._sensor_index = list(range(len(SENSORS)))  # frame row -> SENSORS index (or -1)
        self._scale = (ACCEL_FULL_SCALE_G, GYRO_FULL_SCALE_DPS)
        self._sensor_state = ["unknown"] * len(SENSORS)  # connected / lost / stuck / fault
        self._last_raw: List[Optional[bytes]] = [None] * len(SENSORS)
        self._same_count = [0] * len(SENSORS)
        self._hub_states: Tuple[int, ...] = ()
        self._last_frame_at: Optional[float] = None
        self._link_quiet = False
        self._clock_anchor: Optional[Tuple[float, int]] = None
        self._last_device_pair: Optional[Tuple[float, int]] = None  # (arrival, t_us) of the newest frame
        self._closed_sent = False
        #: Until this host time, sample frames wait for Capabilities (their full scales) in ``_held``.
        self._caps_deadline: Optional[float] = None
        self._held: List[Tuple[SampleFrame, float]] = []

    # ------------------------------------------------------------ lifecycle

    async def open(self, *, timeout: float = 10.0) -> None:
        """Open the port, start the reader, ask for Capabilities.

        Raises:
            SourceError: If the port cannot be opened (the message names it).
        """
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._stop.clear()
        self._closed_sent = False
        self._caps_event.clear()
        self.decoder.reset()
        self._clock_anchor = None
        self._last_frame_at = None
        self._link_quiet = False
        try:
            port = await self._loop.run_in_executor(None, self._open_port)
        except Exception as exc:  # pyserial raises SerialException/OSError/ValueError
            if not self.options["retry_open"]:
                raise SourceError(f"serial source {self.port_name!r}: cannot open: {exc}") from None
            port = None
            self.state = "lost"
            self.count("link_lost")
            self._emit([SourceStatus(None, "lost", f"cannot open {self.port_name} ({exc}); retrying", self.clock())])
        if port is not None:
            self._port = port
            self._hold_until_capabilities()
            self.state = "connected"
            self._emit([SourceStatus(None, "connected", f"opened {self.port_name} at {self.options['baud']} baud",
                                     self.clock())])
        self._thread = threading.Thread(target=self._reader, name=f"serial-hub {self.port_name}", daemon=True)
        self._thread.start()
        if port is None:
            return
        self._write(encode_message(Hello(host_id="liftguard-hub")))
        wait = min(timeout, self.options["hello"])
        got = await self._loop.run_in_executor(None, self._caps_event.wait, wait)
        if not got:
            self.count("no_capabilities")
            self._emit([SourceStatus(None, "connected",
                                     f"no Capabilities within {wait:g} s of Hello; assuming "
                                     f"{ACCEL_FULL_SCALE_G:g} g / {GYRO_FULL_SCALE_DPS:g} dps and the "
                                     f"{'/'.join(SENSORS)} order", self.clock())])

    async def close(self) -> None:
        """Stop the reader and close the port; safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 2.0)
        self._close_port()
        self.state = "closed"
        for future in self._acks.values():
            if not future.done():
                future.set_result(False)
        self._acks.clear()
        if not self._closed_sent and self._queue is not None:
            self._closed_sent = True
            self._queue.put_nowait(SourceStatus(None, "closed", f"{self.port_name} closed", self.clock()))
            self._queue.put_nowait(_CLOSED)

    async def events(self) -> AsyncIterator[SourceEvent]:
        """Yield readings and status changes until :meth:`close`."""
        if self._queue is None:
            raise SourceError(f"serial source {self.port_name!r}: not open; use 'async with' or open() first")
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            yield item

    async def send_buzz(self, pattern_ms: "list[int]") -> bool:
        """Send a :class:`~edge.protocol.Buzz` and wait for its Ack.

        Returns:
            True when the sensor hub acknowledged it; False when it answered
            Nak, did not answer within ``buzz_ack`` seconds, has no motor
            (Capabilities without the BUZZ feature) or the link is down.
        """
        if self.capabilities is not None and not self.capabilities.features & Feature.BUZZ:
            self.count("buzz_unsupported")
            return False
        self._buzz_id = (self._buzz_id + 1) & 0xFFFF
        try:
            wire = encode_message(Buzz(buzz_id=self._buzz_id, pattern_ms=tuple(int(p) for p in pattern_ms)))
        except ProtocolError as exc:
            raise ConfigError(f"buzz pattern {list(pattern_ms)!r}: {exc}") from None
        buzz_id = self._buzz_id
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[bool]" = loop.create_future()
        self._acks[buzz_id] = future
        if not self._write(wire):
            self._acks.pop(buzz_id, None)
            self.count("buzz_failed")
            return False
        self.count("buzz_sent")
        try:
            ok = await asyncio.wait_for(future, self.options["buzz_ack"])
        except asyncio.TimeoutError:
            ok = False
            self.count("buzz_no_ack")
        finally:
            self._acks.pop(buzz_id, None)
        if ok:
            self.count("buzz_acked")
        return ok

    def health(self) -> Dict[str, Any]:
        """Link state, capabilities, battery, per-sensor state and every counter."""
        counters = dict(self.counters)
        counters.update({f"decoder_{k}": v for k, v in self.decoder.counters.items()})  # zeros too
        caps = self.capabilities
        status = self.last_status
        return {
            "url": self.url,
            "port": self.port_name,
            "state": self.state,
            "device_id": caps.device_id if caps else None,
            "firmware_version": caps.firmware_version if caps else None,
            "sample_rate_hz": caps.sample_rate_hz if caps else None,
            "battery_pct": status.battery_pct if status and status.battery_pct <= 100 else None,
            "battery_mv": status.battery_mv if status and status.battery_mv else None,
            "faults": [getattr(f, "name", str(f)) for f in status.faults] if status else [],
            "sensors": dict(zip(SENSORS, self._sensor_state)),
            "last_problem": self.decoder.last_problem,
            "counters": counters,
            "clock": self.clock_anchor,
        }

    @property
    def clock_anchor(self) -> Optional[Dict[str, Any]]:
        """How host (grid) time maps to the sensor hub's clock, or None before the first frame.

        ``{"mode": "device"|"host", "host_s": ..., "device_s": ...}``: a reading
        stamped ``t_host`` was sent at sensor-hub time ``t_host - host_s +
        device_s``. With ``clock=device`` this is the anchor every ``t_host``
        is computed from (exact); with ``clock=host`` it is the newest frame's
        arrival time and device time (exact to the link's jitter).
        """
        if self.options["clock"] == "device":
            anchor = self._clock_anchor
        else:
            anchor = self._last_device_pair
        if anchor is None:
            return None
        return {"mode": self.options["clock"], "host_s": float(anchor[0]), "device_s": anchor[1] / 1e6}

    # ------------------------------------------------------------ port

    def _open_port(self) -> Any:
        return self._serial_for_url(self.port_name, baudrate=self.options["baud"], timeout=0.05,
                                    write_timeout=1.0)

    def _close_port(self) -> None:
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - closing a vanished port may fail any way
                pass

    def _write(self, data: bytes) -> bool:
        with self._port_lock:
            port = self._port
            if port is None:
                return False
            try:
                port.write(data)
                port.flush()
                return True
            except Exception as exc:  # noqa: BLE001 - SerialException, OSError, timeout
                self.count("write_errors")
                self.decoder.last_problem = f"write failed: {exc}"
                return False

    # ------------------------------------------------------------ reader thread

    def _emit(self, events: List[Any]) -> None:
        """Hand events to the event loop (from any thread)."""
        if not events or self._loop is None or self._queue is None:
            return
        queue = self._queue
        try:
            self._loop.call_soon_threadsafe(self._put_all, queue, events)
        except RuntimeError:  # loop closed during shutdown
            pass

    def _put_all(self, queue: "asyncio.Queue", events: List[Any]) -> None:
        """On the event loop: enqueue, dropping the oldest events beyond ``queue``."""
        limit = self.options["queue"]
        for event in events:
            if queue.qsize() >= limit:
                try:
                    dropped = queue.get_nowait()
                except asyncio.QueueEmpty:  # pragma: no cover - qsize said otherwise
                    dropped = None
                if dropped is _CLOSED:  # never lose the end marker
                    queue.put_nowait(dropped)
                else:
                    self.count("overflow")
            queue.put_nowait(event)

    def _reader(self) -> None:
        backoff = self.options["backoff"]
        attempts = 0
        while not self._stop.is_set():
            port = self._port
            if port is None:
                attempts += 1
                self._emit([SourceStatus(None, "reconnecting",
                                         f"reopening {self.port_name} (attempt {attempts})", self.clock())])
                try:
                    port = self._open_port()
                except Exception as exc:  # noqa: BLE001 - port still absent
                    self.decoder.last_problem = f"reopen {self.port_name}: {exc}"
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, self.options["backoff_max"])
                    continue
                with self._port_lock:
                    self._port = port
                self.count("reconnects")
                attempts = 0
                backoff = self.options["backoff"]
                self.decoder.reset()
                self._clock_anchor = None
                self._last_frame_at = None
                self._link_quiet = False
                self.state = "connected"
                self._emit([SourceStatus(None, "connected", f"reopened {self.port_name}", self.clock())])
                self._hold_until_capabilities()
                self._write(encode_message(Hello(host_id="liftguard-hub")))
            try:
                fd = _fileno(port)
                if fd is not None:  # wait in select: one wake-up per burst, few when idle
                    ready, _, _ = select.select([fd], [], [], _IDLE_WAKE_S)
                    data = _read_ready(fd) if ready else b""
                else:  # URL ports without a descriptor (socket://, rfc2217://): pyserial's timeout
                    waiting = port.in_waiting
                    data = port.read(waiting if waiting > 0 else 1)
            except Exception as exc:  # noqa: BLE001 - SerialException / OSError on unplug
                if self._stop.is_set():
                    return
                self._close_port()
                self.count("link_lost")
                self.state = "lost"
                events: List[Any] = [SourceStatus(None, "lost", f"{self.port_name}: {exc}", self.clock())]
                for i, sensor in enumerate(SENSORS):
                    if self._sensor_state[i] != "lost":
                        self._sensor_state[i] = "lost"
                        events.append(SourceStatus(sensor, "lost", "serial link lost", self.clock()))
                self._emit(events)
                continue
            now = self.clock()
            events = []
            if data:
                for message in self.decoder.feed(data):
                    self._handle(message, now, events)
                for key, value in self.decoder.counters.items():  # visible in .counters too
                    if value:
                        self.counters[f"decoder_{key}"] = value
            if self._caps_deadline is not None and now >= self._caps_deadline:
                self._release_held(events)  # no Capabilities in time: carry on with the assumed scales
            self._check_silence(now, events)
            self._emit(events)

    def _hold_until_capabilities(self) -> None:
        """Hold sample frames until the sensor hub's Capabilities (or the ``hello`` time) after (re)opening.

        A sensor hub that is already streaming sends frames before it answers
        Hello; converted with assumed full scales they would be wrong by the
        ratio of the scales (4x for a +-4 g hub read as +-16 g) and could
        blind the lift detector for a while. They are kept, in order, with
        their arrival times, and converted once the scales are known.
        """
        self._held = []
        self._caps_deadline = self.clock() + float(self.options["hello"])

    def _release_held(self, events: List[Any]) -> None:
        """Convert the held frames with the scales now in force, in arrival order."""
        held, self._held = self._held, []
        self._caps_deadline = None
        for frame, arrival in held:
            self._on_sample(frame, arrival, events)

    def _check_silence(self, now: float, events: List[Any]) -> None:
        last = self._last_frame_at
        if last is None or self._link_quiet:
            return
        if now - last > self.options["silence"]:
            self._link_quiet = True
            self.count("silences")
            self.state = "lost"
            events.append(SourceStatus(None, "lost", f"no frame from {self.port_name} for "
                                       f"{now - last:.1f} s (limit {self.options['silence']:g} s)", now))

    def _handle(self, message: Message, now: float, events: List[Any]) -> None:
        if self._link_quiet:
            self._link_quiet = False
            self.state = "connected"
            events.append(SourceStatus(None, "connected", f"frames from {self.port_name} again", now))
        self._last_frame_at = now
        if isinstance(message, SampleFrame):
            self._on_sample(message, now, events)
        elif isinstance(message, Capabilities):
            self._on_capabilities(message, now, events)
        elif isinstance(message, Status):
            self._on_status(message, now, events)
        elif isinstance(message, Fault):
            self.count("faults")
            who = SENSORS[message.sensor] if message.sensor < len(SENSORS) else None
            name = getattr(message.code, "name", f"code {int(message.code)}")
            events.append(SourceStatus(who, "fault", f"sensor hub fault {name}: {message.detail}".rstrip(": "), now))
        elif isinstance(message, (Ack, Nak)):
            if message.of_type == Buzz.TYPE:
                self._resolve_ack(message.ref, isinstance(message, Ack))
            if isinstance(message, Nak):
                self.count("naks")
        else:
            self.count("unexpected_messages")

    def _resolve_ack(self, buzz_id: int, ok: bool) -> None:
        future = self._acks.get(buzz_id)
        if future is not None and self._loop is not None:
            def settle() -> None:
                if not future.done():
                    future.set_result(ok)
            try:
                self._loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass

    def _on_capabilities(self, caps: Capabilities, now: float, events: List[Any]) -> None:
        self.capabilities = caps
        self._scale = (float(caps.accel_full_scale_g), float(caps.gyro_full_scale_dps))
        index = []
        for name in caps.sensors[:len(SENSORS)]:
            index.append(SENSORS.index(name) if name in SENSORS else -1)
        index += [-1] * (len(SENSORS) - len(index))
        self._sensor_index = index
        missing = [s for i, s in enumerate(SENSORS) if i not in index]
        unknown = [n for n in caps.sensors if n not in SENSORS]
        self._clock_anchor = None
        self._caps_event.set()
        if self._caps_deadline is not None:
            self._release_held(events)
        detail = (f"sensor hub {caps.device_id} firmware {caps.firmware_version}, {caps.sample_rate_hz:g} Hz, "
                  f"{caps.accel_full_scale_g} g / {caps.gyro_full_scale_dps} dps")
        events.append(SourceStatus(None, "connected", detail, now))
        if missing or unknown:
            self.count("layout_mismatch")
            events.append(SourceStatus(None, "fault", f"sensor hub reports sensors {list(caps.sensors)}; "
                                       f"expected {list(SENSORS)} (missing {missing}, unknown {unknown})", now))

    def _on_status(self, status: Status, now: float, events: List[Any]) -> None:
        previous_faults = set(self.last_status.faults) if self.last_status else set()
        self.last_status = status
        for code in status.faults:
            if code not in previous_faults:
                name = getattr(code, "name", f"code {int(code)}")
                events.append(SourceStatus(None, "fault", f"sensor hub reports fault {name}", now))
        for code in previous_faults - set(status.faults):
            name = getattr(code, "name", f"code {int(code)}")
            events.append(SourceStatus(None, "connected", f"sensor hub fault {name} cleared", now))
        if status.battery_pct != 0xFF and status.battery_pct <= 10 and FaultCode.LOW_BATTERY not in status.faults:
            if "low_battery_reported" not in self.counters:
                self.count("low_battery_reported")
                events.append(SourceStatus(None, "fault", f"battery at {status.battery_pct}%", now))
        states = tuple(status.sensor_states)
        for row, state in enumerate(states[:len(SENSORS)]):
            i = self._sensor_index[row]
            if i < 0:
                continue
            old = self._hub_states[row] if row < len(self._hub_states) else SensorState.OK
            if state != old and state != SensorState.OK:
                name = getattr(state, "name", str(state))
                events.append(SourceStatus(SENSORS[i], "lost" if state == SensorState.MISSING else "fault",
                                           f"sensor hub reports {SENSORS[i]} {name}", now))
        self._hub_states = states

    def _on_sample(self, frame: SampleFrame, now: float, events: List[Any]) -> None:
        if self._caps_deadline is not None:  # scales not known yet: keep the frame for later
            self._held.append((frame, now))
            self.count("held_before_capabilities")
            return
        values = raw_to_units(frame.raw, *self._scale)
        if self.options["clock"] == "device":
            if self._clock_anchor is None or frame.t_us < self._clock_anchor[1]:
                self._clock_anchor = (now, frame.t_us)
            t_host = self._clock_anchor[0] + (frame.t_us - self._clock_anchor[1]) / 1e6
        else:
            t_host = now
            self._last_device_pair = (now, frame.t_us)
        t_sensor = frame.t_us / 1e6
        stuck_limit = self.options["stuck"]
        raw_bytes = frame.raw.tobytes()  # compare rows as bytes: much cheaper than numpy per row
        row_len = len(raw_bytes) // len(SENSORS)
        for row in range(len(SENSORS)):
            i = self._sensor_index[row]
            if i < 0:
                continue
            sensor = SENSORS[i]
            if not frame.valid_mask >> row & 1:
                if self._sensor_state[i] != "lost":
                    self._sensor_state[i] = "lost"
                    self.count("sensor_lost")
                    events.append(SourceStatus(sensor, "lost", f"validity bit cleared from sequence {frame.seq}",
                                               t_host))
                self._last_raw[i] = None
                self._same_count[i] = 0
                continue
            raw = raw_bytes[row * row_len:(row + 1) * row_len]
            if raw == self._last_raw[i]:
                self._same_count[i] += 1
            else:
                self._same_count[i] = 1
            self._last_raw[i] = raw
            state = self._sensor_state[i]
            if self._same_count[i] >= stuck_limit:
                if state != "stuck":
                    self._sensor_state[i] = "stuck"
                    self.count("stuck")
                    events.append(SourceStatus(sensor, "fault", f"values stuck at {frame.raw[row].tolist()} for "
                                               f"{self._same_count[i]} samples (limit {stuck_limit})", t_host))
            elif state != "connected":
                self._sensor_state[i] = "connected"
                detail = {"lost": f"recovered at sequence {frame.seq}",
                          "stuck": f"values moving again at sequence {frame.seq}"}.get(state, "delivering")
                events.append(SourceStatus(sensor, "connected", detail, t_host))
            events.append(SensorReading(sensor, frame.seq, t_sensor, t_host, values[row]))
        self.count("frames")


__all__ = ["SerialHubSource", "parse_serial_url", "DEFAULT_BAUD"]
