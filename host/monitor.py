"""``host monitor --source URL`` or ``--port PORT``: a live view of the six sensors.

With ``--source`` the laptop reads the IMUs itself (any source URL: a sensor
hub on serial, six BLE IMUs, a replay) and shows, per sensor, the sample
rate over the last ``--window`` seconds, sequence gaps and missed samples,
the signal level (RMS of the accelerometer magnitude's deviation from its
mean, in g, and of the gyroscope magnitude, in deg/s), its state and the age
of its last sample; for the link, battery and faults where the sensor hub
reports them; and the latest status events.

With ``--port`` it asks a running hub over its management port (status and
log) and shows what the hub's daemon sees: each sensor's state and reading
rate (from the aligner's counters between two polls), gap rows, the model,
the lift counts, battery and faults, and the latest events of the hub's log.
Signal levels are not part of the hub's status, so that column is empty.

The view refreshes every ``--interval`` seconds until Ctrl-C. ``--once``
prints one snapshot (after ``--window`` seconds of reading with
``--source``) and exits; with ``--json`` the snapshot is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import signal
import sys
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from .common import DEFAULT_BAUD, add_json_argument, emit

HELP = "live per-sensor view: rate, gaps, signal level, battery/faults, latest events"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``monitor``'s flags."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--source", metavar="URL", help="read the IMUs directly (serial://, ble://, replay://, ...)")
    where.add_argument("--port", metavar="PORT", help="ask a running hub over its management port")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate (default {DEFAULT_BAUD})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the hub's reply")
    parser.add_argument("--window", type=float, default=3.0, metavar="S",
                        help="seconds of data behind each rate and level (default 3)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S", help="refresh period (default 1 s)")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    add_json_argument(parser)


class SensorStats:
    """Rolling statistics of one sensor's readings.

    Args:
        name: Sensor name.
        window_s: Length of the rolling window (host time), seconds.
    """

    def __init__(self, name: str, window_s: float) -> None:
        self.name = name
        self.window_s = window_s
        self.samples: Deque[Tuple[float, np.ndarray]] = collections.deque()
        self.readings = 0
        self.gaps = 0
        self.missed = 0
        self.repeats = 0
        self.last_seq: Optional[int] = None
        self.last_t: Optional[float] = None
        self.state = "waiting"
        self.detail = ""

    def add(self, seq: int, t_host: float, values: np.ndarray) -> None:
        """Count one reading."""
        self.readings += 1
        if self.last_seq is not None:
            step = int(seq) - self.last_seq
            if step > 1:
                self.gaps += 1
                self.missed += step - 1
            elif step <= 0:
                self.repeats += 1
        self.last_seq = int(seq)
        self.last_t = t_host
        if self.state in ("waiting", "lost", "reconnecting"):
            self.state = "live"
        self.samples.append((t_host, np.asarray(values, np.float64)))
        self._trim(t_host)

    def _trim(self, now: float) -> None:
        while self.samples and self.samples[0][0] < now - self.window_s:
            self.samples.popleft()

    def snapshot(self, now: float) -> Dict[str, Any]:
        """Rate, gaps, level, state and age at ``now``."""
        self._trim(now)
        n = len(self.samples)
        rate = None
        if n >= 2:
            span = self.samples[-1][0] - self.samples[0][0]
            rate = (n - 1) / span if span > 0 else None
        accel_rms = gyro_rms = None
        if n >= 2:
            vals = np.stack([v for _, v in self.samples])
            acc = np.linalg.norm(vals[:, :3], axis=1)
            gyr = np.linalg.norm(vals[:, 3:6], axis=1)
            if np.isfinite(acc).all():
                accel_rms = float(np.sqrt(np.mean((acc - acc.mean()) ** 2)))
            if np.isfinite(gyr).all():
                gyro_rms = float(np.sqrt(np.mean(gyr ** 2)))
        return {"state": self.state, "rate_hz": None if rate is None else round(rate, 2),
                "readings": self.readings, "gaps": self.gaps, "missed": self.missed, "repeats": self.repeats,
                "accel_rms_g": None if accel_rms is None else round(accel_rms, 4),
                "gyro_rms_dps": None if gyro_rms is None else round(gyro_rms, 2),
                "age_s": None if self.last_t is None else round(max(0.0, now - self.last_t), 2),
                "detail": self.detail}


class SourceMonitor:
    """Statistics over a source's event stream (no I/O of its own)."""

    def __init__(self, window_s: float = 3.0, max_events: int = 8) -> None:
        from edge.layout import SENSORS

        self.sensors = {s: SensorStats(s, window_s) for s in SENSORS}
        self.events: Deque[str] = collections.deque(maxlen=max_events)
        self.unknown = 0
        self.started = time.monotonic()

    def feed(self, event: Any) -> None:
        """Take one :class:`SensorReading` or :class:`SourceStatus`."""
        from edge.sources import SensorReading, SourceStatus

        if isinstance(event, SensorReading):
            stats = self.sensors.get(event.sensor)
            if stats is None:
                self.unknown += 1
                return
            stats.add(event.seq, event.t_host, event.values)
        elif isinstance(event, SourceStatus):
            stamp = time.strftime("%H:%M:%S")
            self.events.append(f"{stamp} {event.sensor or 'link'} {event.state}: {event.detail}".rstrip(": "))
            if event.sensor in self.sensors:
                self.sensors[event.sensor].state = event.state
                self.sensors[event.sensor].detail = event.detail

    def snapshot(self, now: float, link: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Everything the view shows, JSON-able."""
        link = link or {}
        return {"mode": "source", "sensors": {n: s.snapshot(now) for n, s in self.sensors.items()},
                "battery_pct": link.get("battery_pct"), "faults": link.get("faults") or [],
                "link": {k: link.get(k) for k in ("url", "state", "device_id", "firmware_version") if k in link},
                "events": list(self.events), "elapsed_s": round(now - self.started, 1)}


def _fmt(v: Any, spec: str) -> str:
    """Format ``v`` with ``spec``; a missing value is a right-aligned '-' of the same width."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 1)
        return "-".rjust(width)
    return format(v, spec)


def render(snap: Dict[str, Any]) -> str:
    """The terminal view of a snapshot."""
    lines = []
    head = f"{'sensor':<6} {'state':<12} {'rate Hz':>8} {'gaps':>5} {'missed':>6} {'acc rms g':>9} {'gyro rms':>9} {'age s':>6}"
    if snap.get("mode") == "hub":
        lines.append(f"hub {snap.get('hub_id') or '?'}  model {snap.get('model') or 'none'}  "
                     f"lifts {snap.get('counts', {}).get('lifts', 0)}  buzzes {snap.get('counts', {}).get('buzzes', 0)}  "
                     f"skipped {snap.get('counts', {}).get('skipped', 0)}")
    else:
        link = snap.get("link") or {}
        lines.append(f"source {link.get('url', '')} {link.get('state', '')} {link.get('device_id') or ''}".rstrip())
    lines.append(head)
    for name, s in snap["sensors"].items():
        lines.append(f"{name:<6} {s.get('state', '?'):<12} {_fmt(s.get('rate_hz'), '8.2f')} "
                     f"{_fmt(s.get('gaps'), '5d')} {_fmt(s.get('missed'), '6d')} "
                     f"{_fmt(s.get('accel_rms_g'), '9.3f')} {_fmt(s.get('gyro_rms_dps'), '9.1f')} "
                     f"{_fmt(s.get('age_s'), '6.1f')}")
    battery = snap.get("battery_pct")
    lines.append(f"battery {str(battery) + '%' if battery is not None else 'not reported'}   "
                 f"faults {', '.join(map(str, snap.get('faults') or [])) or 'none'}")
    lines.append("latest events:")
    lines.extend(f"  {e}" for e in (snap.get("events") or ["(none)"]))
    return "\n".join(lines)


def _show(args: argparse.Namespace, snap: Dict[str, Any], live: bool) -> None:
    if args.json:
        emit(args, snap)
    elif live and sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[2J" + render(snap) + "\n")
        sys.stdout.flush()
    else:
        emit(args, snap, render(snap) + ("\n" if live else ""))


async def _watch_source(args: argparse.Namespace) -> int:
    from edge.sources import open_source

    monitor = SourceMonitor(args.window)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):
        pass
    t0 = time.monotonic()
    until = t0 + (args.window if args.once else (args.duration or math.inf))
    next_draw = t0 + args.interval
    source = open_source(args.source)
    snap = None
    try:
        async with source:
            events = source.events().__aiter__()
            while not stop.is_set() and time.monotonic() < until:
                try:
                    ev = await asyncio.wait_for(events.__anext__(), timeout=min(0.2, args.interval))
                    monitor.feed(ev)
                except asyncio.TimeoutError:
                    pass
                except StopAsyncIteration:
                    break
                now = time.monotonic()
                if not args.once and now >= next_draw:
                    next_draw = now + args.interval
                    _show(args, monitor.snapshot(now, source.health()), live=True)
            snap = monitor.snapshot(time.monotonic(), source.health())
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    _show(args, snap, live=False)
    return 0


def hub_snapshot(status: Dict[str, Any], log_lines: List[str], previous: Optional[Dict[str, Any]],
                 dt: Optional[float]) -> Dict[str, Any]:
    """Turn a hub's status answer (and the last one) into the view's snapshot."""
    import json

    from edge.layout import SENSORS

    daemon = status.get("daemon") or {}
    aligner = (daemon.get("aligner") or {}).get("sensors") or {}
    prev_aligner = (((previous or {}).get("daemon") or {}).get("aligner") or {}).get("sensors") or {}
    source = daemon.get("source") or {}
    sensors = {}
    for name in SENSORS:
        a = aligner.get(name) or {}
        rate = None
        if dt and name in prev_aligner and "readings" in a:
            rate = round((a["readings"] - prev_aligner[name].get("readings", 0)) / dt, 2)
        sensors[name] = {"state": a.get("state", "unknown"), "rate_hz": rate, "readings": a.get("readings"),
                         "gaps": a.get("gap_rows"), "missed": a.get("late"), "accel_rms_g": None,
                         "gyro_rms_dps": None, "age_s": None}
    events = []
    for line in log_lines[-8:]:
        try:
            e = json.loads(line)
            events.append(" ".join(f"{k}={e[k]}" for k in ("time", "type", "kind", "event", "risk", "sensor",
                                                             "state", "status", "model_version") if k in e)
                          or line[:120])
        except ValueError:
            events.append(line[:120])
    model = daemon.get("model") or {}
    store = status.get("store") or {}
    return {"mode": "hub", "hub_id": store.get("hub_id"),
            "model": (f"{model.get('model_id')} {model.get('model_version')}" if model else
                      ((store.get("active") or {}).get("version"))),
            "counts": daemon.get("counts") or {}, "sensors": sensors,
            "battery_pct": source.get("battery_pct"), "faults": source.get("faults") or [],
            "events": events}


def _watch_hub(args: argparse.Namespace) -> int:
    from edge.manage import ManagementClient

    t0 = time.monotonic()
    until = t0 + (args.duration or math.inf)
    previous, t_prev = None, None
    with ManagementClient(args.port, baud=args.baud, timeout=args.timeout) as client:
        while True:
            status = client.call("status")
            logs = [l for part in client.request("logs", {"lines": 8}) for l in part.get("lines", [])]
            now = time.monotonic()
            snap = hub_snapshot(status, logs, previous, None if t_prev is None else now - t_prev)
            if args.once:
                _show(args, snap, live=False)
                return 0
            _show(args, snap, live=True)
            previous, t_prev = status, now
            if now >= until:
                return 0
            time.sleep(args.interval)


def run(args: argparse.Namespace) -> int:
    """Watch until Ctrl-C (or once)."""
    from edge.errors import ConfigError

    if args.window <= 0 or args.interval <= 0:
        raise ConfigError(f"--window {args.window} / --interval {args.interval}: expected positive seconds")
    if args.source:
        return asyncio.run(_watch_source(args))
    return _watch_hub(args)
