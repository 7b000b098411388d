"""Checks and figures shared by the HIL scenarios.

Each check returns a list of problems (empty when all is well) so a scenario
can report every broken expectation at once instead of the first only.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

from .rig import RunResult
from .scoring import Detection, ShiftScore, TruthLift, match_detections, score_stream, summarize

#: Lift detection recall the hub must reach on simulated shifts (issue 6).
RECALL_TARGET = 0.98

#: Real-time-equivalent lift end to buzz, median, seconds: the 2 s post-lift
#: margin the window needs, the detector's end test, and well under a second
#: of hub processing.
REALTIME_BUZZ_MEDIAN_S = 3.0


def source_counters(result: RunResult) -> Dict[str, int]:
    """The hub's serial-source counters from its last health report."""
    return dict(((result.hub_health.get("source") or {}).get("counters")) or {})


def link_problems(result: RunResult, *, lossless: bool = True) -> List[str]:
    """The hub read every frame the rig could hand over (it kept up with the replay speed).

    The rig gives up on bytes the pseudo-terminal would not take within its
    write deadline (``tx_overflow_bytes``: the hub stopped reading for a
    moment, e.g. a stall on a loaded machine at 60 x). Frames that overrun
    touched are not the hub's loss: up to ``ceil(overflow / mean frame size) + 2``
    (the cut frame and the one its missing delimiter merges with) are allowed,
    and the overrun is named in the message and the report. Any other missing
    frame is a failure.

    Args:
        result: The run.
        lossless: Whether the rig's fault plan left every frame intact.
    """
    problems = []
    sent = result.rig_counters.get("frames_sent", 0)
    got = source_counters(result).get("frames")
    if got is None:
        return [f"hub health has no source frame counter: {sorted(source_counters(result))}"]
    if result.starts != 1 or not lossless or got == sent:
        return problems
    overflow = result.rig_counters.get("tx_overflow_bytes", 0)
    mean_frame = result.rig_counters.get("bytes_sent", 0) / max(sent, 1)
    allowed = (math.ceil(overflow / mean_frame) + 2) if overflow and mean_frame else 0
    if sent - got > allowed:
        problems.append(f"hub decoded {got} sample frames but the rig sent {sent}"
                        + (f" ({overflow} bytes the rig could not hand over explain at most {allowed})"
                           if overflow else "") + ": the hub fell behind or the link lost frames")
    return problems


def overrun_note(rec, label: str, result: RunResult) -> None:
    """Report bytes the rig could not deliver (the hub not reading in time), if any."""
    overflow = result.rig_counters.get("tx_overflow_bytes", 0)
    if overflow:
        rec.figure(f"{label}: bytes the rig could not hand over (hub not reading in time)", overflow, "bytes",
                   "reported (a stall at replay speed)")


def alert_problems(result: RunResult) -> List[str]:
    """Every buzz the hub logged reached the rig and the (mock) buzzer pin, and nothing else did."""
    problems = []
    logged = sum(1 for e in result.lift_events() if e.get("buzzed"))
    received = len(result.buzzes_s)
    if logged != received:
        problems.append(f"hub logged {logged} buzzed lifts but the rig received {received} Buzz commands")
    if result.starts == 1:
        outputs = {o.get("output"): o for o in ((result.hub_health.get("alerts") or {}).get("outputs") or [])}
        gpio = outputs.get("gpio", {}).get("played")
        if gpio is not None and gpio != logged:
            problems.append(f"mock buzzer pin played {gpio} patterns for {logged} buzzed lifts")
    for e in result.lift_events():
        if e.get("risk") == "high" and not e.get("buzzed"):
            problems.append(f"lift at rows {e['lift']['start']}-{e['lift']['end']} classified high but not buzzed")
    return problems


def record_shift_figures(rec, label: str, score: ShiftScore, result: RunResult) -> None:
    """Put a stream's figures into the QA report."""
    rec.figure(f"{label}: lifts played", score.n_lifts, "lifts")
    rec.figure(f"{label}: lift detection recall", score.recall, "", f">= {RECALL_TARGET}",
               score.recall >= RECALL_TARGET)
    rec.figure(f"{label}: false windows per hour (non-lift movement)", score.false_windows_per_hour, "/h",
               "reported (issue 6: no target)")
    rec.figure(f"{label}: false buzzes per hour, hub (no lift there)", score.hub_false_buzzes_per_hour, "/h",
               "reported")
    rec.figure(f"{label}: false buzzes per hour, model (lift not high)", score.model_false_buzzes_per_hour, "/h",
               "reported")
    s = summarize(score.realtime_lift_end_to_buzz_s)
    rec.figure(f"{label}: lift end to buzz, real-time equivalent, median", s["median"], "s",
               f"<= {REALTIME_BUZZ_MEDIAN_S}", None if s["n"] == 0 else s["median"] <= REALTIME_BUZZ_MEDIAN_S)
    rec.figure(f"{label}: lift end to buzz, real-time equivalent, p95", s["p95"], "s", "reported")
    w = summarize(d.alert_ms for d in result.detections if d.buzzed and d.alert_ms is not None)
    rec.figure(f"{label}: hub last sample to alert (wall, at replay speed), median", w["median"], "ms",
               "reported (includes queueing from the acceleration)")
    rec.figure(f"{label}: hub last sample to alert (wall, at replay speed), max", w["max"], "ms", "reported")
    m = summarize(score.lift_end_to_buzz_s)
    rec.figure(f"{label}: lift end to buzz as the rig saw it at replay speed, median", m["median"], "s",
               "reported (hub processing counts N times at N x real time)")
    rec.figure(f"{label}: replay wall time", result.wall_s, "s", "reported")
    overrun_note(rec, label, result)
    rec.latencies(label, score.realtime_lift_end_to_buzz_s)


def shift_problems(score: ShiftScore, *, recall_target: float = RECALL_TARGET) -> List[str]:
    """The shift expectations: recall and real-time-equivalent buzz latency."""
    problems = []
    if not score.recall >= recall_target:
        problems.append(f"lift detection recall {score.recall:.3f} < {recall_target} (missed {score.missed_ids})")
    s = summarize(score.realtime_lift_end_to_buzz_s)
    if s["n"] and not s["median"] <= REALTIME_BUZZ_MEDIAN_S:
        problems.append(f"median real-time lift end to buzz {s['median']:.2f} s > {REALTIME_BUZZ_MEDIAN_S} s")
    return problems


def buzz_by_lift(truth: Sequence[TruthLift], detections: Sequence[Detection]) -> Dict[str, Optional[bool]]:
    """For each lift: True/False whether its detection buzzed, None when it was not detected."""
    m = match_detections(truth, detections)
    out: Dict[str, Optional[bool]] = {t.lift_id: None for t in truth}
    for t, d in m.pairs:
        out[t.lift_id] = d.buzzed
    return out


def decision_agreement(reference: Dict[str, Optional[bool]], other: Dict[str, Optional[bool]],
                       exclude: Sequence[str] = ()) -> Tuple[float, List[str]]:
    """Share of lifts detected in both runs whose buzz decision is the same, and the ones that differ."""
    same, differ = 0, []
    for lift_id, ref in reference.items():
        if lift_id in exclude or ref is None or other.get(lift_id) is None:
            continue
        if ref == other[lift_id]:
            same += 1
        else:
            differ.append(f"{lift_id}: clean {'buzz' if ref else 'silent'}, now {'buzz' if other[lift_id] else 'silent'}")
    n = same + len(differ)
    return (same / n if n else float("nan")), differ


def score(result: RunResult, exclude: Optional[Tuple[float, float]] = None) -> ShiftScore:
    """Score a run, leaving out lifts that overlap ``exclude`` (stream seconds) and detections inside it."""
    truth = result.stream.truth
    dets = result.detections
    if exclude is not None:
        a, b = exclude
        truth = [t for t in truth if t.end_s < a or t.start_s > b]
        dets = [d for d in dets if d.end_s < a or d.start_s > b]
    return score_stream(truth, dets, duration_s=result.stream.duration_s)
