"""``edge selftest``: verify, load and self-test a deploy bundle on this machine.

``edge selftest --bundle FILE --trust KEY.pub`` (or ``--bundle-store DIR`` for
the active bundle of a hub's store and its trusted keys) runs exactly what the
hub runs before it classifies anything: signature, hashes, schema, layout,
version, interpreter (ai_edge_litert, tflite_runtime or tensorflow.lite) and
the golden vectors. It prints one summary and exits 0 only when every check
passed; a failure is one ``edge: error: ...`` line and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import ConfigError

HELP = "verify, load and self-test a bundle with this machine's TFLite runtime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``selftest``'s flags."""
    parser.add_argument("--bundle", type=Path, help="bundle file (*.lgb)")
    parser.add_argument("--trust", type=Path, action="append", default=[], metavar="KEY.pub",
                        help="trusted Ed25519 public key (repeatable)")
    parser.add_argument("--bundle-store", type=Path, default=None, metavar="DIR",
                        help="use the active bundle and trusted keys of this hub bundle store")
    parser.add_argument("--sensors", default=None,
                        help="comma-separated sensors this hub has (default: all six)")
    parser.add_argument("--installed-version", default=None, help="refuse a bundle older than this version")
    parser.add_argument("--force", action="store_true", help="accept a bundle older than --installed-version")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--runtime", default=None, choices=["ai_edge_litert", "tflite_runtime", "tensorflow.lite"],
                        help="runtime to try first")
    parser.add_argument("--kernels", default="builtin", choices=["builtin", "default"],
                        help="builtin: reproducible int8 kernels (default); default: the runtime's XNNPACK delegate")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def parse_sensors(text: Optional[str]) -> tuple:
    """``"Side,Back"`` -> ``("Side", "Back")``; None -> all sensors."""
    from .layout import SENSORS

    if text is None:
        return SENSORS
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in SENSORS]
    if unknown:
        raise ConfigError(f"--sensors: {unknown[0]!r} is not a sensor; expected names from {', '.join(SENSORS)}")
    return names


def summary(loaded: Any) -> Dict[str, Any]:
    """A JSON-able description of a loaded, self-tested bundle."""
    import numpy as np

    from .runtime import runtime_version

    m = loaded.manifest
    return {
        "bundle": str(loaded.path),
        "model_id": loaded.model_id,
        "model_version": loaded.model_version,
        "created": m.get("created"),
        "signed_by": loaded.key_id,
        "schema_version": m.get("schema_version"),
        "recipe_version": loaded.recipe.version,
        "runtime": loaded.runtime,
        "runtime_version": runtime_version(loaded.runtime),
        "kernels": getattr(loaded, "kernels", "builtin"),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "model_member": loaded.model_member,
        "input_quantization": [loaded.input_scale, loaded.input_zero_point],
        "output_quantization": [loaded.output_scale, loaded.output_zero_point],
        "golden": loaded.selftest,
        "load_seconds": round(loaded.load_seconds, 4),
        "notes": list(loaded.notes),
        "selftest": "passed" if loaded.selftest else "not run",
    }


def summary_text(s: Dict[str, Any]) -> str:
    """Render :func:`summary` for a person."""
    lines = [f"bundle {s['bundle']}: model {s['model_id']} version {s['model_version']} "
             f"(created {s['created']}, signed by key {s['signed_by']}, schema {s['schema_version']}, "
             f"recipe {s['recipe_version']})",
             f"runtime {s['runtime']} {s['runtime_version']} ({s['kernels']} kernels), numpy {s['numpy']}, "
             f"Python {s['python']}; "
             f"model {s['model_member']}"]
    for g in s["golden"]:
        lines.append(f"  golden {g['vector']}: {g['samples']} samples -> int8 input bit-exact, output "
                     f"{g['output']} (expected {g['expected']}, off by {g['max_steps']} step(s)), {g['ms']:.1f} ms")
    for note in s["notes"]:
        lines.append(f"  note: {note}")
    lines.append(f"self-test {s['selftest']}; verify + load + self-test took {s['load_seconds'] * 1000:.0f} ms")
    return "\n".join(lines)


def resolve(args: argparse.Namespace) -> tuple:
    """Return ``(bundle_path, trusted_keys, installed_version)`` from the flags."""
    keys: List[Path] = list(args.trust)
    bundle = args.bundle
    installed = args.installed_version
    if args.bundle_store is not None:
        from .store import BundleStore

        store = BundleStore(args.bundle_store)
        keys = keys or store.trusted_keys()
        if bundle is None:
            bundle = store.active_path()
            if bundle is None:
                raise ConfigError(f"bundle store {args.bundle_store} has no active bundle")
    if bundle is None:
        raise ConfigError("give --bundle FILE (or --bundle-store DIR)")
    if not keys:
        raise ConfigError("give at least one --trust KEY.pub (or --bundle-store DIR with trusted keys)")
    return bundle, keys, installed


def run(args: argparse.Namespace) -> int:
    """Load and self-test; print the summary."""
    from .bundle import load_bundle

    bundle, keys, installed = resolve(args)
    loaded = load_bundle(bundle, trusted_keys=keys, hub_sensors=parse_sensors(args.sensors),
                         installed_version=installed, force=args.force, num_threads=args.threads,
                         self_test=True, prefer=args.runtime, kernels=args.kernels)
    s = summary(loaded)
    loaded.close()
    print(json.dumps(s, indent=2) if args.json else summary_text(s))
    return 0
