"""The BLE rig: six emulated BLE IMUs instead of the serial sensor hub.

Six LiftGuard-profile IMUs run on bumble's emulated controllers
(:class:`host.ble_emulation.EmulatedBleWorld`, what ``host emulate --ble``
serves) and play a few test-split trials in real time (BLE IMUs carry only
their own clocks, so there is no faster-than-real-time mode). The hub is the
daemon's own engine, :class:`edge.daemon.Hub`, configured from ``edge run``'s
flags, reading them through :class:`edge.sources.ble.BleImuSource` with
bleak's API on the bumble backend, and buzzing a gpiozero ``MockFactory`` pin.
It runs in this process: ``edge run --source ble://`` talks to BlueZ, which
this machine does not have (see ``docs/ble.md``). With ``--hub-port`` it
still runs in this process (and says so in the report): a bench hub's BLE
radio is not something the rig can drive.

The reference is the serial rig playing the same samples into ``edge run``.
The BLE path is not bit-exact (six clocks interpolated onto one grid,
connection at run time), so the expectation is: the same lifts found (same
count, durations within 0.4 s), the same decision wherever the serial hub's
decision is clear (margin > 0.05 between high and the next class), and the
pin switched on for each lift the BLE hub called high and never otherwise.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from hil_tests.rig import Stream, play
from hil_tests.scoring import TruthLift

#: Test-split trials the BLE rig plays.
BLE_TRIALS = 3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _stream(hil_bundle) -> Stream:
    """The trials joined by standing still (4 s first, while the six IMUs connect)."""
    from edge.dataset import load_dataset

    ds = load_dataset(hil_bundle.data)
    test = [ds.by_id(t) for t in hil_bundle.test_ids]
    # one trial of each risk where the split has one, so buzzing and silence are both exercised
    metas = [next(m for m in test if m.risk == r) for r in ("low", "medium", "high") if any(m.risk == r for m in test)]
    metas += [m for m in test if m not in metas][:max(0, BLE_TRIALS - len(metas))]
    parts, truth, k = [], [], 0
    for i, m in enumerate(metas):
        x = ds.read(m).samples
        lead = np.repeat(x[:1], 100 if i == 0 else 50, axis=0)
        if parts:  # a slow walk from the previous pose to this one
            lead = np.concatenate([np.linspace(parts[-1][-1], x[0], 25), lead])
        parts += [lead, x, np.repeat(x[-1:], 50, axis=0)]
        k += len(lead)
        truth.append(TruthLift(m.trial_id, (k + m.lift_start) / 25.0, (k + m.lift_end) / 25.0, m.risk))
        k += len(x) + 50
    samples = np.concatenate(parts)
    timestamps = 1.7e9 + np.arange(len(samples)) / 25.0
    return Stream("ble-trials", samples, timestamps, truth, {}, hil_bundle.data)


def _margin(probs: dict) -> float:
    return float(probs["high"] - max(probs["low"], probs["medium"]))


async def test_ble_rig_trials(hil_bundle, hil_options, hil_workdir, hil_report):
    """Six emulated BLE IMUs, a low, a medium and a high trial in real time: every lift found, as the serial rig finds them, same clear decisions, pin on exactly for high."""
    from gpiozero.pins.mock import MockFactory

    from edge.daemon import Hub, add_arguments
    from edge.hub_config import apply_flags, load_config
    from edge.sources.ble import BleImuSource
    from host.ble_emulation import EmulatedBleWorld

    work = hil_workdir / "ble"
    work.mkdir(parents=True, exist_ok=True)
    stream = _stream(hil_bundle)
    url = "ble://?name_prefix=LG-IMU&timeout=5"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--source", url, "--bundle", str(hil_bundle.bundle), "--alert", "gpio:17", "--events",
            str(work / "hub.events.jsonl"), "--quiet"]
    for key in hil_bundle.trust:
        argv += ["--trust", str(key)]
    cfg = apply_flags(load_config(None), parser.parse_args(argv))
    cfg.check_complete()
    factory = MockFactory()
    seconds = len(stream.samples) / 25.0
    async with EmulatedBleWorld(seed=hil_options["seed"]) as world:
        world.add_liftguard_imus(stream.samples, loop=False)
        await world.start()
        source = BleImuSource(url, backend=world.client_backend, scanner_backend=world.scanner_backend)
        hub = Hub(cfg, source=source, pin_factory=factory)
        assert await hub.run(duration=seconds + 4.0) == 0
    ble = sorted(hub.lifts, key=lambda r: r["lift"]["start"])
    pin_on = sum(1 for s in factory.pin(17).states[1:] if s.state)

    if hil_options["hub_port"]:
        hil_report.note("BLE rig: the hub runs in the test process by design (BlueZ is absent; edge.daemon.Hub "
                        "with a BleImuSource on bumble), so --hub-port does not apply to it; its serial reference "
                        "run is local too")
    serial = play(stream, work / "serial", bundle=hil_bundle.bundle, trust=hil_bundle.trust,
                  speed=hil_options["speed"])
    ref = sorted(serial.lift_events(), key=lambda e: e["lift"]["start"])

    problems = []
    if len(ble) < len(stream.truth):
        problems.append(f"BLE hub found {len(ble)} lifts in {len(stream.truth)} trials")
    hil_report.figure("BLE rig: lifts found (serial rig)", len(ble), "lifts", f"= {len(ref)}", len(ble) == len(ref))
    if len(ble) != len(ref):
        problems.append(f"BLE hub found {len(ble)} lifts, the serial hub {len(ref)}: "
                        f"{[r['lift']['duration_s'] for r in ble]} vs {[e['lift']['duration_s'] for e in ref]}")
    same = clear = 0
    for b, r in zip(ble, ref):
        if abs(b["lift"]["duration_s"] - r["lift"]["duration_s"]) > 0.4:
            problems.append(f"lift durations differ: BLE {b['lift']['duration_s']} s, serial {r['lift']['duration_s']} s")
        if abs(_margin(r["probs"])) > 0.05:
            clear += 1
            if b["risk"] == r["risk"]:
                same += 1
            else:
                problems.append(f"clear decision differs: BLE {b['risk']} p={b['probs']}, serial {r['risk']} p={r['probs']}")
    buzzed = sum(1 for b in ble if b["buzzed"])
    hil_report.figure("BLE rig: clear decisions equal to the serial rig", same, "lifts", f"= {clear}", same == clear)
    hil_report.figure("BLE rig: buzzes / mock pin switched on", buzzed, "buzzes", f"pin on {pin_on} times",
                      (pin_on > 0) == (buzzed > 0) and pin_on >= buzzed)
    if any(b["risk"] == "high" and not b["buzzed"] for b in ble):
        problems.append("a lift the BLE hub called high did not buzz")
    if (pin_on > 0) != (buzzed > 0) or pin_on < buzzed:
        problems.append(f"pin switched on {pin_on} times for {buzzed} buzzed lifts")
    assert not problems, "; ".join(problems)
