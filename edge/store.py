"""The hub's bundle store: versioned folders, an atomic switch, rollback, trust.

Layout of a store root (on the hub, or a mounted SD card)::

    ROOT/
      bundles/<version>-<sha12>/bundle.lgb   one folder per installed bundle
      bundles/<version>-<sha12>/meta.json    its sha256, version, model id, time
      current  -> bundles/<...>              the active bundle (symlink)
      previous -> bundles/<...>              the one before it (kept for rollback)
      trust/*.pub                            trusted Ed25519 public keys
      hub_id                                 this hub's id (one line)
      partial/                               interrupted transfers (edge.manage)

Crash safety (a SIGKILL or power cut at any instant leaves the old or the new
bundle active, never none and never a mix):

* a new bundle is verified (signature, hashes, golden self-test, version)
  through :mod:`edge.bundle` *before* anything on disk changes;
* it is written into a temporary folder, fsynced, re-hashed, and only then
  renamed to its final ``bundles/<name>`` (rename is atomic; the bundles
  folder is fsynced);
* ``current`` is switched by creating a temporary symlink and ``os.replace``-ing
  it over ``current`` (atomic on POSIX), then fsyncing ``ROOT``. On file
  systems without symlinks (FAT) the pointer is a one-line file replaced the
  same way.

Until the rename, ``current`` still names the old, complete folder; after it,
the new, complete folder. Leftover temporary folders and symlinks from a crash
are removed the next time the store is opened.

For crash tests, setting the environment variable
``LIFTGUARD_STORE_STEP_DELAY`` (seconds) makes the store print
``store-step NAME`` on stderr and pause at each step of an install, so a test
can SIGKILL the process at a chosen point.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .errors import ConfigError, FlashError

#: Name of the file inside each version folder.
BUNDLE_FILE = "bundle.lgb"
#: Per-version metadata written next to the bundle.
META_FILE = "meta.json"
#: How many installed versions to keep besides ``current`` and ``previous``.
KEEP_EXTRA = 1

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or symlink inside it is durable."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not supported on this platform/file system
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def _step(name: str) -> None:
    """Announce (and, in crash tests, pause at) one step of an install."""
    delay = os.environ.get("LIFTGUARD_STORE_STEP_DELAY")
    if delay:
        print(f"store-step {name}", file=sys.stderr, flush=True)
        time.sleep(float(delay))


def parse_public_key(data: bytes, where: str):
    """Parse an Ed25519 public key (PEM, OpenSSH, DER or raw 32 bytes) with :func:`edge.bundle.parse_public_key`.

    Raises:
        ConfigError: Naming ``where`` and what was expected.
    """
    from .bundle import parse_public_key as parse_key
    from .errors import BundleError

    try:
        return parse_key(data, where)
    except BundleError as exc:
        raise ConfigError(str(exc)) from None


def check_public_key(data: bytes, where: str) -> None:
    """Check that ``data`` is an Ed25519 public key; raise :class:`ConfigError` if not."""
    parse_public_key(data, where)


def public_key_fingerprint(data: bytes) -> str:
    """The key id bundles name their signer by (16 hex digits of sha256 of the raw key).

    Same as :func:`edge.bundle.public_key_id`, so ``host status`` and
    ``host verify`` show the same id; ``"unreadable"`` for a damaged key file.
    """
    from .bundle import public_key_id

    try:
        return public_key_id(parse_public_key(data, "key"))
    except ConfigError:
        return "unreadable"


@dataclasses.dataclass
class InstallResult:
    """What :meth:`BundleStore.install` did.

    Attributes:
        installed: True if the bundle is now active (False for a dry run or
            when it was already active).
        version: The bundle's model version.
        model_id: The bundle's model id.
        sha256: Hex sha256 of the bundle file.
        previous_version: Version active before, or None.
        folder: The version folder (None for a dry run).
        message: One line for the technician.
    """

    installed: bool
    version: str
    model_id: str
    sha256: str
    previous_version: Optional[str]
    folder: Optional[str]
    message: str

    def to_dict(self) -> Dict[str, Any]:
        """Return a JSON-able dict."""
        return dataclasses.asdict(self)


class BundleStore:
    """Versioned bundle folders with an atomic ``current`` pointer.

    Args:
        root: Store root; created when missing.
        hub_sensors: The hub's configured sensors, checked against each bundle.
        verify_only: Verify bundles with :func:`edge.bundle.verify_bundle`
            instead of loading them and running the golden self-test (for
            machines without a TFLite runtime; the hub still self-tests on load).
    """

    def __init__(self, root: os.PathLike, *, hub_sensors: Optional[Sequence[str]] = None,
                 verify_only: bool = False) -> None:
        from .layout import SENSORS

        self.root = Path(root)
        self.hub_sensors = tuple(hub_sensors) if hub_sensors is not None else SENSORS
        self.verify_only = verify_only
        try:
            for sub in ("bundles", "trust", "partial"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"bundle store {self.root}: cannot create it: {exc.strerror or exc}") from None
        self.recover()

    # ------------------------------------------------------------------ paths
    @property
    def bundles_dir(self) -> Path:
        """Folder holding one sub-folder per installed bundle."""
        return self.root / "bundles"

    @property
    def trust_dir(self) -> Path:
        """Folder of trusted public keys."""
        return self.root / "trust"

    @property
    def partial_dir(self) -> Path:
        """Folder where interrupted transfers are kept (see :mod:`edge.manage`)."""
        return self.root / "partial"

    def _read_pointer(self, name: str) -> Optional[str]:
        """Return the folder name a pointer (``current``/``previous``) names, or None."""
        p = self.root / name
        try:
            if p.is_symlink():
                target = os.readlink(p)
            elif p.is_file():
                target = p.read_text().strip()
            else:
                return None
        except OSError:
            return None
        folder = Path(target).name
        if not folder or not (self.bundles_dir / folder / BUNDLE_FILE).is_file():
            return None
        return folder

    def _write_pointer(self, name: str, folder: str) -> None:
        """Atomically point ``name`` at ``bundles/<folder>`` and fsync the root."""
        target = f"bundles/{folder}"
        tmp = self.root / f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            os.symlink(target, tmp)
        except OSError:  # no symlinks here (FAT): a one-line pointer file
            with open(tmp, "w") as fh:
                fh.write(target + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.root / name)
        fsync_dir(self.root)

    # ------------------------------------------------------------------ state
    def recover(self) -> None:
        """Remove what an interrupted install left behind; repair pointers.

        ``current`` never names an incomplete folder (folders are renamed into
        place only when complete), so recovery only deletes temporaries. If
        ``current`` is missing or dangling but ``previous`` is good (which a
        crash cannot cause, but a hand-edited card can), ``previous`` becomes
        current.
        """
        for tmp in self.root.glob(".*.tmp-*"):
            try:
                tmp.unlink()
            except OSError:
                pass
        for tmp in self.bundles_dir.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        if self._read_pointer("current") is None and self._read_pointer("previous") is not None:
            self._write_pointer("current", self._read_pointer("previous"))

    def active_folder(self) -> Optional[Path]:
        """The active version folder, or None when nothing is installed."""
        folder = self._read_pointer("current")
        return self.bundles_dir / folder if folder else None

    def active_path(self) -> Optional[Path]:
        """Path of the active ``bundle.lgb`` (resolved), or None."""
        folder = self.active_folder()
        return (folder / BUNDLE_FILE).resolve() if folder else None

    def previous_path(self) -> Optional[Path]:
        """Path of the previous ``bundle.lgb``, or None."""
        folder = self._read_pointer("previous")
        return (self.bundles_dir / folder / BUNDLE_FILE).resolve() if folder else None

    def generation(self) -> str:
        """A token that changes whenever the active bundle changes ("" if none)."""
        p = self.root / "current"
        try:
            st = os.lstat(p)
        except OSError:
            return ""
        folder = self._read_pointer("current") or ""
        return f"{folder}@{st.st_ino}:{st.st_mtime_ns}"

    def meta(self, folder: Optional[Path]) -> Dict[str, Any]:
        """Return a version folder's meta.json (empty dict if unreadable)."""
        if folder is None:
            return {}
        try:
            return json.loads((Path(folder) / META_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def active_version(self) -> Optional[str]:
        """The active bundle's model version, or None."""
        return self.meta(self.active_folder()).get("version")

    def versions(self) -> List[Dict[str, Any]]:
        """All installed versions, oldest first, each meta plus ``folder`` and flags."""
        cur, prev = self._read_pointer("current"), self._read_pointer("previous")
        out = []
        for d in sorted(self.bundles_dir.iterdir()):
            if d.name.startswith(".") or not (d / BUNDLE_FILE).is_file():
                continue
            m = self.meta(d)
            m.update(folder=d.name, current=d.name == cur, previous=d.name == prev)
            out.append(m)
        out.sort(key=lambda m: m.get("installed_at", ""))
        return out

    def trusted_keys(self) -> List[Path]:
        """Trusted public key files (``trust/*.pub``), sorted."""
        return sorted(self.trust_dir.glob("*.pub"))

    def hub_id(self) -> Optional[str]:
        """This hub's id, or None before provisioning."""
        try:
            return (self.root / "hub_id").read_text().strip() or None
        except OSError:
            return None

    def status(self) -> Dict[str, Any]:
        """A JSON-able summary: hub id, keys, active and previous versions."""
        cur, prev = self.active_folder(), self._read_pointer("previous")
        return {
            "hub_id": self.hub_id(),
            "trusted_keys": [public_key_fingerprint(k.read_bytes()) for k in self.trusted_keys()],
            "active": dict(self.meta(cur), folder=cur.name) if cur else None,
            "previous": dict(self.meta(self.bundles_dir / prev), folder=prev) if prev else None,
            "generation": self.generation(),
        }

    # ------------------------------------------------------------- provision
    def provision(self, public_key: bytes, hub_id: str, *, replace: bool = False,
                  key_name: str = "provisioned") -> Dict[str, Any]:
        """Install the trusted key and hub id, once.

        Args:
            public_key: Contents of an Ed25519 public key file.
            hub_id: Letters, digits, ``.``, ``_``, ``-``; up to 64 characters.
            replace: Allow changing an already provisioned hub (removes the
                old trusted keys).
            key_name: File stem of the key under ``trust/``.

        Returns:
            ``{"hub_id", "key_fingerprint", "replaced"}``.

        Raises:
            ConfigError: Bad key or id, or the hub is provisioned and
                ``replace`` is False.
        """
        if not _HUB_ID.match(hub_id or ""):
            raise ConfigError(f"hub id {hub_id!r}: expected 1-64 letters, digits, '.', '_' or '-', "
                              f"starting with a letter or digit")
        check_public_key(public_key, "trusted key")
        if not re.match(r"^[A-Za-z0-9._-]{1,64}$", key_name):
            raise ConfigError(f"key name {key_name!r}: expected 1-64 letters, digits, '.', '_' or '-'")
        old_keys, old_id = self.trusted_keys(), self.hub_id()
        if (old_keys or old_id) and not replace:
            fps = ", ".join(public_key_fingerprint(k.read_bytes()) for k in old_keys) or "none"
            raise ConfigError(f"hub already provisioned (hub id {old_id!r}, trusted keys {fps}); "
                              f"changing it needs the explicit --replace flag")
        atomic_write_bytes(self.trust_dir / f"{key_name}.pub", public_key)
        for k in old_keys:
            if k.name != f"{key_name}.pub":
                k.unlink()
        fsync_dir(self.trust_dir)
        atomic_write_bytes(self.root / "hub_id", (hub_id + "\n").encode())
        return {"hub_id": hub_id, "key_fingerprint": public_key_fingerprint(public_key),
                "replaced": bool(old_keys or old_id)}

    # ---------------------------------------------------------------- verify
    def verify(self, bundle_path: os.PathLike, *, force: bool = False) -> Dict[str, Any]:
        """Run every check an install runs, without installing.

        Checks the signature against ``trust/*.pub``, every hash, the layout
        against the hub's sensors, the version against the installed one
        (unless ``force``) and, unless ``verify_only``, the golden self-test
        through a real interpreter.

        Returns:
            The bundle's manifest.

        Raises:
            FlashError: The file is missing or the hub has no trusted key.
            BundleError: The bundle fails a check (message from edge.bundle).
        """
        from . import bundle as bundle_mod

        path = Path(bundle_path)
        if not path.is_file():
            raise FlashError(f"bundle {path}: no such file")
        keys = self.trusted_keys()
        if not keys:
            raise FlashError(f"hub at {self.root} is not provisioned: no trusted key in "
                             f"{self.trust_dir}; run 'host provision' first")
        installed = None if force else self.active_version()
        if self.verify_only:
            return bundle_mod.verify_bundle(path, trusted_keys=keys, hub_sensors=self.hub_sensors,
                                            installed_version=installed, force=force)
        loaded = bundle_mod.load_bundle(path, trusted_keys=keys, hub_sensors=self.hub_sensors,
                                        installed_version=installed, force=force, self_test=True)
        manifest = dict(loaded.manifest)
        close = getattr(loaded, "close", None)
        if callable(close):
            close()
        return manifest

    # --------------------------------------------------------------- install
    def install(self, bundle_path: os.PathLike, *, force: bool = False,
                dry_run: bool = False) -> InstallResult:
        """Verify ``bundle_path`` and make it the active bundle.

        Args:
            bundle_path: A ``.lgb`` file.
            force: Accept a version older than (or equal to) the installed one.
            dry_run: Verify only.

        Returns:
            An :class:`InstallResult`.

        Raises:
            FlashError, BundleError: Nothing on disk has changed.
        """
        path = Path(bundle_path)
        _step("verify")
        sha = sha256_file(path) if path.is_file() else ""
        cur = self.active_folder()
        prev_version = self.meta(cur).get("version") if cur else None
        if cur is not None and self.meta(cur).get("sha256") == sha and not dry_run:
            m = self.meta(cur)
            return InstallResult(False, m.get("version", "?"), m.get("model_id", "?"), sha,
                                 prev_version, cur.name, f"bundle {m.get('version')} is already active")
        manifest = self.verify(path, force=force)
        version = str(manifest.get("model_version", manifest.get("version", "unknown")))
        model_id = str(manifest.get("model_id", "unknown"))
        if dry_run:
            return InstallResult(False, version, model_id, sha, prev_version, None,
                                 f"dry run: bundle {model_id} {version} passed every check; nothing installed")
        folder_name = f"{_SAFE.sub('_', version)[:48]}-{sha[:12]}"
        final = self.bundles_dir / folder_name
        if final.exists() and self.meta(final).get("sha256") == sha and sha256_file(final / BUNDLE_FILE) == sha:
            pass  # the same bundle is already on disk (e.g. rolled back from): reuse it
        else:
            if final.exists():
                shutil.rmtree(final)
            _step("copy")
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=str(self.bundles_dir)))
            try:
                with open(path, "rb") as src, open(tmp / BUNDLE_FILE, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
                meta = {"sha256": sha, "version": version, "model_id": model_id,
                        "size": path.stat().st_size,
                        "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
                        "created": manifest.get("created")}
                atomic_write_bytes(tmp / META_FILE, json.dumps(meta, indent=2).encode())
                if sha256_file(tmp / BUNDLE_FILE) != sha:
                    raise FlashError(f"bundle store {self.root}: the copy of {path.name} reads back "
                                     f"differently (storage fault?); nothing installed")
                fsync_dir(tmp)
                _step("rename")
                os.rename(tmp, final)
                fsync_dir(self.bundles_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        _step("previous")
        if cur is not None:
            self._write_pointer("previous", cur.name)
        _step("switch")
        self._write_pointer("current", folder_name)
        _step("done")
        self.prune()
        return InstallResult(True, version, model_id, sha, prev_version, folder_name,
                             f"installed {model_id} {version}"
                             + (f" (previous {prev_version} kept for rollback)" if prev_version else ""))

    def rollback(self) -> Dict[str, Any]:
        """Make the previous bundle active again (and the active one previous).

        Returns:
            ``{"active": version, "previous": version}`` after the switch.

        Raises:
            FlashError: There is no previous bundle.
        """
        cur, prev = self._read_pointer("current"), self._read_pointer("previous")
        if prev is None or prev == cur:
            raise FlashError(f"bundle store {self.root}: no previous bundle to roll back to")
        _step("switch")
        self._write_pointer("current", prev)
        if cur is not None:
            self._write_pointer("previous", cur)
        return {"active": self.meta(self.bundles_dir / prev).get("version"),
                "previous": self.meta(self.bundles_dir / cur).get("version") if cur else None}

    def prune(self, keep_extra: int = KEEP_EXTRA) -> List[str]:
        """Delete old version folders beyond ``current``, ``previous`` and ``keep_extra`` more."""
        keep = {self._read_pointer("current"), self._read_pointer("previous")}
        others = [v for v in self.versions() if v["folder"] not in keep]
        removed = []
        for v in others[: max(0, len(others) - keep_extra)]:
            shutil.rmtree(self.bundles_dir / v["folder"], ignore_errors=True)
            removed.append(v["folder"])
        return removed


__all__ = ["BundleStore", "InstallResult", "sha256_file", "atomic_write_bytes", "fsync_dir",
           "check_public_key", "parse_public_key", "public_key_fingerprint", "BUNDLE_FILE"]
