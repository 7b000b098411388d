"""Six IMU streams with their own clocks become one 25 Hz grid.

Every source delivers :class:`~edge.sources.base.SensorReading` events per
sensor, each stamped twice: ``t_sensor`` on the sensor's own clock and
``t_host`` when it arrived. The :class:`Aligner` turns them into
:class:`GridRow` records (36 values, one timestamp, a validity flag per
sensor) on a single 25 Hz grid in host time.

How it works
------------
Clock offsets
    For each sensor the offset between its clock and the host's is the
    minimum of ``t_host - t_sensor`` over the last ``offset_window_s``
    seconds (transport delay is never negative, so the minimum is the
    offset plus the smallest delay seen; the estimate follows slow drift).
    A sensor's sample time on the host timeline is ``t_sensor + offset``.
    The estimate restarts whenever a sensor comes back after being lost
    (it may have rebooted and restarted its clock).
Grid and interpolation
    The grid is anchored at the first sample after start (or after an
    outage) and steps by ``1 / rate_hz``. Each sensor's value at a grid time
    is interpolated linearly between its two samples around it; a sample
    within 0.1 % of a period of the grid time is taken as it is, so a
    recording replayed through the aligner comes out bit-for-bit unchanged.
Bounded delay
    A grid row is emitted as soon as every live sensor has delivered a
    sample at or after its time, and at the latest ``max_delay_s`` after
    its time (host clock, advanced by arriving readings and by :meth:`tick`)
    provided at least one sensor has data past it. A reading that arrives
    after its grid row was emitted is counted ``late`` and used only for
    later rows.
Gaps (hold / NaN policy)
    When a sensor's samples around a grid time are more than
    ``gap_factor`` periods apart, or it has none yet, that row's values for
    the sensor are a *gap*: ``valid`` is False for it and its six values are
    the last value it delivered (``gap_policy="hold"``, the default, which is
    what the simulator's dropout model does) or NaN (``gap_policy="nan"``).
    A sensor that has never delivered in this run is NaN under either
    policy. Downstream, the lift detector refuses to classify a window
    that contains NaN or in which a sensor is invalid for more than a set
    share of samples, and says which sensor.
Lost sensors and outages
    A sensor silent for ``lost_after_s`` (host time) is reported lost
    (:class:`SensorChange`) and no longer waited for, so the rest keeps
    running; it is reported ``recovered`` when it delivers again. When every
    sensor is lost the grid stops and an :class:`Outage` is emitted; the next
    reading starts a new run with a fresh anchor.

Counters (per sensor, in :meth:`Aligner.health`): readings, out_of_order
(a time stamp not after the previous one: repeats and reordering), late,
gap_rows, lost events, clock_restart (a time stamp more than
``clock_restart_s`` behind the previous one: the sensor rebooted without
falling silent long enough to be lost; its offset is estimated afresh).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import ConfigError
from .layout import SAMPLE_RATE_HZ, SENSORS
from .sources.base import SensorReading

GAP_POLICIES = ("hold", "nan")


@dataclasses.dataclass
class GridRow:
    """One instant of the aligned 25 Hz stream.

    Attributes:
        index: Row number since the aligner started (continues across outages).
        t: Grid time on the host clock, seconds.
        values: ``(36,)`` float64 in :data:`edge.layout.CHANNELS` order.
        valid: ``(6,)`` bool, per sensor in :data:`edge.layout.SENSORS` order:
            False where the row holds a gap value.
    """

    index: int
    t: float
    values: np.ndarray
    valid: np.ndarray


@dataclasses.dataclass
class SensorChange:
    """A sensor was lost, recovered, or delivered for the first time.

    Attributes:
        sensor: Sensor name.
        state: ``"connected"``, ``"lost"`` or ``"recovered"``.
        detail: Human-readable explanation.
        t: Host time of the change.
    """

    sensor: str
    state: str
    detail: str
    t: float


@dataclasses.dataclass
class Outage:
    """Every sensor is lost (or the stream ended): the grid stopped.

    Attributes:
        t: Host time the outage was noticed.
        detail: Why.
    """

    t: float
    detail: str


AlignedEvent = Union[GridRow, SensorChange, Outage]


@dataclasses.dataclass
class AlignerSettings:
    """Tunable settings of the :class:`Aligner` (all also in hub.toml ``[aligner]``).

    Attributes:
        rate_hz: Grid rate.
        max_delay_s: Longest a row waits for a slow sensor.
        lost_after_s: Silence after which a sensor is reported lost.
        gap_factor: Samples further apart than this many periods are a gap.
        gap_policy: ``"hold"`` or ``"nan"`` (see the module docstring).
        offset_window_s: Window of the clock-offset minimum.
        clock_restart_s: A time stamp this far behind the previous one is a
            restarted sensor clock (offset estimated afresh), not a reordering.
    """

    rate_hz: float = SAMPLE_RATE_HZ
    max_delay_s: float = 0.2
    lost_after_s: float = 1.0
    gap_factor: float = 1.6
    gap_policy: str = "hold"
    offset_window_s: float = 10.0
    clock_restart_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("rate_hz", "max_delay_s", "lost_after_s", "gap_factor", "offset_window_s", "clock_restart_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"aligner.{name} = {value!r}; expected a positive number")
        if self.gap_policy not in GAP_POLICIES:
            raise ConfigError(f"aligner.gap_policy = {self.gap_policy!r}; expected one of "
                              f"{', '.join(GAP_POLICIES)}")
        if self.gap_factor < 1.0:
            raise ConfigError(f"aligner.gap_factor = {self.gap_factor!r}; expected >= 1 (periods)")


class _OffsetEstimator:
    """Sliding minimum of ``t_host - t_sensor`` over blocks of host time."""

    def __init__(self, window_s: float, block_s: float = 1.0) -> None:
        self.block_s = block_s
        self.blocks: Deque[float] = collections.deque(maxlen=max(1, int(round(window_s / block_s))))
        self.block_start: Optional[float] = None
        self.cur = math.inf
        self.past = math.inf

    def update(self, t_host: float, t_sensor: float) -> float:
        d = t_host - t_sensor
        if self.block_start is None:
            self.block_start = t_host
        elif t_host - self.block_start >= self.block_s:
            self.blocks.append(self.cur)
            self.past = min(self.blocks)
            self.cur = math.inf
            self.block_start = t_host
        if d < self.cur:
            self.cur = d
        return min(self.cur, self.past)


class _SensorState:
    """Per-sensor history and counters."""

    def __init__(self, name: str, settings: AlignerSettings) -> None:
        self.name = name
        self.settings = settings
        self.hist: List[Tuple[float, np.ndarray]] = []  # (t on host timeline, values float64 (6,))
        self.offset = _OffsetEstimator(settings.offset_window_s)
        self.offset_value: Optional[float] = None
        self.live = False
        self.pending = True  # expected in this run but not heard from yet
        self.ever = False
        self.last_arrival: Optional[float] = None
        self.last_t_sensor: Optional[float] = None
        self.last_value: Optional[np.ndarray] = None
        self.counters: Dict[str, int] = collections.defaultdict(int)

    def latest_t(self) -> float:
        return self.hist[-1][0] if self.hist else -math.inf


class Aligner:
    """Put six sensors' readings on one 25 Hz grid with bounded delay.

    Args:
        settings: :class:`AlignerSettings` (defaults if None).
        sensors: Sensor names in channel order.

    Feed it with :meth:`add` (each reading) and :meth:`tick` (periodically,
    with the host clock, so rows and losses are noticed when data stops);
    both return a list of :class:`GridRow`, :class:`SensorChange` and
    :class:`Outage`. :meth:`flush` ends the stream.
    """

    def __init__(self, settings: Optional[AlignerSettings] = None,
                 sensors: Sequence[str] = SENSORS) -> None:
        self.settings = settings or AlignerSettings()
        self.sensors = tuple(sensors)
        self.period = 1.0 / self.settings.rate_hz
        self.eps = 1e-3 * self.period
        self.gap_s = self.settings.gap_factor * self.period
        self.state: Dict[str, _SensorState] = {s: _SensorState(s, self.settings) for s in self.sensors}
        self._order = [self.state[s] for s in self.sensors]
        self.now = -math.inf
        self.next_g: Optional[float] = None
        self.last_emitted: Optional[float] = None
        self.rows = 0
        self.outages = 0
        self.unknown_sensor = 0
        self.in_outage = True
        self.run_start: Optional[float] = None

    # -- public API -------------------------------------------------------
    def add(self, reading: SensorReading) -> List[AlignedEvent]:
        """Take one reading; return whatever became ready."""
        out: List[AlignedEvent] = []
        s = self.state.get(reading.sensor)
        if s is None:
            self.unknown_sensor += 1
            return out
        if reading.t_host > self.now:
            self._advance(reading.t_host, out)
        s.counters["readings"] += 1
        restarted = False
        if s.last_t_sensor is not None and reading.t_sensor <= s.last_t_sensor and s.live:
            if reading.t_sensor < s.last_t_sensor - self.settings.clock_restart_s:
                # the sensor's clock went far back (it rebooted without a silence): start it afresh
                s.counters["clock_restart"] += 1
                restarted = True
            else:
                s.counters["out_of_order"] += 1
                return out
        if restarted:
            s.offset = _OffsetEstimator(self.settings.offset_window_s)
            s.hist = [h for h in s.hist if h[0] <= (self.last_emitted or -math.inf)][-1:]
        if not s.live:
            s.offset = _OffsetEstimator(self.settings.offset_window_s)
            s.hist = []
            s.live = True
            s.pending = False
            state = "recovered" if s.ever else "connected"
            s.ever = True
            out.append(SensorChange(s.name, state, f"{s.name} delivering again" if state == "recovered"
                                    else f"{s.name} first reading", reading.t_host))
        s.last_arrival = reading.t_host
        s.last_t_sensor = reading.t_sensor
        offset = s.offset.update(reading.t_host, reading.t_sensor)
        s.offset_value = offset
        t = reading.t_sensor + offset
        values = np.asarray(reading.values, dtype=np.float64)
        if s.hist and t <= s.hist[-1][0] + self.eps:
            # the offset estimate dropped (a smaller delay was seen): keep the history monotone
            s.counters["clock_step"] += 1
            t = s.hist[-1][0] + self.eps * 2
        if self.in_outage:
            self.in_outage = False
            self.run_start = reading.t_host
            self.next_g = t
        elif self.last_emitted is not None and t < self.last_emitted - self.eps:
            s.counters["late"] += 1
        s.hist.append((t, values))
        s.last_value = values
        self._emit_ready(out, force=False)
        return out

    def tick(self, now: float) -> List[AlignedEvent]:
        """Advance the host clock to ``now`` without a reading."""
        out: List[AlignedEvent] = []
        if now > self.now:
            self._advance(now, out)
        return out

    def flush(self, detail: str = "stream ended") -> List[AlignedEvent]:
        """Emit every row for which any sensor has data, then an :class:`Outage`."""
        out: List[AlignedEvent] = []
        if not self.in_outage:
            self._emit_ready(out, force=True)
            self._outage(out, detail, self.now)
        return out

    def health(self) -> Dict[str, Any]:
        """JSON-able per-sensor state, offsets and counters."""
        sensors = {}
        for s in self._order:
            sensors[s.name] = {
                "state": "live" if s.live else ("waiting" if s.pending else "lost"),
                "clock_offset_s": None if s.offset_value is None else round(s.offset_value, 6),
                "last_arrival": s.last_arrival,
                **dict(s.counters),
            }
        return {"rows": self.rows, "outages": self.outages, "unknown_sensor": self.unknown_sensor,
                "in_outage": self.in_outage, "sensors": sensors}

    def live_sensors(self) -> List[str]:
        """Names of the sensors currently delivering."""
        return [s.name for s in self._order if s.live]

    # -- internals --------------------------------------------------------
    def _advance(self, now: float, out: List[AlignedEvent]) -> None:
        self.now = now
        # rows whose deadline passed
        self._emit_ready(out, force=False)
        # losses (a sensor whose new reading is arriving right now counts too:
        # if it was silent past the limit, it is lost and then recovers)
        for s in self._order:
            if s.live and s.last_arrival is not None and now - s.last_arrival > self.settings.lost_after_s:
                # emit the rows this sensor still covers before giving up on it
                self._emit_ready(out, force=True, upto=s.latest_t())
                s.live = False
                s.counters["lost"] += 1
                out.append(SensorChange(s.name, "lost", f"{s.name}: no reading for "
                                        f"{now - s.last_arrival:.2f} s (lost after "
                                        f"{self.settings.lost_after_s:g} s)", now))
        if self.run_start is not None:
            for s in self._order:
                if s.pending and now - self.run_start > self.settings.lost_after_s:
                    s.pending = False
                    s.counters["lost"] += 1
                    out.append(SensorChange(s.name, "lost", f"{s.name}: no reading in the "
                                            f"{now - self.run_start:.2f} s since the stream started", now))
        if not self.in_outage and not any(s.live for s in self._order):
            self._emit_ready(out, force=True)
            self._outage(out, "every sensor lost", now)

    def _outage(self, out: List[AlignedEvent], detail: str, now: float) -> None:
        self.in_outage = True
        self.run_start = None
        self.outages += 1
        self.next_g = None
        self.last_emitted = None
        for s in self._order:
            s.hist = []
            s.last_value = None
            s.live = False
            s.pending = True
        out.append(Outage(now if math.isfinite(now) else 0.0, detail))

    def _ready(self, g: float) -> bool:
        for s in self._order:
            if (s.live or s.pending) and (not s.hist or s.hist[-1][0] < g - self.eps):
                return False
        return True

    def _emit_ready(self, out: List[AlignedEvent], force: bool, upto: Optional[float] = None) -> None:
        if self.next_g is None:
            return
        while True:
            g = self.next_g
            if upto is not None and g > upto + self.eps:
                return
            if not (force or upto is not None or self._ready(g) or self.now >= g + self.settings.max_delay_s):
                return
            newest = max((s.hist[-1][0] for s in self._order if s.hist), default=-math.inf)
            if newest < g - self.eps:
                return  # nobody has data at or past g
            out.append(self._row(g))
            self.last_emitted = g
            self.next_g = g + self.period

    def _row(self, g: float) -> GridRow:
        values = np.empty(6 * len(self._order), dtype=np.float64)
        valid = np.zeros(len(self._order), dtype=bool)
        eps = self.eps
        for j, s in enumerate(self._order):
            hist = s.hist
            # prune: keep the last sample at or before g
            k = 0
            while k + 1 < len(hist) and hist[k + 1][0] <= g + eps:
                k += 1
            if k:
                del hist[:k]
            v = None
            ok = False
            if hist:
                ta, va = hist[0]
                if abs(ta - g) <= eps:
                    v, ok = va, True
                elif ta < g and len(hist) > 1:
                    tb, vb = hist[1]
                    if tb - ta <= self.gap_s:
                        w = (g - ta) / (tb - ta)
                        v, ok = va + w * (vb - va), True
            if not ok:
                s.counters["gap_rows"] += 1
                if self.settings.gap_policy == "hold" and s.last_value is not None:
                    before = [h for h in hist if h[0] <= g + eps]
                    v = before[-1][1] if before else s.last_value
                if v is None:
                    v = np.full(6, np.nan)
            values[6 * j: 6 * j + 6] = v
            valid[j] = ok
        row = GridRow(self.rows, g, values, valid)
        self.rows += 1
        return row
