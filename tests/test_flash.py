"""``host flash`` against a real hub process over a pseudo-terminal.

Each test starts ``python -m edge.hub_process`` (bundle store, loaded and
self-tested bundle, management port) on one end of a
:class:`host.serial_relay.SerialRelay` and drives it through
``host.__main__.main`` or :class:`edge.manage.ManagementClient` on the other:
success and rollback, interrupted transfers resumed at random chunks, a
corrupted chunk retried, tampered/untrusted/unsigned/older bundles refused
with the old bundle still active, SIGKILL at every step of the switch, and
provisioning twice.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from host_kit import HubProcess, bundles, new_store, run_host, sha256

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def kit():
    return bundles()


@pytest.fixture
def link():
    from host.serial_relay import SerialRelay

    with SerialRelay(baud=None) as relay:  # unthrottled: the benchmark measures 921,600 baud
        yield relay


@pytest.fixture
def hub(tmp_path, kit, link):
    """A hub process with v1.2.0 active and an event log."""
    store = tmp_path / "store"
    new_store(store, kit.pub, install=kit.v120)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"t": i, "risk": "low", "probs": [0.9, 0.05, 0.05]}) + "\n"
                              for i in range(120)))
    proc = HubProcess(store, link.hub_path, events=events)
    yield proc, store
    proc.stop()


def active_sha(store) -> str:
    from edge.store import BundleStore

    path = BundleStore(store).active_path()
    return sha256(path) if path else ""


def test_flash_success_status_logs_and_rollback(hub, kit, link):
    proc, store = hub
    assert HubProcess.fields(proc.ready)["sha256"] == sha256(kit.v120)
    status, out, err = run_host(["flash", kit.v130, "--port", link.host_path, "--json"])
    assert status == 0, err
    result = json.loads(out)
    assert result["ok"] and result["active_version"] == "1.3.0" and result["previous_version"] == "1.2.0"
    assert result["bytes"] == kit.v130.stat().st_size and result["resumed_from"] == 0
    assert "flash [" in err  # the progress bar went to stderr
    reloaded = HubProcess.fields(proc.expect("hub-reloaded"))
    assert reloaded["active"] == "1.3.0" and reloaded["sha256"] == sha256(kit.v130)

    status, out, err = run_host(["status", "--port", link.host_path, "--json"])
    assert status == 0, err
    st = json.loads(out)
    assert st["store"]["active"]["version"] == "1.3.0" and st["store"]["previous"]["version"] == "1.2.0"
    assert st["store"]["hub_id"] == "hub-test"
    status, out, _ = run_host(["status", "--port", link.host_path])
    assert "active bundle" in out and "1.3.0" in out

    status, out, err = run_host(["logs", "--port", link.host_path, "--lines", "100", "--json"])
    assert status == 0, err
    events = json.loads(out)
    assert [e["t"] for e in events] == list(range(20, 120))

    # an older bundle is refused without --force, accepted with it
    status, _, err = run_host(["flash", kit.v120, "--port", link.host_path])
    assert status == 1 and "older than the hub's active 1.3.0" in err and "--force" in err
    assert active_sha(store) == sha256(kit.v130)

    status, out, err = run_host(["rollback", "--port", link.host_path, "--json"])
    assert status == 0, err
    assert json.loads(out) == {"active": "1.2.0", "previous": "1.3.0"}
    assert HubProcess.fields(proc.expect("hub-reloaded"))["sha256"] == sha256(kit.v120)
    assert active_sha(store) == sha256(kit.v120)


def test_dry_run_checks_without_installing(hub, kit, link):
    proc, store = hub
    status, out, err = run_host(["flash", kit.v130, "--port", link.host_path, "--dry-run", "--json"])
    assert status == 0, err
    result = json.loads(out)
    assert result["dry_run"] and "passed every check" in result["message"]
    assert result["active_version"] == "1.2.0"
    assert active_sha(store) == sha256(kit.v120)


@pytest.mark.parametrize("seed", [1, 2])
def test_interrupted_at_random_chunks_then_resumed(hub, kit, link, seed):
    """Cut the cable at random points; each rerun resumes where the hub's partial file ends."""
    from edge.manage import HubUnreachable, ManagementClient

    proc, store = hub
    data = kit.v130.read_bytes()
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.integers(1, len(data) // 1024, size=2) * 1024)
    resumed = []
    for i, cut in enumerate(cuts):
        with ManagementClient(link.host_path, timeout=0.5) as client:
            client.hello()
            if i == 0:  # a real unplug: the relay drops everything after `cut` more bytes
                link.cut_after(int(cut))
                with pytest.raises(HubUnreachable, match="run the same command again to resume"):
                    client.flash(data, retries=1)
                link.restore()
            else:  # the laptop side gives up (process killed, lid closed)
                with pytest.raises(HubUnreachable, match="interrupted"):
                    client.flash(data, interrupt_at=int(cut))
        st = run_host(["status", "--port", link.host_path, "--json"])
        transfer = json.loads(st[1])["link"]["transfer"]
        assert transfer["total"] == len(data) and 0 < transfer["received"] < len(data)
        resumed.append(transfer["received"])
        assert active_sha(store) == sha256(kit.v120)  # nothing switched yet
    status, out, err = run_host(["flash", kit.v130, "--port", link.host_path, "--json"])
    assert status == 0, err
    result = json.loads(out)
    assert result["resumed_from"] == resumed[-1] > 0
    assert HubProcess.fields(proc.expect("hub-reloaded"))["sha256"] == sha256(kit.v130)
    assert not list((store / "partial").glob("*.part"))


def test_corrupted_chunks_are_retried(hub, kit, link):
    """A flipped bit on the wire and a chunk with a wrong CRC-32 are both resent."""
    from edge.manage import ManagementClient
    from edge.protocol import FlashAck, FlashBegin, FlashChunk, Nak, NakReason

    proc, store = hub
    data = kit.v130.read_bytes()
    with ManagementClient(link.host_path, timeout=2) as client:
        client.hello()
        # 1) a chunk whose CRC-32 does not match its data is refused with CHUNK_CRC
        import hashlib

        client.send(FlashBegin(transfer_id=77, total_size=len(data), sha256=hashlib.sha256(data).digest()))
        ack = client.wait_for(lambda m: isinstance(m, FlashAck))
        assert ack.next_offset == 0
        client.send(FlashChunk(transfer_id=77, offset=0, data=data[:1024], crc32=12345))
        nak = client.wait_for(lambda m: isinstance(m, Nak))
        assert nak.reason == NakReason.CHUNK_CRC and "expected offset 0" in nak.detail
        # 2) bits flipped on the wire in two chunks: the transfer still completes
        start = link.up.received
        link.corrupt_at(start + 20_000)
        link.corrupt_at(start + 200_000)
        result = client.flash(data)
    assert result["ok"] and result["naks"] >= 2 and result["resends"] >= 1
    assert HubProcess.fields(proc.expect("hub-reloaded"))["sha256"] == sha256(kit.v130)
    st = json.loads(run_host(["status", "--port", link.host_path, "--json"])[1])
    dec = st["link"]["decoder"]
    assert dec.get("bad_crc", 0) + dec.get("bad_cobs", 0) + dec.get("truncated", 0) >= 2
    assert st["link"]["counters"]["chunk_bad_crc"] >= 1


@pytest.mark.parametrize("which,message", [
    ("tampered", "sha256"),
    ("foreign", "unknown key"),
])
def test_bad_bundles_refused_old_one_still_active(hub, kit, link, which, message):
    proc, store = hub
    status, _, err = run_host(["flash", getattr(kit, which), "--port", link.host_path, "--force"])
    assert status == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("host: error: hub refused the bundle:") and message in last
    assert "active bundle: 1.2.0" in err
    assert "Traceback" not in err
    assert active_sha(store) == sha256(kit.v120)
    st = json.loads(run_host(["status", "--port", link.host_path, "--json"])[1])
    assert st["daemon"]["loaded"]["sha256"] == sha256(kit.v120)
    assert not list((store / "partial").glob("*.part"))


def test_unsigned_and_garbage_refused_before_sending(hub, kit, link, tmp_path):
    proc, store = hub
    status, _, err = run_host(["flash", kit.unsigned, "--port", link.host_path, "--force"])
    assert status == 1 and "signature.json" in err
    junk = tmp_path / "junk.lgb"
    junk.write_bytes(b"not a zip at all" * 10)
    status, _, err = run_host(["flash", junk, "--port", link.host_path])
    assert status == 1 and "not a readable LiftGuard bundle" in err
    st = json.loads(run_host(["status", "--port", link.host_path, "--json"])[1])
    assert st["link"]["counters"].get("flash_begins", 0) == 0
    assert active_sha(store) == sha256(kit.v120)


KILL_POINTS = {"verify": "old", "copy": "old", "rename": "old", "previous": "old", "switch": "old",
               "done": "new"}


def _flash_in_thread(port: str, data: bytes):
    """Flash from a thread; ``box["client"]`` lets the test close the port under it."""
    from edge.manage import ManagementClient

    box = {}
    ready = threading.Event()

    def go():
        try:
            with ManagementClient(port, timeout=1) as client:
                box["client"] = client
                ready.set()
                box["result"] = client.flash(data, install_timeout=0.5, retries=1)
        except Exception as exc:  # the hub dies under it, or the test closes the port: expected
            box["error"] = exc
        finally:
            ready.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    ready.wait(10)
    return t, box


def _end_flash(t, box) -> None:
    """Stop the flashing thread at once (the hub is dead) and wait for it."""
    client = box.get("client")
    if client is not None:
        client.close()
    t.join(30)
    assert not t.is_alive()


def _check_store_consistent(store, old: str, new: str) -> str:
    """The active bundle is complete, matches its meta, is old or new; no temporaries left."""
    from edge.store import BundleStore

    s = BundleStore(store)  # opening recovers
    path = s.active_path()
    assert path is not None, "no active bundle after the crash"
    got = sha256(path)
    assert got in (old, new)
    assert s.meta(path.parent)["sha256"] == got, "bundle and its meta.json disagree (a mix)"
    assert not list(store.glob(".*.tmp-*")) and not list((store / "bundles").glob(".tmp-*"))
    return got


def test_sigkill_at_every_step_of_the_switch(tmp_path, kit, link):
    """Kill the hub at each step of the install; on restart it runs the old or the new bundle."""
    old, new = sha256(kit.v120), sha256(kit.v130)
    data = kit.v130.read_bytes()
    for i, (step, expect) in enumerate(KILL_POINTS.items()):
        store = tmp_path / f"store{i}"
        new_store(store, kit.pub, install=kit.v120)
        proc = HubProcess(store, link.hub_path, env={"LIFTGUARD_STORE_STEP_DELAY": "0.15"})
        t, box = _flash_in_thread(link.host_path, data)
        proc.expect(f"store-step {step}", timeout=30, stream="stderr")
        proc.kill()
        _end_flash(t, box)
        assert "result" not in box, f"killed at {step}, yet the flash reported success"
        got = _check_store_consistent(store, old, new)
        assert got == (old if expect == "old" else new), f"killed at {step}"
        again = HubProcess(store, link.hub_path)
        assert HubProcess.fields(again.ready)["sha256"] == got, f"restart after kill at {step}"
        again.stop()


def test_sigkill_at_random_times(tmp_path, kit, link):
    """Kill at seeded random instants during transfer and install; never none, never a mix."""
    old, new = sha256(kit.v120), sha256(kit.v130)
    data = kit.v130.read_bytes()
    rng = np.random.default_rng(11)
    store = tmp_path / "store"
    new_store(store, kit.pub, install=kit.v120)
    seen = set()
    for delay in rng.uniform(0.0, 0.4, size=3):
        proc = HubProcess(store, link.hub_path, env={"LIFTGUARD_STORE_STEP_DELAY": "0.02"})
        t, box = _flash_in_thread(link.host_path, data)
        time.sleep(float(delay))
        proc.kill()
        _end_flash(t, box)
        seen.add(_check_store_consistent(store, old, new))
        again = HubProcess(store, link.hub_path)
        assert HubProcess.fields(again.ready)["sha256"] in (old, new)
        again.stop()
        if active_sha(store) == new:  # start over from the old bundle for the next kill
            from edge.store import BundleStore

            BundleStore(store).rollback()
    assert seen <= {old, new}


def test_provisioning_twice_needs_the_flag(tmp_path, kit, link):
    store = tmp_path / "fresh"
    store.mkdir()
    proc = HubProcess(store, link.hub_path)
    try:
        assert HubProcess.fields(proc.ready)["active"] == "none"
        # an unprovisioned hub takes no bundle
        status, _, err = run_host(["flash", kit.v130, "--port", link.host_path])
        assert status == 1 and "not provisioned" in err
        status, out, err = run_host(["provision", "--port", link.host_path, "--trust", kit.pub,
                                     "--hub-id", "belt-0042", "--json"])
        assert status == 0, err
        assert json.loads(out)["hub_id"] == "belt-0042"
        for key in (kit.pub, kit.other_pub):
            status, _, err = run_host(["provision", "--port", link.host_path, "--trust", key,
                                       "--hub-id", "belt-0043"])
            assert status == 1 and "already provisioned" in err and "--replace" in err
        assert (store / "hub_id").read_text().strip() == "belt-0042"
        status, out, err = run_host(["flash", kit.v120, "--port", link.host_path, "--json"])
        assert status == 0, err
        status, out, err = run_host(["provision", "--port", link.host_path, "--trust", kit.other_pub,
                                     "--hub-id", "belt-0043", "--replace", "--json"])
        assert status == 0 and json.loads(out)["replaced"] is True
        # now only bundles signed by the other key are accepted
        status, _, err = run_host(["flash", kit.v130, "--port", link.host_path])
        assert status == 1 and "unknown key" in err
    finally:
        proc.stop()


def test_unreachable_port_is_one_clear_line(tmp_path, kit, link):
    status, _, err = run_host(["flash", kit.v130, "--port", link.host_path, "--timeout", "0.5"])
    assert status == 1
    assert err.startswith("host: error: no answer from a LiftGuard hub on") and "Traceback" not in err
    status, _, err = run_host(["status", "--port", str(tmp_path / "no-such-tty")])
    assert status == 1 and "cannot open hub port" in err


def test_flash_into_the_running_hub_daemon(tmp_path, kit, link):
    """``edge run --bundle-store --manage-port``: the daemon takes the flashed bundle up without a restart."""
    import subprocess
    import sys

    from host_kit import REPO

    store = tmp_path / "store"
    new_store(store, kit.pub, install=kit.v120)
    trial = sorted((kit.data / "trials").glob("*.csv"))[0]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--source", f"replay://{trial}?speed=1&loop=-1",
         "--bundle-store", str(store), "--alert", "log", "--events", str(tmp_path / "events.jsonl"),
         "--manage-port", f"serial://{link.hub_path}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            status, out, err = run_host(["status", "--port", link.host_path, "--json", "--timeout", "2"])
            if status == 0 and (json.loads(out)["daemon"].get("model") or {}).get("model_version") == "1.2.0":
                break
            assert time.monotonic() < deadline and daemon.poll() is None, err
            time.sleep(0.5)
        status, out, err = run_host(["flash", kit.v130, "--port", link.host_path, "--json"])
        assert status == 0, err
        while True:
            st = json.loads(run_host(["status", "--port", link.host_path, "--json"])[1])
            if (st["daemon"].get("model") or {}).get("model_version") == "1.3.0":
                break
            assert time.monotonic() < deadline, st["daemon"].get("model")
            time.sleep(0.3)
        assert st["daemon"]["model"]["path"].endswith(f"{st['store']['active']['folder']}/bundle.lgb")
        status, out, _ = run_host(["status", "--port", link.host_path])
        assert "running model   run-" in out and "1.3.0" in out
        status, out, _ = run_host(["logs", "--port", link.host_path, "--lines", "50", "--json"])
        loaded = [e for e in json.loads(out) if e.get("type") == "bundle" and e.get("status") == "loaded"]
        assert loaded and loaded[-1]["model_version"] == "1.3.0"
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=30) == 0


async def test_status_larger_than_a_frame_comes_in_parts(tmp_path, kit):
    """A daemon health bigger than one frame is split by key and merged back by the client."""
    from edge.manage import ManagementServer
    from edge.protocol import ManagementRequest, ManagementResponse, decode_frame

    store = new_store(tmp_path, kit.pub)
    big = {f"sensor{i}": {"counters": {f"c{j}": j for j in range(60)}} for i in range(12)}
    server = ManagementServer("loop://", store, lambda: big, None)
    sent = []
    server._send = sent.append
    await server.handle(ManagementRequest(request_id=5, op="status"))
    assert len(sent) > 2 and all(isinstance(m, ManagementResponse) for m in sent)
    assert [m.part for m in sent] == list(range(len(sent))) and sent[-1].final
    merged = {}
    for m in sent:
        from edge.protocol import encode_message

        assert decode_frame(encode_message(m)).body == m.body  # every part fits a frame
        for k, v in m.body.items():
            merged.setdefault(k, {}).update(v) if isinstance(v, dict) else merged.__setitem__(k, v)
    assert merged["daemon"] == big and merged["store"]["hub_id"] == "hub-test"


def test_resume_survives_a_hub_restart(tmp_path, kit, link):
    """The partial transfer is on disk: after the hub is killed and restarted, flashing resumes."""
    from edge.manage import HubUnreachable, ManagementClient

    store = tmp_path / "store"
    new_store(store, kit.pub, install=kit.v120)
    proc = HubProcess(store, link.hub_path)
    data = kit.v130.read_bytes()
    with ManagementClient(link.host_path, timeout=1) as client:
        with pytest.raises(HubUnreachable):
            client.flash(data, interrupt_at=len(data) // 2)
    proc.kill()
    part = store / "partial" / f"{sha256(kit.v130)}.part"
    assert part.is_file() and 0 < part.stat().st_size < len(data)
    again = HubProcess(store, link.hub_path)
    try:
        status, out, err = run_host(["flash", kit.v130, "--port", link.host_path, "--json"])
        assert status == 0, err
        result = json.loads(out)
        assert len(data) // 2 <= result["resumed_from"] < len(data)
        assert HubProcess.fields(again.expect("hub-reloaded"))["sha256"] == sha256(kit.v130)
    finally:
        again.stop()
