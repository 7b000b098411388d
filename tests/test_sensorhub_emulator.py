"""Tests of the sensor-hub emulator: what it puts on the wire, its pacing, every fault option.

The reading side is plain pyserial plus :class:`edge.protocol.FrameDecoder`
(and, in the last tests, the ``serial://`` source), on the emulator's fresh
pseudo-terminal or on one end of a :class:`host.serial_relay.SerialRelay`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, List

import numpy as np
import pytest
import serial

from edge.dataset import write_trial_csv
from edge.errors import ConfigError, SourceError
from edge.layout import SENSORS
from edge.protocol import (RAW_INVALID, Ack, Buzz, Capabilities, Fault, FaultCode, FrameDecoder, Hello,
                           ManagementRequest, Nak, NakReason, SampleFrame, SensorState, Status, encode_message,
                           units_to_raw)
from edge.sources.base import SensorReading
from edge.sources.serial_hub import SerialHubSource
from host.sensorhub_emulator import FaultPlan, SensorHubEmulator, SensorWindow, load_recording

pytestmark = pytest.mark.timeout(60)


def recording(n: int = 100, seed: int = 0):
    rng = np.random.default_rng(seed)
    samples = np.concatenate([rng.normal(0, 0.5, (n, 3)), rng.normal(0, 50, (n, 3))] * 6, axis=1)
    timestamps = 1.7e9 + np.arange(n) / 25.0
    return samples, timestamps


class Reader:
    """pyserial on the far end, decoding everything that arrives."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 921600, timeout=0.02)
        self.decoder = FrameDecoder()
        self.messages: List = []
        self.arrivals: List[float] = []

    def pump(self, until: Callable[[list], bool], timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while not until(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout} s; {len(self.messages)} messages, "
                                     f"decoder {self.decoder.counters}")
            data = self.port.read(max(1, self.port.in_waiting))
            now = time.monotonic()
            for message in self.decoder.feed(data):
                self.messages.append(message)
                self.arrivals.append(now)
        return self.messages

    def samples(self) -> List[SampleFrame]:
        return [m for m in self.messages if isinstance(m, SampleFrame)]

    def send(self, message) -> None:
        self.port.write(encode_message(message))
        self.port.flush()

    def close(self) -> None:
        self.port.close()


def last_seq_seen(n: int) -> Callable[[list], bool]:
    return lambda messages: any(isinstance(m, SampleFrame) and m.seq >= n - 1 for m in messages)


@pytest.fixture
def play():
    """Start emulators and readers; stop and close them all at teardown."""
    started = []

    def start(samples, timestamps, **kwargs):
        emulator = SensorHubEmulator(None, samples, timestamps, **kwargs).start()
        reader = Reader(emulator.path)
        started.append((emulator, reader))
        return emulator, reader

    yield start
    for emulator, reader in started:
        reader.close()
        emulator.stop()


# ---------------------------------------------------------------- what goes on the wire

def test_plays_a_trial_csv_frame_for_frame(tmp_path, play):
    samples, timestamps = recording(120)
    csv = tmp_path / "trial.csv"
    write_trial_csv(csv, samples, timestamps)
    loaded_samples, loaded_ts = load_recording(csv)
    emulator, reader = play(loaded_samples, loaded_ts, speed=0)
    reader.pump(last_seq_seen(120))
    assert isinstance(reader.messages[0], Capabilities)
    assert reader.messages[0].sensors == SENSORS and reader.messages[0].sample_rate_hz == 25.0
    frames = reader.samples()
    assert [f.seq for f in frames] == list(range(120))
    assert np.all(np.diff([f.t_us for f in frames]) == 40_000)
    caps = reader.messages[0]
    # the emulator announces the smallest standard range that holds the recording
    peak_a = np.abs(loaded_samples.reshape(120, 6, 6)[:, :, :3]).max()
    assert caps.accel_full_scale_g == min(r for r in (2, 4, 8, 16) if peak_a <= r * 32767 / 32768)
    fs = (caps.accel_full_scale_g, caps.gyro_full_scale_dps)
    expected = units_to_raw(loaded_samples.reshape(120, 6, 6), *fs)
    assert np.array_equal(np.stack([f.raw for f in frames]), expected)
    assert all(f.valid_mask == 0x3F for f in frames)
    # the CSV's values and the wire agree to within half a count
    assert np.allclose(np.stack([f.scaled(*fs) for f in frames]).reshape(120, 36), samples,
                       atol=fs[1] / 32768 / 2 + 1e-6)
    assert emulator.wait(5) and emulator.counters["frames_sent"] == 120
    assert reader.decoder.counters["bad_crc"] == 0 and reader.decoder.counters["garbage_bytes"] == 0


def test_real_time_and_accelerated_pacing(play):
    samples, timestamps = recording(51)  # 2.0 s of recording
    emulator, reader = play(samples, timestamps, speed=4.0)
    reader.pump(last_seq_seen(51))
    arrivals = [t for m, t in zip(reader.messages, reader.arrivals) if isinstance(m, SampleFrame)]
    elapsed = arrivals[-1] - arrivals[0]
    assert 0.45 <= elapsed <= 1.5, f"2 s of recording at 4x took {elapsed:.2f} s; expected about 0.5 s"


def test_drift_moves_the_schedule_not_the_device_timestamps():
    samples, timestamps = recording(26)
    fast = SensorHubEmulator(None, samples, timestamps, speed=1.0, faults=FaultPlan(drift_ppm=1000))
    slow = SensorHubEmulator(None, samples, timestamps, speed=1.0, faults=FaultPlan(drift_ppm=-1000))
    assert fast._wall_of(25) == pytest.approx(1.0 / 1.001)
    assert slow._wall_of(25) == pytest.approx(1.0 / 0.999)
    assert np.array_equal(fast.t_us, slow.t_us) and fast.t_us[25] - fast.t_us[0] == 1_000_000


def test_data_set_trials_are_joined_with_a_gap(tiny_dataset, play):
    samples, timestamps = load_recording(tiny_dataset, gap_s=2.0)
    lengths = [300 + 10 * i for i in range(6)]
    assert len(samples) == sum(lengths)
    emulator, reader = play(samples, timestamps, speed=0)
    total_seq = sum(lengths) + 5 * 49  # 2 s gap = 50 periods, 49 sequence numbers skipped per gap
    reader.pump(last_seq_seen(total_seq))
    assert reader.decoder.counters["seq_gap"] == 5
    assert reader.decoder.counters["seq_missed"] == 5 * 49
    assert len(reader.samples()) == sum(lengths)


def test_nan_samples_go_out_as_invalid_sensors(play):
    samples, timestamps = recording(30)
    samples[10:20, 6:12] = np.nan  # LtWt has no reading for 10 samples
    emulator, reader = play(samples, timestamps, speed=0)
    reader.pump(last_seq_seen(30))
    frames = reader.samples()
    for f in frames:
        lost = 10 <= f.seq < 20
        assert f.is_valid(1) is (not lost)
        if lost:
            assert np.all(f.raw[1] == RAW_INVALID)
    assert reader.decoder.counters["out_of_range"] == 0


# ---------------------------------------------------------------- faults

def test_dropped_frames_show_as_sequence_gaps(play):
    samples, timestamps = recording(400)
    emulator, reader = play(samples, timestamps, speed=0, faults=FaultPlan(drop_share=0.1, seed=5))
    reader.pump(lambda m: emulator.finished.is_set()
                and len(reader.samples()) >= 400 - emulator.counters["frames_dropped"])
    dropped = emulator.counters["frames_dropped"]
    assert 20 <= dropped <= 60
    received = [f.seq for f in reader.samples()]
    trailing = 399 - max(received)  # dropped frames after the last one received leave no gap
    assert reader.decoder.counters["seq_missed"] == dropped - trailing
    assert len(received) == 400 - dropped and received == sorted(set(received))


def test_repeats_and_reorders_are_exactly_what_the_decoder_counts(play):
    samples, timestamps = recording(400)
    emulator, reader = play(samples, timestamps, speed=0, faults=FaultPlan(repeat_share=0.05, seed=1))
    reader.pump(last_seq_seen(400))
    assert emulator.counters["frames_repeated"] > 5
    assert reader.decoder.counters["seq_repeat"] == emulator.counters["frames_repeated"]
    assert [f.seq for f in reader.samples()] == list(range(400))

    emulator, reader = play(samples, timestamps, speed=0, faults=FaultPlan(reorder_share=0.05, seed=2))
    reader.pump(last_seq_seen(400))
    reordered = emulator.counters["frames_reordered"]
    assert reordered > 5
    assert reader.decoder.counters["seq_reorder"] == reordered
    assert reader.decoder.counters["seq_missed"] == reordered
    assert len(reader.samples()) == 400 - reordered


def test_bit_flips_truncation_and_garbage_are_survived(play):
    samples, timestamps = recording(500)  # 20 s
    plan = FaultPlan(bit_flip_share=0.03, truncate_share=0.02, garbage_per_min=60, garbage_bytes=40, seed=11)
    emulator, reader = play(samples, timestamps, speed=0, faults=plan)
    reader.pump(last_seq_seen(500))
    time.sleep(0.1)
    reader.pump(lambda m: reader.port.in_waiting == 0, timeout=2)
    c = emulator.counters
    assert c["garbage_bursts"] >= 5 and c["frames_bit_flipped"] >= 5 and c["frames_truncated"] >= 3
    spoiled = 2 * (c["frames_bit_flipped"] + c["frames_truncated"]) + c["garbage_bursts"]
    got = len(reader.samples())
    assert 500 - spoiled <= got < 500
    d = reader.decoder.counters
    assert d["garbage_bytes"] > 0 and d["bad_crc"] + d["truncated"] > 0 and d["internal_errors"] == 0


def test_silenced_sensor_window(play):
    samples, timestamps = recording(100)
    plan = FaultPlan(silence=(SensorWindow("Back", 1.0, 2.0),))
    emulator, reader = play(samples, timestamps, speed=0, faults=plan)
    reader.pump(last_seq_seen(100))
    back = SENSORS.index("Back")
    for f in reader.samples():
        silent = 25 <= f.seq < 50
        assert f.is_valid(back) is (not silent)
        assert bool(np.all(f.raw[back] == RAW_INVALID)) is silent
    faults = [m for m in reader.messages if isinstance(m, Fault)]
    assert [(f.sensor, f.code) for f in faults] == [(back, FaultCode.IMU_NOT_FOUND)]
    index_fault = reader.messages.index(faults[0])
    first_silent = next(i for i, m in enumerate(reader.messages) if isinstance(m, SampleFrame) and m.seq == 25)
    assert index_fault < first_silent
    states = [m.sensor_states[back] for m in reader.messages if isinstance(m, Status)]
    assert SensorState.MISSING in states and states[0] == SensorState.OK


def test_stuck_sensor_window(play):
    samples, timestamps = recording(100)
    emulator, reader = play(samples, timestamps, speed=0, faults=FaultPlan(stuck=(SensorWindow.parse("Thig:1:3"),)))
    reader.pump(last_seq_seen(100))
    thig = SENSORS.index("Thig")
    frames = reader.samples()
    stuck = np.stack([f.raw[thig] for f in frames if 25 <= f.seq < 75])
    assert np.all(stuck == stuck[0])
    assert not np.array_equal(frames[75].raw[thig], stuck[0])


# ---------------------------------------------------------------- talking back

def test_answers_hello_and_buzz_refuses_management(play):
    samples, timestamps = recording(50)
    emulator, reader = play(samples, timestamps, speed=0)
    reader.pump(last_seq_seen(50))
    assert emulator.wait(5)
    reader.send(Hello(host_id="test"))
    reader.send(Buzz(buzz_id=42, pattern_ms=(300, 100, 300)))
    reader.send(ManagementRequest(request_id=1, op="status"))
    reader.pump(lambda m: any(isinstance(x, Nak) for x in m))
    capabilities = [m for m in reader.messages if isinstance(m, Capabilities)]
    assert len(capabilities) == 2 and capabilities[1].device_id == "EMU-0001"
    assert Ack(of_type=Buzz.TYPE, ref=42) in reader.messages
    nak = next(m for m in reader.messages if isinstance(m, Nak))
    assert nak.reason == NakReason.UNSUPPORTED and nak.of_type == ManagementRequest.TYPE
    assert emulator.buzz_log == [(timestamps[-1], (300, 100, 300))]
    assert emulator.buzz_records[0].buzz_id == 42 and emulator.buzz_records[0].sample_index == 49
    assert emulator.counters["hello_answered"] == 1 and emulator.counters["buzz_received"] == 1


def test_playback_waits_for_a_reader():
    samples, timestamps = recording(50)
    emulator = SensorHubEmulator(None, samples, timestamps, speed=1.0).start()
    try:
        time.sleep(0.3)
        assert emulator.position == -1
        reader = Reader(emulator.path)
        reader.pump(lambda m: len(reader.samples()) >= 2, timeout=5)
        assert reader.samples()[0].seq == 0
        reader.close()
    finally:
        emulator.stop()


def test_plays_onto_an_existing_serial_port():
    from host.serial_relay import SerialRelay

    samples, timestamps = recording(60)
    with SerialRelay(baud=None) as relay:
        reader = Reader(relay.hub_path)
        emulator = SensorHubEmulator(relay.host_path, samples, timestamps, speed=0).start()
        try:
            assert emulator.path == relay.host_path
            reader.pump(last_seq_seen(60))
            assert [f.seq for f in reader.samples()] == list(range(60))
        finally:
            reader.close()
            emulator.stop()


async def test_through_the_serial_source_with_device_clock(tmp_path):
    samples, timestamps = recording(100)
    link = tmp_path / "ttyEMU"
    emulator = SensorHubEmulator(None, samples, timestamps, speed=10.0, pty_link=link).start()
    source = SerialHubSource(f"serial://{link}?clock=device&hello=2")
    try:
        await source.open()
        got: List[SensorReading] = []

        async def run():
            async for event in source.events():
                if isinstance(event, SensorReading) and event.sensor == "Side":
                    got.append(event)
                    if event.seq == 99:
                        return

        await asyncio.wait_for(run(), 20)
        t_host = np.array([r.t_host for r in got])
        # 10x faster on the wire, but device-clock host times step by one 25 Hz period
        assert np.allclose(np.diff(t_host), 0.04, atol=1e-9)
        values = np.stack([r.values for r in got])
        assert np.allclose(values, samples[-len(got):, :6], atol=2000 / 32768)
    finally:
        await source.close()
        emulator.stop()
    assert not link.exists()


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, words", [
    (dict(samples=np.zeros((5, 35))), "(n, 36)"),
    (dict(timestamps=np.zeros(4)), "(5,)"),
    (dict(timestamps=np.array([0, 1, 1, 2, 3.0])), "row 2"),
    (dict(speed=-1), "speed=-1"),
])
def test_bad_recordings_are_refused(kwargs, words):
    args = dict(samples=np.zeros((5, 36)), timestamps=np.arange(5) / 25.0)
    args.update(kwargs)
    speed = args.pop("speed", 1.0)
    with pytest.raises(ConfigError) as info:
        SensorHubEmulator(None, args["samples"], args["timestamps"], speed=speed)
    assert words in str(info.value)


@pytest.mark.parametrize("make, words", [
    (lambda: FaultPlan(drop_share=1.5), "drop_share=1.5"),
    (lambda: FaultPlan(garbage_bytes=0), "garbage_bytes=0"),
    (lambda: FaultPlan(drift_ppm=2e5), "drift_ppm"),
    (lambda: FaultPlan(unplug=((3, 1),)), "unplug window"),
    (lambda: SensorWindow("Neck", 0, 1), "'Neck' is not one of"),
    (lambda: SensorWindow("Back", 2, 1), "start < end"),
    (lambda: SensorWindow.parse("Back:1"), "SENSOR:START:END"),
    (lambda: SensorWindow.parse("Back:a:b"), "numbers of seconds"),
])
def test_bad_fault_plans_are_refused(make, words):
    with pytest.raises(ConfigError) as info:
        make()
    assert words in str(info.value)


def test_missing_recording_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="nothing-here"):
        SensorHubEmulator.from_path(tmp_path / "nothing-here")


def test_missing_port_is_a_source_error(tmp_path):
    samples, timestamps = recording(5)
    with pytest.raises(SourceError, match="no-such-port"):
        SensorHubEmulator(str(tmp_path / "no-such-port"), samples, timestamps).start()
