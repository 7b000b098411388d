"""The aligner: six streams with their own clocks, drops and jitter onto one 25 Hz grid."""

from __future__ import annotations

import numpy as np
import pytest

from edge.aligner import Aligner, AlignerSettings, GridRow, Outage, SensorChange
from edge.errors import ConfigError
from edge.layout import SENSORS
from edge.sources.base import SensorReading

DT = 1.0 / 25.0


def run(aligner, readings, ticks=()):
    """Feed readings (sorted by arrival) and ticks; return rows and other events."""
    events = []
    items = [(r.t_host, 0, r) for r in readings] + [(t, 1, None) for t in ticks]
    items.sort(key=lambda x: (x[0], x[1]))
    for t, kind, r in items:
        events += aligner.add(r) if kind == 0 else aligner.tick(t)
    events += aligner.flush()
    rows = [e for e in events if isinstance(e, GridRow)]
    other = [e for e in events if not isinstance(e, GridRow)]
    return rows, other


def recording(n, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(n, 36)), axis=0).astype(np.float32)


def test_replayed_recording_passes_through_bit_for_bit():
    x = recording(300)
    t = 1.7e9 + np.arange(300) * DT
    readings = [SensorReading(s, k, t[k], 100.0 + k * DT, x[k, 6 * j:6 * j + 6])
                for k in range(300) for j, s in enumerate(SENSORS)]
    rows, other = run(Aligner(), readings)
    assert len(rows) == 300
    values = np.array([r.values for r in rows])
    assert np.array_equal(values, x.astype(np.float64))
    assert all(r.valid.all() for r in rows)
    assert [r.index for r in rows] == list(range(300))
    assert isinstance(other[-1], Outage) and other[-1].detail == "stream ended"
    assert sum(isinstance(e, SensorChange) and e.state == "connected" for e in other) == 6


def smooth_signal(t, j):
    """A slow signal per channel so interpolation error is small."""
    ch = np.arange(6)[None, :] + 6 * j
    return np.sin(2 * np.pi * 0.3 * t[:, None] + ch) * 10.0


def jittered_streams(n=500, seed=1, drop=0.0, offsets=None, drift_ppm=None):
    """Six sensors sampling the same truth with their own clocks, jitter, delays and drops."""
    rng = np.random.default_rng(seed)
    offsets = offsets if offsets is not None else rng.uniform(-0.5, 0.5, 6)
    drift = np.zeros(6) if drift_ppm is None else np.asarray(drift_ppm) * 1e-6
    readings, dropped = [], 0
    for j, s in enumerate(SENSORS):
        tt = np.arange(n) * DT + rng.normal(0, 0.003, n)  # true instants, jittered
        vals = smooth_signal(tt, j)
        arrival = -np.inf
        for k in range(n):
            if drop and rng.random() < drop:
                dropped += 1
                continue
            t_sensor = tt[k] * (1 + drift[j]) - offsets[j]
            delay = 0.002 + rng.exponential(0.01)
            arrival = max(arrival, 50.0 + tt[k] + delay)  # a link delivers in order
            readings.append(SensorReading(s, k, t_sensor, arrival, vals[k].astype(np.float32)))
    readings.sort(key=lambda r: r.t_host)
    return readings, offsets, dropped


def test_clock_offsets_jitter_and_delays_are_absorbed():
    readings, offsets, _ = jittered_streams()
    aligner = Aligner()
    rows, other = run(aligner, readings)
    # estimated offsets (host minus sensor) differ from the true ones by the smallest delay only
    h = aligner.health()["sensors"]
    est = np.array([h[s]["clock_offset_s"] for s in SENSORS])
    assert np.allclose(est - 50.0, offsets, atol=0.006)
    t = np.array([r.t for r in rows]) - 50.0
    values = np.array([r.values for r in rows])
    truth = np.hstack([smooth_signal(t, j) for j in range(6)])
    valid = np.array([r.valid for r in rows]).repeat(6, axis=1)
    # 0.3 Hz, amplitude 10: 6 ms of timing error is about 0.1
    err = np.abs(values - truth)[valid]
    assert np.percentile(err, 99) < 0.25, np.percentile(err, 99)
    assert valid.mean() > 0.99
    assert np.allclose(np.diff(t), DT)


def test_drift_of_200_ppm_is_followed():
    readings, offsets, _ = jittered_streams(n=3000, seed=4, drift_ppm=[200, -200, 0, 100, -100, 50])
    rows, _ = run(Aligner(), readings)
    t = np.array([r.t for r in rows]) - 50.0
    values = np.array([r.values for r in rows])
    truth = np.hstack([smooth_signal(t, j) for j in range(6)])
    late = slice(len(rows) - 200, len(rows) - 5)  # after 2 minutes the drift is 24 ms if not followed
    assert np.percentile(np.abs(values[late] - truth[late]), 99) < 0.3


def test_dropped_samples_are_marked_and_held():
    readings, _, dropped = jittered_streams(drop=0.02, seed=2)
    aligner = Aligner()
    rows, _ = run(aligner, readings)
    gaps = sum(int((~r.valid).sum()) for r in rows)
    assert dropped > 20
    assert 0.5 * dropped <= gaps <= 2.5 * dropped  # a drop makes about one gap row
    counted = sum(v.get("gap_rows", 0) for v in aligner.health()["sensors"].values())
    assert counted == gaps
    # hold policy: a gap row repeats a value the sensor delivered before
    for prev, row in zip(rows, rows[1:]):
        for j in np.flatnonzero(~row.valid):
            assert np.all(np.isfinite(row.values[6 * j:6 * j + 6]))


def test_nan_policy_marks_gaps_with_nan():
    readings, _, dropped = jittered_streams(drop=0.02, seed=2)
    rows, _ = run(Aligner(AlignerSettings(gap_policy="nan")), readings)
    for row in rows:
        for j in range(6):
            block = row.values[6 * j:6 * j + 6]
            assert np.all(np.isnan(block)) == (not row.valid[j])


def test_lost_sensor_is_reported_and_the_rest_keeps_running():
    n = 400
    x = recording(n, seed=3)
    readings = []
    for k in range(n):
        for j, s in enumerate(SENSORS):
            if s == "Back" and 100 <= k < 200:
                continue  # Back silent for 4 s
            readings.append(SensorReading(s, k, k * DT, 10.0 + k * DT, x[k, 6 * j:6 * j + 6]))
    ticks = 10.0 + np.arange(0, n * DT, 0.05)
    aligner = Aligner(AlignerSettings(lost_after_s=1.0))
    rows, other = run(aligner, readings, ticks)
    assert len(rows) == n
    back = SENSORS.index("Back")
    valid = np.array([r.valid for r in rows])
    assert not valid[100:200, back].any() and valid[:100, back].all() and valid[200:, back].all()
    assert np.delete(valid, back, axis=1).all()
    changes = [(e.sensor, e.state) for e in other if isinstance(e, SensorChange) and e.state != "connected"]
    assert changes == [("Back", "lost"), ("Back", "recovered")]
    lost = next(e for e in other if isinstance(e, SensorChange) and e.state == "lost")
    assert 10.0 + 100 * DT + 1.0 <= lost.t <= 10.0 + 100 * DT + 1.1
    assert "no reading for" in lost.detail
    # the held values are Back's last delivered sample
    assert np.array_equal(rows[150].values[6 * back:6 * back + 6], x[99, 6 * back:6 * back + 6].astype(np.float64))
    assert aligner.health()["sensors"]["Back"]["lost"] == 1


def test_rows_wait_at_most_the_bounded_delay_for_a_slow_sensor():
    """A sensor that is late (but not lost) delays rows by max_delay_s, no more."""
    settings = AlignerSettings(max_delay_s=0.2, lost_after_s=5.0)
    aligner = Aligner(settings)
    emitted_at = {}
    for k in range(50):
        t = k * DT
        for j, s in enumerate(SENSORS):
            if s == "Thig" and k >= 10:
                continue
            for e in aligner.add(SensorReading(s, k, t, t, np.full(6, k, np.float32))):
                if isinstance(e, GridRow):
                    emitted_at[e.index] = t
        for e in aligner.tick(t + DT / 2):
            if isinstance(e, GridRow):
                emitted_at[e.index] = t + DT / 2
    late = [emitted_at[i] - i * DT for i in range(12, 40)]
    assert max(late) <= 0.2 + DT + 1e-9
    assert min(late) >= 0.2 - 1e-9
    assert all(emitted_at[i] - i * DT < 1e-9 for i in range(10))


def test_repeated_and_reordered_readings_are_counted_not_used():
    aligner = Aligner()
    for k in range(5):
        for s in SENSORS:
            aligner.add(SensorReading(s, k, k * DT, k * DT, np.zeros(6, np.float32)))
    aligner.add(SensorReading("Back", 4, 4 * DT, 5 * DT, np.ones(6, np.float32)))  # repeated
    aligner.add(SensorReading("Back", 2, 2 * DT, 5 * DT, np.ones(6, np.float32)))  # reordered
    assert aligner.health()["sensors"]["Back"]["out_of_order"] == 2
    aligner.add(SensorReading("Nose", 0, 0.0, 5 * DT, np.ones(6, np.float32)))
    assert aligner.health()["unknown_sensor"] == 1


def test_outage_stops_the_grid_and_the_next_run_reanchors():
    x = recording(100, seed=5)
    readings = []
    for k in range(100):
        gap = 3.0 if k >= 50 else 0.0  # every sensor silent for 3 s, then a new clock phase
        t = k * DT + gap + (0.013 if k >= 50 else 0.0)
        for j, s in enumerate(SENSORS):
            readings.append(SensorReading(s, k, t, t, x[k, 6 * j:6 * j + 6]))
    rows, other = run(Aligner(), readings)
    assert len(rows) == 100
    outages = [e for e in other if isinstance(e, Outage)]
    assert [o.detail for o in outages] == ["every sensor lost", "stream ended"]
    assert np.array_equal(np.array([r.values for r in rows]), x.astype(np.float64))
    assert rows[50].t == pytest.approx(50 * DT + 3.013)


def test_a_sensor_that_never_delivers_is_reported_and_left_nan():
    aligner = Aligner(AlignerSettings(lost_after_s=0.5))
    rows = []
    for k in range(50):
        for j, s in enumerate(SENSORS[:5]):
            for e in aligner.add(SensorReading(s, k, k * DT, k * DT, np.zeros(6, np.float32))):
                rows.append(e)
    grid = [e for e in rows if isinstance(e, GridRow)]
    lost = [e for e in rows if isinstance(e, SensorChange) and e.state == "lost"]
    assert [e.sensor for e in lost] == ["Thig"]
    assert len(grid) >= 40
    assert all(np.isnan(r.values[30:36]).all() and not r.valid[5] for r in grid)


@pytest.mark.parametrize("kwargs, words", [
    ({"rate_hz": 0}, "aligner.rate_hz = 0"),
    ({"max_delay_s": -1}, "aligner.max_delay_s = -1"),
    ({"gap_policy": "zero"}, "aligner.gap_policy = 'zero'; expected one of hold, nan"),
    ({"gap_factor": 0.5}, "expected >= 1"),
])
def test_bad_settings_are_refused_with_a_clear_message(kwargs, words):
    with pytest.raises(ConfigError) as err:
        AlignerSettings(**kwargs)
    assert words in str(err.value)


def test_a_sensor_clock_that_restarts_is_followed_not_dropped():
    """A sensor reboots quickly: its clock jumps back 100 s without a silence long enough to be lost."""
    n = 200
    x = recording(n, seed=7)
    readings = []
    for k in range(n):
        for j, s in enumerate(SENSORS):
            t_sensor = k * DT - (100.0 if (s == "UArm" and k >= 80) else 0.0)
            readings.append(SensorReading(s, k, t_sensor, 5.0 + k * DT, x[k, 6 * j:6 * j + 6]))
    aligner = Aligner()
    rows, _ = run(aligner, readings)
    assert len(rows) == n
    assert aligner.health()["sensors"]["UArm"]["clock_restart"] == 1
    assert aligner.health()["sensors"]["UArm"].get("out_of_order", 0) == 0
    uarm = SENSORS.index("UArm")
    valid = np.array([r.valid for r in rows])
    assert valid[:, uarm].sum() >= n - 2
    values = np.array([r.values for r in rows])
    assert np.array_equal(values[90:, 24:30], x[90:, 24:30].astype(np.float64))
