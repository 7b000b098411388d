"""BleImuSource through bleak's public API on the bumble backend.

Six emulated LiftGuard IMUs share one bumble LocalLink with the hub's central;
the source under test is the production class, given the bumble bleak
backends instead of BlueZ. Streams are short (about a second each).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.layout import SENSORS
from edge.sources import SensorReading, SourceStatus, open_source
from edge.sources.ble import BleImuSource
from edge.sources.ble_profile import ACCEL_LSB_G, GYRO_LSB_DPS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def recording(tiny_dataset):
    """The first trial of the tiny data set, read through edge.dataset."""
    from host.ble_emulation import load_recording

    return load_recording(tiny_dataset)


async def _collect(source, seconds, sink=None):
    """Gather events for ``seconds``; return (readings by site, statuses)."""
    readings = defaultdict(list)
    statuses = []
    end = time.monotonic() + seconds

    async def pump():
        async for event in source.events():
            if isinstance(event, SensorReading):
                readings[event.sensor].append(event)
            else:
                statuses.append(event)
            if sink is not None:
                sink.append(event)

    try:
        await asyncio.wait_for(pump(), max(0.0, end - time.monotonic()))
    except asyncio.TimeoutError:
        pass
    return readings, statuses


def _check_values(readings, streams, site):
    """Readings equal the recording rows their sequence numbers name (to 1 LSB)."""
    tol = np.array([ACCEL_LSB_G] * 3 + [GYRO_LSB_DPS] * 3)
    n = len(streams[site])
    for r in readings[site]:
        expected = streams[site][r.seq % n]
        assert np.all(np.abs(r.values - expected) <= tol), (site, r.seq, r.values, expected)


async def test_six_imus_stream_and_one_reconnects(recording):
    from host.ble_emulation import EmulatedBleWorld, sensor_streams

    streams = sensor_streams(recording)
    async with EmulatedBleWorld(seed=1) as world:
        world.add_liftguard_imus(recording)
        await world.start()
        url = "ble://?name_prefix=LG-IMU&timeout=3&backoff=0.1&backoff_max=0.5"
        source = open_source(url, backend=world.client_backend,
                             scanner_backend=world.scanner_backend)
        assert isinstance(source, BleImuSource)
        async with source:
            readings, statuses = await _collect(source, 1.2)
            assert {s.sensor for s in statuses if s.state == "connected"} == set(SENSORS)
            for site in SENSORS:
                assert len(readings[site]) >= 15, (site, len(readings[site]))
                _check_values(readings, streams, site)
                seqs = [r.seq for r in readings[site]]
                assert seqs == sorted(seqs)
            # Every IMU got the hub's configuration written.
            assert all(p.config_writes and p.config_writes[-1].rate_hz == 25
                       for p in world.peripherals)

            # Back goes out of range for 0.4 s; the others keep streaming.
            back = world.peripheral("Back")
            events = []
            drop_task = asyncio.create_task(world.drop("Back", down_s=0.4))
            readings2, statuses2 = await _collect(source, 1.8, sink=events)
            await drop_task
            back_states = [s.state for s in statuses2 if s.sensor == "Back"]
            assert back_states[0] == "lost"
            assert "reconnecting" in back_states and back_states[-1] == "connected"
            lost_at = next(i for i, e in enumerate(events)
                           if isinstance(e, SourceStatus) and e.sensor == "Back" and e.state == "lost")
            back_up = max(i for i, e in enumerate(events)
                          if isinstance(e, SourceStatus) and e.sensor == "Back" and e.state == "connected")
            during = [e for e in events[lost_at:back_up] if isinstance(e, SensorReading)]
            others = {e.sensor for e in during}
            assert others == set(SENSORS) - {"Back"}, [(type(e).__name__, e.sensor, getattr(e, "state", None), round(e.t_host, 3)) for e in events if e.sensor == "Back"][:40]
            assert len(during) >= 5 * 8  # 5 sensors x >= 0.3 s at 25 Hz
            after = [e for e in events[back_up:] if isinstance(e, SensorReading) and e.sensor == "Back"]
            assert len(after) >= 5
            _check_values(readings2, streams, "Back")
            # The sensor's counter kept running while it was away: a gap, counted.
            assert source.counters.get("Back.reconnects") == 1
            assert source.counters.get("Back.disconnects") == 1
            health = source.health()
            assert health["sensors"]["Back"]["connects"] == 2
            assert back.index > 0
    statuses_after = [e for e in events if isinstance(e, SourceStatus) and e.sensor != "Back"]
    assert not [s for s in statuses_after if s.state == "lost"]


async def test_sites_by_address_and_unassigned_names(recording):
    from host.ble_emulation import EmulatedBleWorld, sensor_streams

    streams = sensor_streams(recording)
    async with EmulatedBleWorld(seed=2) as world:
        # Three IMUs advertise only a serial; their site is in the Site characteristic.
        for k, site in enumerate(("Back", "Thig", "UArm")):
            world.add_liftguard_imu(site, streams[site], advertise_site=(k == 0))
        await world.start()
        by_address = "&".join(f"{p.site}={p.address}" for p in world.peripherals)
        for url in (f"ble://?{by_address}&timeout=3",
                    "ble://?name_prefix=LG-IMU&sensors=Back,Thig,UArm&timeout=1"):
            async with BleImuSource(url, backend=world.client_backend,
                                    scanner_backend=world.scanner_backend) as source:
                readings, statuses = await _collect(source, 0.6)
            statuses += [e async for e in source.events() if isinstance(e, SourceStatus)]
            assert set(readings) == {"Back", "Thig", "UArm"}, url
            for site in readings:
                assert len(readings[site]) >= 5
                _check_values(readings, streams, site)
            assert statuses[-1].state == "closed"


async def test_open_fails_clearly_when_nothing_answers():
    from host.ble_emulation import EmulatedBleWorld

    async with EmulatedBleWorld() as world:
        await world.start()
        source = BleImuSource("ble://?Back=C0:4C:47:00:00:99&timeout=0.3",
                              backend=world.client_backend, scanner_backend=world.scanner_backend)
        with pytest.raises(SourceError, match=r"Back: .*C0:4C:47:00:00:99.* not seen in 0.3 s"):
            await source.open()


async def test_no_bluez_here_gives_a_clear_error():
    source = BleImuSource("ble://?Back=C0:4C:47:00:00:01&timeout=0.3")
    with pytest.raises(SourceError, match="BlueZ"):
        await source.open()


@pytest.mark.parametrize("url, message", [
    ("ble://?Back=nothex", "'nothex' is not a Bluetooth address"),
    ("ble://?Bak=C0:4C:47:00:00:01", "unknown parameter 'Bak'"),
    ("ble://", "no sensors given"),
    ("ble://?Back=C0:4C:47:00:00:01&name_prefix=LG", "not both"),
    ("ble://?name_prefix=LG-IMU&sensors=Back,Hip", "sensors contains 'Hip'"),
    ("ble://?name_prefix=LG-IMU&timeout=abc", "timeout='abc' is not a number"),
    ("ble://?name_prefix=LG-IMU&batch=14", "batch='14' is out of range"),
    ("ble://host?name_prefix=LG-IMU", "unexpected 'host'"),
])
def test_bad_urls_are_named(url, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        BleImuSource(url)


async def test_lost_samples_and_garbage_are_counted_not_fatal(recording):
    from host.ble_emulation import EmulatedBleWorld, sensor_streams

    streams = sensor_streams(recording)
    async with EmulatedBleWorld(seed=5, speed=2.0) as world:
        for k, site in enumerate(("LtWt", "RtWt")):
            world.add_liftguard_imu(site, streams[site], drop_fraction=0.2, garbage_fraction=0.2,
                                    drift_ppm=200.0, fault_seed=k)
        await world.start()
        async with BleImuSource("ble://?name_prefix=LG-IMU&sensors=LtWt,RtWt&batch=3&timeout=3",
                                backend=world.client_backend,
                                scanner_backend=world.scanner_backend) as source:
            readings, statuses = await _collect(source, 1.5)
        assert {s.sensor for s in statuses if s.state == "connected"} == {"LtWt", "RtWt"}
        for k, site in enumerate(("LtWt", "RtWt")):
            device = world.peripheral(site)
            assert device.config_writes[-1].batch == 3
            assert len(readings[site]) >= 20
            _check_values(readings, streams, site)
            assert source.counters[f"{site}.bad_payload"] >= 1
            assert source.counters[f"{site}.missed"] >= 1
            assert device.garbage_sent >= source.counters[f"{site}.bad_payload"]
            assert not any(s.state == "lost" for s in statuses)


def test_disconnect_schedule_parsing():
    from host.ble_emulation import parse_disconnect

    assert parse_disconnect("Back@5:2.5") == ("Back", 5.0, 2.5)
    for bad in ("Back5:2", "Hip@1:1", "Back@x:1", "Back@-1:1"):
        with pytest.raises(ConfigError, match="SITE@AT:DOWN|expected a site"):
            parse_disconnect(bad)


async def test_a_silent_connected_imu_is_reported_and_reconnected(recording):
    from host.ble_emulation import EmulatedBleWorld, sensor_streams
    from edge.sources.ble_profile import ImuConfig

    streams = sensor_streams(recording)
    async with EmulatedBleWorld(seed=6) as world:
        imu = world.add_liftguard_imu("UArm", streams["UArm"])
        await world.start()
        async with BleImuSource("ble://?name_prefix=LG-IMU&sensors=UArm&timeout=2&stall=0.4"
                                "&backoff=0.1", backend=world.client_backend,
                                scanner_backend=world.scanner_backend) as source:
            events = []
            task = asyncio.create_task(_collect(source, 2.0, sink=events))
            await asyncio.sleep(0.5)
            imu.config = ImuConfig(25, 1, streaming=False)  # firmware stops sending, link stays up
            t_stop = time.monotonic()
            await task
        states = [(e.state, e.detail) for e in events if isinstance(e, SourceStatus)]
        lost = [d for s, d in states if s == "lost"]
        assert lost and "silent for 0.4 s" in lost[0], states
        assert states[-1][0] == "connected"
        assert source.counters["UArm.stalls"] == 1
        # The reconnect wrote the config again (streaming on) and data resumed.
        assert imu.config.streaming
        assert any(isinstance(e, SensorReading) and e.t_host > t_stop + 0.4 for e in events)
