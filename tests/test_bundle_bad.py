"""Every kind of bad bundle is refused with one clear line, and nothing is half-loaded."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_bundle_kit import SEED, run_cli, tiny_bundle


@pytest.fixture(scope="module")
def tb():
    return tiny_bundle()


@pytest.fixture(scope="module")
def keys(tb):
    from quantize.keygen import load_private_key

    return {"main": load_private_key(tb.key), "other": load_private_key(tb.other_key)}


def repack(src: Path, dst: Path, key, *, manifest=None, members=None) -> Path:
    """Re-sign ``src`` after editing its manifest and/or members (hashes recomputed)."""
    from edge.bundle import read_bundle, write_bundle

    contents = read_bundle(src)
    m = json.loads(contents.manifest_bytes)
    mem = dict(contents.members)
    if manifest:
        manifest(m)
    if members:
        members(mem)
    write_bundle(dst, m, mem, key)
    return dst


def raw_rewrite(src: Path, dst: Path, replace: dict) -> Path:
    """Copy the zip, replacing members' bytes without re-signing or re-hashing."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, replace.get(info.filename, zin.read(info)))
    return dst


def refused(path, tb, match, **kw):
    """Assert load_bundle refuses ``path`` with a one-line message matching ``match``."""
    from edge.bundle import load_bundle
    from edge.errors import BundleError

    kw.setdefault("trusted_keys", [tb.pub])
    with pytest.raises(BundleError, match=match) as info:
        load_bundle(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_truncated_file(tb, tmp_path):
    data = tb.bundle.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 100):
        p = tmp_path / f"cut{cut}.lgb"
        p.write_bytes(data[:cut])
        refused(p, tb, "not a readable LiftGuard bundle \\(truncated or corrupt")


def test_corrupt_bytes_in_the_archive(tb, tmp_path):
    data = bytearray(tb.bundle.read_bytes())
    with zipfile.ZipFile(tb.bundle) as zf:
        info = zf.getinfo("model_int8.tflite")
    pos = info.header_offset + 30 + len(info.filename) + 200  # inside the compressed model data
    data[pos] ^= 0xFF
    p = tmp_path / "flipped.lgb"
    p.write_bytes(bytes(data))
    refused(p, tb, "truncated or corrupt")


def test_not_a_zip_and_missing_file(tb, tmp_path):
    p = tmp_path / "text.lgb"
    p.write_text("hello")
    refused(p, tb, "not a readable LiftGuard bundle")
    refused(tmp_path / "absent.lgb", tb, "no such bundle file")


def test_member_hash_mismatch(tb, tmp_path):
    from edge.bundle import read_bundle

    model = bytearray(read_bundle(tb.bundle).members["model_int8.tflite"])
    model[-10] ^= 0x01
    p = raw_rewrite(tb.bundle, tmp_path / "hash.lgb", {"model_int8.tflite": bytes(model)})
    refused(p, tb, "member 'model_int8.tflite' is corrupt: sha256")


def test_bad_signature_when_the_manifest_was_edited(tb, tmp_path):
    from edge.bundle import read_bundle

    m = json.loads(read_bundle(tb.bundle).manifest_bytes)
    m["model_version"] = "9.9.9"
    edited = (json.dumps(m, indent=1, sort_keys=True) + "\n").encode()
    p = raw_rewrite(tb.bundle, tmp_path / "sig.lgb", {"manifest.json": edited})
    refused(p, tb, "bad signature: manifest.json does not match its Ed25519 signature")


def test_unknown_key(tb, keys, tmp_path):
    p = repack(tb.bundle, tmp_path / "other.lgb", keys["other"])
    msg = refused(p, tb, "signed by unknown key")
    from edge.bundle import load_public_key, public_key_id

    assert public_key_id(load_public_key(tb.other_pub)) in msg
    assert public_key_id(load_public_key(tb.pub)) in msg  # says what it trusts


def test_no_trusted_keys(tb):
    refused(tb.bundle, tb, "no trusted keys configured", trusted_keys=[])


def test_unsupported_schema_version(tb, keys, tmp_path):
    p = repack(tb.bundle, tmp_path / "schema.lgb", keys["main"],
               manifest=lambda m: m.update(schema_version=2))
    refused(p, tb, "unsupported schema version 2; this hub reads 1")


def test_manifest_disagrees_with_model_quantization(tb, keys, tmp_path):
    def bump(m):
        m["input"]["scale"] = m["input"]["scale"] * 1.5

    p = repack(tb.bundle, tmp_path / "scale.lgb", keys["main"], manifest=bump)
    refused(p, tb, "manifest disagrees with model_int8.tflite: input quantization is scale=")

    def zp(m):
        m["output"]["zero_point"] = m["output"]["zero_point"] + 3

    p = repack(tb.bundle, tmp_path / "zp.lgb", keys["main"], manifest=zp)
    refused(p, tb, "manifest disagrees with model_int8.tflite: output quantization")


def test_manifest_disagrees_with_model_input_shape(tb, keys, tmp_path):
    import keras

    from quantize.convert import convert_int8

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((95, 95, 1))
    x = keras.layers.Conv2D(2, 3, strides=4, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    one_channel = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    rep = np.random.default_rng(0).normal(size=(4, 95, 95, 1)).astype(np.float32)
    other_model = convert_int8(one_channel, rep)
    p = repack(tb.bundle, tmp_path / "shape.lgb", keys["main"],
               members=lambda mem: mem.update({"model_int8.tflite": other_model}))
    refused(p, tb, r"input shape is \[1, 95, 95, 1\] in the model but \[1, 95, 95, 3\] in the manifest")


def test_float_model_in_an_int8_bundle(tb, keys, tmp_path):
    float_model = (tb.run / "model_float32.tflite").read_bytes()
    p = repack(tb.bundle, tmp_path / "float.lgb", keys["main"],
               members=lambda mem: mem.update({"model_int8.tflite": float_model}))
    refused(p, tb, "input dtype is float32 in the model but int8 in the manifest")


def test_layout_the_hub_lacks(tb):
    msg = refused(tb.bundle, tb, "needs sensor\\(s\\) Thig which this hub lacks",
                  hub_sensors=("Side", "LtWt", "RtWt", "Back", "UArm"))
    assert "hub has Side, LtWt, RtWt, Back, UArm" in msg


def test_channel_order_or_units_differ(tb, keys, tmp_path):
    def swap(m):
        ch = m["layout"]["channels"]
        ch[0], ch[1] = ch[1], ch[0]

    refused(repack(tb.bundle, tmp_path / "order.lgb", keys["main"], manifest=swap), tb,
            "channel layout .* differs from this hub's")

    def units(m):
        m["layout"]["units"]["A"] = "m/s^2"

    refused(repack(tb.bundle, tmp_path / "units.lgb", keys["main"], manifest=units), tb, "units .* differ")


def test_older_than_installed_unless_forced(tb):
    from edge.bundle import load_bundle

    refused(tb.bundle, tb, "bundle version 1.2.0 is older than the installed 1.10.0; refusing to downgrade "
                           "without --force", installed_version="1.10.0")
    loaded = load_bundle(tb.bundle, trusted_keys=[tb.pub], installed_version="1.10.0", force=True)
    assert loaded.model_version == "1.2.0"
    assert load_bundle(tb.bundle, trusted_keys=[tb.pub], installed_version="1.2.0").model_version == "1.2.0"


def test_golden_output_mismatch_fails_the_self_test(tb, keys, tmp_path):
    def shift(mem):
        with np.load(io.BytesIO(mem["golden.npz"])) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["output_int8"] = np.clip(arrays["output_int8"].astype(np.int32) + 5, -128, 127).astype(np.int8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        mem["golden.npz"] = buf.getvalue()

    p = repack(tb.bundle, tmp_path / "golden.lgb", keys["main"], members=shift)
    refused(p, tb, "self-test failed: golden vector 0 gives int8 output .* within 1 step")


def test_golden_input_mismatch_means_a_different_signal_path(tb, keys, tmp_path):
    def nudge(m):
        m["recipe"]["mean"][0] += 0.5

    p = repack(tb.bundle, tmp_path / "recipe.lgb", keys["main"], manifest=nudge)
    refused(p, tb, "golden vector 0: this hub's signal path gives a different int8 input")


def test_unlisted_member_is_refused(tb, keys, tmp_path):
    from edge.bundle import read_bundle

    contents = read_bundle(tb.bundle)
    p = tmp_path / "extra.lgb"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("manifest.json", contents.manifest_bytes)
        zf.writestr("signature.json", contents.signature_bytes)
        for name, data in contents.members.items():
            zf.writestr(name, data)
        zf.writestr("payload.sh", b"echo hi")
    refused(p, tb, "member 'payload.sh' is not listed in the manifest")


def test_nothing_half_loaded_and_cli_prints_one_line(tb, keys, tmp_path):
    """A failure after the interpreter was built still returns nothing; the CLI shows one line."""
    def shift(m):
        m["output"]["scale"] = m["output"]["scale"] * 2

    p = repack(tb.bundle, tmp_path / "late.lgb", keys["main"], manifest=shift)
    status, out, err = run_cli("edge", ["selftest", "--bundle", p, "--trust", tb.pub])
    assert status == 1 and out == ""
    assert err.startswith("edge: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "manifest disagrees" in err


def test_store_install_keeps_the_old_bundle_when_a_new_one_is_bad(tb, keys, tmp_path):
    from edge.errors import BundleError
    from edge.store import BundleStore

    store = BundleStore(tmp_path / "store")
    store.provision(tb.pub.read_bytes(), "hub-1")
    store.install(tb.bundle)
    before = (store.active_path(), store.generation())
    bad = repack(tb.bundle, tmp_path / "bad.lgb", keys["other"], manifest=lambda m: m.update(model_version="2.0"))
    with pytest.raises(BundleError, match="unknown key"):
        store.install(bad)
    assert (store.active_path(), store.generation()) == before


def test_implausible_golden_tolerance_is_refused(tb, keys, tmp_path):
    def loosen(m):
        m["golden"]["default_kernels_tolerance_steps"] = 255

    p = repack(tb.bundle, tmp_path / "loose.lgb", keys["main"], manifest=loosen)
    refused(p, tb, "golden.default_kernels_tolerance_steps is 255; expected 0 to 16")
