"""``host scan``: list BLE IMUs nearby and suggest a sensor-to-site mapping.

Finds our LiftGuard IMUs (advertised name ``LG-IMU-...`` or our service UUID)
and WitMotion IMUs (name ``WT...`` or service ``ffe5``) with their signal
strength, then suggests which address goes to which body site:

* a LiftGuard IMU advertising its site (``LG-IMU-Back``) gets that site;
* with ``--connect``, an unassigned LiftGuard IMU (``LG-IMU-00A3``) is asked
  for its Site characteristic;
* every other IMU is *suggested* for a free site, strongest signal first;
  check those by moving each sensor while watching ``host monitor``.

``--out FILE`` writes the mapping as a ``hub.toml`` fragment (``[hub]
source = "ble://?Side=...&..."``) that ``edge run --config`` takes.

This machine may have no Bluetooth at all (no kernel support, no BlueZ):
the command then says so. ``--emulated N`` scans an in-process bumble world
of N emulated LiftGuard IMUs (and ``--emulated-witmotion M`` WitMotion ones)
through the same bleak calls, for demonstrations and tests.

Examples::

    host scan --timeout 8 --out mapping.toml
    host scan --emulated 6 --json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from typing import Any, Dict, List, Optional

from edge.errors import ConfigError, SourceError
from edge.layout import SENSORS
from edge.sources import ble_profile, witmotion

from .common import add_json_argument, emit

HELP = "list BLE IMUs nearby (LiftGuard and WitMotion) and write a suggested sensor-to-site mapping"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``scan`` flags."""
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="seconds to scan (default 5)")
    parser.add_argument("--out", metavar="FILE",
                        help="write the suggested mapping as a hub.toml fragment")
    parser.add_argument("--connect", action="store_true",
                        help="connect to LiftGuard IMUs without a site in their name to read it")
    parser.add_argument("--adapter", metavar="HCI", help="BlueZ adapter, e.g. hci1")
    parser.add_argument("--emulated", type=int, default=0, metavar="N",
                        help="scan N emulated LiftGuard IMUs (bumble, in process) instead of a radio")
    parser.add_argument("--emulated-witmotion", type=int, default=0, metavar="M",
                        help="add M emulated WitMotion IMUs to the emulated world")
    parser.add_argument("--emulated-unassigned", type=int, default=0, metavar="K",
                        help="the last K emulated LiftGuard IMUs advertise a serial, not their site")
    add_json_argument(parser)


def classify(name: Optional[str], service_uuids: List[str]) -> Optional[str]:
    """Return ``"liftguard"``, ``"witmotion"`` or None for an advertisement."""
    uuids = {u.lower() for u in service_uuids}
    if ble_profile.SERVICE_UUID in uuids or (name or "").startswith(ble_profile.NAME_PREFIX):
        return "liftguard"
    if witmotion.SERVICE_UUID in uuids or (name or "").startswith(witmotion.NAME_PREFIX):
        return "witmotion"
    return None


def suggest_mapping(devices: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Assign sites: known sites first, then the rest by signal strength.

    Args:
        devices: Dicts with ``address``, ``name``, ``kind``, ``rssi`` and
            ``site`` (None when unknown).

    Returns:
        Site -> the device dict plus ``how`` (``"advertised name"``,
        ``"site characteristic"`` or ``"suggested"``). Each device is set on
        its ``site_source`` key too.
    """
    mapping: Dict[str, Dict[str, Any]] = {}
    for dev in devices:
        site = dev.get("site")
        if site in SENSORS and site not in mapping:
            mapping[site] = dev
            dev["assigned"] = site
    free = [s for s in SENSORS if s not in mapping]
    rest = sorted((d for d in devices if "assigned" not in d),
                  key=lambda d: (-(d.get("rssi") if d.get("rssi") is not None else -999), d["address"]))
    for dev, site in zip(rest, free):
        dev["assigned"] = site
        dev["how"] = "suggested"
        mapping[site] = dev
    return {s: mapping[s] for s in SENSORS if s in mapping}


def source_urls(mapping: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
    """Return a source URL per device kind present in the mapping."""
    urls: Dict[str, str] = {}
    for kind, scheme, extra in (("liftguard", "ble", ""), ("witmotion", "witmotion-ble", "&rate=25")):
        pairs = [f"{site}={dev['address']}" for site, dev in mapping.items() if dev["kind"] == kind]
        if pairs:
            urls[kind] = f"{scheme}://?" + "&".join(pairs) + extra
    return urls


def mapping_toml(mapping: Dict[str, Dict[str, Any]]) -> str:
    """Render the mapping as a ``hub.toml`` fragment (one ``[hub] source``)."""
    urls = source_urls(mapping)
    main_kind = max(urls, key=lambda k: sum(d["kind"] == k for d in mapping.values())) if urls else None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Written by `host scan` on {stamp}: suggested sensor-to-site mapping.",
             "# Lines marked 'suggested' are a guess by signal strength: check each by moving",
             "# the sensor and watching `host monitor`, then edit the addresses below.", "#"]
    for site, dev in mapping.items():
        rssi = "?" if dev.get("rssi") is None else f"{dev['rssi']} dBm"
        lines.append(f"# {site:5s} = {dev['address']}  {dev.get('name') or '?':14s} "
                     f"{dev['kind']:9s} {rssi:8s} {dev.get('how', '')}")
    missing = [s for s in SENSORS if s not in mapping]
    if missing:
        lines.append(f"# Not found: {', '.join(missing)}")
    for kind, url in urls.items():
        if kind != main_kind:
            lines.append(f"# The hub takes one source; the {kind} IMUs would be: {url}")
    lines += ["", "[hub]"]
    if main_kind is not None:
        lines.append(f'source = "{urls[main_kind]}"')
    return "\n".join(lines) + "\n"


async def scan(timeout: float, *, scanner_backend: Optional[type] = None,
               client_backend: Optional[type] = None, adapter: Optional[str] = None,
               connect: bool = False) -> List[Dict[str, Any]]:
    """Scan for ``timeout`` seconds and return one dict per IMU found.

    Raises:
        SourceError: If there is no usable Bluetooth adapter (message says so).
    """
    from bleak import BleakClient, BleakScanner

    from edge.sources.ble import adapter_missing_hint

    found: Dict[str, Dict[str, Any]] = {}

    def on_advert(device: Any, adv: Any) -> None:
        name = adv.local_name or device.name
        kind = classify(name, list(adv.service_uuids))
        if kind is None:
            return
        entry = found.setdefault(device.address.upper(), {
            "address": device.address.upper(), "name": name, "kind": kind, "rssi": adv.rssi,
            "adverts": 0, "site": None, "how": None, "device": device})
        entry["adverts"] += 1
        entry["rssi"] = max(entry["rssi"], adv.rssi) if entry["rssi"] is not None else adv.rssi
        if kind == "liftguard" and entry["site"] is None:
            site = ble_profile.site_from_name(name)
            if site is not None:
                entry["site"], entry["how"] = site, "advertised name"

    kwargs: Dict[str, Any] = {}
    if scanner_backend is not None:
        kwargs["backend"] = scanner_backend
    if adapter:
        kwargs["bluez"] = {"adapter": adapter}
    try:
        async with BleakScanner(on_advert, **kwargs):
            await asyncio.sleep(timeout)
    except Exception as exc:
        hint = adapter_missing_hint(exc)
        raise SourceError(hint or f"BLE scan failed: {type(exc).__name__}: {exc}") from None

    if connect:
        for entry in found.values():
            if entry["kind"] != "liftguard" or entry["site"] is not None:
                continue
            ckw: Dict[str, Any] = {"timeout": max(timeout, 5.0)}
            if client_backend is not None:
                ckw["backend"] = client_backend
            try:
                async with BleakClient(entry["device"], **ckw) as client:
                    site = ble_profile.decode_site(
                        await client.read_gatt_char(ble_profile.SITE_CHAR_UUID))
                if site is not None:
                    entry["site"], entry["how"] = site, "site characteristic"
            except Exception as exc:  # report, keep going with the others
                entry["error"] = f"{type(exc).__name__}: {exc}"
    out = []
    for entry in sorted(found.values(), key=lambda e: e["address"]):
        entry.pop("device")
        out.append(entry)
    return out


async def _emulated_scan(args: argparse.Namespace) -> List[Dict[str, Any]]:
    import numpy as np

    from .ble_emulation import EmulatedBleWorld

    world = EmulatedBleWorld(seed=0)
    rng = np.random.default_rng(0)
    samples = rng.normal(0.0, 0.05, size=(50, 6)) + np.array([0, 0, 1.0, 0, 0, 0])
    for k, site in enumerate(SENSORS[:args.emulated]):
        world.add_liftguard_imu(site, samples,
                                advertise_site=k < args.emulated - args.emulated_unassigned)
    for _ in range(args.emulated_witmotion):
        world.add_witmotion(samples)
    async with world:
        await world.start()
        return await scan(args.timeout, scanner_backend=world.scanner_backend,
                          client_backend=world.client_backend, connect=args.connect)


def run(args: argparse.Namespace) -> int:
    """Scan, print the devices and the suggested mapping; 0 if any IMU was found."""
    if args.timeout <= 0:
        raise ConfigError(f"--timeout {args.timeout:g}; expected seconds > 0")
    if not 0 <= args.emulated <= len(SENSORS):
        raise ConfigError(f"--emulated {args.emulated}; expected 0 to {len(SENSORS)} "
                          "(one emulated IMU per site)")
    if not 0 <= args.emulated_unassigned <= args.emulated:
        raise ConfigError(f"--emulated-unassigned {args.emulated_unassigned}; expected 0 to "
                          f"--emulated ({args.emulated})")
    if args.emulated_witmotion < 0:
        raise ConfigError(f"--emulated-witmotion {args.emulated_witmotion}; expected >= 0")
    emulated = args.emulated or args.emulated_witmotion
    where = "an emulated bumble link" if emulated else (args.adapter or "the default adapter")
    print(f"host: scanning {where} for {args.timeout:g} s ...", file=sys.stderr)
    if emulated:
        devices = asyncio.run(_emulated_scan(args))
    else:
        devices = asyncio.run(scan(args.timeout, adapter=args.adapter, connect=args.connect))
    mapping = suggest_mapping(devices)
    urls = source_urls(mapping)
    data = {"devices": devices, "mapping": {s: d["address"] for s, d in mapping.items()},
            "missing": [s for s in SENSORS if s not in mapping], "sources": urls,
            "emulated": bool(emulated)}
    lines = [f"{'ADDRESS':17s}  {'NAME':14s}  {'KIND':9s}  {'RSSI':>5s}  SITE"]
    for dev in devices:
        rssi = "?" if dev["rssi"] is None else str(dev["rssi"])
        site = dev.get("assigned") or "-"
        how = f" ({dev['how']})" if dev.get("how") else ""
        lines.append(f"{dev['address']:17s}  {dev['name'] or '?':14s}  {dev['kind']:9s}  "
                     f"{rssi:>5s}  {site}{how}")
    if not devices:
        lines.append(f"(no LiftGuard or WitMotion IMU seen in {args.timeout:g} s)")
    for url in urls.values():
        lines.append(f"source: {url}")
    if data["missing"] and devices:
        lines.append(f"missing: {', '.join(data['missing'])}")
    emit(args, data, "\n".join(lines))
    if args.out and mapping:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(mapping_toml(mapping))
        print(f"host: wrote the suggested mapping to {args.out}", file=sys.stderr)
    return 0 if devices else 1
