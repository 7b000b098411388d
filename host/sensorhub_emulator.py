"""Play a recording as a microcontroller sensor hub speaking the LiftGuard serial protocol.

The engine behind ``host emulate`` and the HIL rigs: it takes a recording
(a trial, a data set or a shift, read through :mod:`edge.dataset` via
:func:`edge.sources.replay.load_segments`), and plays it as the belt's sensor
hub would send it: ``Capabilities`` on start and in answer to ``Hello``,
one ``SampleFrame`` per sample period, ``Status`` once a second, ``Fault``
when a sensor drops out, and ``Ack`` for every ``Buzz`` it receives (which it
records in :attr:`SensorHubEmulator.buzz_log`).

Where it plays:

* a fresh pseudo-terminal (``port=None``): the hub opens :attr:`path`, the
  slave side, with pyserial, exactly as it opens ``/dev/ttyACM0``. With
  ``pty_link`` the path is a symlink (like udev's ``/dev/serial/by-id``)
  that follows the pseudo-terminal across simulated unplugs. By default
  playback starts when a reader opens the port (``wait_for_reader``);
  while nobody has it open, frames are dropped and counted, as a USB CDC
  device does.
  During a simulated unplug the link is removed (as udev removes
  ``/dev/serial/by-id`` links), so a reader never reopens a stale
  ``/dev/pts/N`` that another program's pseudo-terminal may have taken.
* an existing serial port or pyserial URL (``port="/dev/ttyUSB0"``): for a
  rig whose hub is a separate board behind a USB-serial adapter.

How fast: ``speed=1`` real time, ``speed=N`` N times faster (the frames'
device timestamps stay those of the recording, so a hub reading with
``serial://...?clock=device`` sees real time), ``speed=0`` as fast as the
link takes the bytes.

Faults (:class:`FaultPlan`), all seeded and in recording time:
drop a share of frames (their sequence numbers are skipped, as when a
firmware's transmit buffer overflows), flip a bit in a share of frames,
repeat or swap frames, cut a share of frames short, inject bursts of random
garbage, run the device clock fast or slow by ``drift_ppm``, silence a
sensor from t1 to t2 (validity bit cleared, values :data:`RAW_INVALID`,
``Fault`` and ``Status`` say it is missing), freeze a sensor at one value,
and unplug the link from t1 to t2 (pseudo-terminal only: the port vanishes).

Library use::

    emu = SensorHubEmulator.from_path("data/demo/trial_0001.csv", speed=10,
                                      faults=FaultPlan(drop_share=0.01, seed=3))
    emu.start()
    print(emu.path)                 # /dev/pts/7: give it to serial://
    emu.wait(timeout=60)            # playback finished
    emu.buzz_log                    # [(recording time, (on, off, ...)), ...]
    emu.stop()
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import threading
import time
import tty
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple, Union

import numpy as np

from edge.errors import ConfigError, SourceError
from edge.layout import ACCEL_FULL_SCALE_G, GYRO_FULL_SCALE_DPS, N_CHANNELS, SAMPLE_RATE_HZ, SENSORS
from edge.protocol import (RAW_INVALID, Ack, Buzz, Capabilities, Fault, FaultCode, Feature, FrameDecoder,
                           Hello, Message, Nak, NakReason, SampleFrame, SensorState, Status,
                           encode_message, units_to_raw)

#: Firmware version the emulator reports.
EMULATOR_FIRMWARE = "emu-1.0"

#: Pause between a reader opening the pseudo-terminal and the first frame, s.
READER_SETTLE_S = 0.05

#: Device clock at the first sample, µs (the sensor hub booted a while ago).
BOOT_OFFSET_US = 5_000_000


@dataclasses.dataclass(frozen=True)
class SensorWindow:
    """A sensor and a span of recording time, for silence and stuck faults.

    Attributes:
        sensor: Sensor name from :data:`edge.layout.SENSORS`.
        start_s: Start, seconds from the beginning of the recording.
        end_s: End (exclusive), seconds from the beginning of the recording.
    """

    sensor: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise ConfigError(f"sensor {self.sensor!r} is not one of {', '.join(SENSORS)}")
        if not 0 <= self.start_s < self.end_s:
            raise ConfigError(f"window {self.start_s:g}..{self.end_s:g} s for {self.sensor}: expected "
                              "0 <= start < end")

    @classmethod
    def parse(cls, text: str) -> "SensorWindow":
        """Parse ``SENSOR:START:END`` (seconds), e.g. ``Back:10:20``.

        Raises:
            ConfigError: Naming the text and the expected form.
        """
        parts = text.split(":")
        if len(parts) != 3:
            raise ConfigError(f"{text!r}: expected SENSOR:START:END, e.g. Back:10:20")
        try:
            return cls(parts[0], float(parts[1]), float(parts[2]))
        except ValueError:
            raise ConfigError(f"{text!r}: START and END must be numbers of seconds") from None


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """What goes wrong while the emulator plays (all in recording time, seeded).

    Attributes:
        drop_share: Share of sample frames not sent (0..1).
        bit_flip_share: Share of frames sent with one random bit flipped.
        repeat_share: Share of frames sent twice.
        reorder_share: Share of frames held back and sent after the next one.
        truncate_share: Share of frames cut off at a random byte.
        garbage_per_min: Mean number of random-garbage bursts per minute.
        garbage_bytes: Length of each garbage burst.
        drift_ppm: The device clock runs this many ppm fast (negative: slow)
            against the host: frames arrive ``1 + drift_ppm/1e6`` times
            faster than their device timestamps say.
        silence: Sensors that deliver nothing during a window.
        stuck: Sensors frozen at their value from the window's start.
        unplug: ``(start_s, end_s)`` windows with the port gone (pty only).
        seed: Seed of every random choice.
    """

    drop_share: float = 0.0
    bit_flip_share: float = 0.0
    repeat_share: float = 0.0
    reorder_share: float = 0.0
    truncate_share: float = 0.0
    garbage_per_min: float = 0.0
    garbage_bytes: int = 64
    drift_ppm: float = 0.0
    silence: Tuple[SensorWindow, ...] = ()
    stuck: Tuple[SensorWindow, ...] = ()
    unplug: Tuple[Tuple[float, float], ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop_share", "bit_flip_share", "repeat_share", "reorder_share", "truncate_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"fault {name}={value!r}; expected a share between 0 and 1")
        if self.garbage_per_min < 0 or self.garbage_bytes < 1:
            raise ConfigError(f"fault garbage_per_min={self.garbage_per_min!r}, garbage_bytes="
                              f"{self.garbage_bytes!r}; expected >= 0 and >= 1")
        if abs(self.drift_ppm) >= 1e5:
            raise ConfigError(f"fault drift_ppm={self.drift_ppm!r}; expected |ppm| < 100000")
        for window in self.unplug:
            if len(window) != 2 or not 0 <= window[0] < window[1]:
                raise ConfigError(f"unplug window {window!r}; expected (start_s, end_s) with 0 <= start < end")
        object.__setattr__(self, "silence", tuple(self.silence))
        object.__setattr__(self, "stuck", tuple(self.stuck))
        object.__setattr__(self, "unplug", tuple(tuple(w) for w in self.unplug))


@dataclasses.dataclass(frozen=True)
class BuzzRecord:
    """One Buzz command the emulator received.

    Attributes:
        t_recording: ``Time_stp`` of the last sample sent when it arrived.
        t_host: ``time.monotonic()`` when it arrived.
        sample_index: Index of the last sample sent when it arrived.
        buzz_id: The command's id.
        pattern_ms: On/off durations, ms.
    """

    t_recording: float
    t_host: float
    sample_index: int
    buzz_id: int
    pattern_ms: Tuple[int, ...]


def load_recording(path: Union[str, Path], gap_s: float = 2.0) -> Tuple[np.ndarray, np.ndarray]:
    """Read a trial CSV, a data set folder or a shift into one (samples, timestamps) pair.

    Reads through :func:`edge.sources.replay.load_segments` (which uses
    :mod:`edge.dataset`). Trials of a data set are joined with ``gap_s``
    seconds between them; the emulator skips sequence numbers over the gap,
    as a sensor hub that lost those frames would.

    Raises:
        SourceError: If nothing playable is at ``path``.
    """
    from edge.sources.replay import load_segments

    segments = load_segments(Path(path))
    samples: List[np.ndarray] = []
    stamps: List[np.ndarray] = []
    offset = 0.0
    previous_end: Optional[float] = None
    for seg in segments:
        ts = np.asarray(seg.timestamps, np.float64)
        if len(ts) == 0:
            continue
        if previous_end is not None:
            offset = previous_end + gap_s - ts[0]
        samples.append(np.asarray(seg.samples, np.float64))
        stamps.append(ts + offset)
        previous_end = ts[-1] + offset
    if not samples:
        raise SourceError(f"emulator: {path} has no samples")
    return np.concatenate(samples), np.concatenate(stamps)


class _PtyPort:
    """The master side of a pseudo-terminal; the hub opens the slave path."""

    def __init__(self, link: Optional[Path]) -> None:
        self.link = link
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave_path = os.ttyname(slave)
        os.close(slave)  # the hub opens it by path; POLLHUP tells us nobody has
        os.set_blocking(self.master, False)
        if link is not None:
            tmp = link.with_name(link.name + ".tmp")
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            os.symlink(self.slave_path, tmp)
            os.replace(tmp, link)  # atomic: a reader never sees the link missing or stale
        self.poller = select.poll()
        self.poller.register(self.master, select.POLLIN | select.POLLOUT)

    @property
    def path(self) -> str:
        return str(self.link) if self.link is not None else self.slave_path

    def reader_present(self) -> bool:
        """Whether some process has the slave side open."""
        if self.master < 0:
            return False
        return not any(ev & (select.POLLHUP | select.POLLNVAL) for _, ev in self.poller.poll(0))

    def fileno(self) -> Optional[int]:
        return self.master if self.master >= 0 else None

    def read(self) -> bytes:
        if self.master < 0:
            return b""
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:  # no reader
                return b""
            raise

    def write(self, data: bytes, deadline: float) -> int:
        """Write as much of ``data`` as the pty takes before ``deadline`` (monotonic)."""
        view = memoryview(data)
        written = 0
        while written < len(data):
            try:
                written += os.write(self.master, view[written:])
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return written
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return written
            select.select([], [self.master], [], min(remaining, 0.05))
        return written

    def close(self) -> None:
        """Close the master side once (a second close must not hit a reused descriptor)."""
        master, self.master = self.master, -1
        if master >= 0:
            try:
                self.poller.unregister(master)
            except (KeyError, ValueError):
                pass
            os.close(master)


class _Unplugged:
    """Stands in for a pseudo-terminal while the cable is out: nothing goes anywhere."""

    def __init__(self, path: str) -> None:
        self.path = path

    def reader_present(self) -> bool:
        return False

    def fileno(self) -> None:
        return None

    def read(self) -> bytes:
        return b""

    def write(self, data: bytes, deadline: float) -> int:
        return 0

    def close(self) -> None:
        pass


class _SerialPort:
    """An existing serial port or pyserial URL the emulator writes to."""

    def __init__(self, url: str, baud: int) -> None:
        import serial

        try:
            self.port = serial.serial_for_url(url, baudrate=baud, timeout=0, write_timeout=0.5)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError(f"emulator: cannot open serial port {url!r}: {exc}") from None
        self.path = url

    def reader_present(self) -> bool:
        return True

    def fileno(self) -> Optional[int]:
        try:
            return self.port.fileno()
        except Exception:  # noqa: BLE001 - URL ports (socket://, loop://) may have none
            return None

    def read(self) -> bytes:
        return self.port.read(max(1, self.port.in_waiting))

    def write(self, data: bytes, deadline: float) -> int:
        import serial

        try:
            return self.port.write(data) or 0
        except serial.SerialTimeoutException:
            return 0

    def close(self) -> None:
        self.port.close()


def _smallest_range(values: np.ndarray, ranges: Sequence[int]) -> int:
    """The smallest full-scale range in ``ranges`` whose int16 span holds every finite value."""
    finite = values[np.isfinite(values)]
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    for r in ranges:
        if peak <= r * 32767 / 32768:
            return int(r)
    return int(ranges[-1])


class SensorHubEmulator:
    """A sensor hub playing a recording over a serial port or a pseudo-terminal.

    Args:
        port: ``None`` for a fresh pseudo-terminal, else a serial device or
            pyserial URL to write to.
        samples: ``(n, 36)`` float samples in g and deg/s, :data:`CHANNELS`
            order; NaN marks a sensor without a reading.
        timestamps: ``(n,)`` ``Time_stp`` seconds, increasing.
        speed: Multiple of real time; 0 = as fast as the link takes it.
        faults: What goes wrong (default: nothing).
        baud: Baud rate when ``port`` is a real port.
        pty_link: Symlink kept pointing at the pseudo-terminal (stable across unplugs).
        wait_for_reader: Start playback only once the pseudo-terminal is opened.
        device_id: Reported in Capabilities.
        features: :class:`edge.protocol.Feature` bits reported (default BUZZ|BATTERY).
        status_interval_s: Status period in recording seconds (0 = never).
        tail_s: After the last sample, keep answering (Hello, Buzz) until
            :meth:`stop`; ``wait()`` returns at the last sample regardless.
        log: Where to print one line per notable step (None = quiet).
    """

    def __init__(self, port: Optional[str], samples: np.ndarray, timestamps: np.ndarray, *,
                 speed: float = 1.0, faults: Optional[FaultPlan] = None, baud: int = 921600,
                 pty_link: Optional[Union[str, Path]] = None, wait_for_reader: bool = True,
                 device_id: str = "EMU-0001", features: int = int(Feature.BUZZ | Feature.BATTERY),
                 status_interval_s: float = 1.0, log: Optional[TextIO] = None) -> None:
        samples = np.asarray(samples, np.float64)
        timestamps = np.asarray(timestamps, np.float64)
        if samples.ndim != 2 or samples.shape[1] != N_CHANNELS:
            raise ConfigError(f"emulator samples have shape {samples.shape}; expected (n, {N_CHANNELS})")
        if timestamps.shape != (samples.shape[0],):
            raise ConfigError(f"emulator timestamps have shape {timestamps.shape}; expected ({samples.shape[0]},)")
        if len(timestamps) == 0:
            raise ConfigError("emulator: the recording has no samples")
        if len(timestamps) > 1 and not np.all(np.diff(timestamps) > 0):
            bad = int(np.flatnonzero(np.diff(timestamps) <= 0)[0]) + 1
            raise ConfigError(f"emulator timestamps must increase; row {bad} has {timestamps[bad]!r} after "
                              f"{timestamps[bad - 1]!r}")
        if speed < 0:
            raise ConfigError(f"emulator speed={speed!r}; expected >= 0 (0 = as fast as possible)")
        self.port_name = port
        self.speed = float(speed)
        self.faults = faults or FaultPlan()
        self.baud = baud
        self.pty_link = Path(pty_link) if pty_link is not None else None
        self.wait_for_reader = wait_for_reader and port is None
        self.device_id = device_id
        self.features = int(features)
        self.status_interval_s = status_interval_s
        self.log = log
        self.timestamps = timestamps
        self.n = len(timestamps)
        self.rate_hz = (float(1.0 / np.median(np.diff(timestamps))) if self.n > 1 else SAMPLE_RATE_HZ)
        # Pre-compute the wire values once: raw int16 (n, 6, 6), validity (n,) masks, sequence numbers.
        rows = samples.reshape(self.n, len(SENSORS), 6)
        # Like a real IMU configured for its signals, announce the smallest standard
        # full scale that holds the recording, so the wire is no coarser than the data.
        self.accel_full_scale_g = _smallest_range(rows[:, :, 0:3], (2, 4, 8, int(ACCEL_FULL_SCALE_G)))
        self.gyro_full_scale_dps = _smallest_range(rows[:, :, 3:6], (125, 250, 500, 1000, int(GYRO_FULL_SCALE_DPS)))
        self.raw = units_to_raw(rows, self.accel_full_scale_g, self.gyro_full_scale_dps)
        nan_rows = np.isnan(rows).any(axis=2)
        self.raw[nan_rows] = RAW_INVALID
        self.masks = ((~nan_rows) * (1 << np.arange(len(SENSORS)))).sum(axis=1).astype(np.int64)
        self.rel_s = timestamps - timestamps[0]
        periods = np.maximum(1, np.rint(np.diff(self.rel_s) * self.rate_hz)).astype(np.int64)
        self.seqs = np.concatenate([[0], np.cumsum(periods)]) if self.n > 1 else np.zeros(1, np.int64)
        self.t_us = BOOT_OFFSET_US + np.rint(self.rel_s * 1e6).astype(np.int64)
        self._apply_sensor_windows()
        self.rng = np.random.default_rng(self.faults.seed)
        #: Buzz commands received: ``(recording time, pattern_ms)``.
        self.buzz_log: List[Tuple[float, Tuple[int, ...]]] = []
        #: Buzz commands with all details (:class:`BuzzRecord`).
        self.buzz_records: List[BuzzRecord] = []
        #: What happened: frames sent/dropped, garbage bursts, bytes, Hellos answered, ...
        self.counters: Dict[str, int] = {}
        self.decoder = FrameDecoder(track_sequence=False)
        self.finished = threading.Event()
        self.position = -1  # index of the last sample handled
        self._port: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._held: Optional[bytes] = None  # a frame held back to be sent after the next (reorder)

    # ------------------------------------------------------------ construction helpers

    @classmethod
    def from_path(cls, path: Union[str, Path], port: Optional[str] = None, *, gap_s: float = 2.0,
                  **kwargs: Any) -> "SensorHubEmulator":
        """Build an emulator playing a trial CSV, data set folder or shift (see :func:`load_recording`)."""
        samples, timestamps = load_recording(path, gap_s=gap_s)
        return cls(port, samples, timestamps, **kwargs)

    def _apply_sensor_windows(self) -> None:
        self.silenced = np.zeros((self.n, len(SENSORS)), bool)
        for w in self.faults.silence:
            i = SENSORS.index(w.sensor)
            span = (self.rel_s >= w.start_s) & (self.rel_s < w.end_s)
            self.silenced[span, i] = True
            self.raw[span, i] = RAW_INVALID
            self.masks[span] &= ~(1 << i)
        for w in self.faults.stuck:
            i = SENSORS.index(w.sensor)
            span = np.flatnonzero((self.rel_s >= w.start_s) & (self.rel_s < w.end_s))
            if len(span):
                self.raw[span, i] = self.raw[span[0], i]

    # ------------------------------------------------------------ public API

    @property
    def path(self) -> str:
        """What the hub should open: the pty slave (or its link), or the given port."""
        if self._port is None:
            raise SourceError("emulator: not started; call start() first")
        return self._port.path

    def url(self, **options: Any) -> str:
        """The ``serial://`` source URL for :attr:`path`, with extra query options."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"serial://{self.path}" + (f"?{query}" if query else "")

    def start(self) -> "SensorHubEmulator":
        """Open the port and start playing in a background thread.

        Raises:
            SourceError: If the port cannot be opened.
        """
        if self._thread is not None:
            raise SourceError("emulator: already started")
        self._port = self._open_port()
        self._thread = threading.Thread(target=self._run_guarded, name="sensorhub-emulator", daemon=True)
        self._thread.start()
        self._say(f"sensor hub emulator on {self.path}: {self.n} samples at {self.rate_hz:g} Hz, "
                  f"speed {self.speed:g}" + (" (waiting for a reader)" if self.wait_for_reader else ""))
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the last sample was handled; True if it was.

        Raises:
            SourceError: If the playing thread failed.
        """
        done = self.finished.wait(timeout)
        if self._error is not None:
            raise SourceError(f"emulator failed: {self._error}") from None
        return done

    def stop(self) -> None:
        """Stop playing and close the port; safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            thread.join(timeout=5)
        if self._port is not None:
            self._port.close()
        if self.pty_link is not None:
            try:
                self.pty_link.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "SensorHubEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def health(self) -> Dict[str, Any]:
        """Counters, position and buzzes received, JSON-able."""
        return {"path": self._port.path if self._port is not None else None,
                "position": self.position, "samples": self.n, "finished": self.finished.is_set(),
                "buzzes": len(self.buzz_log), "counters": dict(self.counters),
                "rx": dict(self.decoder.counters)}

    # ------------------------------------------------------------ internals

    def _count(self, what: str, n: int = 1) -> None:
        self.counters[what] = self.counters.get(what, 0) + n

    def _say(self, text: str) -> None:
        if self.log is not None:
            print(text, file=self.log, flush=True)

    def _open_port(self) -> Any:
        if self.port_name is None:
            try:
                return _PtyPort(self.pty_link)
            except OSError as exc:
                raise SourceError(f"emulator: cannot create a pseudo-terminal"
                                  f"{' at ' + str(self.pty_link) if self.pty_link else ''}: {exc}") from None
        return _SerialPort(self.port_name, self.baud)

    def _capabilities(self) -> Capabilities:
        return Capabilities(device_id=self.device_id, firmware_version=EMULATOR_FIRMWARE,
                            sample_rate_hz=round(self.rate_hz, 3), accel_full_scale_g=int(self.accel_full_scale_g),
                            gyro_full_scale_dps=int(self.gyro_full_scale_dps), features=self.features,
                            max_payload=256, sensors=SENSORS)

    def _send(self, data: bytes, deadline_s: float = 0.2) -> None:
        port = self._port
        if port is None or not data:
            return
        if not port.reader_present():
            self._count("bytes_no_reader", len(data))
            return
        if self.speed == 0:  # as fast as the link takes it: wait for the reader, however long
            written = 0
            while written < len(data) and not self._stop.is_set() and port.reader_present():
                written += port.write(data[written:], time.monotonic() + 0.1)
        else:  # a real-time sensor hub cannot wait: what does not fit in time is lost
            written = port.write(data, time.monotonic() + deadline_s)
        self._count("bytes_sent", written)
        if written < len(data):
            self._count("tx_overflow_bytes", len(data) - written)

    def _send_message(self, message: Message) -> None:
        self._send(encode_message(message))

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported through wait()
            self._error = exc
            self.finished.set()

    def _wall_of(self, k: int) -> float:
        """Seconds after playback start at which sample ``k`` leaves (drift and speed applied)."""
        device_s = self.rel_s[k] / (1.0 + self.faults.drift_ppm * 1e-6)
        return 0.0 if self.speed == 0 else device_s / self.speed

    def _in_unplug(self, rel: float) -> Optional[Tuple[float, float]]:
        for window in self.faults.unplug:
            if window[0] <= rel < window[1]:
                return window
        return None

    def _run(self) -> None:
        if self.wait_for_reader:
            while not self._stop.is_set() and not self._port.reader_present():
                self._service_rx(0.005)
            # pyserial flushes its input after opening the port (like a USB CDC device waiting
            # for DTR, give the reader a moment so the first frames are not flushed away).
            self._stop.wait(READER_SETTLE_S)
        self._send_message(self._capabilities())
        t0 = time.monotonic()
        self._garbage_at = self._garbage_times()
        self._next_garbage = 0
        self._next_status = 0.0
        self._held = None
        self._silenced_before = np.zeros(len(SENSORS), bool)
        unplugged = False
        k = 0
        while not self._stop.is_set() and k < self.n:
            wait = t0 + self._wall_of(k) - time.monotonic()
            if wait > 0:
                self._service_rx(min(wait, 0.05))
                continue
            if k % 16 == 0:
                self._service_rx(0.0)  # behind schedule or speed 0: still answer the hub
            rel = float(self.rel_s[k])
            in_window = self._in_unplug(rel) is not None and isinstance(self._port, (_PtyPort, _Unplugged))
            if in_window and not unplugged:
                unplugged = True
                self._port.close()
                self._port = _Unplugged(self._port.path)
                if self.pty_link is not None:  # like udev removing /dev/serial/by-id/... on unplug
                    try:
                        self.pty_link.unlink()
                    except FileNotFoundError:
                        pass
                self._count("unplugs")
                self._say(f"emulator: unplugged at {rel:.2f} s")
            elif unplugged and not in_window:
                unplugged = False
                self._port = _PtyPort(self.pty_link)
                self._say(f"emulator: plugged back in at {rel:.2f} s on {self._port.path}")
                self._send_message(self._capabilities())
            if unplugged:
                self._count("frames_unplugged")
            else:
                self._send(self._sample_bytes(k, rel))
            self.position = k
            k += 1
        if self._stop.is_set():
            return
        if self._held is not None:
            self._send(self._held)
            self._held = None
        self.finished.set()
        self._say(f"emulator: played {self.n} samples in {time.monotonic() - t0:.2f} s; {self.counters}")
        # After the last sample: keep answering Hello and Buzz, and send Status now and then.
        t_status = time.monotonic()
        while not self._stop.is_set():
            self._service_rx(0.05)
            if self.status_interval_s > 0 and time.monotonic() - t_status >= self.status_interval_s:
                self._send_message(self._status(self.n - 1))
                t_status = time.monotonic()

    def _sample_bytes(self, k: int, rel: float) -> bytes:
        """Everything sent at sample ``k``: faults announced, Status, garbage, the frame."""
        out = bytearray()
        silent = self.silenced[k]
        for i in np.flatnonzero(silent & ~self._silenced_before):
            out += encode_message(Fault(sensor=int(i), code=FaultCode.IMU_NOT_FOUND,
                                        t_us=int(self.t_us[k]), detail=f"{SENSORS[i]} not answering"))
        self._silenced_before = silent
        if self.status_interval_s > 0 and rel >= self._next_status:
            out += encode_message(self._status(k))
            self._next_status = rel + self.status_interval_s
        while self._next_garbage < len(self._garbage_at) and self._garbage_at[self._next_garbage] <= rel:
            out += self.rng.integers(0, 256, self.faults.garbage_bytes, dtype=np.uint8).tobytes()
            self._count("garbage_bursts")
            self._next_garbage += 1
        out += self._frame_bytes(k)
        return bytes(out)

    def _garbage_times(self) -> np.ndarray:
        rate = self.faults.garbage_per_min / 60.0
        duration = float(self.rel_s[-1]) if self.n > 1 else 0.0
        if rate <= 0 or duration <= 0:
            return np.zeros(0)
        gaps = self.rng.exponential(1.0 / rate, int(rate * duration * 2 + 10))
        times = np.cumsum(gaps)
        return times[times < duration]

    def _status(self, k: int) -> Status:
        states = tuple(SensorState.MISSING if s else SensorState.OK for s in self.silenced[k])
        faults = (FaultCode.IMU_NOT_FOUND,) if self.silenced[k].any() else ()
        uptime = int(self.t_us[k] // 1_000_000)
        battery = max(0, 100 - uptime // 360)  # ~1 % per 6 minutes
        return Status(uptime_s=uptime, battery_pct=battery, battery_mv=3600 + 6 * battery,
                      sensor_states=states, faults=faults)

    def _frame_bytes(self, k: int) -> bytes:
        """Encode sample ``k`` with the frame-level faults applied; may return b""."""
        faults = self.faults
        rng = self.rng
        if faults.drop_share and rng.random() < faults.drop_share:
            self._count("frames_dropped")
            return b""
        frame = SampleFrame(seq=int(self.seqs[k]) & 0xFFFFFFFF, t_us=int(self.t_us[k]),
                            valid_mask=int(self.masks[k]), raw=self.raw[k])
        wire = bytearray(encode_message(frame))
        self._count("frames_sent")
        if faults.bit_flip_share and rng.random() < faults.bit_flip_share:
            pos = int(rng.integers(0, len(wire) - 1))
            wire[pos] ^= 1 << int(rng.integers(0, 8))
            self._count("frames_bit_flipped")
        if faults.truncate_share and rng.random() < faults.truncate_share:
            wire = wire[:int(rng.integers(1, len(wire) - 1))]
            self._count("frames_truncated")
        out = bytes(wire)
        if faults.repeat_share and rng.random() < faults.repeat_share:
            out = out + out
            self._count("frames_repeated")
        if self._held is not None:
            out, self._held = out + self._held, None
        elif faults.reorder_share and k < self.n - 1 and rng.random() < faults.reorder_share:
            self._held, out = out, b""
            self._count("frames_reordered")
        return out

    def _service_rx(self, timeout: float) -> None:
        """Wait up to ``timeout`` for bytes from the hub and answer them."""
        port = self._port
        fd = port.fileno() if port is not None else None
        if fd is None:
            time.sleep(timeout)
            data = port.read() if port is not None else b""
        else:
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            except (OSError, ValueError):
                time.sleep(timeout)
                return
            if not ready:
                return
            data = port.read()
            if not data and isinstance(port, _PtyPort) and not port.reader_present():
                time.sleep(min(timeout, 0.005))  # HUP keeps select readable; do not spin
                return
        for message in self.decoder.feed(data):
            self._answer(message)

    def _answer(self, message: Message) -> None:
        if isinstance(message, Hello):
            self._count("hello_answered")
            self._send_message(self._capabilities())
        elif isinstance(message, Buzz):
            if not self.features & Feature.BUZZ:
                self._send_message(Nak(of_type=Buzz.TYPE, ref=message.buzz_id, reason=NakReason.UNSUPPORTED,
                                       detail="no motor"))
                return
            k = max(self.position, 0)
            record = BuzzRecord(t_recording=float(self.timestamps[k]), t_host=time.monotonic(), sample_index=k,
                                buzz_id=message.buzz_id, pattern_ms=tuple(message.pattern_ms))
            with self._lock:
                self.buzz_records.append(record)
                self.buzz_log.append((record.t_recording, record.pattern_ms))
            self._count("buzz_received")
            self._say(f"emulator: buzz {list(message.pattern_ms)} ms at recording time {record.t_recording:.2f}")
            self._send_message(Ack(of_type=Buzz.TYPE, ref=message.buzz_id))
        else:
            self._count("unsupported_requests")
            self._send_message(Nak(of_type=message.TYPE, ref=0, reason=NakReason.UNSUPPORTED,
                                   detail=f"{type(message).__name__} is not handled by a sensor hub"))


__all__ = ["BuzzRecord", "FaultPlan", "SensorHubEmulator", "SensorWindow", "load_recording"]
