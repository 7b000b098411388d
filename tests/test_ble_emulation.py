"""The bumble-backed bleak backend and the emulated world, through bleak's
public API only; plus the cross-process link (emulator in a child process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner

from edge.errors import DataError
from edge.sources import SensorReading
from edge.sources import ble_profile as bp
from edge.sources.ble import BleImuSource

pytestmark = pytest.mark.timeout(60)


def _ramp(n=100):
    """Six channels with a distinct, exactly representable ramp."""
    k = np.arange(n, dtype=float)
    return np.stack([k / 2048, -k / 2048, np.ones(n), k * 2000 / 32768, 0 * k, -k * 2000 / 32768], 1)


async def test_bleak_api_scan_read_write_notify_and_disconnects():
    from host.ble_emulation import EmulatedBleWorld

    async with EmulatedBleWorld(speed=10.0) as world:
        imu = world.add_liftguard_imu("Back", _ramp(300), loop=False)
        world.add_witmotion(_ramp())
        await world.start()
        # Service-UUID filtering, as BlueZ does it.
        found = await BleakScanner.discover(timeout=0.4, return_adv=True,
                                            service_uuids=[bp.SERVICE_UUID],
                                            backend=world.scanner_backend)
        assert [(d.name, a.local_name) for d, a in found.values()] == [("LG-IMU-Back", "LG-IMU-Back")]
        device = await BleakScanner.find_device_by_address(imu.address, timeout=2,
                                                           backend=world.scanner_backend)
        lost = []
        got = []
        client = BleakClient(device, disconnected_callback=lost.append, backend=world.client_backend)
        async with client:
            assert client.is_connected and client.mtu_size == 247
            assert await client.read_gatt_char(bp.SITE_CHAR_UUID) == b"Back"
            assert bp.decode_info(await client.read_gatt_char(bp.INFO_CHAR_UUID))["firmware"] == "1.0.0"
            await client.start_notify(bp.DATA_CHAR_UUID, lambda _c, data: got.append(bytes(data)))
            await client.write_gatt_char(bp.CONFIG_CHAR_UUID,
                                         bp.encode_config(bp.ImuConfig(25, 5, True)), response=True)
            assert bp.decode_config(await client.read_gatt_char(bp.CONFIG_CHAR_UUID)).batch == 5
            for _ in range(100):
                if imu.finished:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)
            await client.stop_notify(bp.DATA_CHAR_UUID)
        assert lost == []  # our own disconnect is not reported as a loss
        records = [r for payload in got for r in bp.decode_samples(payload)]
        seqs = [r.seq for r in records]
        # The IMU's clock ran from power-on; from subscription to the end of
        # the recording every sample arrived, in order.
        assert imu.finished and len(records) >= 100 and seqs[-1] == 299
        assert seqs == list(range(seqs[0], 300))
        assert all(len(p) == 1 + 18 * 5 for p in got[1:-1])  # batches of 5 after the write
        ramp = _ramp(300)
        for r in records:
            assert r.raw == bp.physical_to_raw(ramp[r.seq])

        # A drop from the peripheral's side is reported, and it can be reconnected.
        client = BleakClient(device, disconnected_callback=lost.append, backend=world.client_backend)
        await client.connect()
        await world.drop("Back", down_s=0.0)
        for _ in range(50):
            if lost:
                break
            await asyncio.sleep(0.02)
        assert lost == [client] and not client.is_connected
        device = await BleakScanner.find_device_by_address(imu.address, timeout=2,
                                                           backend=world.scanner_backend)
        async with BleakClient(device, backend=world.client_backend) as again:
            assert await again.read_gatt_char(bp.SITE_CHAR_UUID) == b"Back"


async def test_unbound_backends_and_bad_input_are_explained():
    from bleak.exc import BleakError

    from host.ble_emulation import BumbleClient, BumbleScanner, EmulatedBleWorld, sensor_streams

    with pytest.raises(BleakError, match="not bound"):
        BleakScanner(backend=BumbleScanner)
    with pytest.raises(BleakError, match="not bound"):
        BleakClient("C0:4C:47:00:00:01", backend=BumbleClient)
    with pytest.raises(DataError, match=r"shape \(10, 5\); expected \(n, 36\)"):
        sensor_streams(np.zeros((10, 5)))
    world = EmulatedBleWorld()
    with pytest.raises(DataError, match=r"expected \(n >= 2, 6\)"):
        world.add_liftguard_imu("Back", np.zeros((1, 6)))
    with pytest.raises(Exception, match="no emulated peripheral 'Hip'"):
        world.peripheral("Hip")


def test_load_recording_names_missing_trials(tiny_dataset):
    from host.ble_emulation import load_recording

    assert load_recording(tiny_dataset, "T2").shape == (320, 36)
    with pytest.raises(DataError, match="no trial 'T9'"):
        load_recording(tiny_dataset, "T9")


async def test_cross_process_hub_reaches_emulated_imus(tiny_dataset):
    """Peripherals in a child process; the hub's BleImuSource here, over HCI/TCP."""
    from host.ble_emulation import load_recording, open_remote_central, sensor_streams

    streams = sensor_streams(load_recording(tiny_dataset))
    child = subprocess.Popen(
        [sys.executable, "-m", "host.ble_emulation", "--data", str(tiny_dataset),
         "--sites", "Back,Thig", "--disconnect", "Thig@1.2:0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.startswith("serving tcp-client:127.0.0.1:"), (line, child.stderr.read())
        scanner, client, transport = await open_remote_central(line.split()[1])
        readings, states = [], []
        async with BleImuSource("ble://?name_prefix=LG-IMU&sensors=Back,Thig&timeout=5"
                                "&backoff=0.1", backend=client, scanner_backend=scanner) as source:
            end = time.monotonic() + 2.2
            async for event in source.events():
                if isinstance(event, SensorReading):
                    readings.append(event)
                else:
                    states.append((event.sensor, event.state))
                if time.monotonic() > end:
                    break
        await transport.close()
        # The scheduled disconnect in the emulator process reached this hub.
        thig = [st for site, st in states if site == "Thig"]
        assert thig[0] == "connected" and "lost" in thig and thig[-1] == "connected", states
        for site in ("Back", "Thig"):
            mine = [r for r in readings if r.sensor == site]
            assert len(mine) >= 15, (site, len(mine))
            for r in mine:
                np.testing.assert_allclose(r.values, streams[site][r.seq % len(streams[site])],
                                           atol=2000 / 32768)
    finally:
        child.terminate()
        child.wait(timeout=10)


async def test_remote_link_that_is_not_there_is_a_clear_error():
    from edge.errors import SourceError
    from host.ble_emulation import open_remote_central

    with pytest.raises(SourceError, match="cannot be opened"):
        await open_remote_central("tcp-client:127.0.0.1:1")
