"""A bench emulator: "another board" running the hub, wired to this machine by two serial links.

QA's real bench is a belt hub running ``edge run`` under systemd, wired to
the workstation by two serial cables: the *rig port* (the hub's sensor input,
into which the sensor-hub emulator plays and from which it receives the
hub's Buzz commands) and the *management port* (``host flash/status/logs/
provision/rollback/restart --port``). This module stands up the same thing
without hardware, so the ``--hub-port`` path of the HIL rig runs in CI:

* an ``edge run`` process with its own bundle store, event log and health
  file under ``DIR`` (nothing shared with the test process but the two
  links), reading ``serial://<pty>?clock=device`` and serving
  ``--manage-port serial://<pty>``, alerting through ``hub`` (Buzz to the
  sensor hub) and a gpiozero pin on ``MockFactory`` (``gpio:17?mock=1``);
* each link is a :class:`host.serial_relay.SerialRelay` (two pseudo-terminal
  pairs joined by a relay thread): the hub opens one end, the workstation
  the other (``rig_port`` / ``hub_port`` in ``DIR/bench.json``). The sensor
  link behaves like a UART into a board whose daemon is not running: what
  the rig sends while no daemon process has the port is lost (a relay
  would otherwise queue it and flood the next process with minutes of
  stale frames at 60 x), from the daemon's exit until the new process's
  first bytes (its ``Hello``, sent right after it opens the port);
* a supervisor that restarts the daemon like systemd's
  ``Restart=on-failure`` (``edge/systemd/liftguard-hub.service``): a non-zero
  exit (a crash, or 75 after the management port's ``restart`` op) starts a
  new process after ``--restart-sec`` (default 0.5 s; the unit says 3 s); a
  clean exit (0) is not restarted.

The store starts empty (unprovisioned, no bundle): the rig provisions and
flashes it through the management port, as it would a real bench.

Usage::

    python -m hil_tests.bench --dir runs/bench            # serve until Ctrl-C / SIGTERM
    python -m hil_tests.bench --dir runs/bench -- -m '' --hil-report runs/hil-bench
        # serve, run `pytest hil_tests --hub-port H --rig-port R <args>`, stop; exit with pytest's status

``DIR/bench.json`` is written when the bench is ready (the daemon answers on
its management port): ``rig_port``, ``hub_port``, the daemon's pid per start
and each exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edge.errors import LiftGuardError

REPO = Path(__file__).resolve().parents[1]

#: Seconds between the daemon's non-zero exit and its restart (systemd's RestartSec; the unit has 3).
DEFAULT_RESTART_SEC = 0.5


class BenchError(LiftGuardError, RuntimeError):
    """The bench emulator could not be set up."""


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _sensor_link_class():
    from host.serial_relay import SerialRelay

    class SensorLink(SerialRelay):
        """The sensor link: host -> hub bytes are dropped while no daemon has the hub's end open.

        "Open" is known from the daemon itself: it sends Hello as soon as it has
        opened the port, so the first hub -> host bytes after :meth:`hub_gone`
        reopen the way; the relay thread handles both directions in order, so
        the rig's answer to that Hello always gets through.
        """

        def __init__(self, baud: Optional[int] = None) -> None:
            super().__init__(baud=baud)
            self.hub_reading = False
            self.dropped_no_reader = 0

        def hub_gone(self) -> None:
            """The daemon process exited: drop what the rig sends until the next one speaks."""
            with self._lock:
                self.hub_reading = False
                self.dropped_no_reader += len(self.up.pending)
                self.up.pending.clear()

        def _ingest(self, d) -> None:
            if d is self.down:
                before = d.received
                super()._ingest(d)
                if d.received > before:
                    self.hub_reading = True
                return
            if self.hub_reading:
                super()._ingest(d)
                return
            try:
                data = os.read(d.src_fd, 65536)
            except OSError:  # BlockingIOError, EIO while the rig has its end closed
                return
            self.dropped_no_reader += len(data)

    return SensorLink


class Bench:
    """The emulated hub board: ``edge run`` supervised like systemd, two serial links.

    Args:
        root: The board's own folder (store, event log, health, daemon log, ``bench.json``).
        restart_sec: Pause before restarting a daemon that exited non-zero.
        manage_baud: Management link rate (None: unthrottled, like USB CDC gadget serial).
        sensor_baud: Sensor link rate (None: unthrottled, like a USB CDC sensor hub; a UART at
            921,600 baud carries about 40 x real time of LiftSim frames).
        alerts: The daemon's ``--alert`` specs.
        progress: Called with one line per event (None: quiet).
    """

    def __init__(self, root: Path, *, restart_sec: float = DEFAULT_RESTART_SEC, manage_baud: Optional[int] = None,
                 sensor_baud: Optional[int] = None, alerts: Sequence[str] = ("hub", "gpio:17?mock=1"), progress=_say) -> None:
        if restart_sec < 0:
            raise BenchError(f"restart_sec {restart_sec!r}; expected >= 0 seconds")
        self.root = Path(root).resolve()
        self.restart_sec = restart_sec
        self.manage_baud = manage_baud
        self.sensor_baud = sensor_baud
        self.alerts = list(alerts)
        self.say = progress or (lambda text: None)
        self.store = self.root / "store"
        self.events = self.root / "log" / "events.jsonl"
        self.health = self.root / "run" / "health.json"
        self.daemon_log = self.root / "daemon.log"
        self.info_path = self.root / "bench.json"
        self.sensor_link: Any = None
        self.manage_link: Any = None
        self.proc: Optional[subprocess.Popen] = None
        self.starts: List[Dict[str, Any]] = []
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ set-up
    def command(self) -> List[str]:
        """The daemon's command line (what the systemd unit's ExecStart runs, with flags instead of hub.toml)."""
        cmd = [sys.executable, "-m", "edge", "run",
               "--source", f"serial://{self.sensor_link.hub_path}?clock=device",
               "--bundle-store", str(self.store), "--events", str(self.events),
               "--health-file", str(self.health), "--manage-port", f"serial://{self.manage_link.hub_path}"]
        for spec in self.alerts:
            cmd += ["--alert", spec]
        return cmd

    def start(self, ready_timeout: float = 60.0) -> "Bench":
        """Open both links, start the supervised daemon and wait until it answers on its management port.

        Raises:
            BenchError: The daemon did not answer within ``ready_timeout`` (its log's tail quoted).
        """
        from host.serial_relay import SerialRelay

        for folder in (self.store, self.events.parent, self.health.parent):
            folder.mkdir(parents=True, exist_ok=True)
        self.sensor_link = _sensor_link_class()(self.sensor_baud).start()
        self.manage_link = SerialRelay(baud=self.manage_baud).start()
        self._thread = threading.Thread(target=self._supervise, name="bench-supervisor", daemon=True)
        self._thread.start()
        self._wait_ready(ready_timeout)
        self._write_info(ready=True)
        self.say(f"hub board up: rig port {self.sensor_link.host_path}, hub port {self.manage_link.host_path}, "
                 f"state in {self.root}")
        return self

    def _wait_ready(self, timeout: float) -> None:
        from edge.manage import HubUnreachable, ManagementClient

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with ManagementClient(self.manage_link.host_path, timeout=1.0) as client:
                    client.hello(timeout=2.0)
                    if (client.call("status").get("daemon") or {}).get("pid"):
                        return
            except HubUnreachable as exc:
                last = str(exc)
            time.sleep(0.2)
        raise BenchError(f"bench daemon did not answer on its management port within {timeout:.0f} s ({last}); "
                         f"daemon log {self.daemon_log}: {_tail(self.daemon_log, 4)}")

    # ------------------------------------------------------------ supervision
    def _launch(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(self.daemon_log, "a") as log:
            log.write(f"$ {' '.join(self.command())}\n")
            log.flush()
            proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        with self._lock:
            self.proc = proc
            self.starts.append({"pid": proc.pid, "started": time.time(), "exit": None})
        self._write_info()
        return proc

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            proc = self._launch()
            status = proc.wait()
            self.sensor_link.hub_gone()
            with self._lock:
                self.starts[-1]["exit"] = status
            self._write_info()
            if self._stopping.is_set():
                return
            if status == 0:
                self.say(f"daemon {proc.pid} exited 0: not restarted (Restart=on-failure)")
                return
            self.say(f"daemon {proc.pid} exited {status}; restarting in {self.restart_sec:g} s (Restart=on-failure)")
            if self._stopping.wait(self.restart_sec):
                return

    def _write_info(self, ready: Optional[bool] = None) -> None:
        with self._lock:
            info = {"rig_port": self.sensor_link.host_path, "hub_port": self.manage_link.host_path,
                    "supervisor_pid": os.getpid(), "store": str(self.store), "events": str(self.events),
                    "health": str(self.health), "daemon_log": str(self.daemon_log), "restart_sec": self.restart_sec,
                    "sensor_bytes_lost_without_daemon": self.sensor_link.dropped_no_reader,
                    "sensor_baud": self.sensor_baud, "manage_baud": self.manage_baud,
                    "starts": [dict(s) for s in self.starts]}
            if ready is not None:
                self._ready = ready
            info["ready"] = bool(getattr(self, "_ready", False))
            tmp = self.info_path.with_name(self.info_path.name + ".tmp")
            tmp.write_text(json.dumps(info, indent=1) + "\n")
            os.replace(tmp, self.info_path)

    # ------------------------------------------------------------ tear-down
    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """Stop the daemon (SIGTERM, as systemctl stop does), then the links; return its exit status."""
        self._stopping.set()
        status = None
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait(5)
        elif proc is not None:
            status = proc.returncode
        if self._thread is not None:
            self._thread.join(timeout=5)
        for link in (self.sensor_link, self.manage_link):
            if link is not None:
                link.close()
        if self.sensor_link is not None:
            self._write_info(ready=False)
        return status

    def __enter__(self) -> "Bench":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _tail(path: Path, n: int) -> str:
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return " / ".join(lines[-n:])


def wait_for_info(path: Path, proc: subprocess.Popen, timeout: float = 90.0) -> Dict[str, Any]:
    """Wait until a bench process (started with ``--dir``) wrote ``bench.json`` with ``ready``.

    Raises:
        BenchError: The process exited or did not get ready in time.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"bench process exited with {proc.returncode} before it was ready")
        try:
            info = json.loads(Path(path).read_text())
            if info.get("ready"):
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise BenchError(f"bench not ready within {timeout:.0f} s ({path})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m hil_tests.bench``: serve a bench, or serve it around one pytest run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: Optional[List[str]] = None
    if "--" in argv:
        cut = argv.index("--")
        argv, pytest_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="python -m hil_tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the emulated board's own folder")
    parser.add_argument("--restart-sec", type=float, default=DEFAULT_RESTART_SEC,
                        help=f"pause before restarting a failed daemon (default {DEFAULT_RESTART_SEC})")
    parser.add_argument("--manage-baud", type=int, default=None,
                        help="pace the management link at this baud rate (default: unthrottled, like USB CDC)")
    parser.add_argument("--sensor-baud", type=int, default=None,
                        help="pace the sensor link like a UART at this baud rate (default: unthrottled, like USB "
                             "CDC); at 921600 keep --hil-speed at 30 or below")
    args = parser.parse_args(argv)
    for name in ("manage_baud", "sensor_baud"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} {value}: expected a positive baud rate")
    bench = Bench(args.dir, restart_sec=args.restart_sec, manage_baud=args.manage_baud, sensor_baud=args.sensor_baud)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        bench.start()
    except LiftGuardError as exc:
        bench.stop()
        print(f"hil_tests.bench: error: {exc}", file=sys.stderr)
        return 1
    status = 0
    try:
        if pytest_args is None:
            print(json.dumps({"rig_port": bench.sensor_link.host_path, "hub_port": bench.manage_link.host_path}),
                  flush=True)
            stop.wait()
        else:
            cmd = [sys.executable, "-m", "pytest", "hil_tests", "--hub-port", bench.manage_link.host_path,
                   "--rig-port", bench.sensor_link.host_path] + pytest_args
            _say("$ " + " ".join(cmd))
            child = subprocess.Popen(cmd, cwd=REPO)
            while child.poll() is None and not stop.is_set():
                time.sleep(0.2)
            if child.poll() is None:
                child.terminate()
            status = child.wait()
    finally:
        exit_status = bench.stop()
        _say(f"hub board down (daemon exit status {exit_status}; {len(bench.starts)} start(s))")
    return status


if __name__ == "__main__":
    sys.exit(main())
