"""The ``host`` commands called as ``host.__main__.main([...])``.

Covers: fast ``--help`` without heavy imports, one-line errors, the SD-card
path (``--to DIR``) of flash/provision/status/rollback, ``record`` from a
replayed simulator data set (detected markers, manual and interactive
correction, appending), ``monitor`` (source and hub port), ``emulate`` as a
serial sensor hub (read back by the hub's serial source, Buzz recorded) and
as BLE IMUs (found by bleak over bumble), and ``replay`` through the hub
daemon.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from host_kit import REPO, HubProcess, bundles, new_store, run_host, sha256

pytestmark = pytest.mark.timeout(120)

MY_COMMANDS = ["flash", "provision", "rollback", "status", "logs", "record", "monitor", "emulate", "replay"]


@pytest.fixture(scope="module")
def kit():
    return bundles()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A simulator data set: one subject, one repetition of each of the 12 zones (seed 3)."""
    from test_bundle_kit import run_cli

    out = tmp_path_factory.mktemp("sim") / "data"
    status, _, err = run_cli("quantize", ["synth", "--out", out, "--subjects", 1, "--reps", 1, "--seed", 3,
                                          "--no-progress", "--difficulty", 1, "--origins", "spread"])  # former defaults
    assert status == 0, err
    return out


def _index(root: Path):
    with open(root / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- conventions

def test_help_is_fast_and_light():
    code = ("import sys, time; t=time.perf_counter(); from host.__main__ import main\n"
            f"for c in {MY_COMMANDS!r}:\n"
            "    import contextlib, io\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert main([c, '--help']) == 0, c\n"
            "heavy = [m for m in ('tensorflow', 'bumble', 'scipy', 'matplotlib', 'keras') if m in sys.modules]\n"
            "print(heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    heavy, seconds = out.stdout.split("]")
    assert heavy == "[", f"--help imported {heavy}]"
    assert float(seconds) < 5.0


@pytest.mark.parametrize("argv,message", [
    (["flash", "missing.lgb", "--to", "."], "no such bundle file"),
    (["record", "--source", "replay:///nowhere", "--subject", "S1", "--zone", "13", "--out", "x"],
     "zone 13 is not an ACGIH zone"),
    (["record", "--source", "bogus://x", "--subject", "S1", "--zone", "3", "--out", "x"], "unknown scheme 'bogus'"),
    (["monitor", "--source", "replay:///x", "--window", "0"], "expected positive seconds"),
    (["emulate", "no-such-recording.csv"], "no such trial CSV"),
    (["status", "--to", "no-such-dir"], "no such directory"),
])
def test_errors_are_one_line(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_host(argv)
    assert status == 1
    assert err.strip().splitlines()[-1].startswith("host: error: ") and message in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    status, _, err = run_host(["--debug", "status", "--to", str(tmp_path / "nope")])
    assert status == 1 and "Traceback" in err


# ---------------------------------------------------------------- SD card

def test_sd_card_provision_flash_status_rollback(tmp_path, kit):
    card = tmp_path / "card"
    card.mkdir()
    status, _, err = run_host(["flash", kit.v120, "--to", card])
    assert status == 1 and "not provisioned" in err
    status, out, err = run_host(["provision", "--to", card, "--trust", kit.pub, "--hub-id", "belt-1", "--json"])
    assert status == 0, err and json.loads(out)["hub_id"] == "belt-1"
    status, _, err = run_host(["provision", "--to", card, "--trust", kit.pub])
    assert status == 1 and "already provisioned" in err
    status, out, err = run_host(["flash", kit.v120, "--to", card, "--json"])
    assert status == 0, err
    assert json.loads(out)["installed"] is True
    status, out, err = run_host(["flash", kit.v130, "--to", card, "--dry-run", "--json"])
    assert status == 0 and json.loads(out)["installed"] is False
    status, out, _ = run_host(["flash", kit.v130, "--to", card])
    assert status == 0 and "installed" in out and "previous 1.2.0 kept" in out
    for bad, msg in ((kit.tampered, "sha256"), (kit.foreign, "unknown key"), (kit.unsigned, "signature.json"),
                     (kit.v110, "older than the hub's active 1.3.0")):
        status, _, err = run_host(["flash", bad, "--to", card])
        assert status == 1 and msg in err, (bad, err)
    status, out, _ = run_host(["status", "--to", card, "--json"])
    st = json.loads(out)["store"]
    assert st["active"]["version"] == "1.3.0" and st["previous"]["version"] == "1.2.0"
    assert st["active"]["sha256"] == sha256(kit.v130)
    status, out, _ = run_host(["status", "--to", card])
    assert "belt-1" in out and "1.3.0" in out
    status, out, _ = run_host(["rollback", "--to", card])
    assert status == 0 and "now 1.2.0" in out
    status, out, _ = run_host(["flash", kit.v110, "--to", card, "--force", "--json"])
    assert status == 0 and json.loads(out)["version"] == "1.1.0"


# ---------------------------------------------------------------- record

def test_record_from_replay_finds_each_lift(tmp_path, sim):
    out = tmp_path / "site"
    status, stdout, err = run_host(["record", "--source", f"replay://{sim}?speed=0", "--subject", "W7",
                                    "--zone", "3", "--out", out, "--trial-prefix", "W7_Z03", "--json"])
    assert status == 0, err
    result = json.loads(stdout)
    truth = _index(sim)
    assert len(result["trials"]) == len(truth)  # one trial per simulated lift
    rows = _index(out)
    assert [r["trial_id"] for r in rows] == [f"W7_Z03_{k}" for k in range(1, len(truth) + 1)]
    assert all(r["subject"] == "W7" and r["zone"] == "3" and r["risk"] == "high" for r in rows)
    # the detected lift spans the simulator's true lift (within a second)
    from edge.dataset import check_dataset, read_trial_csv

    for rec, tr in zip(rows, truth):
        sim_trial = read_trial_csv(sim / tr["file"])
        mine = read_trial_csv(out / rec["file"])
        offset = int(np.flatnonzero(np.all(np.isclose(sim_trial.samples, mine.samples[0], atol=1e-9), axis=1))[0])
        assert abs(int(rec["lift_start"]) + offset - int(tr["lift_start"])) <= 25
        assert abs(int(rec["lift_end"]) + offset - int(tr["lift_end"])) <= 25
    assert [p for p in check_dataset(out) if p.severity == "error"] == []
    # recording again appends to the same data set
    status, _, err = run_host(["record", "--source", f"replay://{sim / truth[0]['file']}?speed=0", "--subject",
                               "W8", "--zone", "5", "--out", out, "--trial-prefix", "W7_Z03"])
    assert status == 0, err
    rows2 = _index(out)
    assert len(rows2) == len(rows) + 1 and rows2[-1]["trial_id"] == "W7_Z03_1_2" and rows2[-1]["risk"] == "low"


def test_record_manual_and_interactive_markers(tmp_path, sim, monkeypatch):
    one = sim / _index(sim)[0]["file"]
    out = tmp_path / "manual"
    status, stdout, err = run_host(["record", "--source", f"replay://{one}?speed=0", "--subject", "W1",
                                    "--zone", "10", "--out", out, "--lift-start", "40", "--lift-end", "200",
                                    "--json"])
    assert status == 0, err
    t = json.loads(stdout)["trials"][0]
    assert (t["lift_start"], t["lift_end"]) == (40, 200) and t["rows"] >= 201
    status, _, err = run_host(["record", "--source", f"replay://{one}?speed=0", "--subject", "W1", "--zone", "10",
                               "--out", out, "--lift-start", "40", "--lift-end", "99999"])
    assert status == 1 and "--lift-end 99999" in err

    two = tmp_path / "two"
    (two / "trials").mkdir(parents=True)
    truth = _index(sim)[:3]
    from edge.dataset import DatasetWriter, read_trial_csv

    with DatasetWriter(two, source="subset") as w:
        for tr in truth:
            trial = read_trial_csv(sim / tr["file"])
            w.add_trial(tr["trial_id"], tr["subject"], int(tr["zone"]), trial.samples, trial.timestamps,
                        int(tr["lift_start"]), int(tr["lift_end"]))
    # keep the first as found, skip the second, correct the third (after one bad answer)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\ns\nfoo\n30 120\n"))
    out2 = tmp_path / "interactive"
    status, stdout, err = run_host(["record", "--source", f"replay://{two}?speed=0", "--subject", "W2", "--zone",
                                    "1", "--out", out2, "--interactive", "--json"])
    assert status == 0, err
    trials = json.loads(stdout)["trials"]
    assert len(trials) == 2
    assert (trials[1]["lift_start"], trials[1]["lift_end"]) == (30, 120)
    assert "expected two row numbers" in err and err.count("Enter = keep") == 4


# ---------------------------------------------------------------- monitor

def test_monitor_source_once(sim):
    one = sim / _index(sim)[0]["file"]
    status, out, err = run_host(["monitor", "--source", f"replay://{one}?speed=1", "--once", "--window", "1.5",
                                 "--json"])
    assert status == 0, err
    snap = json.loads(out)
    assert set(snap["sensors"]) == {"Side", "LtWt", "RtWt", "Back", "UArm", "Thig"}
    for s in snap["sensors"].values():
        assert 20.0 <= s["rate_hz"] <= 30.0 and s["missed"] == 0 and s["gyro_rms_dps"] > 0
    status, out, _ = run_host(["monitor", "--source", f"replay://{one}?speed=1", "--once", "--window", "1"])
    assert "rate Hz" in out and "latest events" in out


def test_monitor_hub_port(tmp_path, kit):
    from host.serial_relay import SerialRelay

    store = tmp_path / "store"
    new_store(store, kit.pub, install=kit.v120)
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"time": 1.0, "kind": "lift", "risk": "high"}) + "\n")
    with SerialRelay(None) as link:
        hub = HubProcess(store, link.hub_path, events=events)
        try:
            status, out, err = run_host(["monitor", "--port", link.host_path, "--once", "--json"])
            assert status == 0, err
            snap = json.loads(out)
            assert snap["mode"] == "hub" and snap["hub_id"] == "hub-test" and snap["model"] == "1.2.0"
            assert any("risk=high" in e for e in snap["events"])
        finally:
            hub.stop()


# ---------------------------------------------------------------- emulate

def _spawn(argv):
    return subprocess.Popen([sys.executable, "-m", "host", *map(str, argv)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_emulate_serial_is_read_by_the_hub_source_and_records_buzz(sim):
    from edge.sources import SensorReading, open_source

    one = sim / _index(sim)[0]["file"]
    child = _spawn(["emulate", one, "--speed", "4", "--drop", "0.05", "--seed", "2", "--json"])
    try:
        url = child.stdout.readline().strip()
        assert url.startswith("serial:///dev/pts/") and url.endswith("?clock=device"), child.stderr.read()

        async def read():
            got = []
            async with open_source(url) as src:
                async for ev in src.events():
                    if isinstance(ev, SensorReading):
                        got.append(ev)
                        if len(got) == 6 * 40:
                            assert await src.send_buzz([120, 60, 120])
                            break
                health = src.health()
            return got, health

        got, health = asyncio.run(asyncio.wait_for(read(), 30))
        summary = json.loads(child.stdout.read())
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert {r.sensor for r in got} == {"Side", "LtWt", "RtWt", "Back", "UArm", "Thig"}
    assert health["device_id"] == "EMU-0001" and health["battery_pct"] == 100
    assert summary["finished"] and summary["counters"]["frames_dropped"] > 0
    assert [b["pattern_ms"] for b in summary["buzzes"]] == [[120, 60, 120]]


def test_emulate_ble_six_peripherals_found_by_bleak(sim):
    from bleak import BleakScanner

    from host.ble_emulation import open_remote_central

    one = sim / _index(sim)[0]["file"]
    child = _spawn(["emulate", one, "--ble", "--duration", "20", "--witmotion", "Thig"])
    try:
        line = child.stdout.readline().strip()
        assert line.startswith("serving tcp-client:127.0.0.1:"), child.stderr.read()

        async def scan():
            scanner, _client, transport = await open_remote_central(line.split()[1])
            try:
                found = await BleakScanner.discover(timeout=2.0, backend=scanner)
            finally:
                await transport.close()
            return sorted(d.name or "" for d in found)

        names = asyncio.run(asyncio.wait_for(scan(), 30))
    finally:
        child.terminate()
        child.wait(timeout=10)
    assert [n for n in names if n.startswith("LG-IMU-")] == sorted(
        f"LG-IMU-{s}" for s in ("Side", "LtWt", "RtWt", "Back", "UArm"))
    assert "WT901BLE-Thig" in names


# ---------------------------------------------------------------- replay

def test_replay_through_the_hub(tmp_path, sim, kit):
    out_csv = tmp_path / "preds.csv"
    status, out, err = run_host(["replay", "--data", sim, "--bundle", kit.v120, "--trust", kit.pub,
                                 "--limit", "3", "--out", out_csv, "--json"])
    assert status == 0, err
    result = json.loads(out)
    assert result["summary"]["trials"] == 3
    for row in result["rows"]:
        assert row["lifts"] == 1 and row["predicted"] in ("low", "medium", "high")
        assert abs(sum(row["probs"].values()) - 1.0) < 0.05
        assert row["buzzed"] == (row["predicted"] == "high")
    assert len(out_csv.read_text().splitlines()) == 4
    status, _, err = run_host(["replay", "--data", sim, "--bundle", kit.v120, "--trust", kit.other_pub])
    assert status == 1 and "unknown key" in err


def test_record_live_from_an_emulated_sensor_hub(tmp_path):
    """``host emulate`` plays a simulated shift over a pty; ``host record`` records its lift live."""
    from test_bundle_kit import run_cli

    from edge.dataset import check_dataset

    shift = tmp_path / "shift"
    status, _, err = run_cli("quantize", ["synth-shift", "--out", shift, "--minutes", 1, "--seed", 1])
    assert status == 0, err
    lifts = [r for r in csv.DictReader(open(shift / "events.csv")) if r["kind"] == "lift"]
    assert lifts
    child = _spawn(["emulate", shift, "--speed", "30"])
    try:
        url = child.stdout.readline().strip()
        out = tmp_path / "site"
        status, stdout, err = run_host(["record", "--source", url, "--subject", "W3", "--zone", "11", "--out", out,
                                        "--duration", "8", "--json"])
        assert status == 0, err
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    trials = json.loads(stdout)["trials"]
    durations = [(t["lift_end"] - t["lift_start"] + 1) / 25.0 for t in trials]
    truth = [(int(r["end"]) - int(r["start"]) + 1) / 25.0 for r in lifts]
    assert all(any(abs(d - t) <= 1.0 for d in durations) for t in truth), (durations, truth)
    assert [p for p in check_dataset(out) if p.severity == "error"] == []
