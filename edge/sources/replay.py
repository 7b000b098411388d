"""``replay://PATH``: play a recorded trial, data set or shift as six IMU streams.

URL format::

    replay:///abs/path/trial.csv           one trial CSV (the data set format)
    replay:///abs/path/dataset_dir         a data set folder (index.csv): its
                                           trials one after another
    replay:///abs/path/shift_dir           a shift recording (a folder with one
                                           recording CSV and events.csv), or
                                           the recording CSV itself
    replay://relative/path?speed=N&loop=K&gap=S&start=S

Options:

``speed``
    Multiple of real time (default 1). ``speed=0`` replays as fast as
    possible, yielding to the event loop every ``batch`` rows.
``loop``
    Play the recording ``loop`` more times after the first (default 0);
    ``loop=-1`` repeats until closed.
``gap``
    Seconds of silence (no readings) inserted between the trials of a data
    set, and between loops (default 2). A hub sees each gap as an outage of
    every sensor, so a lift window never spans two trials and is clamped at a
    trial's edges exactly as training's ``cut_lift`` clamps it.
``start``
    Skip this many seconds at the beginning of the recording (default 0).
``batch``
    Rows handed over between yields to the event loop at ``speed=0``
    (default 25).

Every CSV row becomes six :class:`~edge.sources.base.SensorReading` events in
:data:`edge.layout.SENSORS` order, with ``seq`` the row number (per sensor)
and ``t_sensor`` the row's ``Time_stp``. Values stay float64 as
:func:`edge.dataset.read_trial_csv` parsed them (live links deliver float32),
so a replayed trial reaches the lift detector bit-identical to what training
read.

Timing works like python-can's ``MessageSync``: the source keeps a *replay
clock*. ``t_host`` of each reading is the time the reading would have arrived
had the recording been played in real time from the moment replay started
(host clock at the start plus elapsed recording time, gaps included), so the
aligner and lift detector behave identically at every speed. At ``speed=N``
the source sleeps until ``clock() >= t_start + elapsed / N`` before yielding
a row. ``clock`` and ``sleep`` are injectable for tests.
:meth:`ReplaySource.now` gives the current replay-clock time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from ..errors import ConfigError, LiftGuardError, SourceError
from ..layout import SAMPLE_RATE_HZ, SENSORS
from .base import ImuSource, SensorReading, SourceEvent, SourceStatus

_OPTIONS = {"speed", "loop", "gap", "start", "batch"}


@dataclasses.dataclass
class ReplaySegment:
    """One contiguous piece of a recording (a trial, or a whole shift).

    Attributes:
        name: Trial id or file name, for messages and health.
        samples: ``(n, 36)`` float64 raw samples.
        timestamps: ``(n,)`` float64 ``Time_stp`` seconds.
    """

    name: str
    samples: np.ndarray
    timestamps: np.ndarray


def path_of_url(url: str) -> Path:
    """Return the file-system path in a ``replay://`` URL (absolute or relative)."""
    parts = urlsplit(url)
    return Path(unquote(parts.netloc + parts.path))


def _find_shift_csv(folder: Path) -> Optional[Path]:
    csvs = sorted(p for p in folder.glob("*.csv") if p.name not in ("events.csv", "index.csv"))
    return csvs[0] if len(csvs) == 1 else None


def load_segments(path: Path) -> List[ReplaySegment]:
    """Read what ``path`` names into replay segments.

    Args:
        path: A trial or shift CSV, a data set folder (``index.csv``), or a
            shift folder (``events.csv`` beside exactly one recording CSV).

    Returns:
        The segments in play order.

    Raises:
        SourceError: If nothing playable is at ``path`` (the message names it).
    """
    from ..dataset import load_dataset, read_trial_csv  # lands with the data set format

    try:
        if path.is_file():
            trial = read_trial_csv(path)
            return [ReplaySegment(path.name, trial.samples, trial.timestamps)]
        if path.is_dir():
            if (path / "index.csv").is_file():
                ds = load_dataset(path)
                segments = []
                for meta in ds.trials:
                    trial = ds.read(meta)
                    segments.append(ReplaySegment(meta.trial_id, trial.samples, trial.timestamps))
                if not segments:
                    raise SourceError(f"replay: data set {path} has no trials")
                return segments
            shift = _find_shift_csv(path)
            if shift is not None:
                trial = read_trial_csv(shift)
                return [ReplaySegment(shift.name, trial.samples, trial.timestamps)]
            raise SourceError(f"replay: folder {path} has neither index.csv (a data set) nor exactly one "
                              f"recording CSV beside events.csv (a shift)")
    except SourceError:
        raise
    except LiftGuardError as exc:
        raise SourceError(f"replay: cannot read {path}: {exc}") from None
    raise SourceError(f"replay: {path} does not exist; expected a trial CSV, a data set folder or a shift "
                      f"folder")


def _parse_options(url: str) -> Dict[str, float]:
    query = parse_qs(urlsplit(url).query)
    unknown = set(query) - _OPTIONS
    if unknown:
        raise ConfigError(f"source URL {url!r}: unknown option(s) {', '.join(sorted(unknown))}; expected "
                          f"{', '.join(sorted(_OPTIONS))}")
    opts = {"speed": 1.0, "loop": 0.0, "gap": 2.0, "start": 0.0, "batch": 25.0}
    for key, values in query.items():
        try:
            opts[key] = float(values[-1])
        except ValueError:
            raise ConfigError(f"source URL {url!r}: {key}={values[-1]!r} is not a number") from None
    if opts["speed"] < 0:
        raise ConfigError(f"source URL {url!r}: speed={opts['speed']:g}; expected >= 0 (0 = as fast as possible)")
    if opts["loop"] < -1 or opts["loop"] != int(opts["loop"]):
        raise ConfigError(f"source URL {url!r}: loop={opts['loop']:g}; expected an integer >= -1")
    if opts["gap"] < 0 or opts["start"] < 0:
        raise ConfigError(f"source URL {url!r}: gap and start must be >= 0 seconds")
    if opts["batch"] < 1:
        raise ConfigError(f"source URL {url!r}: batch={opts['batch']:g}; expected >= 1")
    return opts


class ReplaySource(ImuSource):
    """Replay recordings as per-sensor readings, re-timed on a replay clock.

    Args:
        url: ``replay://PATH[?speed=N&loop=K&gap=S&start=S&batch=B]``.
        clock: Monotonic clock in seconds (default ``time.monotonic``).
        sleep: Async sleep (default ``asyncio.sleep``).
        segments: Segments to play instead of reading ``PATH`` (tests, rigs).
    """

    scheme = "replay"

    def __init__(self, url: str, *, clock: Optional[Callable[[], float]] = None,
                 sleep: Optional[Callable[[float], Awaitable[Any]]] = None,
                 segments: Optional[List[ReplaySegment]] = None) -> None:
        super().__init__(url)
        if urlsplit(url).scheme != "replay":
            raise ConfigError(f"source URL {url!r}: expected replay://PATH")
        opts = _parse_options(url)
        self.speed = opts["speed"]
        self.loops = int(opts["loop"])
        self.gap_s = opts["gap"]
        self.start_s = opts["start"]
        self.batch = int(opts["batch"])
        self.path = path_of_url(url)
        self.clock = clock or time.monotonic
        self.sleep = sleep or asyncio.sleep
        self._segments = segments
        self._closed = False
        self._t_start_host: Optional[float] = None
        self._elapsed = 0.0  # replay-clock seconds since start of the last yielded row
        self.rows_played = 0
        self.position = ""

    async def open(self, *, timeout: float = 10.0) -> None:
        """Read the recording (in a worker thread) so problems surface here."""
        if self._segments is None:
            loop = asyncio.get_running_loop()
            self._segments = await loop.run_in_executor(None, load_segments, self.path)
        self._closed = False

    async def close(self) -> None:
        """Stop replaying; safe to call twice."""
        self._closed = True

    @property
    def segments(self) -> List[ReplaySegment]:
        """The loaded segments (after :meth:`open`)."""
        if self._segments is None:
            raise SourceError(f"{self.url}: not open")
        return self._segments

    def now(self) -> float:
        """Current time on the replay clock (see the module docstring)."""
        if self._t_start_host is None:
            return self.clock()
        if self.speed == 0:
            return self._t_start_host + self._elapsed
        return self._t_start_host + (self.clock() - self._t_start_host) * self.speed

    def duration_s(self) -> float:
        """Replay-clock length of one pass, gaps included."""
        total = 0.0
        for i, seg in enumerate(self.segments):
            total += len(seg.samples) / SAMPLE_RATE_HZ + (self.gap_s if i else 0.0)
        return total

    def _rows(self) -> Iterator[Tuple[float, float, np.ndarray, str]]:
        """Yield (elapsed replay seconds, Time_stp, row, segment name) forever or for the loops."""
        elapsed_base = 0.0
        passes = 0
        while True:
            for i, seg in enumerate(self.segments):
                if passes or i:
                    elapsed_base += self.gap_s
                ts = seg.timestamps
                n = len(ts)
                first = 0
                if self.start_s and passes == 0 and i == 0:
                    first = int(np.searchsorted(ts - ts[0], self.start_s - 1e-9))
                if first >= n:
                    continue
                t0 = ts[first]
                for k in range(first, n):
                    yield elapsed_base + (ts[k] - t0), ts[k], seg.samples[k], seg.name
                elapsed_base += (ts[n - 1] - t0) + 1.0 / SAMPLE_RATE_HZ
            passes += 1
            if self.loops != -1 and passes > self.loops:
                return

    async def events(self) -> AsyncIterator[SourceEvent]:
        """Yield six readings per recorded row, paced by ``speed``."""
        segments = self.segments  # raises if not open
        if not segments:
            return
        self._t_start_host = self.clock()
        t_start = self._t_start_host
        yield SourceStatus(None, "connected", f"replaying {self.path} at speed {self.speed:g}", t_start)
        seqs = [0] * len(SENSORS)
        since_yield = 0
        for elapsed, t_rec, row, name in self._rows():
            if self._closed:
                break
            if self.speed > 0:
                due = t_start + elapsed / self.speed
                delay = due - self.clock()
                if delay > 0:
                    await self.sleep(delay)
                    since_yield = 0
            else:
                since_yield += 1
                if since_yield >= self.batch:
                    since_yield = 0
                    await asyncio.sleep(0)
            if self._closed:
                break
            self._elapsed = elapsed
            self.position = name
            t_host = t_start + elapsed
            values = row  # float64 as read: a replayed trial reaches the hub bit-identical to training's input
            for j, sensor in enumerate(SENSORS):
                yield SensorReading(sensor, seqs[j], float(t_rec), t_host, values[6 * j: 6 * j + 6])
                seqs[j] += 1
            self.rows_played += 1
        self.counters["rows"] = self.rows_played
        yield SourceStatus(None, "closed", f"replay of {self.path} finished after {self.rows_played} rows",
                           self.now())

    def health(self) -> Dict[str, Any]:
        """Link summary: path, speed, rows played and the current segment."""
        h = super().health()
        h.update(path=str(self.path), speed=self.speed, rows_played=self.rows_played,
                 position=self.position)
        return h
