"""The hub's bundle store (edge.store): install, refuse, switch, roll back, recover, provision."""

from __future__ import annotations

import json
import os

import pytest

from host_kit import bundles, new_store, sha256

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def kit():
    return bundles()


def test_install_switches_and_keeps_previous(tmp_path, kit):
    store = new_store(tmp_path, kit.pub)
    assert store.active_path() is None and store.generation() == ""
    r1 = store.install(kit.v120)
    assert r1.installed and r1.version == "1.2.0" and r1.previous_version is None
    g1 = store.generation()
    assert sha256(store.active_path()) == sha256(kit.v120)
    assert os.path.islink(tmp_path / "current")
    assert os.readlink(tmp_path / "current") == f"bundles/{r1.folder}"
    r2 = store.install(kit.v130)
    assert r2.installed and r2.previous_version == "1.2.0"
    assert store.generation() != g1
    assert sha256(store.active_path()) == sha256(kit.v130)
    assert sha256(store.previous_path()) == sha256(kit.v120)
    meta = store.meta(store.active_folder())
    assert meta["sha256"] == sha256(kit.v130) and meta["version"] == "1.3.0"
    # installing the active bundle again changes nothing
    g2 = store.generation()
    again = store.install(kit.v130)
    assert not again.installed and "already active" in again.message and store.generation() == g2


def test_rollback_swaps_and_twice_undoes(tmp_path, kit):
    store = new_store(tmp_path, kit.pub, install=kit.v120)
    store.install(kit.v130)
    g = store.generation()
    assert store.rollback() == {"active": "1.2.0", "previous": "1.3.0"}
    assert store.generation() != g and sha256(store.active_path()) == sha256(kit.v120)
    assert store.rollback() == {"active": "1.3.0", "previous": "1.2.0"}
    fresh = new_store(tmp_path / "fresh", kit.pub, install=kit.v120)
    from edge.errors import FlashError

    with pytest.raises(FlashError, match="no previous bundle"):
        fresh.rollback()


@pytest.mark.parametrize("which,match", [
    ("tampered", "sha256"),
    ("foreign", "unknown key"),
    ("unsigned", "signature.json"),
    ("v110", "older than the installed 1.2.0"),
])
def test_bad_bundles_change_nothing(tmp_path, kit, which, match):
    from edge.errors import BundleError

    store = new_store(tmp_path, kit.pub, install=kit.v120)
    before = sorted(p.name for p in (tmp_path / "bundles").iterdir())
    g = store.generation()
    with pytest.raises(BundleError, match=match):
        store.install(getattr(kit, which))
    assert store.generation() == g
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == before
    assert sha256(store.active_path()) == sha256(kit.v120)


def test_older_bundle_with_force_and_dry_run(tmp_path, kit):
    store = new_store(tmp_path, kit.pub, install=kit.v120)
    dry = store.install(kit.v130, dry_run=True)
    assert not dry.installed and "passed every check" in dry.message
    assert sha256(store.active_path()) == sha256(kit.v120)
    forced = store.install(kit.v110, force=True)
    assert forced.installed and store.active_version() == "1.1.0"


def test_unprovisioned_store_refuses(tmp_path, kit):
    from edge.errors import FlashError
    from edge.store import BundleStore

    with pytest.raises(FlashError, match="not provisioned"):
        BundleStore(tmp_path).install(kit.v120)
    with pytest.raises(FlashError, match="no such file"):
        new_store(tmp_path / "p", kit.pub).install(tmp_path / "missing.lgb")


def test_recover_removes_leftovers_and_keeps_the_active(tmp_path, kit):
    """What a crash between steps leaves behind is cleaned when the store is opened."""
    from edge.store import BundleStore

    store = new_store(tmp_path, kit.pub, install=kit.v120)
    (tmp_path / "bundles" / ".tmp-crashed").mkdir()
    (tmp_path / "bundles" / ".tmp-crashed" / "bundle.lgb").write_bytes(kit.v130.read_bytes()[:1000])
    os.symlink("bundles/nowhere", tmp_path / ".current.tmp-123-abcd")
    reopened = BundleStore(tmp_path)
    assert not (tmp_path / "bundles" / ".tmp-crashed").exists()
    assert not (tmp_path / ".current.tmp-123-abcd").exists()
    assert sha256(reopened.active_path()) == sha256(kit.v120)


def test_dangling_current_falls_back_to_previous(tmp_path, kit):
    from edge.store import BundleStore

    store = new_store(tmp_path, kit.pub, install=kit.v120)
    r = store.install(kit.v130)
    import shutil

    shutil.rmtree(tmp_path / "bundles" / r.folder)  # a hand-damaged card
    assert sha256(BundleStore(tmp_path).active_path()) == sha256(kit.v120)


def test_pointer_file_where_symlinks_are_unsupported(tmp_path, kit, monkeypatch):
    """On FAT (no symlinks) current/previous are one-line files replaced atomically."""
    import edge.store as store_mod

    def no_symlinks(*a, **k):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(store_mod.os, "symlink", no_symlinks)
    store = new_store(tmp_path, kit.pub, install=kit.v120)
    store.install(kit.v130)
    assert (tmp_path / "current").is_file() and not (tmp_path / "current").is_symlink()
    assert (tmp_path / "current").read_text().startswith("bundles/1.3.0-")
    assert sha256(store.active_path()) == sha256(kit.v130)
    store.rollback()
    assert sha256(store.active_path()) == sha256(kit.v120)


def test_prune_keeps_current_previous_and_one_more(tmp_path, kit):
    store = new_store(tmp_path, kit.pub, install=kit.v110)
    store.install(kit.v120)
    store.install(kit.v130)
    store.install(kit.v110, force=True)
    folders = sorted(p.name for p in (tmp_path / "bundles").iterdir())
    assert len(folders) == 3  # 1.1.0 (current), 1.3.0 (previous), 1.2.0 (one more)
    versions = {v["version"]: v for v in store.versions()}
    assert versions["1.1.0"]["current"] and versions["1.3.0"]["previous"]


def test_provision_once(tmp_path, kit):
    from edge.errors import ConfigError
    from edge.store import BundleStore

    store = BundleStore(tmp_path)
    out = store.provision(kit.pub.read_bytes(), "belt-7")
    assert out["hub_id"] == "belt-7" and not out["replaced"]
    assert store.hub_id() == "belt-7" and [p.name for p in store.trusted_keys()] == ["provisioned.pub"]
    with pytest.raises(ConfigError, match="already provisioned.*--replace"):
        store.provision(kit.pub.read_bytes(), "belt-7")
    with pytest.raises(ConfigError, match="already provisioned"):
        store.provision(kit.other_pub.read_bytes(), "belt-8")
    out = store.provision(kit.other_pub.read_bytes(), "belt-8", replace=True)
    assert out["replaced"] and store.hub_id() == "belt-8"
    assert store.trusted_keys()[0].read_bytes() == kit.other_pub.read_bytes()
    with pytest.raises(ConfigError, match="hub id 'bad id!'"):
        store.provision(kit.pub.read_bytes(), "bad id!", replace=True)
    with pytest.raises(ConfigError, match="not a public key"):
        store.provision(b"hello", "belt-9", replace=True)
    with pytest.raises(ConfigError, match="expected an Ed25519"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        store.provision(pem, "belt-9", replace=True)


def test_status_is_json(tmp_path, kit):
    store = new_store(tmp_path, kit.pub, install=kit.v120)
    st = json.loads(json.dumps(store.status()))
    assert st["hub_id"] == "hub-test" and st["active"]["version"] == "1.2.0" and st["previous"] is None
    from edge.bundle import load_public_key, public_key_id

    assert st["trusted_keys"] == [public_key_id(load_public_key(kit.pub))]  # the id 'host verify' prints
