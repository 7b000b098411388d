"""The signed deploy bundle: read it, check everything, load it, self-test it.

A bundle (``*.lgb``) is a zip archive holding exactly these members (the
format is described in ``docs/bundle.md``):

``manifest.json``
    Schema version, model id and version, creation time, class names, sensor
    layout and units, sample rate, window, the tensor recipe (filter SOS,
    standardization statistics, recipe version), input and output
    quantization, the run's metrics, and the size and sha256 of every other
    member.
``signature.json``
    ``{"algorithm": "ed25519", "key_id": ..., "signature": base64}``: an
    Ed25519 signature over the exact bytes of ``manifest.json``. Because the
    manifest hashes every other member, the signature covers the whole file.
``model_int8.tflite``
    The full-integer model (int8 input and output).
``golden.npz``
    Golden vectors: a few raw windows, the int8 input tensor each must give
    through :func:`edge.signal_path.tensorize` and
    :func:`edge.signal_path.quantize_int8`, and the int8 output the model
    must produce for it.
``model_int8_edgetpu.tflite`` (optional)
    The same model compiled by Coral's ``edgetpu_compiler``.

:func:`verify_bundle` runs every check that needs no interpreter;
:func:`load_bundle` also builds the interpreter (:mod:`edge.runtime`), checks
the model's tensors against the manifest and runs the golden vectors. Any
failure raises :class:`edge.errors.BundleError` (or
:class:`edge.errors.RuntimeMissing`) with one clear line; nothing is returned
half-loaded. This module never imports TensorFlow and works with numpy 1.x.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math
import re
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import layout
from .errors import BundleError, RuntimeMissing, TensorError

#: Manifest schema version written by this code.
SCHEMA_VERSION = 1

#: Schema versions this hub can read.
SUPPORTED_SCHEMA_VERSIONS: Tuple[int, ...] = (1,)

#: The ``format`` field every manifest carries.
BUNDLE_FORMAT = "liftguard-bundle"

#: File name suffix of bundles.
BUNDLE_SUFFIX = ".lgb"

MANIFEST_MEMBER = "manifest.json"
SIGNATURE_MEMBER = "signature.json"
MODEL_MEMBER = "model_int8.tflite"
EDGETPU_MEMBER = "model_int8_edgetpu.tflite"
GOLDEN_MEMBER = "golden.npz"

#: Largest member accepted, bytes (guards against zip bombs).
MAX_MEMBER_BYTES = 64 * 1024 * 1024

#: Most members a bundle may have (it has 4 or 5).
MAX_MEMBERS = 16

#: Golden outputs may differ from the expected ones by this many int8 steps.
GOLDEN_TOLERANCE_STEPS = 1

_VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")

PathLike = Union[str, Path]


# --------------------------------------------------------------------------- keys

def public_key_id(public_key: Any) -> str:
    """Return the short id of an Ed25519 public key: 16 hex digits of sha256(raw key)."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_public_key(data: bytes, where: str) -> Any:
    """Parse an Ed25519 public key: PEM (``KEY.pub`` from ``quantize keygen``), OpenSSH, DER or 32 raw bytes.

    Args:
        data: The key file's bytes.
        where: How messages name the key (e.g. ``"trusted key /etc/k.pub"``).

    Raises:
        BundleError: If ``data`` is not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    key = None
    for loader, blob in ((serialization.load_pem_public_key, data.strip()),
                         (serialization.load_ssh_public_key, data.strip()),
                         (serialization.load_der_public_key, data)):
        try:
            key = loader(blob)
            break
        except Exception:  # ValueError, TypeError, UnsupportedAlgorithm
            continue
    if key is None:
        raise BundleError(f"{where}: not a public key; expected the Ed25519 KEY.pub written by "
                          f"'quantize keygen' (PEM), OpenSSH, DER or 32 raw bytes")
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{where}: is a {type(key).__name__.lstrip('_')}; expected an Ed25519 public key")
    return key


def load_public_key(path: PathLike) -> Any:
    """Read an Ed25519 public key file (see :func:`parse_public_key`).

    Raises:
        BundleError: If the file is missing or not an Ed25519 public key.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BundleError(f"trusted key {p}: cannot be read ({exc.strerror or exc})") from None
    return parse_public_key(data, f"trusted key {p}")


def sign_manifest(manifest_bytes: bytes, private_key: Any) -> bytes:
    """Return the ``signature.json`` bytes for ``manifest_bytes`` signed with ``private_key``."""
    signature = private_key.sign(manifest_bytes)
    doc = {"algorithm": "ed25519", "key_id": public_key_id(private_key.public_key()),
           "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8")


# ----------------------------------------------------------------------- versions

def parse_version(version: Any, what: str = "model version") -> Tuple[int, ...]:
    """Parse a dotted numeric version such as ``"1.4.0"`` or ``"2026.1126.1320"``.

    Raises:
        BundleError: If ``version`` is not 1 to 4 dot-separated integers.
    """
    text = str(version).strip()
    if not _VERSION_RE.match(text):
        raise BundleError(f"{what} {version!r} is malformed; expected 1 to 4 dot-separated integers "
                          f"such as '1.4.0'")
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (4 - len(parts))


def compare_versions(a: Any, b: Any) -> int:
    """Return -1, 0 or 1 as version ``a`` is older than, equal to or newer than ``b``."""
    pa, pb = parse_version(a), parse_version(b)
    return (pa > pb) - (pa < pb)


# --------------------------------------------------------------------- the format

def canonical_json(obj: Any) -> bytes:
    """Serialize a manifest the way bundles store it (sorted keys, UTF-8, newline)."""
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def member_entry(data: bytes) -> Dict[str, Any]:
    """Return the manifest entry (size and sha256) of one member's bytes."""
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def layout_section(required_sensors: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Return the manifest's ``layout`` section.

    Args:
        required_sensors: The sensors the model actually uses (a run trained
            with ``--sensors`` masks the others through the recipe); default
            all six. The channel layout itself is always the full 36 columns.
    """
    required = list(layout.SENSORS) if required_sensors is None else [
        s for s in layout.SENSORS if s in set(required_sensors)]
    return {"sensors": list(layout.SENSORS), "required_sensors": required, "channels": list(layout.CHANNELS),
            "units": dict(layout.UNITS), "kinds": list(layout.KINDS), "axes": list(layout.AXES),
            "time_column": layout.TIME_COLUMN}


def golden_npz_bytes(raw_windows: Sequence[np.ndarray], input_int8: np.ndarray,
                     output_int8: np.ndarray) -> bytes:
    """Pack golden vectors as the ``golden.npz`` member.

    Args:
        raw_windows: Raw windows ``(n_i, 36)`` float64 (lengths may differ).
        input_int8: ``(k, 95, 95, 3)`` int8 model inputs.
        output_int8: ``(k, n_classes)`` int8 model outputs.
    """
    lengths = np.array([len(w) for w in raw_windows], dtype=np.int64)
    raw = np.zeros((len(raw_windows), int(lengths.max()), layout.N_CHANNELS), dtype=np.float64)
    for i, w in enumerate(raw_windows):
        raw[i, : len(w)] = w
    buf = io.BytesIO()
    np.savez(buf, raw=raw, lengths=lengths, input_int8=np.asarray(input_int8, dtype=np.int8),
             output_int8=np.asarray(output_int8, dtype=np.int8))
    return buf.getvalue()


def write_bundle(out_path: PathLike, manifest: Dict[str, Any], members: Dict[str, bytes],
                 private_key: Any) -> Dict[str, Any]:
    """Write a signed bundle.

    The ``members`` section of ``manifest`` is (re)computed from ``members``;
    the manifest is then serialized with :func:`canonical_json` and signed.
    The file is written to a temporary name and renamed, so a crash never
    leaves a half-written bundle under ``out_path``.

    Args:
        out_path: Destination, normally ``*.lgb``.
        manifest: Manifest without (or with a stale) ``members`` section.
        members: Member name to bytes (model, golden vectors, ...).
        private_key: An ``Ed25519PrivateKey``.

    Returns:
        The manifest as written.
    """
    manifest = dict(manifest)
    manifest["members"] = {name: member_entry(data) for name, data in sorted(members.items())}
    manifest_bytes = canonical_json(manifest)
    signature_bytes = sign_manifest(manifest_bytes, private_key)
    out = Path(out_path)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in [(MANIFEST_MEMBER, manifest_bytes), (SIGNATURE_MEMBER, signature_bytes)] + sorted(
                members.items()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(out)
    return manifest


@dataclasses.dataclass
class BundleContents:
    """The raw members of a bundle file, before any check."""

    path: Path
    manifest_bytes: bytes
    signature_bytes: bytes
    members: Dict[str, bytes]


def read_bundle(path: PathLike) -> BundleContents:
    """Read every member of a bundle file into memory, checking only the container.

    Raises:
        BundleError: Missing file, not a zip, truncated, CRC errors, oversized
            or duplicate members, or no manifest/signature.
    """
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: no such bundle file")
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise BundleError(f"{p}: has {len(infos)} members; a bundle has at most {MAX_MEMBERS}")
            names = [i.filename for i in infos]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise BundleError(f"{p}: member {dupes[0]!r} appears more than once; a bundle has unique members")
            data: Dict[str, bytes] = {}
            for info in infos:
                if info.file_size > MAX_MEMBER_BYTES:
                    raise BundleError(f"{p}: member {info.filename!r} is {info.file_size} bytes; "
                                      f"the limit is {MAX_MEMBER_BYTES}")
                data[info.filename] = zf.read(info)
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError) as exc:
        reason = str(exc) or type(exc).__name__
        raise BundleError(f"{p}: not a readable LiftGuard bundle (truncated or corrupt: {reason})") from None
    except Exception as exc:  # zlib.error and other decoder failures
        raise BundleError(f"{p}: not a readable LiftGuard bundle (truncated or corrupt: "
                          f"{type(exc).__name__}: {exc})") from None
    for required in (MANIFEST_MEMBER, SIGNATURE_MEMBER):
        if required not in data:
            raise BundleError(f"{p}: has no {required}; not a LiftGuard bundle")
    manifest_bytes = data.pop(MANIFEST_MEMBER)
    signature_bytes = data.pop(SIGNATURE_MEMBER)
    return BundleContents(p, manifest_bytes, signature_bytes, data)


# ------------------------------------------------------------------------ checks

def _get(manifest: Dict[str, Any], dotted: str, kind: Any, where: Path) -> Any:
    """Fetch ``a.b.c`` from the manifest, checking its type."""
    node: Any = manifest
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise BundleError(f"{where}: manifest field {dotted!r} is missing")
        node = node[part]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(node, bool) and bool not in kinds:
        raise BundleError(f"{where}: manifest field {dotted!r} is {node!r}; expected {kinds[0].__name__}")
    if not isinstance(node, kinds):
        raise BundleError(f"{where}: manifest field {dotted!r} is {node!r}; expected "
                          f"{' or '.join(k.__name__ for k in kinds)}")
    return node


def _parse_manifest(contents: BundleContents) -> Dict[str, Any]:
    """Parse manifest.json and check its format and schema version."""
    p = contents.path
    try:
        manifest = json.loads(contents.manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{p}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{p}: manifest.json holds a {type(manifest).__name__}; expected an object")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{p}: manifest format is {manifest.get('format')!r}; expected {BUNDLE_FORMAT!r}")
    schema = manifest.get("schema_version")
    if isinstance(schema, bool) or not isinstance(schema, int):
        raise BundleError(f"{p}: manifest schema_version is {schema!r}; expected an integer")
    if schema not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(f"{p}: unsupported schema version {schema}; this hub reads "
                          f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))} (update the hub software)")
    return manifest


def _check_signature(contents: BundleContents, trusted_keys: Sequence[PathLike]) -> str:
    """Verify the Ed25519 signature over manifest.json; return the signer's key id."""
    from cryptography.exceptions import InvalidSignature

    p = contents.path
    if not trusted_keys:
        raise BundleError(f"{p}: no trusted keys configured; cannot accept any bundle "
                          f"(provision the hub with the signer's KEY.pub)")
    keys = {}
    for key_path in trusted_keys:
        key = load_public_key(key_path)
        keys[public_key_id(key)] = (Path(key_path), key)
    try:
        sig = json.loads(contents.signature_bytes.decode("utf-8"))
        algorithm, key_id = sig["algorithm"], str(sig["key_id"])
        signature = base64.b64decode(sig["signature"], validate=True)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise BundleError(f"{p}: signature.json is malformed; expected algorithm, key_id and a base64 "
                          f"signature") from None
    if algorithm != "ed25519":
        raise BundleError(f"{p}: signature algorithm {algorithm!r} is not supported; expected 'ed25519'")
    if key_id not in keys:
        raise BundleError(f"{p}: signed by unknown key {key_id}; this hub trusts "
                          f"{', '.join(sorted(keys))}")
    key_path, key = keys[key_id]
    try:
        key.verify(signature, contents.manifest_bytes)
    except InvalidSignature:
        raise BundleError(f"{p}: bad signature: manifest.json does not match its Ed25519 signature "
                          f"by key {key_id} ({key_path.name}); the bundle was altered after signing") from None
    return key_id


def _check_members(contents: BundleContents, manifest: Dict[str, Any]) -> None:
    """Check that the members are exactly those listed, with the listed sizes and hashes."""
    p = contents.path
    listed = _get(manifest, "members", dict, p)
    for name in sorted(contents.members):
        if name not in listed:
            raise BundleError(f"{p}: member {name!r} is not listed in the manifest; refusing unknown content")
    for name, entry in sorted(listed.items()):
        if name not in contents.members:
            raise BundleError(f"{p}: manifest lists member {name!r} but the bundle lacks it")
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise BundleError(f"{p}: manifest entry for {name!r} has no sha256")
        data = contents.members[name]
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"] or len(data) != entry.get("size", len(data)):
            raise BundleError(f"{p}: member {name!r} is corrupt: sha256 {digest[:16]}... ({len(data)} bytes) "
                              f"but the manifest says {str(entry['sha256'])[:16]}... ({entry.get('size')} bytes)")
    for required in (MODEL_MEMBER, GOLDEN_MEMBER):
        if required not in listed:
            raise BundleError(f"{p}: bundle has no {required}")


def _check_layout(manifest: Dict[str, Any], hub_sensors: Sequence[str], p: Path) -> None:
    """Check the bundle's sensors, channels, units, sample rate and classes against this hub."""
    sensors = _get(manifest, "layout.sensors", list, p)
    channels = _get(manifest, "layout.channels", list, p)
    units = _get(manifest, "layout.units", dict, p)
    required = manifest["layout"].get("required_sensors", sensors)
    if not isinstance(required, list):
        raise BundleError(f"{p}: manifest field 'layout.required_sensors' is {required!r}; expected a list")
    missing = [s for s in required if s not in hub_sensors]
    if missing:
        raise BundleError(f"{p}: bundle needs sensor(s) {', '.join(map(str, missing))} which this hub lacks "
                          f"(hub has {', '.join(hub_sensors) or 'none'})")
    if list(sensors) != list(layout.SENSORS) or list(channels) != list(layout.CHANNELS):
        raise BundleError(f"{p}: bundle channel layout {list(channels)[:3]}... ({len(channels)} channels) "
                          f"differs from this hub's {list(layout.CHANNELS)[:3]}... ({layout.N_CHANNELS} channels)")
    if dict(units) != dict(layout.UNITS):
        raise BundleError(f"{p}: bundle units {units} differ from this hub's {dict(layout.UNITS)}")
    rate = _get(manifest, "sample_rate_hz", (int, float), p)
    if not math.isclose(float(rate), layout.SAMPLE_RATE_HZ):
        raise BundleError(f"{p}: bundle sample rate {rate} Hz differs from this hub's {layout.SAMPLE_RATE_HZ} Hz")
    window = _get(manifest, "window", int, p)
    if window != layout.WINDOW_SAMPLES:
        raise BundleError(f"{p}: bundle window {window} samples differs from this hub's {layout.WINDOW_SAMPLES}")
    classes = _get(manifest, "class_names", list, p)
    if list(classes) != list(layout.CLASS_NAMES):
        raise BundleError(f"{p}: bundle classes {classes} differ from this hub's {list(layout.CLASS_NAMES)}")


def _check_quantization(manifest: Dict[str, Any], which: str, shape: Sequence[int], p: Path) -> Dict[str, Any]:
    """Check the manifest's ``input`` or ``output`` section; return it."""
    section = _get(manifest, which, dict, p)
    got_shape = _get(manifest, f"{which}.shape", list, p)
    if list(got_shape) != list(shape):
        raise BundleError(f"{p}: manifest {which} shape {got_shape}; expected {list(shape)}")
    dtype = _get(manifest, f"{which}.dtype", str, p)
    if dtype != "int8":
        raise BundleError(f"{p}: manifest {which} dtype {dtype!r}; expected 'int8'")
    scale = float(_get(manifest, f"{which}.scale", (int, float), p))
    if not (math.isfinite(scale) and scale > 0):
        raise BundleError(f"{p}: manifest {which} scale {scale!r}; expected a finite number > 0")
    zp = _get(manifest, f"{which}.zero_point", int, p)
    if not -128 <= zp <= 127:
        raise BundleError(f"{p}: manifest {which} zero_point {zp}; expected -128 to 127")
    return section


@dataclasses.dataclass
class Golden:
    """Golden vectors of a bundle."""

    raw_windows: List[np.ndarray]
    input_int8: np.ndarray
    output_int8: np.ndarray


def _read_golden(data: bytes, n_classes: int, p: Path) -> Golden:
    """Unpack and shape-check ``golden.npz``."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            raw, lengths = np.asarray(z["raw"]), np.asarray(z["lengths"])
            inp, out = np.asarray(z["input_int8"]), np.asarray(z["output_int8"])
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{p}: {GOLDEN_MEMBER} is unreadable ({exc}); expected arrays raw, lengths, "
                          f"input_int8, output_int8") from None
    k = len(lengths)
    if (k < 1 or raw.ndim != 3 or raw.shape[0] != k or raw.shape[2] != layout.N_CHANNELS
            or inp.shape != (k,) + layout.IMAGE_SHAPE or inp.dtype != np.int8
            or out.shape != (k, n_classes) or out.dtype != np.int8
            or np.any(lengths < 1) or np.any(lengths > raw.shape[1])):
        raise BundleError(f"{p}: {GOLDEN_MEMBER} has inconsistent shapes (raw {raw.shape}, input {inp.shape} "
                          f"{inp.dtype}, output {out.shape} {out.dtype}); expected k windows, (k,95,95,3) int8 "
                          f"and (k,{n_classes}) int8")
    windows = [raw[i, : int(lengths[i])].astype(np.float64) for i in range(k)]
    return Golden(windows, inp, out)


def check_golden_inputs(golden: Golden, recipe: Any, scale: float, zero_point: int, p: Path) -> None:
    """Check that this hub's signal path gives the bundle's int8 inputs bit for bit.

    Raises:
        BundleError: Naming the first golden vector that differs.
    """
    from .signal_path import quantize_int8, tensorize

    for i, window in enumerate(golden.raw_windows):
        try:
            q = quantize_int8(tensorize(window, recipe), scale, zero_point)
        except TensorError as exc:
            raise BundleError(f"{p}: golden vector {i}: the signal path rejects its raw window ({exc})") from None
        expected = golden.input_int8[i]
        if not np.array_equal(q, expected):
            diff = np.abs(q.astype(np.int32) - expected.astype(np.int32))
            raise BundleError(f"{p}: self-test failed: golden vector {i}: this hub's signal path gives a different "
                              f"int8 input ({int(np.count_nonzero(diff))} of {diff.size} values differ, by up to "
                              f"{int(diff.max())} steps); the bundle and this hub disagree on the tensor recipe")


@dataclasses.dataclass
class _Verified:
    contents: BundleContents
    manifest: Dict[str, Any]
    recipe: Any
    golden: Golden
    key_id: str
    gate: Any = None


def _verify(path: PathLike, trusted_keys: Sequence[PathLike], hub_sensors: Sequence[str],
            installed_version: Optional[str], force: bool, check_inputs: bool) -> _Verified:
    from .signal_path import TensorRecipe

    contents = read_bundle(path)
    p = contents.path
    manifest = _parse_manifest(contents)
    key_id = _check_signature(contents, trusted_keys)
    _check_members(contents, manifest)
    model_id = _get(manifest, "model_id", str, p)
    if not model_id:
        raise BundleError(f"{p}: manifest model_id is empty")
    version = _get(manifest, "model_version", str, p)
    parse_version(version, f"{p}: model version")
    _get(manifest, "created", str, p)
    _check_layout(manifest, hub_sensors, p)
    n_classes = len(manifest["class_names"])
    _check_quantization(manifest, "input", [1] + list(layout.IMAGE_SHAPE), p)
    _check_quantization(manifest, "output", [1, n_classes], p)
    try:
        recipe = TensorRecipe.from_dict(_get(manifest, "recipe", dict, p))
    except TensorError as exc:
        raise BundleError(f"{p}: manifest recipe is unusable: {exc}") from None
    if not math.isclose(recipe.sample_rate_hz, float(manifest["sample_rate_hz"])):
        raise BundleError(f"{p}: recipe sample rate {recipe.sample_rate_hz} Hz disagrees with the manifest's "
                          f"{manifest['sample_rate_hz']} Hz")
    if installed_version is not None and compare_versions(version, installed_version) < 0:
        if not force:
            raise BundleError(f"{p}: bundle version {version} is older than the installed {installed_version}; "
                              f"refusing to downgrade without --force")
    tol = _get(manifest, "golden", dict, p).get("default_kernels_tolerance_steps", GOLDEN_TOLERANCE_STEPS)
    if isinstance(tol, bool) or not isinstance(tol, int) or not 0 <= tol <= 16:
        raise BundleError(f"{p}: manifest golden.default_kernels_tolerance_steps is {tol!r}; expected 0 to 16")
    golden = _read_golden(contents.members[GOLDEN_MEMBER], n_classes, p)
    if check_inputs:
        check_golden_inputs(golden, recipe, float(manifest["input"]["scale"]),
                            int(manifest["input"]["zero_point"]), p)
    return _Verified(contents, manifest, recipe, golden, key_id, _parse_gate(manifest, recipe, p))


def _parse_gate(manifest: Dict[str, Any], recipe: Any, p: Path) -> Any:
    """The optional ``lift_gate`` section as an :class:`edge.lift_gate.LiftGate` bound to ``recipe``, or None."""
    if "lift_gate" not in manifest or manifest["lift_gate"] is None:
        return None
    from .errors import ConfigError
    from .lift_gate import LiftGate

    try:
        return LiftGate.from_dict(manifest["lift_gate"], where=f"{p}: manifest lift_gate", recipe=recipe)
    except ConfigError as exc:
        raise BundleError(str(exc) if str(exc).startswith(str(p)) else f"{p}: manifest lift_gate: {exc}") from None


def verify_bundle(path: PathLike, *, trusted_keys: Sequence[PathLike],
                  hub_sensors: Sequence[str] = layout.SENSORS, installed_version: Optional[str] = None,
                  force: bool = False, check_inputs: bool = True) -> Dict[str, Any]:
    """Run every check that needs no interpreter and return the manifest.

    Checks, in order: the container (zip, sizes, CRCs), format and schema
    version, the Ed25519 signature against ``trusted_keys``, every member's
    size and sha256, required fields, the layout against ``hub_sensors``,
    quantization fields, the recipe, the version against
    ``installed_version`` (unless ``force``), and (``check_inputs``) that this
    machine's signal path reproduces the golden int8 inputs bit for bit.

    Raises:
        BundleError: On the first failed check, in one line.
    """
    return _verify(path, trusted_keys, hub_sensors, installed_version, force, check_inputs).manifest


# ------------------------------------------------------------------------ loading

@dataclasses.dataclass(frozen=True)
class Classification:
    """The model's verdict on one lift window."""

    risk: str
    probs: np.ndarray
    latency_ms: float


class LoadedBundle:
    """A verified, self-tested bundle with its interpreter, ready to classify.

    Build it with :func:`load_bundle`. Calls are serialized by a lock, since a
    TFLite interpreter is not thread-safe.
    """

    def __init__(self, verified: _Verified, interpreter: Any, runtime: str, model_member: str,
                 selftest: List[Dict[str, Any]], load_seconds: float, notes: List[str]) -> None:
        self.path = verified.contents.path
        self.manifest = verified.manifest
        self.recipe = verified.recipe
        self.key_id = verified.key_id
        #: The optional lift gate (:class:`edge.lift_gate.LiftGate`, bound to :attr:`recipe`) or None.
        self.gate = verified.gate
        self.model_id: str = verified.manifest["model_id"]
        self.model_version: str = verified.manifest["model_version"]
        self.class_names: Tuple[str, ...] = tuple(verified.manifest["class_names"])
        self.runtime = runtime
        self.kernels = "builtin"
        self.model_member = model_member
        self.selftest = selftest
        self.load_seconds = load_seconds
        self.notes = notes
        self._interpreter = interpreter
        self._in = interpreter.get_input_details()[0]
        self._out = interpreter.get_output_details()[0]
        self.input_scale, self.input_zero_point = float(self._in["quantization"][0]), int(self._in["quantization"][1])
        self.output_scale, self.output_zero_point = (float(self._out["quantization"][0]),
                                                     int(self._out["quantization"][1]))
        self._lock = threading.Lock()

    def predict_int8(self, q: np.ndarray) -> np.ndarray:
        """Run the model on one int8 input ``(95, 95, 3)``; return its int8 output ``(n_classes,)``."""
        q = np.asarray(q)
        if q.shape != layout.IMAGE_SHAPE or q.dtype != np.int8:
            raise TensorError(f"model input has shape {q.shape} dtype {q.dtype}; expected {layout.IMAGE_SHAPE} int8")
        with self._lock:
            if self._interpreter is None:
                raise BundleError(f"{self.path}: bundle was closed; load it again")
            self._interpreter.set_tensor(self._in["index"], q[np.newaxis])
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._out["index"])[0], copy=True)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities for one float32 ``(95, 95, 3)`` image.

        The image is quantized with the model's own input scale and zero
        point, and the output dequantized with its output scale and zero point.
        """
        from .signal_path import dequantize_int8, quantize_int8

        image = np.asarray(image, dtype=np.float32)
        if image.shape != layout.IMAGE_SHAPE:
            raise TensorError(f"image has shape {image.shape}; expected {layout.IMAGE_SHAPE}")
        q = quantize_int8(image, self.input_scale, self.input_zero_point)
        return dequantize_int8(self.predict_int8(q), self.output_scale, self.output_zero_point)

    def classify(self, raw_window: np.ndarray) -> Classification:
        """Tensorize a raw window ``(n, 36)`` with the bundle's recipe and classify it."""
        from .signal_path import tensorize

        t0 = time.perf_counter()
        probs = self.predict(tensorize(raw_window, self.recipe))
        latency_ms = (time.perf_counter() - t0) * 1000.0
        return Classification(self.class_names[layout.predicted_class(probs)], probs, latency_ms)

    def describe(self) -> Dict[str, Any]:
        """A JSON-able summary for status displays."""
        return {"path": str(self.path), "model_id": self.model_id, "model_version": self.model_version,
                "runtime": self.runtime, "kernels": self.kernels, "model_member": self.model_member,
                "key_id": self.key_id,
                "load_seconds": round(self.load_seconds, 4), "golden_vectors": len(self.selftest),
                "notes": list(self.notes),
                "lift_gate": None if self.gate is None else {"threshold": self.gate.threshold}}

    def close(self) -> None:
        """Drop the interpreter."""
        self._interpreter = None

    def __repr__(self) -> str:
        return f"LoadedBundle({self.model_id!r}, version {self.model_version}, runtime {self.runtime})"


def _check_model_tensors(interpreter: Any, manifest: Dict[str, Any], member: str, p: Path) -> None:
    """Check the interpreter's input/output tensors against the manifest."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise BundleError(f"{p}: {member} has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1")
    for which, detail in (("input", inputs[0]), ("output", outputs[0])):
        want = manifest[which]
        shape = [int(v) for v in detail["shape"]]
        if shape != list(want["shape"]):
            raise BundleError(f"{p}: manifest disagrees with {member}: {which} shape is {shape} in the model "
                              f"but {want['shape']} in the manifest")
        dtype = np.dtype(detail["dtype"]).name
        if dtype != want["dtype"]:
            raise BundleError(f"{p}: manifest disagrees with {member}: {which} dtype is {dtype} in the model "
                              f"but {want['dtype']} in the manifest")
        scale, zp = float(detail["quantization"][0]), int(detail["quantization"][1])
        if not math.isclose(scale, float(want["scale"]), rel_tol=1e-6) or zp != int(want["zero_point"]):
            raise BundleError(f"{p}: manifest disagrees with {member}: {which} quantization is scale={scale:.9g} "
                              f"zero_point={zp} in the model but scale={float(want['scale']):.9g} "
                              f"zero_point={want['zero_point']} in the manifest")


def _run_golden(interpreter: Any, golden: Golden, member: str, p: Path,
                tolerance: int = GOLDEN_TOLERANCE_STEPS) -> List[Dict[str, Any]]:
    """Run the golden inputs; each output must be within ``tolerance`` int8 steps of the expected one."""
    d_in, d_out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    report = []
    for i in range(len(golden.raw_windows)):
        t0 = time.perf_counter()
        interpreter.set_tensor(d_in["index"], golden.input_int8[i][np.newaxis])
        interpreter.invoke()
        got = np.array(interpreter.get_tensor(d_out["index"])[0], dtype=np.int32)
        ms = (time.perf_counter() - t0) * 1000.0
        want = golden.output_int8[i].astype(np.int32)
        steps = int(np.max(np.abs(got - want)))
        if steps > tolerance:
            raise BundleError(f"{p}: self-test failed: golden vector {i} gives int8 output {got.tolist()} with "
                              f"{member}; expected {want.tolist()} within {tolerance} step(s) (off by {steps})")
        report.append({"vector": i, "samples": len(golden.raw_windows[i]), "output": got.tolist(),
                       "expected": want.tolist(), "max_steps": steps, "ms": round(ms, 3)})
    return report


def load_bundle(path: PathLike, *, trusted_keys: Sequence[PathLike], hub_sensors: Sequence[str] = layout.SENSORS,
                installed_version: Optional[str] = None, force: bool = False, num_threads: int = 1,
                self_test: bool = True, prefer: Union[None, str, Sequence[str]] = None,
                use_edgetpu: Optional[bool] = None, kernels: str = "builtin") -> LoadedBundle:
    """Verify, load and self-test a bundle; return it only when every check passed.

    Args:
        path: The ``.lgb`` file.
        trusted_keys: The hub's trusted Ed25519 public keys (PEM files).
        hub_sensors: The sensors this hub is configured with.
        installed_version: The currently installed model version; an older
            bundle is refused unless ``force``.
        force: Allow a downgrade.
        num_threads: Interpreter threads.
        self_test: Run the golden vectors (inputs bit-exact through this
            hub's signal path, outputs within one int8 step).
        prefer: Runtime to try first (see :func:`edge.runtime.make_interpreter`).
        use_edgetpu: When the bundle carries an Edge TPU model: ``None`` uses
            it if the delegate loads and otherwise falls back to the CPU model
            (noted in ``.notes``); ``True`` requires it; ``False`` ignores it.
        kernels: ``"builtin"`` (default): TFLite's built-in kernels, whose
            int8 arithmetic is identical in every runtime version, so the
            golden outputs must match within one step. ``"default"``: the
            runtime's default delegate (XNNPACK, faster); its rounding
            differs, so the golden outputs must match within the
            ``golden.default_kernels_tolerance_steps`` measured at export.

    Raises:
        BundleError: A failed check, in one line.
        RuntimeMissing: No TFLite runtime, or a required Edge TPU delegate is missing.
    """
    from .runtime import make_interpreter

    t0 = time.perf_counter()
    verified = _verify(path, trusted_keys, hub_sensors, installed_version, force, check_inputs=False)
    p, members = verified.contents.path, verified.contents.members
    notes: List[str] = []
    candidates = [MODEL_MEMBER]
    if EDGETPU_MEMBER in members and use_edgetpu is not False:
        candidates.insert(0, EDGETPU_MEMBER)
    elif use_edgetpu:
        raise BundleError(f"{p}: Edge TPU requested but the bundle has no {EDGETPU_MEMBER}")
    interpreter, runtime, member = None, "", ""
    for member in candidates:
        try:
            interpreter, runtime = make_interpreter(members[member], num_threads=num_threads, prefer=prefer,
                                                    model_name=member, kernels=kernels)
            break
        except RuntimeMissing as exc:
            if member == EDGETPU_MEMBER and use_edgetpu is None:
                notes.append(f"Edge TPU model not used: {exc}")
                continue
            raise
    _check_model_tensors(interpreter, verified.manifest, member, p)
    report: List[Dict[str, Any]] = []
    if self_test:
        check_golden_inputs(verified.golden, verified.recipe, float(verified.manifest["input"]["scale"]),
                            int(verified.manifest["input"]["zero_point"]), p)
        tolerance = GOLDEN_TOLERANCE_STEPS
        if kernels != "builtin" or member == EDGETPU_MEMBER:
            measured = verified.manifest["golden"].get("default_kernels_tolerance_steps", GOLDEN_TOLERANCE_STEPS)
            tolerance = max(GOLDEN_TOLERANCE_STEPS, int(measured))
        report = _run_golden(interpreter, verified.golden, member, p, tolerance)
    loaded = LoadedBundle(verified, interpreter, runtime, member, report, time.perf_counter() - t0, notes)
    loaded.kernels = "edgetpu" if member == EDGETPU_MEMBER else kernels
    return loaded

