"""WitMotion WT901BLECL support: packet vectors, stream parsing with resync,
rate commands, and WitMotionSource against an emulated WT901BLECL over bumble.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError, SourceError
from edge.sources import SensorReading, SourceStatus, open_source
from edge.sources.witmotion import (
    SAVE_COMMAND, UNLOCK_COMMAND, WitMotionParser, WitMotionSource, device_rate_for,
    encode_packet, rate_commands, write_register_command,
)

pytestmark = pytest.mark.timeout(60)

#: Test vector: acc (2048, -1024, 16384), gyro (16384, -16384, 328),
#: angle (16384, -8192, 32767), written out byte by byte.
VECTOR = bytes([0x55, 0x61,
                0x00, 0x08, 0x00, 0xFC, 0x00, 0x40,
                0x00, 0x40, 0x00, 0xC0, 0x48, 0x01,
                0x00, 0x40, 0x00, 0xE0, 0xFF, 0x7F])
REGISTER_REPLY = bytes([0x55, 0x71, 0x64, 0x00]) + bytes(range(16))  # battery register answer


def test_packet_vector_decodes_to_physical_units():
    (sample,) = WitMotionParser().feed(VECTOR)
    assert sample.raw == (2048, -1024, 16384, 16384, -16384, 328, 16384, -8192, 32767)
    np.testing.assert_allclose(sample.accel_g, [1.0, -0.5, 8.0])
    np.testing.assert_allclose(sample.gyro_dps, [1000.0, -1000.0, 328 * 2000 / 32768])
    np.testing.assert_allclose(sample.angle_deg, [90.0, -45.0, 32767 * 180 / 32768])
    assert sample.values().dtype == np.float32 and sample.values().shape == (6,)


def test_encode_is_the_inverse_and_saturates():
    assert encode_packet([1.0, -0.5, 8.0], [1000.0, -1000.0, 328 * 2000 / 32768],
                         [90.0, -45.0, 32767 * 180 / 32768]) == VECTOR
    (sample,) = WitMotionParser().feed(encode_packet([40.0, -40.0, 0], [0, 0, 5000], [0, 0, 0]))
    assert sample.raw[:3] == (32767, -32768, 0) and sample.raw[5] == 32767


def test_parser_handles_split_merged_garbage_and_register_packets():
    stream = (b"\x00\x13\x55" + VECTOR + REGISTER_REPLY + b"\x55\x61\x01" + VECTOR * 2
              + b"\xff" * 7 + VECTOR)
    parser = WitMotionParser()
    out = []
    for i in range(0, len(stream), 7):  # notifications split at odd places
        out += parser.feed(stream[i:i + 7])
    assert len(out) == 4
    assert all(s.raw[0] == 2048 for s in out)
    assert parser.counters["register_packets"] == 1
    assert parser.counters["garbage_bytes"] == 3 + 3 + 7
    # A false header inside garbage does not swallow the real packet after it.
    parser = WitMotionParser()
    assert len(parser.feed(b"\x55\x61\x00\x00" + VECTOR + VECTOR)) == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=30), st.just(VECTOR), st.just(REGISTER_REPLY)),
                max_size=20),
       st.integers(1, 25))
def test_parser_never_raises_and_finds_clean_packets(pieces, chunk):
    stream = b"".join(pieces)
    parser = WitMotionParser()
    out = []
    for i in range(0, len(stream), chunk):
        out += parser.feed(stream[i:i + chunk])
    assert all(len(s.raw) == 9 for s in out)
    if all(p in (VECTOR, REGISTER_REPLY) for p in pieces):
        assert len(out) == sum(p == VECTOR for p in pieces)
        assert parser.counters["garbage_bytes"] == 0


def test_rate_commands_and_codes():
    assert UNLOCK_COMMAND == bytes.fromhex("ffaa6988b5")
    assert SAVE_COMMAND == bytes.fromhex("ffaa000000")
    assert write_register_command(0x03, 0x08) == bytes.fromhex("ffaa030800")
    assert rate_commands(50) == [bytes.fromhex("ffaa6988b5"), bytes.fromhex("ffaa030800"),
                                 bytes.fromhex("ffaa000000")]
    assert rate_commands(10)[1] == bytes.fromhex("ffaa030600")
    assert device_rate_for(25) == (50.0, 2)
    assert device_rate_for(50) == (50.0, 1)
    assert device_rate_for(10) == (10.0, 1)
    with pytest.raises(ConfigError, match="30 Hz"):
        device_rate_for(30)
    with pytest.raises(ConfigError, match="no rate code"):
        rate_commands(25)


@pytest.mark.parametrize("url, message", [
    ("witmotion-ble://?Back=C0:57:49:00:00:01&rate=30", "30 Hz"),
    ("witmotion-ble://?Back=C0:57:49:00:00:01&batch=2", "unknown parameter 'batch'"),
    ("witmotion-ble://?Back=C0:57:49:00:00:01&configure=yes", "configure='yes'"),
    ("witmotion-ble://?name_prefix=WT", "names carry no body site"),
])
def test_bad_urls(url, message):
    with pytest.raises(ConfigError, match=message):
        WitMotionSource(url)


async def test_witmotion_source_configures_and_streams_at_25hz(tiny_dataset):
    from host.ble_emulation import EmulatedBleWorld, load_recording, sensor_streams

    back = sensor_streams(load_recording(tiny_dataset))["Back"]
    async with EmulatedBleWorld(seed=3) as world:
        device = world.add_witmotion(back)
        assert device.rate_hz == 10.0  # factory default
        await world.start()
        url = f"witmotion-ble://?Back={device.address}&timeout=3&rate=25"
        source = open_source(url, backend=world.client_backend,
                             scanner_backend=world.scanner_backend)
        readings, states = [], []
        async with source:
            end = time.monotonic() + 1.5

            async def pump():
                async for e in source.events():
                    (readings if isinstance(e, SensorReading) else states).append(e)

            try:
                await asyncio.wait_for(pump(), end - time.monotonic())
            except asyncio.TimeoutError:
                pass
            health = source.health()
        # The documented command sequence reached the device, which switched to 50 Hz.
        assert device.commands[:3] == [UNLOCK_COMMAND, bytes.fromhex("ffaa030800"), SAVE_COMMAND]
        assert device.rate_hz == 50.0 and device.saved
        assert [s.state for s in states][:1] == ["connected"]
        # Every second 50 Hz packet is kept: about 25 readings per second.
        t = [r.t_host for r in readings if r.t_host > readings[0].t_host + 0.3]
        rate = (len(t) - 1) / (t[-1] - t[0])
        assert 20.0 <= rate <= 30.0, rate
        assert health["device_rate_hz"] == 50.0 and health["keep_every"] == 2
        # Values are the recording's: the device interpolates it at its rate,
        # so a kept packet is a 25 Hz row or the midpoint of two (to 1 LSB).
        tol = np.array([16 / 32768] * 3 + [2000 / 32768] * 3) * 1.01
        rows = np.concatenate([back, (back[:-1] + back[1:]) / 2])
        hits = sum(bool(np.any(np.all(np.abs(rows - r.values) <= tol, axis=1))) for r in readings)
        assert hits >= 0.9 * len(readings), (hits, len(readings))


async def test_witmotion_source_reports_a_missing_device():
    from host.ble_emulation import EmulatedBleWorld

    async with EmulatedBleWorld() as world:
        await world.start()
        source = WitMotionSource("witmotion-ble://?Back=C0:57:49:00:00:09&timeout=0.3",
                                 backend=world.client_backend, scanner_backend=world.scanner_backend)
        with pytest.raises(SourceError, match="not seen"):
            await source.open()


async def test_witmotion_reconnect_reconfigures_the_device(tiny_dataset):
    from host.ble_emulation import EmulatedBleWorld, load_recording, sensor_streams

    thig = sensor_streams(load_recording(tiny_dataset))["Thig"]
    async with EmulatedBleWorld(seed=4) as world:
        device = world.add_witmotion(thig)
        await world.start()
        source = WitMotionSource(f"witmotion-ble://?Thig={device.address}&timeout=2&backoff=0.1",
                                 backend=world.client_backend, scanner_backend=world.scanner_backend)
        events = []

        async def pump():
            async for e in source.events():
                events.append(e)

        async with source:
            task = asyncio.create_task(pump())
            await asyncio.sleep(0.4)
            await world.drop(device.name, down_s=0.3)
            await asyncio.sleep(1.2)
            task.cancel()
        states = [e.state for e in events if isinstance(e, SourceStatus) and e.sensor == "Thig"]
        assert states[0] == "connected" and "lost" in states and states[-1] == "connected"
        last_up = max(i for i, e in enumerate(events) if isinstance(e, SourceStatus)
                      and e.state == "connected")
        assert sum(isinstance(e, SensorReading) for e in events[last_up:]) >= 10
        # Unlock, rate, save written again at the reconnect.
        assert device.commands.count(UNLOCK_COMMAND) == 2


async def test_witmotion_by_name_for_one_site():
    from host.ble_emulation import EmulatedBleWorld

    async with EmulatedBleWorld(seed=8) as world:
        world.add_liftguard_imu("Back", np.zeros((10, 6)))  # not a WitMotion: must be ignored
        device = world.add_witmotion(np.tile([0.0, 0.0, 1.0, 0.0, 0.0, 5.0], (10, 1)))
        await world.start()
        async with WitMotionSource("witmotion-ble://?name_prefix=WT901&sensors=Back&timeout=2",
                                   backend=world.client_backend,
                                   scanner_backend=world.scanner_backend) as source:
            first = None
            async for event in source.events():
                if isinstance(event, SensorReading):
                    first = event
                    break
        assert source.health()["sensors"]["Back"]["address"] == device.address
        np.testing.assert_allclose(first.values, [0, 0, 1, 0, 0, 5], atol=2000 / 32768)
