"""Drive the hub under test with the sensor rig and collect what it did.

The pieces are the real ones:

* :class:`HubProcess` runs ``python -m edge run`` (the daemon a belt hub runs)
  as a subprocess reading ``serial://<pty>?clock=device``, alerting through
  ``hub`` (the Buzz command back to the sensor hub, which the rig records)
  and a mock gpiozero pin, and writing its JSON-lines event log;
* :class:`SensorRig` is :class:`host.sensorhub_emulator.SensorHubEmulator`
  (what ``host emulate`` runs) playing a :class:`Stream` into a
  pseudo-terminal (or ``--rig-port``) at N times real time with a seeded
  :class:`~host.sensorhub_emulator.FaultPlan`;
* :func:`play` starts both, optionally kills and restarts the hub or flashes
  a new bundle mid-stream, and returns a :class:`RunResult` whose
  detections are on the stream's own clock (see :mod:`hil_tests.scoring`).

Clock mapping. With ``clock=device`` the hub's grid time is
``t_grid = anchor_host + (t_device - anchor_device)``, where the anchor is the
first frame the hub process read (``edge.sources.serial_hub``) and
``anchor_host`` its monotonic arrival time (CLOCK_MONOTONIC is shared by every
process on the machine). The hub sends ``Hello`` when it opens the port; the
rig notes the monotonic time and its playback position at that moment, so
``stream_s = t_grid - hello_time + stream_s(anchor frame)`` to within a few
frames. Each hub process (a restart makes a new one) gets its own anchor.
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


# --------------------------------------------------------------------------
# the sensor rig
# --------------------------------------------------------------------------
def _observed_emulator_class():
    from edge.protocol import Hello
    from host.sensorhub_emulator import SensorHubEmulator

    class ObservedEmulator(SensorHubEmulator):
        """The emulator, noting when each Hello (a hub opening the port) arrives."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            #: ``(monotonic time, playback position)`` at each Hello.
            self.hellos: List[Tuple[float, int]] = []

        def _answer(self, message: Any) -> None:  # noqa: D401 - extends the emulator's handler
            if isinstance(message, Hello):
                self.hellos.append((time.monotonic(), self.position))
            super()._answer(message)

    return ObservedEmulator


class SensorRig:
    """The sensor hub emulator playing a stream (``host emulate``'s engine).

    Args:
        stream: What to play.
        workdir: Where the pty link lives.
        speed: Multiple of real time.
        faults: A :class:`host.sensorhub_emulator.FaultPlan` (None: clean).
        port: A real serial port (``--rig-port``) instead of a new pty.
    """

    def __init__(self, stream: Stream, workdir: Path, *, speed: float, faults: Any = None,
                 port: Optional[str] = None) -> None:
        cls = _observed_emulator_class()
        self.stream = stream
        self.link = Path(workdir) / "rig.tty"
        self.emulator = cls(port, stream.samples, stream.timestamps, speed=speed, faults=faults,
                            pty_link=None if port else self.link)

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

    def lift_events(self) -> List[Dict[str, Any]]:
        """The classified lifts."""
        return [e for e in self.events if e.get("type") == "lift"]


def _segments(events: List[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    """Split the event log into one list per hub process (each begins with ``start``)."""
    segs: List[List[Dict[str, Any]]] = []
    for e in events:
        if e.get("type") == "start" or not segs:
            segs.append([])
        segs[-1].append(e)
    return segs


def to_detections(events: List[Dict[str, Any]], anchors: List[float], buzzes_s: List[float],
                  rate_hz: float = SAMPLE_RATE_HZ) -> Tuple[List[Detection], List[Dict[str, Any]]]:
    """Convert event-log lifts into :class:`Detection` on the stream clock.

    Args:
        events: The event log.
        anchors: Per hub process, ``K`` with ``stream_s = t_grid - K``.
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
    segs = _segments(events)
    if len(anchors) < len([s for s in segs if s and s[0].get("type") == "start"]):
        raise RigError(f"{len(segs)} hub processes in the event log but only {len(anchors)} clock anchors "
                       f"(a Hello from each hub is needed)")
    for seg_no, seg in enumerate(segs):
        k = anchors[min(seg_no, len(anchors) - 1)]
        for e in seg:
            kind = e.get("type")
            if kind not in ("lift", "skipped"):
                continue
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
         faults: Any = None, rig_port: Optional[str] = None,
         restart_at_s: Optional[float] = None, restart_down_s: float = 0.0,
         during: Optional[Tuple[float, Callable[[], None]]] = None,
         settle_s: float = 3.0, timeout_s: Optional[float] = None,
         progress: Optional[Callable[[str], None]] = None) -> RunResult:
    """Play ``stream`` through the rig into a fresh hub process and collect the results.

    Args:
        stream: What to play.
        workdir: Folder for this run's files (created).
        bundle / trust / bundle_store / manage_port: The hub's model (see :class:`HubProcess`).
        speed: Multiple of real time.
        faults: The rig's :class:`~host.sensorhub_emulator.FaultPlan`.
        rig_port: Play into this serial port instead of a pty.
        restart_at_s: SIGKILL the hub when playback reaches this stream time and start it again
            after ``restart_down_s`` wall seconds.
        during: ``(stream_s, action)``: call ``action()`` (in a thread) when playback reaches it;
            its start and end stream times are kept in ``marks``.
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
    rig = SensorRig(stream, workdir, speed=speed, faults=faults, port=rig_port).start()
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
        hub.start()
        say(f"hub under test started: {' '.join(hub.cmd[3:])}")
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
                notes.append(f"hub SIGKILLed at stream {rel:.1f} s")
                say(notes[-1])
                time.sleep(restart_down_s)
                hub.start()
                restarted = True
            if not acted and rel >= during[0]:
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
    finally:
        hub.kill()
        rig.stop()
    if action_error:
        raise RigError(f"the mid-stream action failed: {action_error[0]}")
    events = hub.events()
    hellos = list(emu.hellos)
    anchors = _anchors(hellos, hub.launches, stream)
    buzzes_s = [float(b.t_recording - stream.timestamps[0]) for b in emu.buzz_records]
    detections, skipped = to_detections(events, anchors, buzzes_s)
    stop_counts: Dict[str, int] = {}
    for e in events:
        if e.get("type") == "stop":
            for k, v in (e.get("counts") or {}).items():
                stop_counts[k] = stop_counts.get(k, 0) + int(v)
    hello_s = [stream.rel(max(0, min(p + 1, len(stream.timestamps) - 1))) for _, p in hellos]
    (workdir / "rig.json").write_text(json.dumps({
        "stream": str(stream.source), "speed": speed, "faults": repr(faults), "counters": emu.counters,
        "hellos": hellos, "anchors": anchors, "hello_s": hello_s, "marks": marks, "notes": notes,
        "buzzes": [dataclasses.asdict(b) for b in emu.buzz_records], "buzzes_s": buzzes_s,
        "wall_s": wall}, indent=1, default=str) + "\n")
    return RunResult(stream, events, detections, skipped, buzzes_s, dict(emu.counters), health, stop_counts,
                     wall, len(hub.launches), notes, hello_s, marks)


def _anchors(hellos: List[Tuple[float, int]], launches: List[float], stream: Stream) -> List[float]:
    """Per hub process, ``K = hello_time - stream_s(first frame after the Hello)``."""
    anchors = []
    for i, t_launch in enumerate(launches):
        t_next = launches[i + 1] if i + 1 < len(launches) else float("inf")
        mine = [(t, p) for t, p in hellos if t_launch <= t < t_next]
        if not mine:
            raise RigError(f"hub process {i + 1} never sent Hello to the rig (it did not open the port)")
        t, pos = mine[0]
        anchors.append(t - stream.rel(min(pos + 1, len(stream.timestamps) - 1)))
    return anchors


def _wait_quiet(hub: HubProcess, settle_s: float, limit_s: float = 30.0) -> None:
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
