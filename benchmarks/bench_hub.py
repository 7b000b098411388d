"""Hub benchmarks: lift detection on simulated shifts, replay speed, CPU and memory of ``edge run``, buzz latency.

Figures recorded (``python -m benchmarks hub``):

``hub_lift_recall`` / ``hub_false_windows_per_hour``
    A 20-minute ``quantize synth-shift`` recording (seed 21, not one the detector was tuned on; lifts, walking,
    turning, bending and reaching without a load) streamed through the
    aligner and the lift detector; scored against ``events.csv`` with
    :func:`edge.lift_detector.match_lifts`.
``hub_gate_*``
    The lift gate (``edge.lift_gate``, ``quantize train-gate``): a gate is
    trained with the bundle's recipe on twelve 20-minute shifts (seeds
    101-112, lift protocols P1/P2/P3 in turn: lift-hold-return, place
    elsewhere, lift-and-hold); then on held-out shifts (seed 21 with P1,
    seeds 201-209 with P1/P2/P3; none used for fitting or for the threshold) every window the hub's aligner and
    detector find is put through the gate and the bundle's model, as
    ``edge run`` does: lift recall, false windows per hour and false buzzes
    per hour (false windows the model calls high) with and without the gate,
    and the gate's time per window. ``python -m benchmarks.bench_hub gate``
    runs only these.
``hub_replay_speed``
    ``edge run --source replay://SHIFT?speed=0`` as a real process: the
    shift's duration divided by the time between the daemon's ``start``
    and ``stop`` events (bundle loading excluded, everything else
    included: aligner, detector, int8 inference, alerts, event log).
``hub_cpu_share`` / ``hub_rss``
    ``edge run --source replay://SHIFT?speed=1`` for 60 s as a real
    process: CPU seconds (user + system, from /proc) per wall second over the
    last 50 s, and peak resident memory (VmHWM).
``hub_lift_to_buzzer_ms``
    In process, the shift replayed at 2x real time with a gpiozero mock pin
    that stamps ``time.monotonic()`` on every change: the median time from
    the arrival of a lift window's last sample to the pin going high (every
    lift buzzes in this run: ``levels = low, medium, high``, and low gets a short pattern).

The model: ``LIFTGUARD_BENCH_BUNDLE`` and ``LIFTGUARD_BENCH_TRUST`` point at a
real bundle and its public key; otherwise the tiny bundle of the tests
(``tests/test_bundle_kit.py``, a small CNN) is built, which makes inference
cheaper than the full model's (noted in each figure).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as _dt
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import record

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def _log(msg: str) -> None:
    print(f"bench_hub: {msg}", file=sys.stderr, flush=True)


def _quantize(argv) -> None:
    from quantize.__main__ import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        status = main([str(a) for a in argv])
    if status != 0:
        raise RuntimeError(f"quantize {' '.join(map(str, argv))} failed: {err.getvalue()[-500:]}")


def _bundle(root: Path):
    env_b, env_k = os.environ.get("LIFTGUARD_BENCH_BUNDLE"), os.environ.get("LIFTGUARD_BENCH_TRUST")
    if env_b and env_k:
        return Path(env_b), Path(env_k), f"bundle {env_b}"
    sys.path.insert(0, str(REPO / "tests"))
    from test_bundle_kit import tiny_bundle

    _log("building the tests' tiny bundle (set LIFTGUARD_BENCH_BUNDLE/_TRUST to use a real one) ...")
    tb = tiny_bundle(root / "tiny")
    return tb.bundle, tb.pub, "tiny test CNN (cheaper than the full model)"


def _proc_stat(pid: int):
    """(cpu seconds user+system, VmHWM bytes, VmRSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return cpu, hwm, rss


def bench_detection(shift: Path) -> None:
    from edge.classify import detect_in_trial
    from edge.dataset import read_trial_csv
    from edge.lift_detector import match_lifts

    rec = read_trial_csv(shift / "shift.csv")
    with (shift / "events.csv").open() as fh:
        truth = [(int(e["start"]), int(e["end"])) for e in csv.DictReader(fh) if e["kind"] == "lift"]
    t0 = time.perf_counter()
    wins = detect_in_trial(rec.samples, rec.timestamps, None)
    dt = time.perf_counter() - t0
    r = match_lifts([(w.start_index, w.end_index) for w in wins], truth)
    hours = len(rec.samples) / 25.0 / 3600.0
    starts = sorted(abs(e) for e in r["start_errors"])
    note = (f"20-min liftsim shift seed 21: {r['found']}/{len(truth)} lifts, {r['false']} false windows "
            f"(bends/reaches without load), median |start error| {statistics.median(starts):.0f} samples; "
            f"aligner+detector {len(rec.samples) / 25.0 / dt:.0f}x real time")
    _log(note)
    record("hub_lift_recall", round(r["recall"], 4), "fraction", ">= 0.98", r["recall"] >= 0.98, note)
    record("hub_false_windows_per_hour", round(r["false"] / hours, 1), "1/h", None, None, note)


GATE_TRAIN_SEEDS = tuple(range(101, 113))
#: Held-out shifts: (seed, lift protocol); seed 21 is the detection benchmark's shift.
GATE_HELD_OUT = ((21, "P1"),) + tuple((s, ("P1", "P2", "P3")[i % 3]) for i, s in enumerate(range(201, 210)))


def bench_gate(bundle_path: Path, key: Path, what: str, tmp: Path) -> None:
    """Lift recall and false buzzes per hour with and without a lift gate, on held-out shifts."""
    import numpy as np

    from edge.bundle import load_bundle
    from edge.classify import detect_in_trial
    from edge.dataset import read_trial_csv
    from edge.lift_detector import match_lifts
    from edge.lift_gate import LiftGate
    from quantize.lift_gate import ensure_shift, read_truth

    bundle = load_bundle(bundle_path, trusted_keys=[key])
    recipe_path = tmp / "gate_recipe.json"
    bundle.recipe.save(recipe_path)
    work = tmp / "gate_shifts"
    work.mkdir(exist_ok=True)
    _log(f"training a lift gate on {len(GATE_TRAIN_SEEDS)} 20-min shifts (seeds {GATE_TRAIN_SEEDS[0]}-"
         f"{GATE_TRAIN_SEEDS[-1]}) ...")
    _quantize(["train-gate", "--recipe", recipe_path, "--out", tmp / "gate.json", "--synth-minutes", 20,
               "--seeds", ",".join(map(str, GATE_TRAIN_SEEDS)), "--work", work])
    gate = LiftGate.from_dict(json.loads((tmp / "gate.json").read_text()), recipe=bundle.recipe)
    lifts = hours = 0.0
    found = {False: 0, True: 0}
    false_windows = {False: 0, True: 0}
    false_buzz = {False: 0, True: 0}
    high_lift_buzz = {False: 0, True: 0}
    gate_ms: list = []
    for seed, protocol in GATE_HELD_OUT:
        _log(f"held-out shift seed {seed} ({protocol}): detector, gate, model ...")
        folder = ensure_shift(work, seed, 20.0, protocol)
        rec = read_trial_csv(folder / "shift.csv")
        truth = read_truth(folder)
        wins = [w for w in detect_in_trial(rec.samples, rec.timestamps, bundle.recipe) if w.skip_reason is None]
        m = match_lifts([(w.start_index, w.end_index) for w in wins], truth)
        matched = {d for _, d in m["matches"]}
        lifts += len(truth)
        hours += len(rec.samples) / 25.0 / 3600.0
        for j, w in enumerate(wins):
            t0 = time.perf_counter()
            p_lift = gate.probability(w.window)
            gate_ms.append((time.perf_counter() - t0) * 1000.0)
            high = bundle.classify(w.window).risk == "high"
            for use_gate in (False, True):
                passed = (not use_gate) or p_lift >= gate.threshold
                if not passed:
                    continue
                if j in matched:
                    found[use_gate] += 1
                    high_lift_buzz[use_gate] += int(high)
                else:
                    false_windows[use_gate] += 1
                    false_buzz[use_gate] += int(high)
    bundle.close()
    rec_no, rec_gate = found[False] / lifts, found[True] / lifts
    fb_no, fb_gate = false_buzz[False] / hours, false_buzz[True] / hours
    fw_no, fw_gate = false_windows[False] / hours, false_windows[True] / hours
    note = (f"{len(GATE_HELD_OUT)} held-out 20-min liftsim shifts (seed 21 P1, seeds 201-209 protocols P1/P2/P3 in "
            f"turn; {hours:.2f} h, {int(lifts)} lifts), gate trained on seeds 101-112 (P1/P2/P3 in turn; threshold "
            f"{gate.threshold:.3f}), model {what}: "
            f"lift recall {rec_no:.3f} without / {rec_gate:.3f} with the gate; false windows {fw_no:.1f} -> "
            f"{fw_gate:.1f} per hour; false buzzes {fb_no:.1f} -> {fb_gate:.1f} per hour; buzzes on lifts the model "
            f"calls high {high_lift_buzz[False]} -> {high_lift_buzz[True]}")
    _log(note)
    record("hub_gate_lift_recall", round(rec_gate, 4), "fraction", ">= 0.98", rec_gate >= 0.98, note)
    record("hub_gate_lift_recall_without", round(rec_no, 4), "fraction", None, None, note)
    record("hub_gate_false_windows_per_hour", round(fw_gate, 1), "1/h", None, None, note)
    record("hub_gate_false_windows_per_hour_without", round(fw_no, 1), "1/h", None, None, note)
    record("hub_gate_false_buzzes_per_hour", round(fb_gate, 1), "1/h", None, None, note)
    record("hub_gate_false_buzzes_per_hour_without", round(fb_no, 1), "1/h", None, None, note)
    med = float(np.median(gate_ms))
    record("hub_gate_ms_per_window", round(med, 2), "ms", None, None,
           f"median time of LiftGate.probability per detected window (numpy, one thread), {len(gate_ms)} windows")


def bench_replay_speed(shift: Path, bundle: Path, key: Path, what: str, tmp: Path) -> None:
    events = tmp / "speed.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-m", "edge", "run", "--source", f"replay://{shift}?speed=0", "--bundle", str(bundle),
                           "--trust", str(key), "--alert", "gpio:17?mock=1", "--events", str(events), "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"edge run failed: {proc.stderr[-800:]}")
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    stamp = {e["type"]: _dt.datetime.fromisoformat(e["time"]) for e in lines if e["type"] in ("bundle", "stop")}
    busy = (stamp["stop"] - stamp["bundle"]).total_seconds()
    duration = sum(1 for _ in (shift / "shift.csv").open()) - 1
    duration /= 25.0
    lifts = sum(e["type"] == "lift" for e in lines)
    speed = duration / busy
    note = (f"edge run, replay of a {duration / 60:.0f}-min shift at speed=0 in {busy:.1f} s ({lifts} windows "
            f"classified, {what}); process wall time incl. start-up {wall:.1f} s")
    _log(note)
    record("hub_replay_speed", round(speed, 1), "x real time", ">= 100", speed >= 100, note)
    if os.environ.get("LIFTGUARD_BENCH_BUNDLE"):
        # what the false windows cost with a real model: those it calls high buzz the worker for nothing
        from edge.lift_detector import match_lifts

        with (shift / "events.csv").open() as fh:
            truth = [(int(e["start"]), int(e["end"])) for e in csv.DictReader(fh) if e["kind"] == "lift"]
        found = [e for e in lines if e["type"] == "lift"]
        r = match_lifts([(e["lift"]["start"], e["lift"]["end"]) for e in found], truth)
        matched = {d for _, d in r["matches"]}
        false_high = sum(1 for j, e in enumerate(found) if j not in matched and e["risk"] == "high")
        hours = duration / 3600.0
        note = (f"false windows classified high by {what}: {false_high} of {r['false']} in a {duration / 60:.0f}-min "
                f"shift (edge run, replay speed=0)")
        _log(note)
        record("hub_false_buzzes_per_hour", round(false_high / hours, 1), "1/h", None, None, note)


def bench_realtime(shift: Path, bundle: Path, key: Path, what: str, tmp: Path, seconds: float = 60.0) -> None:
    events = tmp / "rt.jsonl"
    proc = subprocess.Popen([PY, "-m", "edge", "run", "--source", f"replay://{shift}?speed=1", "--bundle", str(bundle),
                             "--trust", str(key), "--alert", "gpio:17?mock=1", "--events", str(events), "--quiet",
                             "--duration", str(seconds + 2)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(10.0)  # start-up (imports, bundle self-test) excluded
        cpu0, _, _ = _proc_stat(proc.pid)
        t0 = time.monotonic()
        time.sleep(seconds - 10.0)
        cpu1, hwm, rss = _proc_stat(proc.pid)
        wall = time.monotonic() - t0
        status = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if status != 0:
        raise RuntimeError(f"edge run failed: {proc.stderr.read()[-800:]}")
    share = (cpu1 - cpu0) / wall * 100.0
    lifts = sum(1 for x in events.read_text().splitlines() if '"type":"lift"' in x)
    note = (f"edge run at real-time rate (replay speed=1 of a liftsim shift, {lifts} lifts classified), "
            f"CPU over {wall:.0f} s after 10 s start-up; {what}")
    _log(f"CPU {share:.2f}% of one core, peak RSS {hwm / 1e6:.0f} MB ({note})")
    record("hub_cpu_share", round(share, 3), "% of one core", "< 2", share < 2.0, note)
    record("hub_rss", round(hwm / 1e6, 1), "MB", "< 200", hwm < 200e6, f"peak resident set (VmHWM); {note}")


def bench_latency(shift: Path, bundle: Path, key: Path, what: str, tmp: Path, seconds: float = 75.0) -> None:
    from gpiozero.pins.mock import MockFactory, MockPin

    from edge.daemon import Hub
    from edge.hub_config import HubConfig

    class StampedPin(MockPin):
        """A mock pin that remembers when (monotonic) it went high."""

        def _change_state(self, value):
            changed = super()._change_state(value)
            if value and changed:
                self.__dict__.setdefault("rises", []).append(time.monotonic())
            return changed

    factory = MockFactory(pin_class=StampedPin)
    cfg = HubConfig(source=f"replay://{shift}?speed=2", bundle=bundle, trust=[key], events=tmp / "lat.jsonl",
                    alert_outputs=["gpio:17"], alert_levels=["low", "medium", "high"],
                    alert_patterns={"low": [60], "medium": [120], "high": [400, 150, 400, 150, 400]})
    hub = Hub(cfg, pin_factory=factory)
    arrivals = []
    hub.on_lift.append(lambda rec: arrivals.append(rec["t_arrival"]) if rec["t_alert"] is not None else None)
    asyncio.run(hub.run(duration=seconds))
    pin = factory.pin(17)
    rises = pin.__dict__.get("rises", [])
    lat = []
    for t in arrivals:
        after = [r for r in rises if r >= t]
        if after:
            lat.append((after[0] - t) * 1000.0)
    if not lat:
        raise RuntimeError("no lift was classified during the latency run")
    med = statistics.median(lat)
    note = (f"{len(lat)} lifts, shift replayed at 2x in process; pin time from a mock pin stamping monotonic "
            f"time; max {max(lat):.1f} ms; {what}")
    _log(f"last sample -> buzzer median {med:.2f} ms ({note})")
    record("hub_lift_to_buzzer_ms", round(med, 3), "ms", "median < 50", med < 50.0, note)


def main() -> None:
    """Run every hub figure."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp_name:
        tmp = Path(tmp_name)
        _log("simulating a 20-minute shift ...")
        shift = tmp / "shift"
        _quantize(["synth-shift", "--out", shift, "--minutes", 20, "--seed", 21])
        bench_detection(shift)
        bundle, key, what = _bundle(tmp)
        _log("lift gate ...")
        bench_gate(bundle, key, what, tmp)
        _log("accelerated replay ...")
        bench_replay_speed(shift, bundle, key, what, tmp)
        _log("real-time run (60 s) ...")
        bench_realtime(shift, bundle, key, what, tmp)
        _log("latency run (75 s) ...")
        busy = tmp / "busy"
        _quantize(["synth-shift", "--out", busy, "--minutes", 3, "--seed", 7, "--lifts-per-minute", 4])
        bench_latency(busy, bundle, key, what, tmp)


def main_gate() -> None:
    """Run only the lift gate figures (``python -m benchmarks.bench_hub gate``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as tmp_name:
        tmp = Path(tmp_name)
        bundle, key, what = _bundle(tmp)
        bench_gate(bundle, key, what, tmp)


if __name__ == "__main__":
    main_gate() if sys.argv[1:] == ["gate"] else main()
