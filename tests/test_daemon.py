"""``edge run`` and ``edge classify`` end to end, with a real signed int8 bundle.

The module builds one bundle the way a release does (``quantize synth`` ->
a small CNN trained on the simulated lifts -> ``quantize convert`` ->
``quantize keygen`` -> ``quantize export``), about 20-25 s on 2 cores, and
then checks that the hub, fed the same trials through ``replay://``, takes
exactly the decisions ``edge classify --markers detector`` takes offline, and
that those decisions drive the buzzer (a gpiozero MockFactory pin).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edge.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from test_bundle_kit import run_cli, write_run  # noqa: E402  (shared bundle builder)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
HIGH = [400, 150, 400, 150, 400]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Simulated data, a trained run, a key pair and two signed bundles (v1.0.0, v1.1.0)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = tmp_path_factory.mktemp("hubkit")
    # pinned to the generator's former defaults (kappa 1, spread origins): a 48-trial model must separate them
    status, _, err = run_cli("quantize", ["synth", "--out", root / "data", "--subjects", "2", "--reps", "2",
                                          "--seed", "21", "--difficulty", "1", "--origins", "spread"])
    assert status == 0, err
    run = write_run(root / "run", root / "data", epochs=30)
    status, _, err = run_cli("quantize", ["convert", "--run", run, "--representative", 40])
    assert status == 0, err
    status, _, err = run_cli("quantize", ["keygen", "--out", root / "key"])
    assert status == 0, err
    for version in ("1.0.0", "1.1.0"):
        status, _, err = run_cli("quantize", ["export", "--run", run, "--out", root / f"m{version}.lgb", "--sign",
                                              root / "key", "--model-version", version, "--golden", 2])
        assert status == 0, err
    from edge.bundle import load_bundle
    from edge.classify import classify_dataset

    bundle = load_bundle(root / "m1.0.0.lgb", trusted_keys=[root / "key.pub"])
    offline = classify_dataset(bundle, root / "data", markers="detector", progress=False)

    class Kit:
        pass

    k = Kit()
    k.root, k.data, k.run, k.pub = root, root / "data", run, root / "key.pub"
    k.bundle, k.bundle2 = root / "m1.0.0.lgb", root / "m1.1.0.lgb"
    k.offline = offline
    return k


def subset(kit, tmp_path, trial_ids):
    """A data set holding only ``trial_ids`` (same samples and markers)."""
    from edge.dataset import DatasetWriter, load_dataset

    ds = load_dataset(kit.data)
    out = tmp_path / "subset"
    with DatasetWriter(out, source="subset") as w:
        for tid in trial_ids:
            meta = ds.by_id(tid)
            trial = ds.read(meta)
            w.add_trial(tid, meta.subject, meta.zone, trial.samples, trial.timestamps, meta.lift_start, meta.lift_end)
    return out


def hub_config(tmp_path, **kw):
    from edge.hub_config import HubConfig

    return HubConfig(events=tmp_path / "events.jsonl", **kw)


def test_offline_classify_finds_one_lift_in_every_trial(kit):
    assert len(kit.offline) == 48
    assert all(r["predicted"] in ("low", "medium", "high") for r in kit.offline)


async def test_replayed_high_risk_trial_buzzes_and_low_risk_one_does_not(kit, tmp_path):
    from edge.daemon import Hub
    from edge.event_log import read_events

    high = next(r for r in kit.offline if r["risk"] == "high" and r["predicted"] == "high")
    low = next(r for r in kit.offline if r["risk"] == "low" and r["predicted"] != "high")
    data = subset(kit, tmp_path, [high["trial_id"], low["trial_id"]])
    factory = MockFactory()
    cfg = hub_config(tmp_path, source=f"replay://{data}?speed=0", bundle=kit.bundle, trust=[kit.pub],
                     alert_outputs=["gpio:17"])
    hub = Hub(cfg, pin_factory=factory)
    assert await hub.run() == 0
    assert [lift["risk"] for lift in hub.lifts] == ["high", low["predicted"]]
    assert [lift["buzzed"] for lift in hub.lifts] == [True, False]
    # the same window and the same probabilities as edge classify computed offline
    for lift, offline in zip(hub.lifts, (high, low)):
        assert lift["probs"] == pytest.approx({c: offline[f"p_{c}"] for c in ("low", "medium", "high")}, abs=1e-5)
    # the pin played the high pattern once, and nothing else
    states = factory.pin(17).states
    assert [s.state for s in states] == [False, True, False, True, False, True, False]
    on_off = [s.timestamp for s in states[2:]]
    assert on_off == pytest.approx([p / 1000 for p in HIGH], abs=0.06)
    events = read_events(tmp_path / "events.jsonl")
    lifts = [e for e in events if e["type"] == "lift"]
    assert [e["risk"] for e in lifts] == ["high", low["predicted"]]
    assert lifts[0]["model_version"] == "1.0.0" and "window" not in lifts[0]
    assert set(lifts[0]["health"]) == {"Side", "LtWt", "RtWt", "Back", "UArm", "Thig"}
    assert events[0]["type"] == "start" and events[-1]["type"] == "stop"


def test_edge_run_agrees_with_edge_classify_on_every_trial(kit, tmp_path):
    """The real process over the whole data set: 100% the offline decisions, buzz exactly on high."""
    events = tmp_path / "ev.jsonl"
    proc = subprocess.run(
        [PY, "-m", "edge", "run", "--source", f"replay://{kit.data}?speed=0", "--bundle", str(kit.bundle),
         "--trust", str(kit.pub), "--alert", "gpio:17?mock=1", "--alert", "log", "--events", str(events),
         "--keep-raw", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from edge.event_log import read_events

    lifts = [e for e in read_events(events) if e["type"] == "lift"]
    assert [e["risk"] for e in lifts] == [r["predicted"] for r in kit.offline]
    assert [e["buzzed"] for e in lifts] == [r["predicted"] == "high" for r in kit.offline]
    # keep_raw: each lift's window is in the log, and only windows (never the stream)
    from edge.dataset import load_dataset
    from edge.signal_path import cut_lift

    ds = load_dataset(kit.data)
    for e, r in zip(lifts, kit.offline):
        samples = ds.read(ds.by_id(r["trial_id"])).samples
        expected = cut_lift(samples, r["start"], r["end"])
        assert np.asarray(e["window"]).shape == expected.shape
        assert np.array_equal(e["window"], np.round(expected, 6))  # the log keeps six decimals
    # ... and the CLI writes the same decisions to preds.csv
    preds = tmp_path / "preds.csv"
    status, out, err = run_cli("edge", ["classify", "--bundle", kit.bundle, "--trust", kit.pub, "--data", kit.data,
                                        "--out", preds, "--markers", "detector"])
    assert status == 0, err
    import csv

    with preds.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["predicted"] for r in rows] == [e["risk"] for e in lifts]
    assert "accuracy" in out and "confusion" in out


def test_sigterm_stops_cleanly_and_sigusr1_writes_health(kit, tmp_path):
    events = tmp_path / "ev.jsonl"
    health = tmp_path / "health.json"
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f"""
[hub]
source = "replay://{kit.data}?speed=1&loop=-1"
bundle = "{kit.bundle}"
trust = ["{kit.pub}"]
events = "{events}"
health_file = "{health}"

[alerts]
outputs = ["gpio:17?mock=1"]
""")
    proc = subprocess.Popen([PY, "-m", "edge", "run", "--config", str(cfg)], cwd=REPO, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "reading replay://" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "reading replay://" in line
        time.sleep(1.5)
        proc.send_signal(signal.SIGUSR1)
        for _ in range(50):
            if health.exists():
                break
            time.sleep(0.1)
        h = json.loads(health.read_text())
        assert h["model"]["model_version"] == "1.0.0"
        assert h["aligner"]["rows"] > 10
        assert h["aligner"]["sensors"]["Back"]["state"] == "live"
        assert h["source"]["speed"] == 1.0
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    from edge.event_log import read_events

    log = read_events(events)
    assert log[-1]["type"] == "stop"
    assert "Traceback" not in proc.stderr.read()


async def test_a_new_bundle_in_the_store_is_taken_up_without_restart(kit, tmp_path):
    from edge.daemon import Hub
    from edge.sources.virtual import get_bus, remove_bus
    from edge.store import BundleStore

    store = BundleStore(tmp_path / "store")
    store.provision(kit.pub.read_bytes(), "hub-test")
    store.install(kit.bundle)
    remove_bus("reload")
    cfg = hub_config(tmp_path, source="virtual://reload", bundle_store=tmp_path / "store", reload_check_s=0.1,
                     alert_outputs=["log"])
    hub = Hub(cfg)
    task = asyncio.get_running_loop().create_task(hub.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if hub.bundle is not None:
            break
    assert hub.bundle.model_version == "1.0.0"
    await asyncio.get_running_loop().run_in_executor(None, store.install, kit.bundle2)
    for _ in range(100):
        await asyncio.sleep(0.05)
        if hub.bundle.model_version == "1.1.0":
            break
    assert hub.bundle.model_version == "1.1.0"
    assert hub.bundle_loads == 2
    hub.request_stop()
    assert await asyncio.wait_for(task, 10) == 0
    from edge.event_log import read_events

    loaded = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "bundle"]
    assert [(e["status"], e["model_version"]) for e in loaded] == [("loaded", "1.0.0"), ("loaded", "1.1.0")]
    assert get_bus("reload").n_consumers == 0  # the source was closed


async def test_a_broken_bundle_file_is_refused_and_the_old_one_kept(kit, tmp_path):
    from edge.daemon import Hub
    from edge.sources.virtual import remove_bus

    bundle = tmp_path / "live.lgb"
    bundle.write_bytes(kit.bundle.read_bytes())
    remove_bus("broken")
    hub = Hub(hub_config(tmp_path, source="virtual://broken", bundle=bundle, trust=[kit.pub], reload_check_s=0.1))
    task = asyncio.get_running_loop().create_task(hub.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if hub.bundle is not None:
            break
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if hub.bundle_error:
            break
    assert hub.bundle_error and hub.bundle.model_version == "1.0.0"
    assert hub.health()["model_error"] == hub.bundle_error
    hub.request_stop()
    assert await asyncio.wait_for(task, 10) == 0


def test_config_file_flags_and_defaults(tmp_path):
    from argparse import Namespace

    from edge.hub_config import apply_flags, load_config

    path = tmp_path / "hub.toml"
    path.write_text("""
[hub]
source = "serial:///dev/ttyACM0?baud=921600"
bundle_store = "store"
events = "logs/events.jsonl"
[alerts]
outputs = ["gpio:17", "hub"]
levels = ["medium", "high"]
[alerts.patterns]
medium = [60, 60]
[events]
keep_raw = true
max_bytes = 2048
[aligner]
lost_after_s = 2.5
[detector]
on_threshold = 100.0
""")
    cfg = load_config(path)
    assert cfg.bundle_store == tmp_path / "store" and cfg.events == tmp_path / "logs/events.jsonl"
    assert cfg.alert_outputs == ["gpio:17", "hub"] and cfg.alert_levels == ["medium", "high"]
    assert cfg.alert_patterns["medium"] == [60, 60] and cfg.alert_patterns["high"] == HIGH
    assert cfg.keep_raw and cfg.events_max_bytes == 2048
    assert cfg.aligner.lost_after_s == 2.5 and cfg.detector.on_threshold == 100.0
    assert cfg.use_gate is True  # default: the bundle's lift gate applies
    cfg.check_complete()
    args = Namespace(source="replay:///x.csv", bundle="m.lgb", bundle_store=None, trust=["k.pub"], alert=["log"],
                     events=None, manage_port=None, health_file=None, keep_raw=False, threads=None,
                     alert_levels=None)
    cfg = apply_flags(cfg, args)
    assert cfg.source == "replay:///x.csv" and cfg.bundle == Path("m.lgb") and cfg.bundle_store is None
    assert cfg.alert_outputs == ["log"] and cfg.trust == [Path("k.pub")]
    assert cfg.events == tmp_path / "logs/events.jsonl"  # not given: the file's value stays


@pytest.mark.parametrize("text, words", [
    ("[hub]\nsorce = 'x'", "[hub] unknown key 'sorce'"),
    ("[hub]\nthreads = 'two'", "[hub] threads = 'two'; expected an integer"),
    ("[hub]\nuse_gate = 'no'", "[hub] use_gate = 'no'; expected true or false"),
    ("[alarm]\n", "unknown section [alarm]"),
    ("[alerts]\nlevels = ['urgent']", "'urgent' is not a risk level"),
    ("[aligner]\ngap_policy = 'zero'", "[aligner]: aligner.gap_policy = 'zero'"),
    ("[detector]\non_threshold = 'high'", "[detector].on_threshold = 'high'; expected a number"),
    ("[events]\nmax_bytes = 10", "max_bytes = 10; expected at least 1024"),
    ("[hub\n", "not valid TOML"),
])
def test_bad_config_is_refused_naming_file_and_key(tmp_path, text, words):
    from edge.hub_config import load_config

    path = tmp_path / "hub.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert words in str(err.value)
    assert str(path) in str(err.value)


def test_edge_run_reports_missing_settings_without_traceback(tmp_path):
    status, out, err = run_cli("edge", ["run", "--source", "replay:///nowhere.csv"])
    assert status == 1
    assert "edge: error: no model" in err and "Traceback" not in err
    status, out, err = run_cli("edge", ["run", "--config", str(tmp_path / "missing.toml")])
    assert status == 1 and "config file" in err and "does not exist" in err


def test_help_is_fast_and_imports_no_tensorflow():
    code = ("import sys, io, contextlib\nfrom edge.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n    s = main(['run', '--help'])\n"
            "print(s, 'tensorflow' in sys.modules, 'scipy' in sys.modules, '--bundle-store' in out.getvalue())")
    proc = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["0", "False", "False", "True"], proc.stderr


async def test_manage_port_serves_health_and_a_flash_is_taken_up_at_once(kit, tmp_path):
    """``host status`` and ``host flash`` over a pty pair against the running daemon."""
    from host.serial_relay import SerialRelay

    from edge.daemon import Hub
    from edge.sources.virtual import remove_bus
    from edge.store import BundleStore

    store = BundleStore(tmp_path / "store")
    store.provision(kit.pub.read_bytes(), "hub-manage")
    store.install(kit.bundle)
    remove_bus("manage")

    async def host(*argv):
        proc = await asyncio.create_subprocess_exec(PY, "-m", "host", *map(str, argv), cwd=REPO,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(), err.decode()

    with SerialRelay(baud=None) as link:
        # reload_check_s is long: the switch below can only come from the management server's on_change
        cfg = hub_config(tmp_path, source="virtual://manage", bundle_store=tmp_path / "store",
                         manage_port=link.hub_path, reload_check_s=60.0, alert_outputs=["log"])
        hub = Hub(cfg)
        task = asyncio.get_running_loop().create_task(hub.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if hub.bundle is not None:
                break
        status, out, err = await host("status", "--port", link.host_path, "--json")
        assert status == 0, err
        assert '"aligner"' in out and '"detector"' in out and '"model_version": "1.0.0"' in out
        status, out, err = await host("flash", kit.bundle2, "--port", link.host_path, "--json")
        assert status == 0, err
        for _ in range(100):
            await asyncio.sleep(0.05)
            if hub.bundle.model_version == "1.1.0":
                break
        assert hub.bundle.model_version == "1.1.0"
        hub.request_stop()
        assert await asyncio.wait_for(task, 15) == 0


async def test_over_the_serial_protocol_the_buzz_command_reaches_the_sensor_hub(kit, tmp_path):
    """The sensor-hub emulator plays a high- and a low-risk trial over a pty; the hub buzzes it back."""
    from host.sensorhub_emulator import SensorHubEmulator, load_recording

    from edge.daemon import Hub

    # the clearest cases, so the int16 rounding on the wire cannot flip a verdict
    high = max((r for r in kit.offline if r["risk"] == "high" and r["predicted"] == "high"), key=lambda r: r["p_high"])
    low = min((r for r in kit.offline if r["risk"] == "low" and r["predicted"] != "high"), key=lambda r: r["p_high"])
    data = subset(kit, tmp_path, [high["trial_id"], low["trial_id"]])
    samples, stamps = load_recording(data, gap_s=3.0)
    link = tmp_path / "ttyHUB"
    emulator = SensorHubEmulator(None, samples, stamps, speed=8.0, pty_link=link, status_interval_s=0.0).start()
    factory = MockFactory()
    cfg = hub_config(tmp_path, source=f"serial://{link}?clock=device&hello=2", bundle=kit.bundle, trust=[kit.pub],
                     alert_outputs=["hub", "gpio:17"])
    hub = Hub(cfg, pin_factory=factory)
    task = asyncio.get_running_loop().create_task(hub.run())
    try:
        done = await asyncio.get_running_loop().run_in_executor(None, emulator.wait, 60)
        assert done
        await asyncio.sleep(1.0)  # the last window and its buzz
    finally:
        hub.request_stop()
        await asyncio.wait_for(task, 15)
        emulator.stop()
    assert [lift["risk"] for lift in hub.lifts] == ["high", low["predicted"]]
    # the samples crossed the wire as int16: the verdicts agree closely with the offline ones
    assert hub.lifts[0]["probs"]["high"] == pytest.approx(high["p_high"], abs=0.1)
    buzzes = emulator.buzz_log
    assert [tuple(pattern) for _, pattern in buzzes] == [tuple(HIGH)]
    assert hub.alerts.outputs[0].describe()["sent"] == 1
    assert [s.state for s in factory.pin(17).states][:2] == [False, True]


def test_event_log_rotates_by_size_and_keeps_raw_windows_only_when_asked(tmp_path):
    from edge.event_log import EventLog, read_events

    path = tmp_path / "ev.jsonl"
    log = EventLog(path, max_bytes=2048, backups=3, keep_raw=False)
    window = np.arange(72, dtype=float).reshape(2, 36)
    for i in range(40):
        log.lift(risk="low", probs={"low": 0.9, "medium": 0.05, "high": 0.05}, model_id="m", model_version="1.0.0",
                 latency_ms=1.0, lift={"n": i}, health={"Back": "live"}, buzzed=False, window=window)
    log.close()
    rotated = sorted(p.name for p in tmp_path.glob("ev.jsonl.*"))
    assert rotated == ["ev.jsonl.1", "ev.jsonl.2", "ev.jsonl.3"]
    assert all(p.stat().st_size <= 2048 for p in tmp_path.glob("ev.jsonl*"))
    events = read_events(path)
    ns = [e["lift"]["n"] for e in events]
    assert ns == list(range(40 - len(ns), 40))  # oldest kept first, newest last, none lost in between
    assert all("window" not in e for e in events)
    assert {"time", "risk", "probs", "model_version", "latency_ms", "health"} <= set(events[0])
    raw = EventLog(tmp_path / "raw.jsonl", keep_raw=True)
    raw.lift(risk="high", probs={}, model_id="m", model_version="1", latency_ms=1.0, lift={}, health={},
             buzzed=True, window=window)
    raw.close()
    assert read_events(tmp_path / "raw.jsonl")[0]["window"] == window.tolist()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "start"}\nnot json\n')
    with pytest.raises(ConfigError) as err:
        read_events(bad)
    assert "bad.jsonl, line 2: not JSON" in str(err.value)


def test_the_lift_gate_can_be_turned_off_in_the_config(tmp_path):
    from edge.hub_config import load_config

    path = tmp_path / "hub.toml"
    path.write_text("[hub]\nsource = 'replay:///x.csv'\nbundle = 'm.lgb'\nuse_gate = false\n")
    assert load_config(path).use_gate is False
