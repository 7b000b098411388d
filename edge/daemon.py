"""``edge run``: the hub daemon -- six IMU streams in, a buzz for each risky lift out.

::

    edge run --config hub.toml
    edge run --source serial:///dev/ttyACM0 --bundle-store /var/lib/liftguard \\
             --alert gpio:17 --events /var/log/liftguard/events.jsonl --manage-port serial:///dev/ttyGS0
    edge run --source 'replay:///data/shift?speed=0' --bundle model.lgb --trust release.pub --alert log

Every hub.toml setting (:mod:`edge.hub_config`) is also a flag; flags win.

Data flows one way, all in one asyncio loop: the source's readings go through
the :class:`~edge.aligner.Aligner` (one 25 Hz grid), the
:class:`~edge.lift_detector.LiftDetector` (each lift cut with
``edge.signal_path.cut_lift``), then ``LoadedBundle.classify`` (the shared
tensorizer and the int8 interpreter) in a worker thread so the stream never
stalls, then the :class:`~edge.alerts.AlertDispatcher` and the
:class:`~edge.event_log.EventLog`.

Life cycle:

* SIGTERM or SIGINT: stop cleanly -- close the source, finish the lifts in
  progress, switch the buzzer off, write a ``stop`` event, exit 0.
* A new bundle is taken up without a restart: with ``--bundle-store`` the
  daemon watches ``BundleStore.generation()``, with ``--bundle`` the file's
  size and modification time, every ``reload_check_s``. The new bundle is
  verified, loaded and self-tested in a worker thread; only then does it
  replace the old one (between two lifts). A bundle that fails is refused
  and logged, and the old one stays.
* With a bundle store whose active bundle is missing or broken the daemon
  keeps running (the management port stays up so a technician can flash a
  good one); lifts are logged as skipped until a model loads. A ``--bundle``
  file that fails to load is an error at start.
* Health on request: SIGUSR1 writes the health JSON to ``health_file``
  (default ``<events>.health.json``), and ``edge.manage``'s status request
  returns the same dictionary over the management port.
* A replayed recording that ends ends the daemon (exit 0) after its last lift.
* Restart on request: the management port's ``restart`` op (``host restart
  --port``) stops the daemon as SIGTERM does (a ``stop`` event with
  ``"restart_requested": true``) and exits with :data:`RESTART_EXIT_STATUS`
  (75), non-zero so systemd's ``Restart=on-failure``
  (``edge/systemd/liftguard-hub.service``) starts it again after
  ``RestartSec``. Without a supervisor the daemon simply stays stopped.
* Clock: each ``lift``, ``skipped`` and ``not_a_lift`` event carries
  ``clock`` (when the source has one: ``serial://``), the pair
  ``{"host_s", "device_s"}`` that puts the window's grid times ``t_start`` /
  ``t_end`` on the sensor hub's own clock (``t_device = t - host_s +
  device_s``), so a rig on another machine can place every window on its
  recording without sharing this machine's monotonic clock.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .aligner import GridRow, Outage, SensorChange

HELP = "run the hub: read six IMUs, find each lift, classify it on the device, buzz"

LOG = logging.getLogger("liftguard.hub")

#: Exit status of a restart requested over the management port (EX_TEMPFAIL):
#: non-zero so systemd's ``Restart=on-failure`` brings the daemon back.
RESTART_EXIT_STATUS = 75


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``edge run`` (each overrides the same hub.toml setting)."""
    parser.add_argument("--config", metavar="TOML", help="hub.toml with the settings (flags override it)")
    parser.add_argument("--source", metavar="URL",
                        help="IMU source: serial://, ble://, witmotion-ble://, replay://PATH?speed=N, virtual://NAME")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--bundle", metavar="FILE", help="a signed model bundle (.lgb); reloaded when the file changes")
    group.add_argument("--bundle-store", metavar="DIR", help="a bundle store; its active bundle is used and followed")
    parser.add_argument("--trust", metavar="KEY.pub", action="append",
                        help="trusted public key (repeatable); default with --bundle-store: DIR/trust/*.pub")
    parser.add_argument("--alert", metavar="SPEC", action="append",
                        help="alert output: gpio:PIN[?pwm=1&mock=1], hub or log (repeatable)")
    parser.add_argument("--alert-levels", metavar="LIST", help="comma-separated levels that buzz (default: high)")
    parser.add_argument("--events", metavar="FILE", help="JSON-lines event log (rotated)")
    parser.add_argument("--keep-raw", action="store_true", help="keep each lift window's raw samples in the log")
    parser.add_argument("--manage-port", metavar="URL", help="serial URL of the management link (edge.manage)")
    parser.add_argument("--health-file", metavar="FILE", help="where SIGUSR1 writes the health JSON")
    parser.add_argument("--threads", type=int, metavar="N", help="interpreter threads")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (tests, benchmarks)")
    parser.add_argument("--quiet", action="store_true", help="log warnings only (no line per lift)")
    parser.add_argument("--no-gate", action="store_true",
                        help="ignore the bundle's lift gate: classify every detected window")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``edge run``."""
    from .hub_config import apply_flags, load_config

    cfg = apply_flags(load_config(args.config), args)
    cfg.check_complete()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="edge run: %(message)s")
    hub = Hub(cfg, use_gate=cfg.use_gate and not getattr(args, "no_gate", False))
    return asyncio.run(hub.run(duration=args.duration))


class Hub:
    """The running hub: source → aligner → detector → classifier → alerts and log.

    Args:
        cfg: A complete :class:`edge.hub_config.HubConfig`.
        source: An already built source (tests); default ``open_source(cfg.source)``.
        pin_factory: gpiozero pin factory for ``gpio:`` outputs (tests: MockFactory).
        bundle_loader: Replacement for :func:`edge.bundle.load_bundle` (same signature).
        use_gate: Apply the bundle's lift gate (if it has one) before the risk
            model: a window the gate says is not a lift is logged as
            ``not_a_lift`` with its probability and never buzzes. False
            (``--no-gate``) classifies every window.
    """

    def __init__(self, cfg: Any, *, source: Any = None, pin_factory: Any = None,
                 bundle_loader: Optional[Callable[..., Any]] = None, use_gate: bool = True) -> None:
        from .aligner import Aligner
        from .lift_detector import LiftDetector

        self.cfg = cfg
        self._source = source
        self.pin_factory = pin_factory
        self._bundle_loader = bundle_loader
        self.aligner = Aligner(cfg.aligner)
        self.detector = LiftDetector(cfg.detector)
        self.bundle: Any = None
        self.bundle_error: Optional[str] = None
        self.bundle_loads = 0
        self._generation: Optional[str] = None
        self.store: Any = None
        self.source: Any = None
        self.alerts: Any = None
        self.events: Any = None
        self.started = time.monotonic()
        self.lifts: List[Dict[str, Any]] = []
        self.use_gate = use_gate
        self.counts: Dict[str, int] = {"lifts": 0, "skipped": 0, "buzzes": 0, "outages": 0, "not_a_lift": 0}
        self._stopping: Optional[asyncio.Event] = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="classify")
        # one writer thread: lift lines reach the log in the order the lifts were classified
        self._log_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log")
        self._pending: set = set()
        self._manager: Any = None
        self._t_event: Optional[float] = None
        #: Set by :meth:`request_restart` (the management port's ``restart`` op).
        self.restart_requested = False
        #: Callbacks ``f(record)`` called after each classified lift (tests, rigs).
        self.on_lift: List[Callable[[Dict[str, Any]], None]] = []

    # -- bundle -------------------------------------------------------------------
    def _loader(self) -> Callable[..., Any]:
        if self._bundle_loader is None:
            from .bundle import load_bundle

            self._bundle_loader = load_bundle
        return self._bundle_loader

    def _bundle_target(self) -> "tuple[Optional[Path], List[Path], str]":
        """(bundle path, trusted keys, generation token) of what should be active now."""
        if self.store is not None:
            path = self.store.active_path()
            keys = list(self.cfg.trust) or self.store.trusted_keys()
            return path, keys, self.store.generation()
        path = Path(self.cfg.bundle)
        try:
            st = path.stat()
            token = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        except OSError:
            token = "missing"
        return path, list(self.cfg.trust), token

    def _load(self, path: Optional[Path], keys: List[Path]) -> Any:
        if path is None:
            from .errors import BundleError

            raise BundleError(f"bundle store {self.cfg.bundle_store} has no active bundle (flash one with host flash)")
        return self._loader()(path, trusted_keys=keys, num_threads=self.cfg.threads)

    async def check_bundle(self, *, first: bool = False) -> bool:
        """Take up a new bundle if the store or file changed; return True if one was loaded."""
        from .errors import LiftGuardError

        path, keys, token = self._bundle_target()
        if token == self._generation:
            return False
        self._generation = token
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self._executor, self._load, path, keys)
        except (LiftGuardError, OSError) as exc:
            self.bundle_error = str(exc)
            LOG.error("model bundle refused: %s%s", exc, "" if self.bundle is None else
                      f" (keeping {self.bundle.model_id} {self.bundle.model_version})")
            self._event("bundle", status="refused", path=path, error=str(exc),
                        kept=None if self.bundle is None else self.bundle.model_version)
            if first and self.store is None:
                raise
            return False
        old = self.bundle
        self.bundle = new
        self.bundle_error = None
        self.bundle_loads += 1
        self.detector.recipe = new.recipe
        LOG.info("model %s version %s loaded from %s (%s)", new.model_id, new.model_version, path,
                 getattr(new, "runtime", "?"))
        self._event("bundle", status="loaded", path=path, model_id=new.model_id, model_version=new.model_version,
                    previous=None if old is None else old.model_version)
        return True

    # -- events ---------------------------------------------------------------------
    def _event(self, kind: str, **fields: Any) -> None:
        if self.events is not None:
            try:
                self.events.write(kind, **fields)
            except OSError as exc:  # a full disk must not stop the hub
                LOG.error("event log write failed: %s", exc)

    def sensor_health(self) -> Dict[str, str]:
        """Per-sensor state from the aligner: live, lost or waiting."""
        return {name: s["state"] for name, s in self.aligner.health()["sensors"].items()}

    def health(self) -> Dict[str, Any]:
        """JSON-able health of every stage."""
        src = {}
        if self.source is not None:
            try:
                src = self.source.health()
            except Exception as exc:  # pragma: no cover - defensive
                src = {"error": str(exc)}
        return {
            "time": time.time(), "uptime_s": round(time.monotonic() - self.started, 3), "pid": os.getpid(),
            "source": src, "aligner": self.aligner.health(), "detector": self.detector.health(),
            "model": None if self.bundle is None else self.bundle.describe(), "model_error": self.bundle_error,
            "bundle_loads": self.bundle_loads,
            "alerts": None if self.alerts is None else self.alerts.describe(),
            "counts": dict(self.counts), "last_lift": self.lifts[-1] if self.lifts else None,
            "events": str(self.cfg.events),
        }

    def write_health(self, path: Optional[Path] = None) -> Path:
        """Write :meth:`health` as JSON atomically; return the path."""
        path = Path(path or self.cfg.health_path())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.health(), indent=2, default=str) + "\n")
        os.replace(tmp, path)
        return path

    # -- the stream -------------------------------------------------------------
    def _handle(self, outs: List[Any]) -> None:
        for o in outs:
            if isinstance(o, GridRow):
                for win in self.detector.push(o.t, o.values, o.valid):
                    self._window(win)
            elif isinstance(o, SensorChange):
                if o.state != "connected":
                    LOG.warning("sensor %s %s: %s", o.sensor, o.state, o.detail)
                self._event("sensor", sensor=o.sensor, state=o.state, detail=o.detail)
            elif isinstance(o, Outage):
                for win in self.detector.flush():
                    self._window(win)
                self.counts["outages"] += 1
                self._event("outage", detail=o.detail)

    def _clock(self) -> Optional[Dict[str, Any]]:
        """The source's host-to-device clock anchor (``serial://``), or None."""
        try:
            anchor = getattr(self.source, "clock_anchor", None)
        except Exception:  # pragma: no cover - defensive: a source property must not stop the hub
            return None
        return dict(anchor) if isinstance(anchor, dict) else None

    def _window(self, win: Any) -> None:
        t_ready = time.monotonic()
        t_arrival = self._t_event if self._t_event is not None else t_ready  # the window's last reading
        clock = self._clock()
        extra = {} if clock is None else {"clock": clock}
        if win.skip_reason is not None or self.bundle is None:
            reason = win.skip_reason or f"no model loaded ({self.bundle_error})"
            self.counts["skipped"] += 1
            LOG.warning("lift at rows %d-%d not classified: %s", win.start_index, win.end_index, reason)
            self._event("skipped", lift=win.describe(), reason=reason, health=self.sensor_health(), **extra)
            return
        task = asyncio.get_running_loop().create_task(self._classify(win, self.bundle, t_arrival, clock))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _classify(self, win: Any, bundle: Any, t_arrival: float,
                        clock: Optional[Dict[str, Any]] = None) -> None:
        loop = asyncio.get_running_loop()
        gate = getattr(bundle, "gate", None) if self.use_gate else None

        def gate_then_classify() -> "tuple[Optional[float], Any]":
            # one trip to the worker thread: the gate, then (if it is a lift) the model
            p = None if gate is None else gate.probability(win.window)
            if p is not None and p < gate.threshold:
                return p, None
            return p, bundle.classify(win.window)

        try:
            p_lift, result = await loop.run_in_executor(self._executor, gate_then_classify)
        except Exception as exc:  # a bad window must not stop the hub
            self.counts["skipped"] += 1
            LOG.error("lift at rows %d-%d: classification failed: %s", win.start_index, win.end_index, exc)
            self._event("skipped", lift=win.describe(), reason=f"classification failed: {exc}",
                        **({} if clock is None else {"clock": clock}))
            return
        if result is None:
            self.counts["not_a_lift"] += 1
            LOG.info("movement %d-%d (%.1f s): not a lift (gate p=%.3f < %.3f)", win.start_index,
                     win.end_index, win.duration_s, p_lift, gate.threshold)
            self._event("not_a_lift", p_lift=round(float(p_lift), 5), threshold=round(gate.threshold, 5),
                        model_id=bundle.model_id, model_version=bundle.model_version, lift=win.describe(),
                        **({} if clock is None else {"clock": clock}))
            return
        t_alert = self.alerts.alert(result.risk)
        buzzed = t_alert is not None
        self.counts["lifts"] += 1
        self.counts["buzzes"] += int(buzzed)
        record = {
            "risk": result.risk,
            "probs": {name: round(float(p), 5) for name, p in zip(bundle.class_names, result.probs)},
            "model_id": bundle.model_id, "model_version": bundle.model_version,
            "latency_ms": float(result.latency_ms),
            "last_sample_to_alert_ms": round(((t_alert or time.monotonic()) - t_arrival) * 1000.0, 3),
            "lift": win.describe(), "buzzed": buzzed, "t_arrival": t_arrival, "t_alert": t_alert,
        }
        if p_lift is not None:
            record["p_lift"] = round(float(p_lift), 5)
        if clock is not None:
            record["clock"] = clock
        self.lifts.append(record)
        del self.lifts[:-100]
        LOG.info("lift %d-%d (%.1f s): %s  p=%s  %.1f ms%s", win.start_index, win.end_index, win.duration_s,
                 result.risk, " ".join(f"{v:.2f}" for v in result.probs), result.latency_ms,
                 "  BUZZ" if buzzed else "")
        if self.events is not None:
            fields = {k: v for k, v in record.items() if k not in ("t_arrival", "t_alert")}
            fields["health"] = self.sensor_health()
            try:
                await loop.run_in_executor(self._log_executor, lambda: self.events.lift(window=win.window, **fields))
            except OSError as exc:
                LOG.error("event log write failed: %s", exc)
        for cb in list(self.on_lift):
            cb(record)

    async def _consume(self) -> None:
        from .sources.base import SensorReading, SourceStatus

        async for ev in self.source.events():
            self._t_event = time.monotonic()
            if isinstance(ev, SensorReading):
                self._handle(self.aligner.add(ev))
            elif isinstance(ev, SourceStatus):
                if ev.sensor is None and ev.state == "closed":
                    break
                if ev.state in ("lost", "fault", "reconnecting"):
                    LOG.warning("source: %s %s %s", ev.sensor or "link", ev.state, ev.detail)
                self._event("source", sensor=ev.sensor, state=ev.state, detail=ev.detail)
            if self._stopping.is_set():
                break
        self._handle(self.aligner.flush("source ended"))

    def _now(self) -> float:
        now = getattr(self.source, "now", None)
        return now() if callable(now) else time.monotonic()

    async def _ticker(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(0.05)
            self._handle(self.aligner.tick(self._now()))

    async def _watch_bundle(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.cfg.reload_check_s)
            except asyncio.TimeoutError:
                pass
            if not self._stopping.is_set():
                await self.check_bundle()

    async def _manage(self) -> None:
        try:
            from .manage import ManagementServer
        except ImportError as exc:
            LOG.error("management port %s not served: edge.manage is unavailable (%s)", self.cfg.manage_port, exc)
            return
        if self.store is None:
            LOG.error("management port %s needs --bundle-store (it installs bundles into a store)",
                      self.cfg.manage_port)
            return
        loop = asyncio.get_running_loop()

        def changed() -> None:  # a flash or rollback just switched the active bundle
            loop.create_task(self.check_bundle())

        self._manager = ManagementServer(self.cfg.manage_port, self.store, self.health, self.cfg.events,
                                         on_change=changed, on_restart=self.request_restart)
        await self._manager.serve()

    def request_stop(self) -> None:
        """Ask the daemon to stop (what SIGTERM does); thread-unsafe, call on the loop."""
        if self._stopping is not None:
            self._stopping.set()

    def request_restart(self) -> None:
        """Stop as :meth:`request_stop` does, then exit with :data:`RESTART_EXIT_STATUS` (call on the loop)."""
        LOG.warning("restart requested over the management port: stopping, exit status %d "
                    "(the service manager starts the hub again)", RESTART_EXIT_STATUS)
        self.restart_requested = True
        self.request_stop()

    # -- main -------------------------------------------------------------------
    async def run(self, duration: Optional[float] = None) -> int:
        """Run until stopped, the source ends or ``duration`` seconds pass; return the exit status."""
        from .alerts import AlertDispatcher, parse_output_spec
        from .event_log import EventLog
        from .sources import open_source

        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        self.events = EventLog(cfg.events, max_bytes=cfg.events_max_bytes, backups=cfg.events_backups,
                               keep_raw=cfg.keep_raw)
        self._event("start", pid=os.getpid(), config=cfg.to_dict())
        installed: List[int] = []
        tasks: List[asyncio.Task] = []
        try:
            if cfg.bundle_store is not None:
                from .store import BundleStore

                self.store = BundleStore(cfg.bundle_store)
            await self.check_bundle(first=True)
            self.source = self._source or open_source(cfg.source)
            outputs = [parse_output_spec(s, source=self.source, pin_factory=self.pin_factory)
                       for s in cfg.alert_outputs]
            self.alerts = AlertDispatcher(outputs, cfg.alert_patterns, cfg.alert_levels)
            for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                                 (signal.SIGUSR1, self._health_signal)):
                try:
                    loop.add_signal_handler(sig, handler)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
                    pass
            await self.source.open()
            LOG.info("reading %s", cfg.source)
            consume = loop.create_task(self._consume())
            tasks = [loop.create_task(self._ticker()), loop.create_task(self._watch_bundle())]
            if cfg.manage_port:
                tasks.append(loop.create_task(self._manage()))
            stop_wait = loop.create_task(self._stopping.wait())
            waiters = [consume, stop_wait]
            if duration is not None:
                waiters.append(loop.create_task(asyncio.sleep(duration)))
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            self._stopping.set()
            if consume in done and consume.exception() is not None:
                raise consume.exception()
            if not consume.done():
                await self.source.close()
                try:
                    await asyncio.wait_for(consume, timeout=5.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    consume.cancel()
            for w in waiters:
                w.cancel()
            if self._pending:
                await asyncio.gather(*list(self._pending), return_exceptions=True)
            if self.alerts is not None:
                await self.alerts.wait()
            return RESTART_EXIT_STATUS if self.restart_requested else 0
        finally:
            self._stopping.set()
            if self._manager is not None:
                self._manager.stop()
                await asyncio.sleep(0.1)  # let serve() notice
            for t in tasks:
                t.cancel()
            for t in tasks:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self.source is not None:
                try:
                    await self.source.close()
                except Exception:  # pragma: no cover - best effort
                    pass
            if self.alerts is not None:
                self.alerts.close()
            self._event("stop", counts=dict(self.counts), health=self.sensor_health(),
                        **({"restart_requested": True} if self.restart_requested else {}))
            self._log_executor.shutdown(wait=True)
            self.events.close()
            self._executor.shutdown(wait=True)
            LOG.info("stopped: %d lifts, %d buzzes, %d skipped", self.counts["lifts"], self.counts["buzzes"],
                     self.counts["skipped"])

    def _health_signal(self) -> None:
        try:
            path = self.write_health()
            LOG.info("health written to %s", path)
        except OSError as exc:
            LOG.error("health file not written: %s", exc)
