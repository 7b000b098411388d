"""``host emulate DATA``: play a recording as a sensor hub (serial) or as six BLE IMUs.

Serial (default): :class:`host.sensorhub_emulator.SensorHubEmulator` plays a
trial CSV, a data set folder or a shift recording as the belt's
microcontroller sensor hub speaking the LiftGuard serial protocol, on a new
pseudo-terminal (its path is printed on stdout as a ``serial://`` URL the hub
takes with ``--source``) or on an existing port (``--port``). Playback starts
when the hub opens the pseudo-terminal.

BLE (``--ble``): :func:`host.ble_emulation.serve_ble` runs six emulated
LiftGuard IMUs (or WitMotion look-alikes with ``--witmotion``) on bumble's
emulated controllers and serves the hub's controller over HCI; the printed
``tcp-client:HOST:PORT`` is what the hub side passes to
``host.ble_emulation.open_remote_central``.

Speed: ``--speed 1`` real time, ``--speed N`` N times faster, ``--speed 0``
as fast as the link takes it (serial only). At any speed but 1 the printed
URL carries ``?clock=device`` so the hub's aligner follows the recording's
clock instead of the arrival times.

Faults (seeded with ``--seed``): ``--drop SHARE`` of frames/samples lost,
``--garbage N`` bursts of random bytes per minute (serial) or ``--garbage-share``
of malformed notifications (BLE), ``--bit-flip SHARE`` (serial),
``--drift-ppm PPM`` clock drift, ``--disconnect SITE@AT:DOWN`` a sensor gone
at AT seconds for DOWN seconds (repeatable), ``--stuck SITE:START:END`` a
frozen sensor and ``--unplug START:END`` the whole port gone (serial).

Runs until the recording ends (serial; ``--hold`` keeps answering until
Ctrl-C), ``--duration`` seconds pass, or Ctrl-C. A summary of what was sent
and every Buzz received goes to stdout at the end (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import DEFAULT_BAUD, add_json_argument, emit, say

HELP = "play a data set or shift as a sensor hub on a serial port/pty, or as six BLE IMUs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``emulate``'s flags."""
    parser.add_argument("data", type=Path, metavar="DATA", help="trial CSV, data set folder or shift recording")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--port", metavar="PORT", help="serial port to play on (default: a new pseudo-terminal)")
    mode.add_argument("--ble", action="store_true", help="six emulated BLE IMUs over bumble instead of serial")
    parser.add_argument("--link", type=Path, default=None, metavar="PATH",
                        help="serial: keep a symlink PATH to the pseudo-terminal (stable across --unplug)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"baud rate for --port (default {DEFAULT_BAUD})")
    parser.add_argument("--speed", type=float, default=1.0, help="multiple of real time (serial: 0 = as fast as possible)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every fault (default 0)")
    parser.add_argument("--drop", type=float, default=0.0, metavar="SHARE", help="share of frames/samples dropped")
    parser.add_argument("--garbage", type=float, default=0.0, metavar="N", help="serial: garbage bursts per minute")
    parser.add_argument("--garbage-share", type=float, default=0.0, metavar="SHARE",
                        help="BLE: share of notifications followed by a malformed one")
    parser.add_argument("--bit-flip", type=float, default=0.0, metavar="SHARE", help="serial: share of frames with a flipped bit")
    parser.add_argument("--drift-ppm", type=float, default=0.0, metavar="PPM", help="device clock drift")
    parser.add_argument("--disconnect", action="append", default=[], metavar="SITE@AT:DOWN",
                        help="sensor SITE gone AT s after start for DOWN s (repeatable)")
    parser.add_argument("--stuck", action="append", default=[], metavar="SITE:START:END",
                        help="serial: sensor frozen from START to END s (repeatable)")
    parser.add_argument("--unplug", action="append", default=[], metavar="START:END",
                        help="serial (pty): the port vanishes from START to END s (repeatable)")
    parser.add_argument("--witmotion", default="", metavar="SITES",
                        help="BLE: comma-separated sites played by WitMotion look-alikes instead")
    parser.add_argument("--trial", default=None, metavar="ID", help="BLE: trial of a data set to play (default: first)")
    parser.add_argument("--spec", default="tcp-server:127.0.0.1:0", help="BLE: bumble HCI server spec")
    parser.add_argument("--device-id", default="EMU-0001", help="serial: device id in Capabilities")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--hold", action="store_true", help="serial: keep answering after the recording ends")
    add_json_argument(parser)


def _windows(texts: List[str], what: str):
    from edge.errors import ConfigError

    out = []
    for text in texts:
        try:
            a, b = (float(x) for x in text.split(":"))
        except ValueError:
            raise ConfigError(f"--{what} {text!r}; expected START:END in seconds, e.g. 10:15") from None
        out.append((a, b))
    return out


def fault_plan(args: argparse.Namespace):
    """The :class:`host.sensorhub_emulator.FaultPlan` of the flags."""
    from host.ble_emulation import parse_disconnect
    from host.sensorhub_emulator import FaultPlan, SensorWindow

    silence = []
    for text in args.disconnect:
        site, at_s, down_s = parse_disconnect(text)
        silence.append(SensorWindow(site, at_s, at_s + max(down_s, 1e-3)))
    return FaultPlan(drop_share=args.drop, bit_flip_share=args.bit_flip, garbage_per_min=args.garbage,
                     drift_ppm=args.drift_ppm, silence=tuple(silence),
                     stuck=tuple(SensorWindow.parse(t) for t in args.stuck),
                     unplug=tuple(_windows(args.unplug, "unplug")), seed=args.seed)


def _stop_event_on_sigint() -> threading.Event:
    import signal

    stop = threading.Event()
    try:
        signal.signal(signal.SIGINT, lambda *a: stop.set())
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
    except ValueError:  # not the main thread (tests)
        pass
    return stop


def run_serial(args: argparse.Namespace, stop: Optional[threading.Event] = None,
               on_ready=None) -> Dict[str, Any]:
    """Play over serial until done; return the emulator's summary.

    Args:
        args: Parsed flags.
        stop: Set to stop early (default: Ctrl-C/SIGTERM).
        on_ready: Called with the emulator once its port is open (tests).
    """
    from edge.errors import ConfigError
    from host.sensorhub_emulator import SensorHubEmulator

    if args.speed < 0:
        raise ConfigError(f"--speed {args.speed}; expected >= 0")
    emu = SensorHubEmulator.from_path(args.data, port=args.port, speed=args.speed, faults=fault_plan(args),
                                      baud=args.baud, pty_link=args.link, device_id=args.device_id, log=sys.stderr)
    stop = stop or _stop_event_on_sigint()
    t0 = time.monotonic()
    emu.start()
    try:
        # the URL the hub opens; faster than real time, the hub must follow the device clock
        print(emu.url() if args.speed == 1 or args.port else emu.url(clock="device"), flush=True)
        if on_ready is not None:
            on_ready(emu)
        while not stop.is_set():
            if args.duration is not None and time.monotonic() - t0 >= args.duration:
                break
            if emu.wait(timeout=0.1) and not args.hold:
                time.sleep(0.3)  # let the last frames and a final Buzz ack through
                break
    finally:
        emu.stop()
    health = emu.health()
    return {"mode": "serial", "path": health["path"], "samples": health["samples"],
            "position": health["position"], "finished": health["finished"], "counters": health["counters"],
            "buzzes": [{"t_recording": b.t_recording, "sample_index": b.sample_index, "pattern_ms": list(b.pattern_ms)}
                       for b in emu.buzz_records],
            "seconds": round(time.monotonic() - t0, 3)}


def run_ble(args: argparse.Namespace, stop_after: Optional[float] = None, on_ready=None) -> Dict[str, Any]:
    """Serve six emulated BLE IMUs until Ctrl-C or ``--duration``."""
    import asyncio
    import signal

    from edge.errors import ConfigError
    from edge.layout import SENSORS
    from host.ble_emulation import load_recording, parse_disconnect, serve_ble

    if args.speed <= 0:
        raise ConfigError(f"--speed {args.speed}; BLE emulation needs a positive speed")
    wit = [s for s in args.witmotion.split(",") if s]
    for s in wit:
        if s not in SENSORS:
            raise ConfigError(f"--witmotion site {s!r}; expected one of {', '.join(SENSORS)}")
    sites = [s for s in SENSORS if s not in wit]
    disconnects = [parse_disconnect(d) for d in args.disconnect]
    samples = load_recording(args.data, args.trial)
    info: Dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        duration = stop_after if stop_after is not None else args.duration
        if duration is not None:
            loop.call_later(duration, stop.set)

        def ready(world, port) -> None:
            host = args.spec.split(":")[1] if args.spec.count(":") >= 2 else "127.0.0.1"
            info["spec"] = f"tcp-client:{host}:{port}" if port else args.spec
            info["peripherals"] = sites + [f"WT901BLE-{s}" for s in wit]
            print(f"serving {info['spec']}", flush=True)
            say(f"emulate: {len(sites)} LiftGuard IMU(s) and {len(wit)} WitMotion IMU(s) at speed {args.speed:g}")
            if on_ready is not None:
                on_ready(world, info)

        await serve_ble(samples, spec=args.spec, sites=sites, witmotion_sites=wit, speed=args.speed,
                        seed=args.seed, drop_fraction=args.drop, garbage_fraction=args.garbage_share,
                        drift_ppm=args.drift_ppm, disconnects=disconnects, on_ready=ready, stop=stop)

    t0 = time.monotonic()
    asyncio.run(main())
    return dict(info, mode="ble", samples=int(samples.shape[0]), seconds=round(time.monotonic() - t0, 3))


def run(args: argparse.Namespace) -> int:
    """Emulate and print a summary."""
    from edge.errors import ConfigError

    if not args.data.exists():
        raise ConfigError(f"{args.data}: no such trial CSV, data set folder or shift recording")
    if args.ble:
        summary = run_ble(args)
        text = f"BLE emulation ended after {summary['seconds']:.1f} s ({summary['samples']} samples per IMU)"
    else:
        summary = run_serial(args)
        c = summary["counters"]
        text = (f"sensor hub emulation {'finished' if summary['finished'] else 'stopped'} after "
                f"{summary['seconds']:.1f} s: sample {summary['position'] + 1} of {summary['samples']}, "
                f"counters {c}; {len(summary['buzzes'])} buzz command(s) received"
                + "".join(f"\n  buzz at recording t={b['t_recording']:.2f} pattern {b['pattern_ms']}"
                          for b in summary["buzzes"]))
    emit(args, summary, text)
    return 0
