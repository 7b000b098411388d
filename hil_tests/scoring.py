"""Score what the hub did against what the rig played: lifts found, buzzes, latencies.

Everything here is pure (no processes, no files) so the scoring itself is
unit-tested in ``hil_tests/test_hil_scoring.py``. Times are *stream seconds*:
seconds on the played recording's own clock, counted from its first sample,
so a shift replayed at 60x real time is scored exactly like one played live.

Definitions used in the QA report (``docs/qa.md``):

* A hub *detection* matches a ground-truth lift when their intervals, each
  widened by ``tolerance_s``, overlap; every lift and every detection is used
  at most once (largest overlap first).
* *Recall* = matched lifts / lifts played.
* *False windows per hour* = detections matching no lift, per hour of stream.
* *False buzzes per hour* = buzzes on a detection that matches no lift, plus
  buzzes on a lift whose ground truth is not high, per hour of stream. The two
  parts are reported separately: the first is the hub's fault, the second the
  model's.
* *Lift end to buzz* = buzz time (when the rig received the Buzz command)
  minus the ground-truth lift end, stream seconds. The hub must wait for the
  post-lift margin before it can cut the window, so this is at least
  ``post_samples / rate``; at N times real time the hub's own wall-clock
  processing (and any queue it builds up while fed N times faster than
  real time) counts N times, so the *real-time equivalent* is also given:
  the window's last sample minus the lift end (the detector's delay, the
  same at any speed) plus the hub's measured inference time for the window
  (the first "on" of the alert follows it synchronously). The hub's own
  wall-clock "last sample to alert" at replay speed is reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class TruthLift:
    """One lift the rig played.

    Attributes:
        lift_id: Trial id or ``shift:<n>``.
        start_s: Lift start, stream seconds.
        end_s: Lift end, stream seconds.
        risk: Ground-truth risk name (``low``, ``medium``, ``high``).
    """

    lift_id: str
    start_s: float
    end_s: float
    risk: str


@dataclasses.dataclass(frozen=True)
class Detection:
    """One lift window the hub cut and classified.

    Attributes:
        start_s: First sample of the window (or the detected lift start), stream seconds.
        end_s: Detected lift end (or the window's last sample), stream seconds.
        risk: The hub's predicted risk.
        buzzed: Whether the buzz observer saw a buzz for it.
        buzz_s: When the buzz was observed, stream seconds (None without a buzz
            or when only the event log is known).
        latency_ms: The hub's own inference time, ms.
        last_s: The window's last sample, stream seconds (when the hub could
            first have decided).
        alert_ms: The hub's wall time from the window's last reading arriving
            to the alert output switching on, ms (at replay speed).
        model_version: The bundle version that classified it.
    """

    start_s: float
    end_s: float
    risk: str
    buzzed: bool
    buzz_s: Optional[float] = None
    latency_ms: Optional[float] = None
    last_s: Optional[float] = None
    alert_ms: Optional[float] = None
    model_version: Optional[str] = None


@dataclasses.dataclass
class MatchResult:
    """Detections paired with ground truth."""

    pairs: List[Tuple[TruthLift, Detection]]
    missed: List[TruthLift]
    spurious: List[Detection]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def match_detections(truth: Sequence[TruthLift], detections: Sequence[Detection], *,
                     tolerance_s: float = 2.0) -> MatchResult:
    """Pair each detection with at most one lift (largest overlap first).

    Args:
        truth: Lifts played, any order.
        detections: The hub's windows, any order.
        tolerance_s: Widening applied to both intervals before testing overlap.

    Returns:
        The pairs, the lifts nobody detected and the detections of no lift.
    """
    candidates = []
    for i, t in enumerate(truth):
        for j, d in enumerate(detections):
            ov = _overlap(t.start_s - tolerance_s, t.end_s + tolerance_s,
                          d.start_s - tolerance_s, d.end_s + tolerance_s)
            if ov > 0:
                candidates.append((ov, i, j))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used_t, used_d = set(), set()
    pairs = []
    for _, i, j in candidates:
        if i in used_t or j in used_d:
            continue
        used_t.add(i)
        used_d.add(j)
        pairs.append((truth[i], detections[j]))
    pairs.sort(key=lambda p: p[0].start_s)
    missed = [t for i, t in enumerate(truth) if i not in used_t]
    spurious = [d for j, d in enumerate(detections) if j not in used_d]
    return MatchResult(pairs=pairs, missed=missed, spurious=spurious)


@dataclasses.dataclass
class ShiftScore:
    """The figures the QA report prints for one replayed stream."""

    n_lifts: int
    n_detections: int
    recall: float
    hours: float
    false_windows_per_hour: float
    hub_false_buzzes_per_hour: float
    model_false_buzzes_per_hour: float
    missed_high: int
    lift_end_to_buzz_s: List[float]
    realtime_lift_end_to_buzz_s: List[float]
    missed_ids: List[str]

    @property
    def false_buzzes_per_hour(self) -> float:
        """Hub and model false buzzes together, per hour."""
        return self.hub_false_buzzes_per_hour + self.model_false_buzzes_per_hour

    def as_dict(self) -> Dict[str, object]:
        """JSON-able summary (latencies summarised, not listed)."""
        d = dataclasses.asdict(self)
        d["false_buzzes_per_hour"] = self.false_buzzes_per_hour
        d["lift_end_to_buzz_s"] = summarize(self.lift_end_to_buzz_s)
        d["realtime_lift_end_to_buzz_s"] = summarize(self.realtime_lift_end_to_buzz_s)
        return d


def score_stream(truth: Sequence[TruthLift], detections: Sequence[Detection], *,
                 duration_s: float, tolerance_s: float = 2.0) -> ShiftScore:
    """Score one replayed stream.

    Args:
        truth: Lifts played.
        detections: The hub's windows.
        duration_s: Stream length, seconds (for the per-hour rates).
        tolerance_s: See :func:`match_detections`.

    Returns:
        The :class:`ShiftScore`.

    Raises:
        ValueError: If ``duration_s`` is not positive.
    """
    if not duration_s > 0:
        raise ValueError(f"duration_s={duration_s!r}: expected a positive stream length in seconds")
    m = match_detections(truth, detections, tolerance_s=tolerance_s)
    hours = duration_s / 3600.0
    hub_false = sum(1 for d in m.spurious if d.buzzed)
    model_false = sum(1 for t, d in m.pairs if d.buzzed and t.risk != "high")
    latencies = [d.buzz_s - t.end_s for t, d in m.pairs if d.buzzed and d.buzz_s is not None]
    realtime = [d.last_s - t.end_s + d.latency_ms / 1000.0 for t, d in m.pairs
                if d.buzzed and d.last_s is not None and d.latency_ms is not None]
    return ShiftScore(
        n_lifts=len(truth),
        n_detections=len(detections),
        recall=(len(m.pairs) / len(truth)) if truth else math.nan,
        hours=hours,
        false_windows_per_hour=len(m.spurious) / hours,
        hub_false_buzzes_per_hour=hub_false / hours,
        model_false_buzzes_per_hour=model_false / hours,
        missed_high=sum(1 for t in m.missed if t.risk == "high"),
        lift_end_to_buzz_s=latencies,
        realtime_lift_end_to_buzz_s=realtime,
        missed_ids=[t.lift_id for t in m.missed],
    )


def summarize(values: Iterable[float]) -> Dict[str, float]:
    """Count, median, 95th percentile and maximum of ``values`` (NaN when empty)."""
    v = sorted(float(x) for x in values)
    if not v:
        return {"n": 0, "median": math.nan, "p95": math.nan, "max": math.nan}

    def pct(q: float) -> float:
        k = (len(v) - 1) * q
        lo, hi = math.floor(k), math.ceil(k)
        return v[lo] + (v[hi] - v[lo]) * (k - lo)

    return {"n": len(v), "median": pct(0.5), "p95": pct(0.95), "max": v[-1]}


@dataclasses.dataclass
class Agreement:
    """Scenario (a): hub buzzes against the offline model's high predictions."""

    n_trials: int
    agree: int
    disagreements: List[str]

    @property
    def rate(self) -> float:
        """Share of trials where hub and offline model agree."""
        return self.agree / self.n_trials if self.n_trials else math.nan


def buzz_agreement(offline_risk: Mapping[str, str], hub_buzzed: Mapping[str, bool]) -> Agreement:
    """Compare, per trial, "offline says high" with "the hub buzzed".

    Args:
        offline_risk: Trial id to the offline (``edge classify``) predicted risk.
        hub_buzzed: Trial id to whether the hub buzzed while it was played.
            A trial missing here counts as a disagreement if offline says high.

    Returns:
        The :class:`Agreement`, naming each trial that disagrees and how.
    """
    disagreements = []
    for tid in sorted(offline_risk):
        want = offline_risk[tid] == "high"
        got = bool(hub_buzzed.get(tid, False))
        if want != got:
            disagreements.append(f"{tid}: offline {offline_risk[tid]!r}, hub {'buzzed' if got else 'silent'}")
    extra = sorted(set(hub_buzzed) - set(offline_risk))
    for tid in extra:
        disagreements.append(f"{tid}: hub result for a trial edge classify did not report")
    n = len(offline_risk) + len(extra)
    return Agreement(n_trials=n, agree=n - len(disagreements), disagreements=disagreements)
