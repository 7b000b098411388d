"""Drive the hub under test with the sensor rig and collect what it did.

The pieces are the real ones:

* :class:`HubProcess` runs ``python -m edge run`` (the daemon a belt hub runs)
  as a subprocess reading ``serial://<pty>?clock=device``, alerting through
  ``hub`` (the Buzz command back to the sensor hub, which the rig records)
  and a mock gpiozero pin, and writing its JSON-lines event log;
* :class:`RemoteHub` (``--hub-port``) is the same role for a hub on another
  board, reached only through its management port: the bundle under test
  goes on with ``host provision`` / ``host flash``, each run starts with the
  ``restart`` op (systemd brings the daemon back), health comes from the
  ``status`` op and the event log from the ``logs`` op with a cursor;
* :class:`SensorRig` is :class:`host.sensorhub_emulator.SensorHubEmulator`
  (what ``host emulate`` runs) playing a :class:`Stream` into a
  pseudo-terminal (or ``--rig-port``) at N times real time with a seeded
  :class:`~host.sensorhub_emulator.FaultPlan`;
* :func:`play` starts both, optionally kills and restarts the hub or flashes
  a new bundle mid-stream, and returns a :class:`RunResult` whose
  detections are on the stream's own clock (see :mod:`hil_tests.scoring`).

Clock mapping (no shared clock needed). Every frame the rig sends carries the
sensor hub's device time, ``t_us = t_us[0] + stream_s * 1e6`` (the
emulator's ``t_us``; a drifting clock changes only the pace, not the stamps).
The hub logs, with each lift window, the clock anchor of its serial source
(``"clock": {"host_s", "device_s"}``, :attr:`edge.sources.serial_hub.SerialHubSource.clock_anchor`):
the window's grid time ``t`` was device time ``t - host_s + device_s``, so
``stream_s = t - host_s + device_s - t_us[0] / 1e6``, exactly, whatever
machine the hub runs on and however often it was restarted (each process logs
its own anchor). The Hellos the rig receives are kept only to note when each
hub process opened the link (its playback position then).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge.errors import LiftGuardError
from edge.layout import SAMPLE_RATE_HZ

from .scoring import Detection, TruthLift

REPO = Path(__file__).resolve().parents[1]


class RigError(LiftGuardError, RuntimeError):
    """The rig or the hub under test could not be set up or misbehaved."""


# --------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------
@dataclasses.dataclass
class Stream:
    """What the rig plays, with its ground truth.

    Attributes:
        name: For messages and the report.
        samples: ``(n, 36)`` float64, g and deg/s.
        timestamps: ``(n,)`` seconds, increasing.
        truth: Ground-truth lifts, stream seconds from the first sample.
        trial_spans: For a data set stream: trial id to its (first, last)
            stream seconds.
        source: The file or folder it came from.
    """

    name: str
    samples: np.ndarray
    timestamps: np.ndarray
    truth: List[TruthLift]
    trial_spans: Dict[str, Tuple[float, float]]
    source: Path

    @property
    def duration_s(self) -> float:
        """Stream length, seconds."""
        return float(self.timestamps[-1] - self.timestamps[0]) + 1.0 / SAMPLE_RATE_HZ

    def rel(self, index: int) -> float:
        """Stream seconds of sample ``index``."""
        return float(self.timestamps[index] - self.timestamps[0])


def subset_dataset(data_dir: Path, trial_ids: Sequence[str], out_dir: Path) -> Path:
    """Copy the named trials of a data set into a new data set (the data set writer's format).

    Raises:
        RigError: If a trial id is not in the data set.
    """
    from edge.dataset import DatasetWriter, load_dataset

    ds = load_dataset(data_dir)
    by_id = {m.trial_id: m for m in ds.trials}
    missing = [t for t in trial_ids if t not in by_id]
    if missing:
        raise RigError(f"data set {data_dir}: trial ids {missing[:5]} (of {len(missing)}) are not in its index.csv")
    with DatasetWriter(out_dir, source=f"hil subset of {data_dir}") as w:
        for tid in trial_ids:
            m = by_id[tid]
            tr = ds.read(m)
            w.add_trial(m.trial_id, m.subject, m.zone, tr.samples, tr.timestamps, m.lift_start, m.lift_end)
    return out_dir


def stream_from_dataset(data_dir: Path, *, gap_s: float = 2.0) -> Stream:
    """The trials of a data set played one after another with ``gap_s`` of silence between them.

    Joined exactly as ``host emulate`` joins them
    (:func:`host.sensorhub_emulator.load_recording`).
    """
    from edge.dataset import load_dataset
    from host.sensorhub_emulator import load_recording

    ds = load_dataset(data_dir)
    samples, timestamps = load_recording(data_dir, gap_s=gap_s)
    truth, spans = [], {}
    k = 0
    for m in ds.trials:
        n = ds.read(m).samples.shape[0]
        rel0 = float(timestamps[k] - timestamps[0])
        spans[m.trial_id] = (rel0, float(timestamps[k + n - 1] - timestamps[0]))
        truth.append(TruthLift(m.trial_id, float(timestamps[k + m.lift_start] - timestamps[0]),
                               float(timestamps[k + m.lift_end] - timestamps[0]), m.risk))
        k += n
    if k != len(timestamps):
        raise RigError(f"data set {data_dir}: {k} samples in its trials but the recording has {len(timestamps)}")
    return Stream(data_dir.name, samples, timestamps, truth, spans, data_dir)


def stream_from_shift(shift_dir: Path) -> Stream:
    """A shift recording written by ``quantize synth-shift``: ``shift.csv`` and ``events.csv``.

    ``events.csv`` covers every sample once (``start,end,kind,zone,risk,...``,
    sample indices, end inclusive); its ``kind == "lift"`` rows are the
    ground-truth lifts, the rest (stand, walk, turn, bend, reach) are what
    the hub must not buzz for.

    Raises:
        RigError: If the folder does not hold a shift (naming what is missing).
    """
    from host.sensorhub_emulator import load_recording

    events = Path(shift_dir) / "events.csv"
    if not events.is_file():
        raise RigError(f"shift {shift_dir}: no events.csv (ground truth); expected a quantize synth-shift folder")
    samples, timestamps = load_recording(shift_dir)
    truth = []
    with open(events, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"start", "end", "kind", "risk"}
        if not need <= set(reader.fieldnames or ()):
            raise RigError(f"{events}: columns {reader.fieldnames}; expected at least {sorted(need)}")
        for row_no, row in enumerate(reader, 2):
            if row["kind"] != "lift":
                continue
            try:
                start, end = int(row["start"]), int(row["end"])
            except ValueError:
                raise RigError(f"{events}, row {row_no}: start/end {row['start']!r}/{row['end']!r} are not "
                               f"sample indices") from None
            if not 0 <= start < end < len(timestamps):
                raise RigError(f"{events}, row {row_no}: lift {start}..{end} outside the recording's "
                               f"{len(timestamps)} samples")
            truth.append(TruthLift(f"lift{len(truth) + 1:03d}@{start}", float(timestamps[start] - timestamps[0]),
                                   float(timestamps[end] - timestamps[0]), row["risk"]))
    if not truth:
        raise RigError(f"{events}: no kind=lift rows; expected the shift's lifts")
    return Stream(Path(shift_dir).name, samples, timestamps, truth, {}, Path(shift_dir))


# --------------------------------------------------------------------------
# the hub under test
# --------------------------------------------------------------------------
class HubProcess:
    """``python -m edge run`` as a subprocess.

    Args:
        workdir: Where its log, events and health files go.
        source_url: ``--source``.
        bundle: ``--bundle`` file (with ``trust``), or None with ``bundle_store``.
        trust: ``--trust`` keys.
        bundle_store: ``--bundle-store`` folder.
        alerts: ``--alert`` specs.
        manage_port: ``--manage-port`` URL.
        name: Prefix of the files.
    """

    def __init__(self, workdir: Path, *, source_url: str, bundle: Optional[Path] = None,
                 trust: Sequence[Path] = (), bundle_store: Optional[Path] = None,
                 alerts: Sequence[str] = ("hub", "gpio:17?mock=1"), manage_port: Optional[str] = None,
                 name: str = "hub") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.events_path = self.workdir / f"{name}.events.jsonl"
        self.health_path = self.workdir / f"{name}.health.json"
        self.log_path = self.workdir / f"{name}.log"
        for old in [self.events_path, self.health_path, self.log_path,
                    *self.workdir.glob(f"{name}.events.jsonl.*")]:
            old.unlink(missing_ok=True)  # a fresh run: earlier runs' lines would mix in
        argv = ["run", "--source", source_url, "--events", str(self.events_path),
                "--health-file", str(self.health_path)]
        if bundle is not None:
            argv += ["--bundle", str(bundle)]
        if bundle_store is not None:
            argv += ["--bundle-store", str(bundle_store)]
        for key in trust:
            argv += ["--trust", str(key)]
        for spec in alerts:
            argv += ["--alert", spec]
        if manage_port:
            argv += ["--manage-port", manage_port]
        self.cmd = [sys.executable, "-m", "edge"] + argv
        self.proc: Optional[subprocess.Popen] = None
        self.launches: List[float] = []  # monotonic time of each start

    #: Where the hub under test runs.
    mode = "local"

    def describe(self) -> str:
        """One line for progress output."""
        return f"edge {' '.join(self.cmd[3:])}"

    def record(self) -> Dict[str, Any]:
        """What the rig notes about the hub in ``rig.json``."""
        return {"mode": self.mode, "cmd": self.cmd, "launches": len(self.launches)}

    @property
    def starts(self) -> int:
        """Hub processes that ran."""
        return len(self.launches)

    def cleanup(self) -> None:
        """After a run, whatever happened: SIGKILL if still running."""
        self.kill()

    def release(self) -> None:
        """Nothing to release for a local hub (see :meth:`RemoteHub.release`)."""

    def start(self) -> "HubProcess":
        """Launch (or relaunch) the daemon."""
        if self.proc is not None and self.proc.poll() is None:
            raise RigError("hub under test is already running")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        log = open(self.log_path, "a")
        log.write(f"$ {' '.join(self.cmd)}\n")
        log.flush()
        self.launches.append(time.monotonic())
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        log.close()
        return self

    @property
    def running(self) -> bool:
        """Whether the daemon process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`RigError` with the log's tail if the daemon died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RigError(f"hub under test exited with {self.proc.returncode}: {tail(self.log_path, 6)}")

    def request_health(self, timeout: float = 5.0) -> Dict[str, Any]:
        """Ask for health (SIGUSR1) and return the JSON it writes."""
        if not self.running:
            raise RigError("hub under test is not running; no health to ask for")
        before = self.health_path.stat().st_mtime_ns if self.health_path.exists() else 0
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.health_path.exists() and self.health_path.stat().st_mtime_ns != before:
                try:
                    return json.loads(self.health_path.read_text())
                except json.JSONDecodeError:
                    pass  # being replaced; retry
            time.sleep(0.02)
        raise RigError(f"hub under test wrote no health file within {timeout:.0f} s ({self.health_path})")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, SIGKILL as a last resort; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise RigError(f"hub under test ignored SIGTERM for {timeout:.0f} s and was killed; "
                               f"log: {self.log_path}") from None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (a power cut, a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def events(self) -> List[Dict[str, Any]]:
        """Every event-log line so far (rotated files included)."""
        from edge.event_log import read_events

        if not self.events_path.exists():
            return []
        return read_events(self.events_path)

    def wait_for(self, predicate: Callable[[List[Dict[str, Any]]], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate(events)`` holds; raise naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if predicate(self.events()):
                return
            time.sleep(0.05)
        raise RigError(f"hub under test: {what} not seen within {timeout:.0f} s; log tail: {tail(self.log_path, 4)}")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RemoteHub:
    """The hub under test on another board, reached only through its management port (``--hub-port``).

    The same interface as :class:`HubProcess`, built on the management ops
    (:mod:`edge.manage`) and the real ``host`` commands:

    * :meth:`prepare` -- ``host provision`` with the bundle's trust key when
      the hub trusts no key yet (a hub provisioned with another key is refused
      with a message, or re-provisioned with ``--replace`` when
      ``reprovision``), then ``host flash --force`` unless the bundle under
      test (same sha256) is already active;
    * :meth:`start` -- the first time, note the end of the hub's event log
      (``logs`` with ``since: "end"``) and send the ``restart`` op; each time,
      wait until a daemon with a new process id reports the bundle under test
      loaded (``status``). A fresh process per run: its own counters, clock
      anchor and Hello to the rig;
    * :meth:`kill` -- the ``restart`` op (what the workstation can do instead
      of SIGKILL; systemd's ``Restart=on-failure`` brings the daemon back);
    * :meth:`events` -- every event-log line since the run's start, fetched
      incrementally with the ``logs`` op's cursor (nothing lost to the 50-line
      default; a rotation that loses lines is an error), from the run's first
      ``start`` event on; copied to ``hub.events.jsonl``;
    * :meth:`request_health` -- the ``status`` op's ``daemon`` part;
    * :meth:`stop` -- nothing: the hub keeps running on its board.

    Args:
        port: Management port URL (``--hub-port``).
        workdir: Where the local copies (events, health, management log) go.
        bundle: The signed bundle under test.
        trust: Its public key(s).
        speed: The rig's replay speed (above 1 the hub must read ``clock=device``).
        reprovision: Replace a different trusted key on the hub (QA benches only).
        restart_wait_s: Seconds to wait for a restarted daemon.
        name: Prefix of the local files.
        progress: Called with one line per step.
    """

    mode = "remote"

    def __init__(self, port: str, workdir: Path, *, bundle: Path, trust: Sequence[Path], speed: float,
                 reprovision: bool = False, restart_wait_s: float = 90.0, name: str = "hub",
                 progress: Optional[Callable[[str], None]] = None) -> None:
        self.port = port
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bundle = Path(bundle)
        self.trust = [Path(k) for k in trust]
        self.speed = speed
        self.reprovision = reprovision
        self.restart_wait_s = restart_wait_s
        self.say = progress or (lambda text: None)
        self.events_path = self.workdir / f"{name}.events.jsonl"
        self.health_path = self.workdir / f"{name}.health.json"
        self.log_path = self.workdir / f"{name}.log"
        for old in (self.events_path, self.health_path, self.log_path):
            old.unlink(missing_ok=True)
        self.cmd = ["host", "--port", port]
        self.launches: List[float] = []
        self.pids: List[int] = []
        self.restarts_requested = 0
        self.sha256 = sha256_of(self.bundle)
        self.version: Optional[str] = None
        self._client: Any = None
        self._lock = threading.Lock()
        self._cursor: Any = None
        self._lines: List[str] = []
        self._fetches = 0
        self._active_folder: Optional[str] = None
        self._log_fh = open(self.log_path, "a")

    # ------------------------------------------------------------ management link
    def _log(self, text: str) -> None:
        self._log_fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self._log_fh.flush()

    def _call(self, op: str, body: Optional[Dict[str, Any]] = None, timeout: float = 5.0) -> Dict[str, Any]:
        return self._with_client(lambda client: client.call(op, body, timeout=timeout))

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def release(self) -> None:
        """Close the management port (before another program, e.g. ``host flash``, uses it)."""
        with self._lock:
            self._close()

    def cleanup(self) -> None:
        """After a run: release the port; the hub keeps running."""
        self.release()
        if not self._log_fh.closed:
            self._log_fh.close()

    def _host(self, argv: List[Any]) -> str:
        """Run a real ``host`` command against the hub (our port released meanwhile)."""
        from .fixtures import run_cli

        self.release()
        self._log("$ host " + " ".join(str(a) for a in argv))
        return run_cli("host", argv, self.log_path.with_name(self.log_path.stem + ".host.log"), timeout=900)

    # ------------------------------------------------------------ the bundle under test
    def prepare(self) -> Dict[str, Any]:
        """Trust the bundle's key and make the bundle under test the hub's active one.

        Raises:
            RigError: The hub is provisioned with another key (and ``reprovision`` is off),
                or the flash failed (the host command's message).
        """
        from edge.store import public_key_fingerprint
        from host.flash import read_manifest

        self.version = str(read_manifest(self.bundle)["model_version"])
        status = self._call("status")
        store = status.get("store") or {}
        have = list(store.get("trusted_keys") or [])
        want = {public_key_fingerprint(k.read_bytes()): k for k in self.trust}
        if not have or (self.reprovision and not set(have) & set(want)):
            key = self.trust[0]
            self.say(f"host provision --port {self.port} --trust {key.name}"
                     + (" --replace" if have else ""))
            self._host(["provision", "--port", self.port, "--trust", key, "--hub-id",
                        store.get("hub_id") or "hil-bench"] + (["--replace"] if have else []))
        elif not set(have) & set(want):
            raise RigError(f"hub on {self.port} trusts key(s) {', '.join(have)}, but the bundle under test is "
                           f"verified with {', '.join(want)} ({', '.join(str(k) for k in self.trust)}); "
                           f"re-provision the bench hub (host provision --port {self.port} --trust KEY.pub "
                           f"--replace) or pass --hub-reprovision to let the rig do it")
        active = store.get("active") or {}
        if active.get("sha256") != self.sha256:
            self.say(f"host flash {self.bundle.name} --port {self.port} --force (active: "
                     f"{active.get('version') or 'none'})")
            self._host(["flash", self.bundle, "--port", self.port, "--force", "--quiet", "--json"])
        status = self._call("status")
        active = (status.get("store") or {}).get("active") or {}
        if active.get("sha256") != self.sha256:
            raise RigError(f"hub on {self.port}: after host flash the active bundle is "
                           f"{active.get('version')} sha256 {str(active.get('sha256'))[:12]}, not the bundle "
                           f"under test {self.bundle} ({self.sha256[:12]})")
        self._active_folder = active.get("folder")
        return status

    # ------------------------------------------------------------ life cycle
    def describe(self) -> str:
        """One line for progress output."""
        return f"remote hub on {self.port} (bundle {self.version} {self.sha256[:12]})"

    def record(self) -> Dict[str, Any]:
        """What the rig notes about the hub in ``rig.json`` (proof that the remote path was used)."""
        return {"mode": self.mode, "port": self.port, "pids": self.pids, "restarts_requested": self.restarts_requested,
                "events_over_management_port": len(self._lines), "log_fetches": self._fetches,
                "cursor": self._cursor, "bundle_sha256": self.sha256}

    @property
    def starts(self) -> int:
        """Daemon processes that logged a ``start`` during the run (a crash restarted by systemd counts)."""
        return sum(1 for e in self.events() if e.get("type") == "start")

    @property
    def running(self) -> bool:
        """A remote daemon is assumed running (systemd keeps it so); see :meth:`check_alive`."""
        return True

    def _status(self) -> Dict[str, Any]:
        return self._call("status", timeout=2.0)

    def _restart(self) -> None:
        from edge.manage import HubUnreachable

        old = self.pids[-1] if self.pids else None
        try:
            answer = self._call("restart")
        except HubUnreachable as exc:
            raise RigError(f"hub on {self.port}: no answer to the restart op ({exc})") from None
        self.restarts_requested += 1
        self._log(f"restart requested: {answer}")
        if old is None and isinstance(answer.get("pid"), int):
            self.pids.append(int(answer["pid"]))

    def start(self) -> "RemoteHub":
        """Restart the daemon (first call) and wait for a new process with the bundle under test.

        Raises:
            RigError: No new daemon within ``restart_wait_s``, or it loaded
                another bundle, or it reads its sensors on the host clock at
                a replay speed above 1.
        """
        from edge.manage import HubRefused, HubUnreachable

        if self._cursor is None:
            if self._active_folder is None:
                self.prepare()
            _, self._cursor, _ = self._fetch("end")
            self._restart()
        old = set(self.pids)
        deadline = time.monotonic() + self.restart_wait_s
        last = "no answer"
        while True:
            try:
                st = self._status()
                daemon = st.get("daemon") or {}
                pid, model = daemon.get("pid"), daemon.get("model") or {}
                if isinstance(pid, int) and pid not in old and model:
                    break
                last = f"pid {pid}, model {model.get('model_version')}, error {daemon.get('model_error')}"
            except (HubUnreachable, HubRefused) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise RigError(f"hub on {self.port}: no restarted daemon within {self.restart_wait_s:.0f} s "
                               f"(last: {last}); is it run by systemd with Restart=on-failure?")
            time.sleep(0.1)
        self.pids.append(pid)
        self.launches.append(time.monotonic())
        self._log(f"daemon pid {pid} up with {model.get('model_version')} ({model.get('path')})")
        if not str(model.get("path", "")).endswith(f"{self._active_folder}/bundle.lgb"):
            raise RigError(f"hub on {self.port}: the restarted daemon runs {model.get('path')}, not the bundle "
                           f"under test (store folder {self._active_folder})")
        url = str((daemon.get("source") or {}).get("url", ""))
        if self.speed != 1 and "clock=device" not in url:
            raise RigError(f"hub on {self.port} reads {url or 'its source'} on the host clock; at --hil-speed "
                           f"{self.speed:g} its windows would be {self.speed:g} times too short. Configure the "
                           f"hub's source with ?clock=device (docs/qa.md, Bench) or run with --hil-speed 1")
        return self

    def kill(self) -> None:
        """Restart the daemon mid-run over the management port (instead of SIGKILL)."""
        self._restart()

    def check_alive(self) -> None:
        """Nothing to check locally: a daemon that died shows as an extra ``start`` (systemd) or no lifts."""

    def request_health(self, timeout: float = 5.0) -> Dict[str, Any]:
        """The ``status`` op's daemon part (also written to ``hub.health.json``).

        Raises:
            RigError: No answer, or a daemon other than the run's last one answered.
        """
        from edge.manage import HubRefused, HubUnreachable

        try:
            st = self._call("status", timeout=timeout)
        except (HubUnreachable, HubRefused) as exc:
            raise RigError(f"hub on {self.port}: no health ({exc})") from None
        daemon = dict(st.get("daemon") or {})
        if self.pids and daemon.get("pid") != self.pids[-1]:
            raise RigError(f"hub on {self.port}: daemon pid {daemon.get('pid')} answered, but the run's daemon "
                           f"was {self.pids[-1]} (it restarted on its own; see {self.events_path})")
        self.health_path.write_text(json.dumps(st, indent=1, default=str) + "\n")
        return daemon

    def stop(self, timeout: float = 20.0) -> int:
        """The remote daemon keeps running (returns 0)."""
        return 0

    def _fetch(self, since: Any) -> Tuple[List[str], Any, bool]:
        lines, cursor, lost = self._with_client(lambda c: c.log_since(since))
        self._fetches += 1
        return lines, cursor, lost

    def _with_client(self, fn: Callable[[Any], Any]) -> Any:
        from edge.manage import HubUnreachable, ManagementClient

        with self._lock:
            if self._client is None:
                self._client = ManagementClient(self.port, timeout=5.0)
            try:
                return fn(self._client)
            except HubUnreachable:
                self._close()
                raise

    def events(self) -> List[Dict[str, Any]]:
        """Every event-log line of this run so far, fetched over the management port.

        Raises:
            RigError: Lines were rotated away before they could be fetched, or a line is not JSON.
        """
        if self._cursor is None:
            return []
        new, self._cursor, lost = self._fetch(self._cursor)
        if lost:
            raise RigError(f"hub on {self.port}: event-log lines were rotated away before the rig fetched them "
                           f"(raise [events] max_bytes on the bench hub)")
        if new:
            self._lines += new
            with open(self.events_path, "a", encoding="utf-8") as fh:
                fh.write("\n".join(new) + "\n")
        out: List[Dict[str, Any]] = []
        for i, line in enumerate(self._lines, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RigError(f"hub on {self.port}: event-log line {i} fetched is not JSON ({exc.msg}): "
                               f"{line[:80]!r}") from None
        first = next((i for i, e in enumerate(out) if e.get("type") == "start"), len(out))
        return out[first:]  # the previous daemon's stop line comes first

    def wait_for(self, predicate: Callable[[List[Dict[str, Any]]], bool], timeout: float, what: str) -> None:
        """Wait until ``predicate(events)`` holds; raise naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events()):
                return
            time.sleep(0.1)
        raise RigError(f"hub on {self.port}: {what} not seen within {timeout:.0f} s")


# --------------------------------------------------------------------------
# the sensor rig
# --------------------------------------------------------------------------
def _observed_emulator_class():
    from edge.protocol import Hello
    from host.sensorhub_emulator import SensorHubEmulator

    class ObservedEmulator(SensorHubEmulator):
        """The emulator, noting when each Hello (a hub opening the port) arrives."""

        def __init__(self, *args: Any, play_after_hello: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            #: ``(monotonic time, playback position)`` at each Hello.
            self.hellos: List[Tuple[float, int]] = []
            #: Hellos before this monotonic time neither start playback nor count as a hub opening the link.
            self.armed_at = 0.0
            self._hello_gate = threading.Event() if play_after_hello else None

        def _answer(self, message: Any) -> None:  # noqa: D401 - extends the emulator's handler
            if isinstance(message, Hello):
                now = time.monotonic()
                self.hellos.append((now, self.position))
                if self._hello_gate is not None and now >= self.armed_at:
                    self._hello_gate.set()
            super()._answer(message)

        def _run(self) -> None:
            # A real serial port has no "reader opened it" signal: with play_after_hello the
            # recording starts when the hub under test sends Hello (its daemon opened the link).
            if self._hello_gate is not None:
                while not self._stop.is_set() and not self._hello_gate.is_set():
                    self._service_rx(0.02)
            super()._run()

        def hellos_since_armed(self) -> List[Tuple[float, int]]:
            """The Hellos of the hub processes of this run."""
            return [(t, p) for t, p in self.hellos if t >= self.armed_at]

    return ObservedEmulator


class SensorRig:
    """The sensor hub emulator playing a stream (``host emulate``'s engine).

    Args:
        stream: What to play.
        workdir: Where the pty link lives.
        speed: Multiple of real time.
        faults: A :class:`host.sensorhub_emulator.FaultPlan` (None: clean).
        port: A real serial port (``--rig-port``) instead of a new pty.
        play_after_hello: Start the recording at the first Hello after
            ``emulator.armed_at`` (a hub on another board, whose opening of
            the port the rig cannot see).
    """

    def __init__(self, stream: Stream, workdir: Path, *, speed: float, faults: Any = None,
                 port: Optional[str] = None, play_after_hello: bool = False) -> None:
        cls = _observed_emulator_class()
        self.stream = stream
        self.link = Path(workdir) / "rig.tty"
        self.emulator = cls(port, stream.samples, stream.timestamps, speed=speed, faults=faults,
                            pty_link=None if port else self.link, play_after_hello=play_after_hello)

    def start(self) -> "SensorRig":
        """Open the port; playback starts when the hub opens it."""
        self.emulator.start()
        return self

    @property
    def url(self) -> str:
        """The hub's ``--source`` URL for this rig."""
        return self.emulator.url(clock="device")

    def stop(self) -> None:
        """Stop playing; safe twice."""
        self.emulator.stop()


# --------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
    """What happened while a stream was played into the hub.

    Attributes:
        stream: What was played.
        events: Every event-log line.
        detections: Lift windows (classified ones and skipped ones), stream seconds.
        skipped: Event-log ``skipped`` lines.
        buzzes_s: Buzz commands the rig received, stream seconds.
        rig_counters: The emulator's counters (frames sent, dropped, ...).
        hub_health: The daemon's last health (SIGUSR1) before it was stopped.
        stop_counts: Counts in the daemon's ``stop`` events, summed.
        wall_s: Wall-clock duration of the playback.
        starts: Number of hub processes that ran (restarts + 1).
        notes: Free text (restart and flash times, ...).
        hello_s: Stream time at which each hub process opened the port.
        marks: Stream times noted during the run (``"kill"``, ``"action_start"``, ``"action_end"``).
        hub: What the rig noted about the hub (``mode`` local/remote; for a
            remote hub its port, process ids and the lines fetched over the
            management port).
    """

    stream: Stream
    events: List[Dict[str, Any]]
    detections: List[Detection]
    skipped: List[Dict[str, Any]]
    buzzes_s: List[float]
    rig_counters: Dict[str, int]
    hub_health: Dict[str, Any]
    stop_counts: Dict[str, int]
    wall_s: float
    starts: int
    notes: List[str]
    hello_s: List[float] = dataclasses.field(default_factory=list)
    marks: Dict[str, float] = dataclasses.field(default_factory=dict)
    hub: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def lift_events(self) -> List[Dict[str, Any]]:
        """The classified lifts."""
        return [e for e in self.events if e.get("type") == "lift"]


def links(options: Dict[str, Any]) -> Dict[str, Any]:
    """The :func:`play` keywords that say where the hub and the rig are, from the ``hil_options`` fixture."""
    return {"speed": options["speed"], "rig_port": options["rig_port"], "hub_port": options["hub_port"],
            "reprovision": bool(options.get("reprovision", False))}


def window_offset(event: Dict[str, Any], device_origin_s: float) -> float:
    """``K`` with ``stream_s = t_grid - K`` for one lift/skipped event, from the clock anchor it carries.

    Args:
        event: An event-log line with ``clock: {"host_s", "device_s"}``.
        device_origin_s: The rig's device time of the stream's first sample, seconds.

    Raises:
        RigError: The event carries no clock anchor (a hub build without it, or a source other than serial).
    """
    clock = event.get("clock")
    if not isinstance(clock, dict) or "host_s" not in clock or "device_s" not in clock:
        raise RigError(f"hub event {event.get('type')} at rows {(event.get('lift') or {}).get('start')}: no clock "
                       f"anchor ('clock': {{host_s, device_s}}); the hub under test must be a build whose serial "
                       f"source reports it (edge.sources.serial_hub clock_anchor)")
    return float(clock["host_s"]) - float(clock["device_s"]) + device_origin_s


def to_detections(events: List[Dict[str, Any]], device_origin_s: float, buzzes_s: List[float],
                  rate_hz: float = SAMPLE_RATE_HZ) -> Tuple[List[Detection], List[Dict[str, Any]]]:
    """Convert event-log lifts into :class:`Detection` on the stream clock.

    Args:
        events: The event log.
        device_origin_s: The sensor hub's device time of the stream's first
            sample, seconds (``emulator.t_us[0] / 1e6``); each event's own
            clock anchor does the rest (:func:`window_offset`).
        buzzes_s: Buzzes the rig received, stream seconds (paired to buzzed
            lifts: the first unclaimed buzz at or after the window's last sample).
        rate_hz: Grid rate.

    Returns:
        Detections (classified and skipped windows) and the skipped events.
    """
    dets: List[Detection] = []
    skipped: List[Dict[str, Any]] = []
    free = sorted(buzzes_s)
    claimed = [False] * len(free)
    for e in events:
        kind = e.get("type")
        if kind not in ("lift", "skipped"):
            continue
        k = window_offset(e, device_origin_s)
        lift = e.get("lift") or {}
        t0, t1 = float(lift["t_start"]) - k, float(lift["t_end"]) - k
        first_s = t0 - (int(lift["start"]) - int(lift["first"])) / rate_hz
        last_s = first_s + (int(lift["samples"]) - 1) / rate_hz
        if kind == "skipped":
            skipped.append(e)
            dets.append(Detection(t0, t1, "skipped", False, None, None, last_s))
            continue
        buzz_s = None
        if e.get("buzzed"):
            for i, b in enumerate(free):
                if not claimed[i] and b >= last_s - 0.2:
                    claimed[i] = True
                    buzz_s = b
                    break
        alert_ms = e.get("last_sample_to_alert_ms", e.get("ready_to_alert_ms"))
        dets.append(Detection(t0, t1, e["risk"], bool(e.get("buzzed")), buzz_s, e.get("latency_ms"),
                              last_s, alert_ms, e.get("model_version")))
    return dets, skipped


def play(stream: Stream, workdir: Path, *, bundle: Optional[Path] = None, trust: Sequence[Path] = (),
         bundle_store: Optional[Path] = None, manage_port: Optional[str] = None, speed: float = 60.0,
         faults: Any = None, rig_port: Optional[str] = None, hub_port: Optional[str] = None,
         reprovision: bool = False,
         restart_at_s: Optional[float] = None, restart_down_s: float = 0.0,
         during: Optional[Tuple[float, Callable[[], None]]] = None,
         settle_s: float = 3.0, timeout_s: Optional[float] = None,
         progress: Optional[Callable[[str], None]] = None) -> RunResult:
    """Play ``stream`` through the rig into a fresh hub process and collect the results.

    Args:
        stream: What to play.
        workdir: Folder for this run's files (created).
        bundle / trust / bundle_store / manage_port: The hub's model (see :class:`HubProcess`).
            With ``hub_port`` only ``bundle`` and ``trust``: they are installed on the remote hub.
        speed: Multiple of real time.
        faults: The rig's :class:`~host.sensorhub_emulator.FaultPlan`.
        rig_port: Play into this serial port instead of a pty.
        hub_port: The management port of a hub on another board (:class:`RemoteHub`); needs ``rig_port``.
        reprovision: With ``hub_port``: replace a different trusted key on the hub.
        restart_at_s: When playback reaches this stream time, SIGKILL the hub and start it again
            after ``restart_down_s`` wall seconds (with ``hub_port``: the ``restart`` op; systemd
            brings the daemon back after its RestartSec).
        during: ``(stream_s, action)``: call ``action()`` (in a thread) when playback reaches it;
            its start and end stream times are kept in ``marks``. With ``hub_port`` the rig
            releases the management port first, so the action may use it.
        settle_s: Wall seconds to wait after the last sample for the last lifts.
        timeout_s: Wall-clock limit (default: twice the expected playback time + 60 s).
        progress: Called with one line per step.

    Returns:
        The :class:`RunResult`.

    Raises:
        RigError: The hub died, stalled or never opened the port.
    """
    say = progress or (lambda text: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    hub: Any
    if hub_port:
        if not rig_port:
            raise RigError(f"--hub-port {hub_port} needs --rig-port PORT: the serial port wired to that hub's "
                           f"sensor input (the rig plays into it)")
        if bundle is None or bundle_store is not None or manage_port is not None:
            raise RigError("with --hub-port the hub's own store and management port are used: give the bundle "
                           "under test (bundle=...), not bundle_store/manage_port")
        hub = RemoteHub(hub_port, workdir, bundle=bundle, trust=trust, speed=speed, reprovision=reprovision,
                        progress=say)
        try:
            hub.prepare()
        except BaseException:
            hub.cleanup()
            raise
    rig = SensorRig(stream, workdir, speed=speed, faults=faults, port=rig_port,
                    play_after_hello=bool(hub_port)).start()
    if not hub_port:
        hub = HubProcess(workdir, source_url=rig.url, bundle=bundle, trust=trust, bundle_store=bundle_store,
                         manage_port=manage_port)
    emu = rig.emulator
    expected = stream.duration_s / max(speed, 1e-9)
    limit = timeout_s if timeout_s is not None else 2 * expected + 60.0
    notes: List[str] = []
    marks: Dict[str, float] = {}
    action_thread: Optional[threading.Thread] = None
    action_error: List[BaseException] = []
    health: Dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        emu.armed_at = time.monotonic()
        hub.start()
        say(f"hub under test started: {hub.describe()}")
        restarted = restart_at_s is None
        acted = during is None
        deadline = time.monotonic() + limit
        while not emu.finished.is_set():
            if time.monotonic() > deadline:
                raise RigError(f"playback of {stream.name} not finished within {limit:.0f} s "
                               f"(position {emu.position} of {emu.n}); hub log: {tail(hub.log_path, 3)}")
            if restarted:
                hub.check_alive()
            pos = emu.position
            rel = stream.rel(pos) if pos >= 0 else -1.0
            if not restarted and rel >= restart_at_s:
                hub.kill()
                marks["kill"] = rel
                notes.append(f"hub {'SIGKILLed' if hub.mode == 'local' else 'restart requested'} at stream "
                             f"{rel:.1f} s")
                say(notes[-1])
                if hub.mode == "local":
                    time.sleep(restart_down_s)
                hub.start()
                restarted = True
            if not acted and rel >= during[0]:
                hub.release()

                def runner() -> None:
                    try:
                        during[1]()
                    except BaseException as exc:  # noqa: BLE001 - reported after the run
                        action_error.append(exc)
                    finally:
                        marks["action_end"] = stream.rel(max(emu.position, 0))
                action_thread = threading.Thread(target=runner, name="hil-during", daemon=True)
                marks["action_start"] = rel
                action_thread.start()
                notes.append(f"action started at stream {rel:.1f} s")
                acted = True
            emu.wait(0.02)
        emu.wait(0)  # raises if the playing thread failed
        wall = time.monotonic() - t_start
        say(f"played {stream.duration_s / 60:.1f} min of {stream.name} in {wall:.1f} s")
        if action_thread is not None:
            action_thread.join(timeout=max(30.0, limit))
        _wait_quiet(hub, settle_s)
        hub.check_alive()
        health = hub.request_health()
        status = hub.stop()
        if status != 0:
            raise RigError(f"hub under test exited with {status} on SIGTERM; log tail: {tail(hub.log_path, 4)}")
        events = hub.events()
        starts = hub.starts
    finally:
        hub.cleanup()
        rig.stop()
    if action_error:
        raise RigError(f"the mid-stream action failed: {action_error[0]}")
    hellos = emu.hellos_since_armed()
    buzzes_s = [float(b.t_recording - stream.timestamps[0]) for b in emu.buzz_records]
    detections, skipped = to_detections(events, float(emu.t_us[0]) / 1e6, buzzes_s)
    stop_counts: Dict[str, int] = {}
    for e in events:
        if e.get("type") == "stop":
            for k, v in (e.get("counts") or {}).items():
                stop_counts[k] = stop_counts.get(k, 0) + int(v)
    hello_s = [stream.rel(max(0, min(p + 1, len(stream.timestamps) - 1))) for _, p in hellos]
    (workdir / "rig.json").write_text(json.dumps({
        "stream": str(stream.source), "speed": speed, "faults": repr(faults), "counters": emu.counters,
        "hellos": hellos, "hello_s": hello_s, "marks": marks, "notes": notes, "hub": hub.record(),
        "buzzes": [dataclasses.asdict(b) for b in emu.buzz_records], "buzzes_s": buzzes_s,
        "wall_s": wall}, indent=1, default=str) + "\n")
    return RunResult(stream, events, detections, skipped, buzzes_s, dict(emu.counters), health, stop_counts,
                     wall, starts, notes, hello_s, marks, hub.record())


def _wait_quiet(hub: Any, settle_s: float, limit_s: float = 30.0) -> None:
    """Wait until no lift has been logged for ``settle_s`` wall seconds (``limit_s`` at most).

    Only ``lift`` and ``skipped`` lines count: after the recording ends the
    rig keeps sending Status, so link-state lines go on appearing.
    """
    last, since, t_end = -1, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < t_end:
        n = sum(1 for e in hub.events() if e.get("type") in ("lift", "skipped"))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return
        time.sleep(0.1)


def tail(path: Path, n: int) -> str:
    """The last ``n`` non-empty lines of a text file, joined with " / "."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"(no log at {path})"
    return " / ".join(lines[-n:])


# --------------------------------------------------------------------------
# offline reference
# --------------------------------------------------------------------------
def classify_offline(bundle: Path, trust: Sequence[Path], data_dir: Path, out_csv: Path, *,
                     markers: str = "detector") -> Dict[str, Dict[str, str]]:
    """Run ``edge classify`` (the int8 model, offline) and return its rows by trial id.

    Raises:
        RigError: If the command fails (its last lines quoted).
    """
    cmd = [sys.executable, "-m", "edge", "classify", "--bundle", str(bundle), "--data", str(data_dir),
           "--out", str(out_csv), "--markers", markers]
    for key in trust:
        cmd += ["--trust", str(key)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RigError(f"edge classify failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
    with open(out_csv, newline="", encoding="utf-8") as fh:
        return {row["trial_id"]: row for row in csv.DictReader(fh)}


def hub_buzz_per_trial(result: RunResult) -> Dict[str, bool]:
    """For a data set stream: whether the hub buzzed for each trial.

    A buzz belongs to the trial whose lift window it follows: the buzzed
    detection's window lies within the trial's span.
    """
    out = {tid: False for tid in result.stream.trial_spans}
    for d in result.detections:
        if not d.buzzed:
            continue
        for tid, (a, b) in result.stream.trial_spans.items():
            if a - 0.5 <= d.start_s <= b + 0.5:
                out[tid] = True
                break
    return out
