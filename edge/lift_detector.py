"""Find each lift in the continuous aligned stream and cut it like training does.

Training cuts a lift out of a trial with the index's markers, which are the
movement's first and last samples (reach onset to the end of the recovery to
standing), through :func:`edge.signal_path.cut_lift` with the recipe's
margins. The hub does the same with markers it finds itself, on the
continuous 25 Hz stream from :class:`edge.aligner.Aligner`, so the model sees
what training saw.

Movement signal
    For the sensors in ``sensors`` (default Back, both wrists, upper arm):
    the sum of the gyroscope magnitudes, each gyroscope's bias removed (a
    slow average taken while the wearer is still, starting from the first
    row clipped to +-``initial_bias_dps`` per axis, so a stream that begins
    mid-movement is not blinded), after a centred moving
    average of ``smooth_s``. The wearer's resting level of this signal
    (sway, tremor, soft tissue; tracked while idle, each row counting at most
    at the ``on`` threshold) raises the thresholds for a wearer who sways a
    lot: ``off = max(off_threshold, noise_factor * rest)`` and
    ``on = off + (on_threshold - off_threshold)``.
Posture
    The accelerometers' summed distance (g) from the standing posture (a
    slow average taken while still). A lift only ends while the wearer is
    back within ``posture_home_g`` of it, which keeps the hold between
    lifting and returning (still, load in front) inside the lift; after
    ``end_quiet_posture_s`` of stillness away from it the wearer is taken to
    stand differently now and the posture is learnt anew.
Hysteresis
    A movement starts when the signal stays above ``on`` for ``confirm_s``;
    its first sample is found by walking back to just after the last sample
    below ``off``, moved ``start_lead`` samples earlier (calibrated on
    simulated trials: the slow minimum-jerk onset is under any threshold for
    a few samples). It ends at the last sample above ``off`` (plus
    ``end_lag``) once the signal has stayed below ``off`` for
    ``end_quiet_s`` with the posture home.
Gait
    Walking and turning are not lifts, but lifts often follow them directly.
    The RMS of the high-passed accelerometer magnitude of ``gait_sensors``
    (heel strikes, > ``gait_impact_g``) and of the high-passed thigh
    gyroscope (leg swing, > ``gait_thigh_dps``), over ``gait_window_s``
    windows, mark gait; ``gait_confirm_s`` of gait ends a movement in
    progress where the gait began, and no movement starts during gait.
Durations
    Movements shorter than ``min_duration_s`` are ignored (a glance, a
    shuffle, most reaches); longer than ``max_duration_s`` keep only what
    followed their last still spell of ``end_quiet_s`` (back-to-back
    bends and a lift), or are dropped as "not a lift" when there is none.
Cut and timing
    The window is ``cut_lift(buffer, start, end, recipe)``, emitted as soon as
    the sample ``end + post`` has arrived. Features use centred windows, so
    the state machine runs :attr:`LiftDetector.lag` rows (0.48 s) behind the
    newest row; with the defaults the end is confirmed ``end_quiet_s`` + lag
    after it, before ``end + post``. After an outage (every sensor lost, or
    a replayed data set's gap between trials) a lift in progress is finished
    with the samples that exist -- clamped exactly as ``cut_lift`` clamps a
    short trial -- and the buffer starts afresh, so a window never spans a
    discontinuity.
Bad data
    A window in which any sensor is invalid (a gap, see the aligner) for
    more than ``max_invalid_share`` of its samples, or that holds NaN, is
    returned with ``skip_reason`` naming the sensor instead of being
    classified.

Calibration on liftsim (``docs/hub.md``): every lift of 144 streamed trials
and of five 20-minute shifts found; 33-63 false windows per hour, from bends
and reaches without a load.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError
from .layout import SAMPLE_RATE_HZ, SENSORS, channel_index
from .signal_path import DEFAULT_POST_SAMPLES, DEFAULT_PRE_SAMPLES, cut_lift


@dataclasses.dataclass
class DetectorSettings:
    """Tunable settings of the :class:`LiftDetector` (hub.toml ``[detector]``).

    Thresholds are in deg/s of summed gyroscope magnitude; posture limits in
    g summed over the movement sensors. See the module docstring for each.
    """

    sensors: Tuple[str, ...] = ("Back", "LtWt", "RtWt", "UArm")
    rate_hz: float = SAMPLE_RATE_HZ
    smooth_s: float = 0.36
    on_threshold: float = 90.0
    off_threshold: float = 40.0
    posture_home_g: float = 0.6
    min_posture_g: float = 0.0
    confirm_s: float = 0.2
    end_quiet_s: float = 1.0
    end_quiet_posture_s: float = 5.0
    start_lead: int = 4
    end_lag: int = 2
    min_duration_s: float = 4.0
    max_duration_s: float = 20.0
    baseline_tau_s: float = 5.0
    initial_bias_dps: float = 5.0
    noise_factor: float = 1.6
    noise_tau_s: float = 5.0
    max_invalid_share: float = 0.2
    gait_detection: bool = True
    gait_sensors: Tuple[str, ...] = ("Side", "Thig")
    gait_window_s: float = 0.5
    gait_impact_g: float = 0.12
    gait_thigh_dps: float = 30.0
    gait_confirm_s: float = 0.5

    def __post_init__(self) -> None:
        self.sensors = tuple(self.sensors)
        for s in self.sensors:
            if s not in SENSORS:
                raise ConfigError(f"detector.sensors: {s!r} is not a sensor; expected some of {', '.join(SENSORS)}")
        if not self.sensors:
            raise ConfigError("detector.sensors is empty; expected at least one sensor")
        self.gait_sensors = tuple(self.gait_sensors)
        for s in self.gait_sensors:
            if s not in SENSORS:
                raise ConfigError(f"detector.gait_sensors: {s!r} is not a sensor; expected some of "
                                  f"{', '.join(SENSORS)}")
        if not isinstance(self.gait_detection, bool):
            raise ConfigError(f"detector.gait_detection = {self.gait_detection!r}; expected true or false")
        for name in ("rate_hz", "smooth_s", "on_threshold", "off_threshold", "confirm_s", "end_quiet_s",
                     "end_quiet_posture_s", "min_duration_s", "max_duration_s", "baseline_tau_s",
                     "initial_bias_dps", "noise_factor", "noise_tau_s", "gait_window_s", "gait_impact_g", "gait_thigh_dps",
                     "gait_confirm_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"detector.{name} = {v!r}; expected a positive number")
        for name in ("posture_home_g", "min_posture_g", "max_invalid_share"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"detector.{name} = {v!r}; expected a number >= 0")
        for name in ("start_lead", "end_lag"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 25:
                raise ConfigError(f"detector.{name} = {v!r}; expected an integer 0..25 (samples)")
        if self.off_threshold >= self.on_threshold:
            raise ConfigError(f"detector.off_threshold ({self.off_threshold}) must be below on_threshold "
                              f"({self.on_threshold})")
        if self.min_duration_s >= self.max_duration_s:
            raise ConfigError(f"detector.min_duration_s ({self.min_duration_s}) must be below max_duration_s "
                              f"({self.max_duration_s})")


@dataclasses.dataclass
class LiftWindow:
    """One detected lift, cut like training cuts a trial.

    Attributes:
        start_index: Aligned-row index of the movement's first sample.
        end_index: Aligned-row index of the movement's last sample.
        t_start: Grid time of ``start_index``.
        t_end: Grid time of ``end_index``.
        window: ``cut_lift`` output, ``(m, 36)`` float64 raw samples.
        first_index: Row index of ``window[0]``.
        t_last: Grid time of the window's last sample.
        invalid_share: Per sensor, the share of the window's rows that were gaps.
        skip_reason: Why the window cannot be classified, or None.
    """

    start_index: int
    end_index: int
    t_start: float
    t_end: float
    window: np.ndarray
    first_index: int
    t_last: float
    invalid_share: Dict[str, float]
    skip_reason: Optional[str] = None

    @property
    def duration_s(self) -> float:
        """Movement duration in seconds (first to last sample)."""
        return self.t_end - self.t_start

    def describe(self) -> Dict[str, Any]:
        """JSON-able summary (no samples)."""
        return {"start": self.start_index, "end": self.end_index, "first": self.first_index,
                "samples": int(self.window.shape[0]), "duration_s": round(self.duration_s, 3),
                "t_start": self.t_start, "t_end": self.t_end}


class LiftDetector:
    """Detect lifts on the aligned stream and cut their windows.

    Args:
        settings: :class:`DetectorSettings` (defaults if None).
        recipe: The bundle's :class:`~edge.signal_path.TensorRecipe`, for the
            margins; None uses the default 50/50 samples. Settable later
            (:attr:`recipe`) when a new bundle is taken up.
        capacity: Rows kept in the ring buffer (must hold pre + the longest
            lift + post).

    Every row is stored, then features are computed with centred windows, so
    the state machine runs :attr:`lag` rows behind the newest row (0.5 s by
    default); the lift's end is confirmed ``end_quiet_s`` after its last
    movement, which with the lag still falls before ``end + post``.
    """

    def __init__(self, settings: Optional[DetectorSettings] = None, recipe: Any = None,
                 capacity: Optional[int] = None) -> None:
        self.settings = st = settings or DetectorSettings()
        self.recipe = recipe
        self.rate = st.rate_hz
        need = DEFAULT_PRE_SAMPLES + int(st.max_duration_s * self.rate) + DEFAULT_POST_SAMPLES + 100
        self.capacity = max(capacity or 0, need, 1024)
        cap = self.capacity
        n_s = len(st.sensors)
        self._buf = np.zeros((cap, 36), dtype=np.float64)
        self._valid = np.ones((cap, len(SENSORS)), dtype=bool)
        self._times = np.zeros(cap, dtype=np.float64)
        # Per-row features live in plain lists: a row's arithmetic on a dozen floats is several
        # times faster in Python than through numpy's per-call overhead (see benchmarks/bench_hub.py).
        self._act = [0.0] * cap              # movement signal per row, deg/s
        self._pdev = [0.0] * cap             # posture deviation per row, g
        self._means: List[List[float]] = [[0.0] * (6 * n_s) for _ in range(cap)]  # smoothed gyro then accel
        self._gait = [False] * cap
        self._raw: List[List[float]] = [[0.0] * (6 * n_s) for _ in range(cap)]
        #: Columns read per row: the movement sensors' gyroscopes, their accelerometers, the gait
        #: sensors' accelerometers, the thigh gyroscope.
        self._sel = ([channel_index(s, "G", a) for s in st.sensors for a in "xyz"]
                     + [channel_index(s, "A", a) for s in st.sensors for a in "xyz"]
                     + [channel_index(s, "A", a) for s in st.gait_sensors for a in "xyz"]
                     + [channel_index("Thig", "G", a) for a in "xyz"])
        self._n_s = n_s
        self._half = max(0, int(round(st.smooth_s * self.rate / 2.0)))
        self._smooth_n = 2 * self._half + 1
        # gait features: impact energy of the gait sensors' accelerometers, swing of the thigh gyroscope
        self._n_gait = len(st.gait_sensors)
        self._h1 = max(1, int(round(st.gait_window_s * self.rate / 2.0)))  # high-pass half window
        self._h2 = self._h1  # RMS half window
        self._m: List[List[float]] = [[0.0] * (self._n_gait + 3) for _ in range(cap)]  # |acc| + thigh gyro
        self._hp2: List[List[float]] = [[0.0] * (self._n_gait + 1) for _ in range(cap)]  # squared high-passed
        #: Rows between the newest row and the row the state machine evaluates.
        self.lag = max(self._half, self._h1 + self._h2) if st.gait_detection else self._half
        self._confirm_n = max(1, int(round(st.confirm_s * self.rate)))
        self._gait_n = max(1, int(round(st.gait_confirm_s * self.rate)))
        self._quiet_n = max(1, int(round(st.end_quiet_s * self.rate)))
        self._quiet_posture_n = max(self._quiet_n, int(round(st.end_quiet_posture_s * self.rate)))
        self._min_n = int(round(st.min_duration_s * self.rate))
        self._max_n = int(round(st.max_duration_s * self.rate))
        self._alpha = 1.0 - math.exp(-1.0 / (st.baseline_tau_s * self.rate))
        self._noise_alpha = 1.0 - math.exp(-1.0 / (st.noise_tau_s * self.rate))
        #: Counters: rows, movements, too_short, too_long, gait_cut, windows, skipped, resets, cut_off.
        self.counters: Dict[str, int] = {k: 0 for k in ("rows", "movements", "too_short", "too_long", "gait_rows",
                                                          "gait_cut", "restarted", "windows", "skipped", "resets", "cut_off",
                                                          "no_posture_change")}
        self._reset_state()
        self.i = -1  # global row index of the newest row

    # -- margins -----------------------------------------------------------
    @property
    def pre(self) -> int:
        """Samples kept before a lift's first sample."""
        return self.recipe.pre_samples if self.recipe is not None else DEFAULT_PRE_SAMPLES

    @property
    def post(self) -> int:
        """Samples kept after a lift's last sample."""
        return self.recipe.post_samples if self.recipe is not None else DEFAULT_POST_SAMPLES

    # -- state -------------------------------------------------------------
    def _reset_state(self) -> None:
        n_s = len(self.settings.sensors)
        self.first: Optional[int] = None  # global index of the first row since the last reset
        self.state = "idle"                # idle | active | too_long | gait
        self.above = 0
        self.gait_run = 0
        self.floor: Optional[int] = None   # a movement never starts before this row (end of gait)
        self.start: Optional[int] = None
        self.last_motion: Optional[int] = None
        self.max_posture = 0.0
        self.noise: Optional[float] = None
        self.off = self.settings.off_threshold
        self.on = self.settings.on_threshold
        self.pending: List[Tuple[int, int]] = []  # (start, end) awaiting end + post
        self.gyro_bias: Optional[List[float]] = None  # 3 per movement sensor
        self.posture: Optional[List[float]] = None    # 3 per movement sensor, g
        self._run = [0.0] * (6 * n_s)
        self._m_run = [0.0] * (self._n_gait + 3)
        self._hp2_run = [0.0] * (self._n_gait + 1)
        self.evaluated: Optional[int] = None

    def _slot(self, i: int) -> int:
        return i % self.capacity

    # -- feeding -------------------------------------------------------------
    def push(self, t: float, values: np.ndarray, valid: Optional[np.ndarray] = None) -> List[LiftWindow]:
        """Add one aligned row; return the windows completed by it.

        Args:
            t: Grid time of the row.
            values: ``(36,)`` raw values.
            valid: ``(6,)`` per-sensor validity (all True if None).
        """
        st = self.settings
        self.i += 1
        i = self.i
        if self.first is None:
            self.first = i
        k = self._slot(i)
        self._buf[k] = values
        self._times[k] = t
        self._valid[k] = True if valid is None else valid
        self.counters["rows"] += 1

        u = [values[q] for q in self._sel] if not isinstance(values, np.ndarray) else values[self._sel].tolist()
        n_s3 = 3 * self._n_s
        n_mv = 2 * n_s3
        total = math.fsum(u)
        if not math.isfinite(total):
            if self.gyro_bias is None:
                self.first = i + 1  # nothing to learn the standing posture from yet
                return self._due(i)
            # a gap under the NaN policy: no evidence of movement (baseline values), no gait
            base = self.gyro_bias + self.posture
            u = [x if math.isfinite(x) else (base[q] if q < n_mv else 0.0) for q, x in enumerate(u)]
        if self.gyro_bias is None:
            # the first row may come in the middle of a movement (a hub restarted mid-shift): taken
            # as the gyroscope bias it would hide later movements until the slow still-time average
            # undid it, minutes later. A MEMS gyroscope's bias is a few deg/s, so each axis starts
            # from the first row clipped to +-initial_bias_dps; stillness refines it.
            lim = float(st.initial_bias_dps)
            self.gyro_bias = [min(lim, max(-lim, x)) for x in u[:n_s3]]
            self.posture = u[n_s3:n_mv]
        n_rows = i - self.first + 1

        # 1. movement signal for row i - half (centred moving average of 2h+1 rows)
        mv = u[:n_mv]
        self._raw[k] = mv
        run = self._run
        w = self._smooth_n
        if n_rows > w:
            old = self._raw[self._slot(i - w)]
            for q in range(n_mv):
                run[q] += mv[q] - old[q]
        else:
            for q in range(n_mv):
                run[q] += mv[q]
        if n_rows >= w:
            c = self._slot(i - self._half)
            means = [r / w for r in run]
            self._means[c] = means
            bias, post = self.gyro_bias, self.posture
            act = pdev = 0.0
            for q in range(0, n_s3, 3):
                dx, dy, dz = means[q] - bias[q], means[q + 1] - bias[q + 1], means[q + 2] - bias[q + 2]
                act += math.sqrt(dx * dx + dy * dy + dz * dz)
                r = n_s3 + q
                dx, dy, dz = means[r] - post[q], means[r + 1] - post[q + 1], means[r + 2] - post[q + 2]
                pdev += math.sqrt(dx * dx + dy * dy + dz * dz)
            self._act[c] = act
            self._pdev[c] = pdev

        # 2. gait for row i - h1 - h2: high-pass (centred mean over 2*h1+1), then RMS over 2*h2+1
        if st.gait_detection:
            n_g = self._n_gait
            m = [math.sqrt(u[q] * u[q] + u[q + 1] * u[q + 1] + u[q + 2] * u[q + 2])
                 for q in range(n_mv, n_mv + 3 * n_g, 3)] + u[n_mv + 3 * n_g:]
            self._m[k] = m
            m_run = self._m_run
            w1 = 2 * self._h1 + 1
            if n_rows > w1:
                old = self._m[self._slot(i - w1)]
                for q in range(n_g + 3):
                    m_run[q] += m[q] - old[q]
            else:
                for q in range(n_g + 3):
                    m_run[q] += m[q]
            if n_rows >= w1:
                c = i - self._h1
                cm = self._m[self._slot(c)]
                hp = [cm[q] - m_run[q] / w1 for q in range(n_g + 3)]
                hp2 = [h * h for h in hp[:n_g]] + [hp[n_g] ** 2 + hp[n_g + 1] ** 2 + hp[n_g + 2] ** 2]
                self._hp2[self._slot(c)] = hp2
                r2 = self._hp2_run
                w2 = 2 * self._h2 + 1
                n_hp = c - self.first - self._h1 + 1
                if n_hp > w2:
                    old = self._hp2[self._slot(c - w2)]
                    for q in range(n_g + 1):
                        r2[q] += hp2[q] - old[q]
                else:
                    for q in range(n_g + 1):
                        r2[q] += hp2[q]
                if n_hp >= w2:
                    lim_acc = st.gait_impact_g ** 2 * w2
                    gait = any(r2[q] > lim_acc for q in range(n_g)) or r2[n_g] > st.gait_thigh_dps ** 2 * w2
                    self._gait[self._slot(c - self._h2)] = gait

        # 3. the state machine, lag rows behind
        j = i - self.lag
        if j < self.first + self.lag:
            return self._due(i)
        self.evaluated = j
        self._step(j)
        return self._due(i)

    def _step(self, j: int) -> None:
        st = self.settings
        c = self._slot(j)
        a = float(self._act[c])
        posture_dev = float(self._pdev[c])
        gait = bool(self._gait[c]) if st.gait_detection else False
        self.gait_run = self.gait_run + 1 if gait else 0
        if gait:
            self.counters["gait_rows"] += 1

        if self.gait_run >= self._gait_n and self.state != "gait":
            # walking or turning: not a lift; a movement in progress ended where the gait began
            gait_start = j - self.gait_run + 1
            if self.state == "active":
                last = min(self.last_motion, gait_start - 1)
                self.counters["gait_cut"] += 1
                self._finish(j, max(last, self.start))
            self.state = "gait"
            self.above = 0
            return
        if self.state == "gait":
            if not gait:
                self.state = "idle"
                self.floor = j
            else:
                return

        if self.state == "idle":
            # the wearer's resting level (sway, tremor, soft tissue) sets the thresholds
            # (each row counts at most at the current off threshold, so movements that do not start a
            # lift, and the tails of gait, barely raise it)
            level = min(a, self.on)
            self.noise = level if self.noise is None else self.noise + self._noise_alpha * (level - self.noise)
            self.off = max(st.off_threshold, st.noise_factor * self.noise)
            self.on = max(st.on_threshold, self.off + (st.on_threshold - st.off_threshold))
            if a < self.off and not gait:
                # still: follow slow bias and posture changes
                means, al, n_s3 = self._means[c], self._alpha, 3 * self._n_s
                self.gyro_bias = [b + al * (x - b) for b, x in zip(self.gyro_bias, means[:n_s3])]
                self.posture = [p + al * (x - p) for p, x in zip(self.posture, means[n_s3:])]
            if a > self.on:
                self.above += 1
                if self.above >= self._confirm_n:
                    self._begin(j)
            else:
                self.above = 0
            return

        # active or too_long
        if a >= self.off:
            if j - self.last_motion > self._quiet_n:
                # movement again after a still spell: a later lift may start here
                self.restart_at = j
            self.last_motion = j
        if posture_dev > self.max_posture:
            self.max_posture = posture_dev
        if self.state == "active" and j - self.start + 1 > self._max_n:
            if self.restart_at is not None and j - self.restart_at + 1 <= self._max_n // 2:
                # back-to-back movements: drop the older ones, keep what followed the last still spell
                self.counters["restarted"] += 1
                self.start = max(self.first, self.restart_at - st.start_lead)
                self.restart_at = None
                self.max_posture = posture_dev
            else:
                self.counters["too_long"] += 1
                self.state = "too_long"
        quiet = j - self.last_motion
        if quiet >= self._quiet_n and posture_dev <= st.posture_home_g:
            # still, and back in the standing posture
            self._finish(j, self.last_motion)
        elif quiet >= self._quiet_posture_n:
            # still for long but not in the old posture: the wearer now stands differently
            self._finish(j, self.last_motion)
            self.posture = self._means[c][3 * self._n_s:]

    def _begin(self, j: int) -> None:
        st = self.settings
        lo = max(self.first + self._half, j - self._max_n)
        if self.floor is not None:
            lo = max(lo, self.floor)
        s = j
        while s - 1 >= lo and self._act[self._slot(s - 1)] >= self.off:
            s -= 1
        floor = self.first if self.floor is None else max(self.first, self.floor)
        self.start = max(floor, s - st.start_lead)
        self.last_motion = j
        self.restart_at: Optional[int] = None
        self.max_posture = 0.0
        self.state = "active"
        self.above = 0
        self.counters["movements"] += 1

    def _finish(self, j: int, last: int) -> None:
        was = self.state
        self.state = "idle"
        self.above = 0
        if was == "too_long":
            # re-learn the standing posture: the wearer may stand differently now
            self.posture = self._means[self._slot(j)][3 * self._n_s:]
            return
        end = min(last + self.settings.end_lag, j)
        if end - self.start + 1 < self._min_n:
            self.counters["too_short"] += 1
            return
        if self.max_posture < self.settings.min_posture_g:
            self.counters["no_posture_change"] += 1
            return
        self.pending.append((self.start, end))

    def _due(self, i: int) -> List[LiftWindow]:
        out = []
        while self.pending and self.pending[0][1] + self.post <= i:
            start, end = self.pending.pop(0)
            out.append(self._cut(start, end, i))
        return out

    def _cut(self, start: int, end: int, newest: int) -> LiftWindow:
        """Cut ``[start - pre, end + post]`` from the buffer with ``cut_lift``."""
        lo = max(self.first, newest - self.capacity + 1)
        # rows [lo, newest] are in the buffer; cut_lift works on a contiguous copy
        idx = np.arange(lo, newest + 1) % self.capacity
        samples = self._buf[idx]
        window = cut_lift(samples, start - lo, end - lo, self.recipe,
                          pre_samples=self.pre, post_samples=self.post)
        first_index = max(lo, start - self.pre)
        rows = np.arange(first_index, first_index + window.shape[0]) % self.capacity
        valid = self._valid[rows]
        invalid_share = {s: round(float(1.0 - valid[:, j].mean()), 4) for j, s in enumerate(SENSORS)}
        reason = None
        worst = max(invalid_share, key=invalid_share.get)
        if invalid_share[worst] > self.settings.max_invalid_share:
            reason = (f"sensor {worst} missing for {invalid_share[worst]:.0%} of the window "
                      f"(limit {self.settings.max_invalid_share:.0%})")
        elif not np.all(np.isfinite(window)):
            bad = np.argwhere(~np.isfinite(window))[0]
            reason = f"sensor {SENSORS[bad[1] // 6]} has no value at window sample {bad[0]}"
        if reason:
            self.counters["skipped"] += 1
        else:
            self.counters["windows"] += 1
        return LiftWindow(start_index=start, end_index=end, t_start=float(self._times[self._slot(start)]),
                          t_end=float(self._times[self._slot(end)]), window=window, first_index=first_index,
                          t_last=float(self._times[rows[-1]]), invalid_share=invalid_share, skip_reason=reason)

    def flush(self) -> List[LiftWindow]:
        """The stream stopped (an outage or its end): finish what can be finished, then reset.

        A lift whose movement has ended (at least one still sample after it)
        is cut with the samples that exist; one still moving is dropped.
        """
        out: List[LiftWindow] = []
        if self.first is not None and self.i >= self.first:
            i = self.i
            j = self.evaluated
            if self.state == "active" and j is not None and self.last_motion < j:
                self._finish(j, self.last_motion)
            elif self.state == "active":
                self.counters["cut_off"] += 1  # still moving when the stream stopped
            for start, end in self.pending:
                out.append(self._cut(start, end, i))
            self.pending = []
        self.counters["resets"] += 1
        self._reset_state()
        return out

    def health(self) -> Dict[str, Any]:
        """JSON-able state and counters."""
        return {"state": self.state, "pre": self.pre, "post": self.post, **self.counters}


def match_lifts(detected: Sequence[Tuple[int, int]], truth: Sequence[Tuple[int, int]],
                min_overlap: float = 0.5) -> Dict[str, Any]:
    """Score detected movements against true lifts (sample indices, inclusive).

    A true lift is found when a detection overlaps it by at least
    ``min_overlap`` of the shorter of the two; each detection matches at most
    one lift. Unmatched detections are false windows.

    Returns:
        ``{"found", "missed", "false", "recall", "start_errors", "end_errors",
        "matches": [(truth_i, detected_j)]}``; errors are detected minus true,
        in samples.
    """
    used = set()
    matches = []
    for ti, (ts, te) in enumerate(truth):
        best, best_ov = None, 0.0
        for dj, (ds, de) in enumerate(detected):
            if dj in used:
                continue
            ov = min(te, de) - max(ts, ds) + 1
            if ov <= 0:
                continue
            share = ov / min(te - ts + 1, de - ds + 1)
            if share >= min_overlap and share > best_ov:
                best, best_ov = dj, share
        if best is not None:
            used.add(best)
            matches.append((ti, best))
    start_err = [detected[d][0] - truth[t][0] for t, d in matches]
    end_err = [detected[d][1] - truth[t][1] for t, d in matches]
    return {"found": len(matches), "missed": len(truth) - len(matches), "false": len(detected) - len(used),
            "recall": len(matches) / len(truth) if truth else float("nan"),
            "start_errors": start_err, "end_errors": end_err, "matches": matches}
