"""The management port's ``restart`` op, ``host restart``, and reading the event log with a cursor.

* ``logs`` with ``since``: every line of a rotating event log is read exactly
  once across rotations, each answer's parts fit a frame, lines rotated away
  before they were read are reported ``lost``;
* ``restart``: refused by a hub process that cannot restart itself, answered
  before the daemon's callback runs;
* end to end: the daemon (``edge run``) under the bench emulator's
  systemd-like supervisor (:class:`hil_tests.bench.Bench`, a real subprocess
  on pseudo-terminal links): ``host provision`` and ``host flash`` over the
  port, ``host restart`` -> exit status 75, a new process with the bundle
  loaded, the ``stop`` event saying why, and the lines since a cursor; the
  HIL rig's :class:`hil_tests.rig.RemoteHub` refusing a bench provisioned
  with another key, or re-provisioning it when allowed.
"""

from __future__ import annotations

import json

import pytest

from host_kit import bundles, run_host

pytestmark = pytest.mark.timeout(180)


def _server(tmp_path, events=None, **kw):
    from edge.manage import ManagementServer
    from edge.store import BundleStore

    server = ManagementServer("loop://", BundleStore(tmp_path / "store"), lambda: {"pid": 1}, events, **kw)
    sent = []
    server._send = sent.append
    return server, sent


async def _logs_since(server, sent, since, max_bytes):
    from edge.protocol import ManagementRequest, decode_frame, encode_message

    sent.clear()
    await server.handle(ManagementRequest(request_id=7, op="logs", body={"since": since, "max_bytes": max_bytes}))
    assert sent and all(m.ok for m in sent), [m.body for m in sent]
    assert [m.part for m in sent] == list(range(len(sent))) and sent[-1].final
    for m in sent:
        assert decode_frame(encode_message(m)).body == m.body  # every part fits one frame
    text = "".join(m.body["text"] for m in sent)
    last = sent[-1].body
    return [ln for ln in text.split("\n") if ln], last["next"], last["more"], last["lost"]


async def test_logs_since_reads_every_line_once_across_rotations(tmp_path):
    """Lines written between reads, over several rotations, come back in order, none twice, none lost."""
    from edge.event_log import EventLog

    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=4000, backups=3)
    server, sent = _server(tmp_path, path)
    lines, cursor, more, lost = await _logs_since(server, sent, "end", 2048)
    assert lines == [] and not more and not lost
    got = []
    for i in range(150):
        log.write("lift", i=i, pad="x" * (40 + 37 * (i % 5)))  # lines of different lengths
        if i % 11 == 0:
            while True:
                lines, cursor, more, lost = await _logs_since(server, sent, cursor, 2048)
                assert not lost
                got += [json.loads(ln)["i"] for ln in lines]
                if not more:
                    break
    while True:
        lines, cursor, more, lost = await _logs_since(server, sent, cursor, 2048)
        got += [json.loads(ln)["i"] for ln in lines]
        if not more:
            break
    assert got == list(range(150))
    assert len(list(tmp_path.glob("events.jsonl.*"))) == 3  # it did rotate
    # a line longer than a frame comes back whole, split over parts
    log.write("lift", i=999, pad="y" * 20000)
    lines, cursor, more, lost = await _logs_since(server, sent, cursor, 2048)
    assert len(sent) > 2 and [json.loads(ln)["i"] for ln in lines] == [999]
    # a cursor whose file was rotated away: reported lost, reading resumes at the oldest line
    old_cursor = cursor
    for i in range(400):
        log.write("lift", i=1000 + i, pad="z" * 60)
    lines, cursor, more, lost = await _logs_since(server, sent, old_cursor, 1 << 20)
    assert lost and lines and json.loads(lines[-1])["i"] == 1399
    log.close()


async def test_logs_since_refuses_a_bad_cursor_naming_it(tmp_path):
    """A cursor that is not "start", "end" or {inode, offset} gets ok=False naming the value."""
    from edge.protocol import ManagementRequest

    server, sent = _server(tmp_path, tmp_path / "events.jsonl")
    await server.handle(ManagementRequest(request_id=3, op="logs", body={"since": {"inode": "x"}}))
    assert not sent[-1].ok and "since {'inode': 'x'}" in sent[-1].body["error"]


async def test_restart_refused_without_a_daemon_and_answered_before_the_callback(tmp_path):
    """Without on_restart the op is refused with a reason; with it, the answer goes out first."""
    from edge.protocol import ManagementRequest

    server, sent = _server(tmp_path)
    await server.handle(ManagementRequest(request_id=1, op="restart"))
    assert not sent[-1].ok and "cannot restart itself" in sent[-1].body["error"]
    order = []
    server, sent = _server(tmp_path, on_restart=lambda: order.append(len(sent)))
    await server.handle(ManagementRequest(request_id=2, op="restart"))
    assert sent[-1].ok and sent[-1].body["restarting"] is True
    assert order == [1]  # called once, after the one answer was sent
    await server.handle(ManagementRequest(request_id=3, op="reboot"))
    assert "expected one of status, logs, provision, rollback, versions, restart" in sent[-1].body["error"]


def test_host_restart_under_a_supervisor_brings_a_new_daemon_back(tmp_path):
    """`host restart --port`: the daemon stops (exit 75, stop event says why), the supervisor starts a new one with the bundle."""
    from edge.manage import ManagementClient
    from hil_tests.bench import Bench

    kit = bundles()
    with Bench(tmp_path / "board", restart_sec=0.2, progress=None) as bench:
        port = bench.manage_link.host_path
        status, out, err = run_host(["provision", "--port", port, "--trust", kit.pub, "--hub-id", "bench-1"])
        assert status == 0, err
        status, out, err = run_host(["flash", kit.v120, "--port", port, "--quiet", "--json"])
        assert status == 0, err
        with ManagementClient(port) as client:
            _, cursor, lost = client.log_since("end")
        status, out, err = run_host(["restart", "--port", port, "--json", "--wait", "60", "--quiet"])
        assert status == 0, err
        answer = json.loads(out)
        assert answer["old_pid"] == bench.starts[0]["pid"] and answer["new_pid"] == bench.starts[1]["pid"]
        assert answer["model_version"] == "1.2.0"
        assert bench.starts[0]["exit"] == 75
        with ManagementClient(port) as client:
            lines, cursor, lost = client.log_since(cursor)
        events = [json.loads(ln) for ln in lines]
        kinds = [e["type"] for e in events]
        assert not lost and "stop" in kinds and "start" in kinds, kinds
        stop, start = events[kinds.index("stop")], events[kinds.index("start")]
        assert stop.get("restart_requested") is True and kinds.index("stop") < kinds.index("start")
        assert start["pid"] == answer["new_pid"]
        # the HIL rig's remote hub: a bench provisioned with another key is refused, naming both keys
        from edge.store import public_key_fingerprint
        from hil_tests.rig import RemoteHub, RigError

        other = public_key_fingerprint(kit.other_pub.read_bytes())
        rig_hub = RemoteHub(port, tmp_path / "rig", bundle=kit.foreign, trust=[kit.other_pub], speed=60.0)
        with pytest.raises(RigError, match=rf"trusts key\(s\) .* verified with {other}.*--hub-reprovision"):
            rig_hub.prepare()
        rig_hub.cleanup()
        # ... and re-provisioned when allowed, then the bundle under test flashed with the real host commands
        rig_hub = RemoteHub(port, tmp_path / "rig2", bundle=kit.foreign, trust=[kit.other_pub], speed=60.0,
                            reprovision=True)
        status_after = rig_hub.prepare()
        rig_hub.cleanup()
        assert status_after["store"]["trusted_keys"] == [other]
        assert status_after["store"]["active"]["version"] == "1.4.0"
        status, out, err = run_host(["restart", "--port", port, "--no-wait", "--json"])
        assert status == 0 and json.loads(out)["restarting"] is True
    assert all(s["exit"] is not None for s in bench.starts)


def test_host_restart_without_an_answering_hub_is_one_line(tmp_path):
    """A port with no hub behind it: one clear line, no traceback."""
    from host.serial_relay import SerialRelay

    with SerialRelay(baud=None) as link:
        status, _, err = run_host(["restart", "--port", link.host_path, "--timeout", "0.5"])
    assert status == 1 and err.startswith("host: error: no answer from a LiftGuard hub") and "Traceback" not in err
