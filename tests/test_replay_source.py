"""replay:// (trial, data set, shift; paced by an injected clock) and virtual:// (the in-process bus)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from edge.dataset import DatasetWriter, read_trial_csv, write_trial_csv
from edge.errors import ConfigError, SourceError
from edge.layout import SENSORS
from edge.sources import SensorReading, SourceStatus, open_source
from edge.sources.replay import ReplaySource
from edge.sources.virtual import VirtualSource, get_bus, remove_bus


class FakeClock:
    """A clock that only moves when the source sleeps (like python-can's tests)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def trial_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 36))
    ts = 1.7e9 + np.arange(50) / 25.0
    path = tmp_path / "trial.csv"
    write_trial_csv(path, x, ts)
    return path, x, ts


async def collect(source):
    out = []
    async with source:
        async for ev in source.events():
            out.append(ev)
    return out


async def test_a_trial_becomes_six_readings_per_row(trial_csv):
    path, x, ts = trial_csv
    events = await collect(open_source(f"replay://{path}?speed=0"))
    readings = [e for e in events if isinstance(e, SensorReading)]
    assert isinstance(events[0], SourceStatus) and events[0].state == "connected"
    assert isinstance(events[-1], SourceStatus) and events[-1].state == "closed"
    assert len(readings) == 50 * 6
    assert [r.sensor for r in readings[:6]] == list(SENSORS)
    got = np.array([r.values for r in readings]).reshape(50, 36)
    assert np.array_equal(got, read_trial_csv(path).samples)  # bit for bit what training reads
    assert np.allclose(got, x, atol=1e-6)
    assert [r.t_sensor for r in readings[::6]] == pytest.approx(list(ts))
    assert [r.seq for r in readings if r.sensor == "Back"] == list(range(50))
    # t_host is the replay clock: start time plus recording time
    t_host = np.array([r.t_host for r in readings[::6]])
    assert np.allclose(np.diff(t_host), 0.04)


async def test_speed_paces_rows_on_the_injected_clock(trial_csv):
    path, _, _ = trial_csv
    clock = FakeClock()
    source = ReplaySource(f"replay://{path}?speed=4", clock=clock, sleep=clock.sleep)
    events = await collect(source)
    assert len([e for e in events if isinstance(e, SensorReading)]) == 300
    # 49 intervals of 40 ms at 4x real time
    assert sum(clock.sleeps) == pytest.approx(49 * 0.04 / 4)
    assert len(clock.sleeps) == 49
    assert source.now() == pytest.approx(1000.0 + 49 * 0.04)


async def test_speed_zero_never_sleeps_but_yields_to_the_loop(trial_csv):
    path, _, _ = trial_csv
    clock = FakeClock()
    ticks = []

    async def ticker():
        while True:
            ticks.append(1)
            await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(ticker())
    source = ReplaySource(f"replay://{path}?speed=0&batch=10", clock=clock, sleep=clock.sleep)
    await collect(source)
    task.cancel()
    assert clock.sleeps == []
    assert len(ticks) >= 4  # the loop ran other tasks while replaying


async def test_a_data_set_is_replayed_trial_after_trial_with_gaps(tmp_path):
    rng = np.random.default_rng(1)
    with DatasetWriter(tmp_path / "ds", source="test") as w:
        for i, n in enumerate((30, 40)):
            w.add_trial(f"T{i}", "S1", 4, rng.normal(size=(n, 36)), 1.7e9 + 100 * i + np.arange(n) / 25.0, 5, n - 5)
    events = await collect(open_source(f"replay://{tmp_path / 'ds'}?speed=0&gap=3"))
    rows = [e for e in events if isinstance(e, SensorReading) and e.sensor == "Side"]
    assert len(rows) == 70
    t_host = np.array([r.t_host for r in rows])
    assert t_host[30] - t_host[29] == pytest.approx(3.0 + 0.04)
    assert [r.seq for r in rows] == list(range(70))


async def test_a_shift_folder_and_loops(tmp_path, trial_csv):
    path, _, _ = trial_csv
    shift = tmp_path / "shift"
    shift.mkdir()
    (shift / "shift.csv").write_bytes(path.read_bytes())
    (shift / "events.csv").write_text("start,end,kind,zone,risk\n")
    events = await collect(open_source(f"replay://{shift}?speed=0&loop=2&gap=1&start=1"))
    rows = [e for e in events if isinstance(e, SensorReading) and e.sensor == "Side"]
    assert len(rows) == 25 + 50 + 50  # first pass skips 1 s


async def test_close_stops_an_endless_loop(trial_csv):
    path, _, _ = trial_csv
    source = open_source(f"replay://{path}?speed=0&loop=-1")
    n = 0
    async with source:
        async for ev in source.events():
            n += 1
            if n == 1000:
                await source.close()
    assert 1000 <= n <= 1010


@pytest.mark.parametrize("query, words", [
    ("speed=-1", "speed=-1; expected >= 0"),
    ("speed=fast", "speed='fast' is not a number"),
    ("loop=0.5", "loop=0.5; expected an integer >= -1"),
    ("volume=3", "unknown option(s) volume"),
])
def test_bad_replay_options_are_refused(trial_csv, query, words):
    path, _, _ = trial_csv
    with pytest.raises(ConfigError) as err:
        open_source(f"replay://{path}?{query}")
    assert words in str(err.value)


async def test_a_missing_recording_is_a_clear_source_error(tmp_path):
    with pytest.raises(SourceError) as err:
        await open_source(f"replay://{tmp_path / 'nothing.csv'}").open()
    assert "does not exist" in str(err.value) and "nothing.csv" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError) as err:
        await open_source(f"replay://{tmp_path / 'empty'}").open()
    assert "neither index.csv" in str(err.value)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError) as err:
        await open_source(f"replay://{bad}").open()
    assert "bad.csv" in str(err.value)


async def test_virtual_bus_delivers_from_another_thread_and_records_buzzes():
    remove_bus("rig-t")
    source = open_source("virtual://rig-t")
    assert isinstance(source, VirtualSource)
    await source.open()
    bus = get_bus("rig-t")
    assert bus.n_consumers == 1

    def producer():
        for k in range(100):
            for s in SENSORS:
                bus.push_reading(s, k, k * 0.04, [k, 0, 0, 0, 0, 0])
        bus.push_status("Back", "lost", "unplugged")
        bus.end()

    thread = threading.Thread(target=producer)
    thread.start()
    got = [ev async for ev in source.events()]
    thread.join()
    readings = [e for e in got if isinstance(e, SensorReading)]
    assert len(readings) == 600
    assert [r.values[0] for r in readings[::6]] == list(range(100))
    assert isinstance(got[-1], SourceStatus) and got[-1].detail == "unplugged"
    assert await source.send_buzz([100, 50, 100]) is True
    assert bus.buzzes[-1][1] == [100, 50, 100]
    assert source.health()["counters"]["readings"] == 600
    await source.close()
    assert bus.n_consumers == 0


def test_virtual_bus_checks_what_producers_push():
    bus = get_bus("rig-check")
    with pytest.raises(SourceError) as err:
        bus.push_reading("Nose", 0, 0.0, [0] * 6)
    assert "sensor 'Nose' is unknown" in str(err.value)
    with pytest.raises(SourceError) as err:
        bus.push_reading("Back", 0, 0.0, [0] * 5)
    assert "has 5 values; expected 6" in str(err.value)
    with pytest.raises(ConfigError):
        open_source("virtual://")
    with pytest.raises(ConfigError) as err:
        open_source("virtual://x?queue=0")
    assert "queue='0' is not a positive integer" in str(err.value)
