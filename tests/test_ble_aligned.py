"""Six emulated BLE IMUs through BleImuSource into the hub's Aligner.

Each IMU streams a ramp whose six channels all encode the recording position
(with a per-sensor offset), so every aligned grid row can be checked: all
six channels of a sensor must name the same instant, and all six sensors
must agree on it (their clocks are offset by up to 100 s, which the aligner
removes).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from edge.aligner import Aligner, GridRow
from edge.layout import SENSORS
from edge.sources import SensorReading
from edge.sources.ble import BleImuSource

pytestmark = pytest.mark.timeout(60)

SLOPES = np.array([1 / 64, -1 / 64, 1 / 128, 2.0, -2.0, 1.0])


def _ramp(j: int, n: int = 400) -> np.ndarray:
    k = np.arange(n, dtype=float)[:, None]
    base = np.array([j, 0.0, 1.0, 0.0, 10.0 * j, 0.0])
    return base + k * SLOPES


def _positions(row_values: np.ndarray, j: int) -> np.ndarray:
    """Recording position each of sensor j's six channels names."""
    v = row_values[6 * j: 6 * j + 6]
    base = np.array([j, 0.0, 1.0, 0.0, 10.0 * j, 0.0])
    return (v - base) / SLOPES


async def test_six_ble_imus_align_on_one_25hz_grid():
    from host.ble_emulation import EmulatedBleWorld

    async with EmulatedBleWorld(seed=7) as world:
        for j, site in enumerate(SENSORS):
            world.add_liftguard_imu(site, _ramp(j))
        await world.start()
        aligner = Aligner()
        rows = []
        async with BleImuSource("ble://?name_prefix=LG-IMU&timeout=3",
                                backend=world.client_backend,
                                scanner_backend=world.scanner_backend) as source:
            end = time.monotonic() + 2.0

            async def pump():
                async for event in source.events():
                    if isinstance(event, SensorReading):
                        rows.extend(e for e in aligner.add(event) if isinstance(e, GridRow))

            try:
                await asyncio.wait_for(pump(), end - time.monotonic())
            except asyncio.TimeoutError:
                pass
        full = [r for r in rows if r.valid.all()]
        assert len(full) >= 25, (len(rows), len(full))
        steps = np.diff([r.t for r in full])
        np.testing.assert_allclose(steps[steps < 0.06], 0.04, atol=1e-9)
        previous = None
        for r in full:
            per_sensor = []
            for j in range(len(SENSORS)):
                pos = _positions(r.values, j)
                # One instant per sensor: all six channels agree (to the wire's resolution).
                assert np.ptp(pos) < 0.1, (j, pos)
                per_sensor.append(pos.mean())
            # All sensors name (nearly) the same instant after clock-offset removal.
            assert np.ptp(per_sensor) < 1.0, per_sensor
            if previous is not None and r.index == previous[0] + 1:
                assert abs(np.mean(per_sensor) - previous[1] - 1.0) < 0.3
            previous = (r.index, np.mean(per_sensor))
        offsets = [world.peripheral(s).clock_offset_s for s in SENSORS]
        assert np.ptp(offsets) > 10.0  # the clocks really were far apart
