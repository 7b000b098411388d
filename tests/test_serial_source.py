"""Tests of ``serial://`` (SerialHubSource) over real pseudo-terminals with pyserial on both sides.

The sensor hub's side is either a scripted fake (:class:`ScriptedHub`, which
writes exact frames through pyserial on the far end of
:class:`host.serial_relay.SerialRelay`) or the sensor-hub emulator on a fresh
pseudo-terminal (for unplugging, which needs the port to vanish).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Callable, List

import numpy as np
import pytest
import serial

from edge.errors import ConfigError, SourceError
from edge.layout import SENSORS
from edge.protocol import (RAW_INVALID, Ack, Buzz, Capabilities, Fault, FaultCode, Feature, FrameDecoder, Hello, Nak,
                           NakReason, SampleFrame, SensorState, Status, encode_message)
from edge.sources import open_source
from edge.sources.base import SensorReading, SourceStatus
from edge.sources.serial_hub import SerialHubSource, parse_serial_url
from host.serial_relay import SerialRelay
from host.sensorhub_emulator import FaultPlan, SensorHubEmulator

pytestmark = pytest.mark.timeout(60)


class ScriptedHub:
    """The sensor hub's end of the link, scripted by the test (pyserial on a pty).

    Answers Hello with ``caps`` (unless None) and Buzz with Ack, Nak or
    silence (``buzz_answer``), and sends whatever the test asks for.
    """

    def __init__(self, path: str, caps=Capabilities(device_id="SH-T", firmware_version="t1"),
                 buzz_answer: str = "ack") -> None:
        self.port = serial.Serial(path, 921600, timeout=0.02)
        self.caps = caps
        self.buzz_answer = buzz_answer
        self.received: List = []
        self.decoder = FrameDecoder(track_sequence=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.port.read(256)
            for message in self.decoder.feed(data):
                self.received.append(message)
                if isinstance(message, Hello) and self.caps is not None:
                    self.send(self.caps)
                elif isinstance(message, Buzz):
                    if self.buzz_answer == "ack":
                        self.send(Ack(of_type=Buzz.TYPE, ref=message.buzz_id))
                    elif self.buzz_answer == "nak":
                        self.send(Nak(of_type=Buzz.TYPE, ref=message.buzz_id, reason=NakReason.BUSY))

    def send(self, message_or_bytes) -> None:
        data = message_or_bytes if isinstance(message_or_bytes, bytes) else encode_message(message_or_bytes)
        self.port.write(data)
        self.port.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.port.close()


@pytest.fixture
def relay():
    with SerialRelay(baud=None) as link:
        yield link


@pytest.fixture
async def sources():
    """Open SerialHubSources through this; all are closed at teardown, even when a test fails."""
    opened = []

    async def make(url: str) -> SerialHubSource:
        source = SerialHubSource(url)
        opened.append(source)
        await source.open()
        return source

    yield make
    for source in opened:
        await source.close()


def frame(seq: int, raw=None, mask: int = 0x3F) -> SampleFrame:
    if raw is None:
        raw = np.full((6, 6), seq % 100, np.int16)
        raw[:, 0] += np.arange(6, dtype=np.int16)
    return SampleFrame(seq=seq, t_us=1_000_000 + 40_000 * seq, valid_mask=mask, raw=raw)


async def collect(source, until: Callable[[list], bool], timeout: float = 10.0) -> list:
    """Gather events until ``until(events)`` holds; fail with what arrived on timeout."""
    events: list = []

    async def run():
        async for event in source.events():
            events.append(event)
            if until(events):
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"condition not met within {timeout} s; got {events[-20:]}") from None
    return events


def readings(events) -> List[SensorReading]:
    return [e for e in events if isinstance(e, SensorReading)]


def statuses(events, sensor="any", state=None) -> List[SourceStatus]:
    return [e for e in events if isinstance(e, SourceStatus) and (sensor == "any" or e.sensor == sensor)
            and (state is None or e.state == state)]


# ---------------------------------------------------------------- URL and registry

def test_url_forms_and_defaults():
    assert parse_serial_url("serial:///dev/ttyACM0")[0] == "/dev/ttyACM0"
    port, opts = parse_serial_url("serial:///dev/ttyACM0?baud=115200&stuck=10&clock=device")
    assert port == "/dev/ttyACM0" and opts["baud"] == 115200 and opts["stuck"] == 10 and opts["clock"] == "device"
    assert parse_serial_url("serial://COM3")[0] == "COM3"
    assert parse_serial_url("serial://socket://10.0.0.5:7000?baud=9600")[0] == "socket://10.0.0.5:7000"
    assert parse_serial_url("serial:///dev/x")[1]["baud"] == 921600


@pytest.mark.parametrize("url, words", [
    ("serial://", "no port"),
    ("serial:///dev/x?speed=3", "unknown option 'speed'"),
    ("serial:///dev/x?baud=fast", "baud='fast' is not an integer"),
    ("serial:///dev/x?baud=0", "baud=0"),
    ("serial:///dev/x?stuck=1", "stuck=1"),
    ("serial:///dev/x?clock=gps", "clock='gps'"),
    ("serial:///dev/x?silence=-1", "silence=-1"),
    ("serial:///dev/x?retry_open=2", "retry_open=2"),
    ("ble://x", "expected serial://"),
])
def test_bad_urls_are_refused_with_clear_messages(url, words):
    with pytest.raises(ConfigError) as info:
        parse_serial_url(url)
    assert words in str(info.value)


def test_registry_builds_the_serial_source():
    source = open_source("serial:///dev/does-not-matter?baud=9600")
    assert isinstance(source, SerialHubSource) and source.options["baud"] == 9600


async def test_missing_port_raises_source_error_naming_it(tmp_path):
    source = SerialHubSource(f"serial://{tmp_path}/no-such-tty")
    with pytest.raises(SourceError, match="no-such-tty"):
        await source.open()


async def test_events_before_open_is_a_clear_error():
    source = SerialHubSource("serial:///dev/x")
    with pytest.raises(SourceError, match="not open"):
        async for _ in source.events():
            pass


# ---------------------------------------------------------------- samples and scaling

async def test_samples_become_six_scaled_readings(relay, sources):
    hub = ScriptedHub(relay.host_path, caps=Capabilities(device_id="SH-8G", firmware_version="t",
                                                          accel_full_scale_g=8, gyro_full_scale_dps=500))
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2")
        assert source.capabilities.device_id == "SH-8G"
        raw = np.zeros((6, 6), np.int16)
        raw[:, 2] = 4096  # 8 g full scale: 4096 counts = 1 g
        raw[3, 3] = 6554  # 500 dps full scale: 6554 counts = 100.006 dps
        hub.send(frame(7, raw))
        events = await collect(source, lambda ev: len(readings(ev)) >= 6)
        got = readings(events)
        assert [r.sensor for r in got] == list(SENSORS)
        assert all(r.seq == 7 and r.t_sensor == pytest.approx(1.28) for r in got)
        assert all(r.values.dtype == np.float32 and r.values.shape == (6,) for r in got)
        assert [float(r.values[2]) for r in got] == [1.0] * 6
        assert got[3].values[3] == pytest.approx(6554 * 500 / 32768)
        assert got[0].t_host <= time.monotonic()
        assert hub.received and isinstance(hub.received[0], Hello)
        health = source.health()
        assert health["device_id"] == "SH-8G" and health["counters"]["frames"] == 1
        await source.close()
        await source.close()  # twice is fine
    finally:
        hub.close()


async def test_without_capabilities_the_source_says_it_assumes_defaults(relay, sources):
    hub = ScriptedHub(relay.host_path, caps=None)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=0.2")
        hub.send(frame(1))
        events = await collect(source, lambda ev: len(readings(ev)) >= 6)
        assert any("no Capabilities" in s.detail for s in statuses(events))
        assert source.counters["no_capabilities"] == 1
        await source.close()
    finally:
        hub.close()


async def test_frames_before_capabilities_wait_for_its_full_scales(relay):
    """A sensor hub already streaming when the hub (re)starts: its first frames are not read at assumed scales."""
    hub = ScriptedHub(relay.host_path, caps=None)
    source = SerialHubSource(f"serial://{relay.hub_path}?hello=3")
    try:
        opening = asyncio.create_task(source.open())
        raw = np.zeros((6, 6), np.int16)
        raw[:, 2] = 4096  # 1 g at +-8 g; the +-16 g default would read 0.5 g
        await asyncio.sleep(0.3)
        for seq in range(3):
            hub.send(frame(seq, raw))
        await asyncio.sleep(0.3)
        hub.send(Capabilities(device_id="SH-8G", firmware_version="t", accel_full_scale_g=8, gyro_full_scale_dps=500))
        await opening
        hub.send(frame(3, raw))
        events = await collect(source, lambda ev: len(readings(ev)) >= 24)
        got = readings(events)
        assert [r.seq for r in got[::6]] == [0, 1, 2, 3]  # nothing lost, in order
        assert {float(r.values[2]) for r in got} == {1.0}
        assert source.counters["held_before_capabilities"] == 3
        assert "no_capabilities" not in source.counters
    finally:
        await source.close()
        hub.close()


async def test_sensor_order_from_capabilities_is_honoured(relay, sources):
    reversed_caps = Capabilities(device_id="SH-R", firmware_version="t", sensors=tuple(reversed(SENSORS)))
    hub = ScriptedHub(relay.host_path, caps=reversed_caps)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2")
        raw = np.zeros((6, 6), np.int16)
        raw[:, 0] = np.arange(6) * 2048  # row r carries r/16*16 = r g on x
        hub.send(frame(1, raw))
        events = await collect(source, lambda ev: len(readings(ev)) >= 6)
        by_name = {r.sensor: float(r.values[0]) for r in readings(events)}
        assert by_name == {name: float(5 - i) for i, name in enumerate(SENSORS)}
        await source.close()
    finally:
        hub.close()


# ---------------------------------------------------------------- bad input counted, never fatal

async def test_garbage_bad_crc_truncation_repeats_and_reorders_are_counted(relay, sources):
    hub = ScriptedHub(relay.host_path)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2")
        flipped = bytearray(encode_message(frame(3)))
        flipped[20] ^= 0x10
        stream = (encode_message(frame(1)) + b"\x00\xde\xad\xbe\xef\x00" + encode_message(frame(2))
                  + bytes(flipped)  # seq 3 corrupted
                  + encode_message(frame(4))[:30] + b"\x00"  # seq 4 cut short, delimited
                  + encode_message(frame(5)) + encode_message(frame(5))  # repeat
                  + encode_message(frame(7)) + encode_message(frame(6))  # reorder
                  + b"\x01\x7f\x00"  # a one-byte "frame"
                  + encode_message(frame(8)))
        hub.send(stream)
        events = await collect(source, lambda ev: sum(r.seq == 8 for r in readings(ev)) == 6)
        seqs = sorted({r.seq for r in readings(events)})
        assert seqs == [1, 2, 5, 7, 8]
        assert len(readings(events)) == 5 * 6
        c = source.health()["counters"]
        assert c["decoder_garbage_bytes"] > 0
        assert source.counters["decoder_seq_repeat"] == 1  # also in .counters, not only health()
        # the garbage "frame", the flipped frame, the cut frame and the one-byte frame
        assert c["decoder_bad_crc"] + c["decoder_truncated"] == 4
        assert c["decoder_seq_repeat"] == 1 and c["decoder_seq_reorder"] == 1
        assert c["decoder_seq_gap"] == 2 and c["decoder_seq_missed"] == 3  # 2 -> 5 and 5 -> 7
        await source.close()
    finally:
        hub.close()


async def test_lost_sensor_reported_and_recovered(relay, sources):
    hub = ScriptedHub(relay.host_path)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2")
        back = SENSORS.index("Back")
        raw = np.ones((6, 6), np.int16)
        lost_raw = raw.copy()
        lost_raw[back] = RAW_INVALID
        hub.send(encode_message(frame(1, raw)) + encode_message(frame(2, lost_raw, mask=0x3F & ~(1 << back)))
                 + encode_message(Fault(sensor=back, code=FaultCode.IMU_NOT_FOUND, t_us=5, detail="no ack"))
                 + encode_message(Status(uptime_s=1, battery_pct=40, battery_mv=3700,
                                         sensor_states=(0, 0, 0, SensorState.MISSING, 0, 0),
                                         faults=(FaultCode.IMU_NOT_FOUND,)))
                 + encode_message(frame(3, raw + 1))
                 + encode_message(Status(uptime_s=2, battery_pct=40, battery_mv=3700)))
        events = await collect(source, lambda ev: sum(r.seq == 3 for r in readings(ev)) == 6
                               and any("cleared" in s.detail for s in statuses(ev, None, "connected")))
        assert [r.sensor for r in readings(events) if r.seq == 2] == [s for s in SENSORS if s != "Back"]
        lost = statuses(events, "Back", "lost")
        assert any("validity bit cleared from sequence 2" in s.detail for s in lost)
        assert any("MISSING" in s.detail for s in lost)
        assert any("IMU_NOT_FOUND" in s.detail for s in statuses(events, "Back", "fault"))
        assert any("recovered at sequence 3" in s.detail for s in statuses(events, "Back", "connected"))
        assert [s.detail for s in statuses(events, None, "connected") if "cleared" in s.detail] == [
            "sensor hub fault IMU_NOT_FOUND cleared"]
        health = source.health()
        assert health["battery_pct"] == 40 and health["faults"] == []
        assert health["sensors"]["Back"] == "connected"
        await source.close()
    finally:
        hub.close()


async def test_stuck_sensor_is_reported_and_clears(relay, sources):
    hub = ScriptedHub(relay.host_path)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2&stuck=5")
        frames = []
        for seq in range(1, 11):
            raw = np.full((6, 6), seq, np.int16)
            raw[SENSORS.index("Thig")] = 77  # frozen
            if seq == 10:
                raw[SENSORS.index("Thig")] = 78
            frames.append(encode_message(frame(seq, raw)))
        hub.send(b"".join(frames))
        events = await collect(source, lambda ev: sum(r.seq == 10 for r in readings(ev)) == 6)
        stuck = statuses(events, "Thig", "fault")
        assert len(stuck) == 1 and "stuck at [77, 77, 77, 77, 77, 77] for 5 samples" in stuck[0].detail
        assert any("moving again at sequence 10" in s.detail for s in statuses(events, "Thig", "connected"))
        assert source.counters["stuck"] == 1
        assert not statuses(events, "Side", "fault")
        await source.close()
    finally:
        hub.close()


async def test_link_silence_reported_then_recovered(relay, sources):
    hub = ScriptedHub(relay.host_path)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2&silence=0.3")
        hub.send(frame(1))
        events = await collect(source, lambda ev: bool(statuses(ev, None, "lost")), timeout=5)
        assert "no frame" in statuses(events, None, "lost")[0].detail
        hub.send(frame(2))
        events = await collect(source, lambda ev: sum(r.seq == 2 for r in readings(ev)) == 6, timeout=5)
        assert any("again" in s.detail for s in statuses(events, None, "connected"))
        await source.close()
    finally:
        hub.close()


# ---------------------------------------------------------------- buzz

@pytest.mark.parametrize("answer, expected", [("ack", True), ("nak", False), ("none", False)])
async def test_buzz_is_sent_and_acknowledged(relay, sources, answer, expected):
    hub = ScriptedHub(relay.host_path, buzz_answer=answer)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2&buzz_ack=0.3")
        assert await source.send_buzz([250, 100, 250]) is expected
        deadline = time.monotonic() + 2
        while not any(isinstance(m, Buzz) for m in hub.received) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        buzzes = [m for m in hub.received if isinstance(m, Buzz)]
        assert [b.pattern_ms for b in buzzes] == [(250, 100, 250)]
        assert source.counters["buzz_sent"] == 1
        assert source.counters.get("buzz_acked", 0) == int(expected)
        await source.close()
    finally:
        hub.close()


async def test_buzz_refused_without_motor_and_bad_pattern_is_a_config_error(relay, sources):
    hub = ScriptedHub(relay.host_path, caps=Capabilities(device_id="no-motor", firmware_version="t",
                                                          features=int(Feature.BATTERY)))
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2")
        assert await source.send_buzz([100]) is False
        assert source.counters["buzz_unsupported"] == 1
        source.capabilities = None
        with pytest.raises(ConfigError, match="20000"):
            await source.send_buzz([20000])
        await source.close()
    finally:
        hub.close()


# ---------------------------------------------------------------- unplug and reopen

async def test_unplug_and_reopen_with_backoff(tmp_path, sources):
    n = 200
    samples = np.random.default_rng(0).normal(0, 0.2, (n, 36))
    timestamps = 1.7e9 + np.arange(n) / 25.0
    link = tmp_path / "ttyHUB"
    emulator = SensorHubEmulator(None, samples, timestamps, speed=4.0, pty_link=link,
                                 faults=FaultPlan(unplug=((2.0, 3.0),)))  # 0.25 s of wall time unplugged
    emulator.start()
    try:
        source = await sources(f"serial://{link}?hello=2&backoff=0.02&backoff_max=0.1&silence=5")
        events = await collect(source, lambda ev: any(r.seq >= 180 for r in readings(ev)), timeout=20)
        link_states = [s.state for s in statuses(events, None)]
        first_lost = link_states.index("lost")
        assert "reconnecting" in link_states[first_lost:]
        assert any("reopened" in s.detail for s in statuses(events, None, "connected"))
        seqs = [r.seq for r in readings(events) if r.sensor == "Side"]
        # played up to the unplug (bytes still in the pty when it vanished are lost, as on a real cable)
        assert 40 <= max(s for s in seqs if s < 50) <= 49
        assert min(s for s in seqs if s >= 50) >= 75  # the next frame after replugging
        assert all(statuses(events, sensor, "lost") for sensor in SENSORS)
        assert source.counters["link_lost"] >= 1 and source.counters["reconnects"] >= 1
        assert emulator.counters["unplugs"] == 1
        await source.close()
    finally:
        emulator.stop()


async def test_a_stalled_consumer_cannot_exhaust_memory(relay, sources):
    hub = ScriptedHub(relay.host_path)
    try:
        source = await sources(f"serial://{relay.hub_path}?hello=2&queue=20")
        hub.send(b"".join(encode_message(frame(seq)) for seq in range(1, 31)))  # 180 readings, nobody reading
        deadline = time.monotonic() + 5
        # frames are counted on the reader thread, the queue is filled on the event loop just after
        while ((source.counters.get("frames", 0) < 30 or source.counters.get("overflow", 0) < 180 - 20)
               and time.monotonic() < deadline):
            await asyncio.sleep(0.02)
        assert source.counters["frames"] == 30
        assert source._queue.qsize() <= 20
        assert source.counters["overflow"] >= 180 - 20
        events = await collect(source, lambda ev: sum(r.seq == 30 for r in readings(ev)) == 6)
        assert {r.seq for r in readings(events)} <= set(range(27, 31))  # only the newest survived
    finally:
        hub.close()


async def test_any_pyserial_url_works_here_a_tcp_socket(sources):
    """``serial://socket://HOST:PORT``: a sensor hub behind a serial-to-TCP bridge (ser2net)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def bridge():
        conn, _ = server.accept()
        with conn:
            decoder = FrameDecoder()
            conn.settimeout(5)
            while not any(isinstance(m, Hello) for m in decoder.feed(conn.recv(256))):
                pass
            conn.sendall(encode_message(Capabilities(device_id="SH-TCP", firmware_version="t"))
                         + b"".join(encode_message(frame(seq)) for seq in range(1, 4)))
            time.sleep(1.0)

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    try:
        source = await sources(f"serial://socket://127.0.0.1:{port}?hello=3")
        assert source.capabilities is not None and source.capabilities.device_id == "SH-TCP"
        events = await collect(source, lambda ev: sum(r.seq == 3 for r in readings(ev)) == 6)
        assert sorted({r.seq for r in readings(events)}) == [1, 2, 3]
    finally:
        thread.join(3)
        server.close()


async def test_retry_open_waits_for_a_belt_plugged_in_later(tmp_path, sources):
    link = tmp_path / "ttyLATE"
    source = await sources(f"serial://{link}?retry_open=1&backoff=0.02&backoff_max=0.05&hello=1")
    assert source.state == "lost"
    samples, timestamps = np.zeros((50, 36)), 1.7e9 + np.arange(50) / 25.0
    samples[:, 2::6] = 1.0
    emulator = SensorHubEmulator(None, samples, timestamps, speed=5.0, pty_link=link)
    try:
        await asyncio.sleep(0.2)
        emulator.start()
        events = await collect(source, lambda ev: sum(r.seq == 20 for r in readings(ev)) == 6)
        states = [s.state for s in statuses(events, None)]
        assert states[0] == "lost" and "reconnecting" in states and "connected" in states
        assert all(r.values[2] == 1.0 for r in readings(events))
    finally:
        emulator.stop()
