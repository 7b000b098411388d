"""``--hub-port`` proven without hardware: the fast hub scenarios against a bench emulator on another process.

:mod:`hil_tests.bench` stands up "another board": ``edge run`` as a
separate, supervised process (restarted like systemd's
``Restart=on-failure``) with its own store and event log, its sensor input
and its management port on pseudo-terminal links. This test starts it as a
subprocess, runs the fast hub scenarios in a second pytest process with
``--hub-port <its management port> --rig-port <its sensor link>`` (the
session's bundle, data and 5-minute shift passed in, so nothing is trained
or simulated twice), and checks:

* the inner run passed all four scenarios (JUnit XML: no failure, error or skip);
* the remote path was really used: each run's ``rig.json`` says ``remote``,
  names daemon process ids that are the bench's (none of them this process
  or the inner pytest), and every event line the rig scored came over the
  management port -- the lines are found, in order, in the bench's own
  event log file, which the rig never reads directly;
* every run began with a ``restart`` op: the bench saw exit status 75 once
  per run and restarted the daemon each time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from hil_tests.bench import wait_for_info
from hil_tests.fixtures import export_version
from hil_tests.rig import REPO, tail

#: The fast scenarios that drive the hub under test (the BLE and demo tests do not).
FAST_HUB_SCENARIOS = [
    "hil_tests/test_hil_replay.py::test_replay_test_split_fast",
    "hil_tests/test_hil_shift.py::test_short_shift",
    "hil_tests/test_hil_faults.py::test_drop_one_percent_short",
    "hil_tests/test_hil_flash.py::test_flash_during_short_shift",
]

#: The run folders those scenarios write (relative to --hil-work).
RUN_FOLDERS = ["replay-fast/run", "clean-5min", "drop-5min", "flash-5min"]

pytestmark = pytest.mark.timeout(900)


def test_fast_hub_scenarios_pass_against_a_bench_on_another_process(hil_bundle, hil_shift, hil_options,
                                                                    hil_workdir, hil_report):
    """The fast hub scenarios pass with --hub-port/--rig-port against the bench emulator (edge run in another process); every scored event came over the management port."""
    work = hil_workdir / "bench"
    if work.exists():
        shutil.rmtree(work)
    inner = work / "hil"
    inner.mkdir(parents=True)
    bundle_next = hil_options["bundle_next"] or export_version(hil_bundle, "1.1.0", hil_workdir / "model")
    split = work / "split.json"
    split.write_text(json.dumps({"test": hil_bundle.test_ids}))
    shutil.copytree(hil_shift(5.0), inner / "shift-5min")  # the session's shift: not simulated again
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    board = work / "board"
    t0 = time.monotonic()
    with open(work / "bench.err", "w") as err:
        bench = subprocess.Popen([sys.executable, "-m", "hil_tests.bench", "--dir", str(board)], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        info = wait_for_info(board / "bench.json", bench)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FAST_HUB_SCENARIOS,
               "--hub-port", info["hub_port"], "--rig-port", info["rig_port"],
               "--bundle", str(hil_bundle.bundle), "--trust", str(hil_bundle.trust[0]), "--data",
               str(hil_bundle.data), "--split", str(split), "--bundle-next", str(bundle_next),
               "--hil-work", str(inner), "--hil-seed", str(hil_options["seed"]),
               "--hil-speed", str(hil_options["speed"]), "--junitxml", str(work / "junit.xml")]
        inner_run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=780)
        (work / "inner.log").write_text(inner_run.stdout + inner_run.stderr)
    finally:
        if bench.poll() is None:
            bench.send_signal(signal.SIGTERM)
        bench_status = bench.wait(60)
    wall = time.monotonic() - t0
    hil_report.figure("bench emulator: wall time (bench up, 4 scenarios over --hub-port, bench down)", wall, "s",
                      "reported")
    assert inner_run.returncode == 0, (f"inner pytest over --hub-port exited {inner_run.returncode}: "
                                       f"{tail(work / 'inner.log', 12)}")
    suite = ET.parse(work / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": len(FAST_HUB_SCENARIOS), "failures": 0, "errors": 0, "skipped": 0}, counts
    assert bench_status == 0, f"bench process exited {bench_status}: {tail(work / 'bench.err', 4)}"

    info = json.loads((board / "bench.json").read_text())
    bench_pids = {s["pid"] for s in info["starts"]}
    board_log = (board / "log" / "events.jsonl").read_text()
    problems = []
    fetched_total = 0
    for folder in RUN_FOLDERS:
        rig = json.loads((inner / folder / "rig.json").read_text())
        hub = rig["hub"]
        if hub.get("mode") != "remote":
            problems.append(f"{folder}: hub mode {hub.get('mode')!r}, expected remote")
            continue
        if not set(hub["pids"]) <= bench_pids or os.getpid() in hub["pids"]:
            problems.append(f"{folder}: daemon pids {hub['pids']} are not the bench's {sorted(bench_pids)}")
        fetched = (inner / folder / "hub.events.jsonl").read_text().strip()
        fetched_total += len(fetched.splitlines())
        if hub["events_over_management_port"] != len(fetched.splitlines()) or fetched not in board_log:
            problems.append(f"{folder}: the {len(fetched.splitlines())} event lines the rig scored are not a "
                            f"block of the bench's own event log")
        lifts = [json.loads(ln) for ln in fetched.splitlines() if '"type":"lift"' in ln]
        if not lifts or any("clock" not in e for e in lifts):
            problems.append(f"{folder}: {len(lifts)} lift events, some without the clock anchor")
    exits = [s["exit"] for s in info["starts"]]
    if exits.count(75) < len(RUN_FOLDERS) or exits[-1] != 0:
        problems.append(f"bench daemon exit statuses {exits}: expected 75 for each run's restart, 0 at the end")
    hil_report.figure("bench emulator: event lines fetched over the management port", fetched_total, "lines",
                      "all in the bench's own log", not problems)
    hil_report.figure("bench emulator: daemon restarts (restart op -> exit 75 -> supervisor)", exits.count(75),
                      "restarts", f">= {len(RUN_FOLDERS)}", exits.count(75) >= len(RUN_FOLDERS))
    assert not problems, "; ".join(problems)
