"""Shared builders for the host/flash/store tests (holds no tests itself).

* :func:`bundles` exports, once per process, real signed bundles of the tiny
  model from :mod:`test_bundle_kit` (versions 1.1.0, 1.2.0, 1.3.0), a
  tampered copy, one signed by an untrusted key and an unsigned one;
* :class:`HubProcess` runs ``python -m edge.hub_process`` as a real
  subprocess on a pseudo-terminal and collects its output lines;
* :func:`new_store` makes a provisioned store, optionally with a bundle
  installed.
"""

from __future__ import annotations

import dataclasses
import io
import os
import queue
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Bundles:
    """Paths of the test bundles and keys."""

    root: Path
    pub: Path
    key: Path
    other_pub: Path
    v110: Path
    v120: Path
    v130: Path
    tampered: Path
    foreign: Path
    unsigned: Path
    data: Path


_CACHE: Dict[str, Bundles] = {}


def _export(tb, out: Path, version: str, key: Path) -> Path:
    from test_bundle_kit import run_cli

    status, _, err = run_cli("quantize", ["export", "--run", tb.run, "--out", out, "--sign", key,
                                          "--model-version", version, "--golden", 3])
    assert status == 0, err
    return out


def _rewrite_zip(src: Path, dst: Path, change) -> Path:
    """Copy a bundle zip, passing each member through ``change(name, data) -> data | None``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def bundles() -> Bundles:
    """Build (once per process) every bundle the host tests flash."""
    if "b" in _CACHE:
        return _CACHE["b"]
    from test_bundle_kit import tiny_bundle

    tb = tiny_bundle()
    root = tb.root / "host"
    root.mkdir(exist_ok=True)
    v110 = _export(tb, root / "v110.lgb", "1.1.0", tb.key)
    v130 = _export(tb, root / "v130.lgb", "1.3.0", tb.key)
    foreign = _export(tb, root / "foreign.lgb", "1.4.0", tb.other_key)

    def flip_model_byte(name: str, data: bytes) -> bytes:
        if name.endswith(".tflite"):
            b = bytearray(data)
            b[len(b) // 2] ^= 0x40
            return bytes(b)
        return data

    tampered = _rewrite_zip(v130, root / "tampered.lgb", flip_model_byte)
    unsigned = _rewrite_zip(v130, root / "unsigned.lgb", lambda n, d: None if n == "signature.json" else d)
    b = Bundles(root, tb.pub, tb.key, tb.other_pub, v110, tb.bundle, v130, tampered, foreign, unsigned, tb.data)
    _CACHE["b"] = b
    return b


def new_store(root: Path, pub: Path, install: Optional[Path] = None, hub_id: str = "hub-test"):
    """A provisioned :class:`edge.store.BundleStore`, with ``install`` active if given."""
    from edge.store import BundleStore

    store = BundleStore(root)
    store.provision(pub.read_bytes(), hub_id)
    if install is not None:
        store.install(install)
    return store


class HubProcess:
    """``python -m edge.hub_process`` as a subprocess; lines of stdout and stderr are queued.

    Args:
        store: Store root.
        port: The hub side of the pseudo-terminal.
        env: Extra environment variables.
        events: Event log path.
    """

    def __init__(self, store: Path, port: str, env: Optional[Dict[str, str]] = None,
                 events: Optional[Path] = None) -> None:
        cmd = [sys.executable, "-m", "edge.hub_process", "--store", str(store), "--port", port, "--poll", "0.2"]
        if events is not None:
            cmd += ["--events", str(events)]
        full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
        self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.stdout: "queue.Queue[str]" = queue.Queue()
        self.stderr: "queue.Queue[str]" = queue.Queue()
        self.all_lines: List[str] = []
        for stream, q in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()
        self.ready = self.expect("hub-ready", timeout=60)

    def _pump(self, stream, q) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.all_lines.append(line)
            q.put(line)

    def expect(self, prefix: str, timeout: float = 20.0, stream: str = "stdout") -> str:
        """Return the next line on ``stream`` starting with ``prefix`` (other lines are skipped)."""
        q = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"hub printed no {prefix!r} line within {timeout} s; output so far:\n"
                                     + "\n".join(self.all_lines[-30:]))
            try:
                line = q.get(timeout=left)
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line

    @staticmethod
    def fields(line: str) -> Dict[str, str]:
        """Parse ``key=value`` fields of a hub-ready/hub-reloaded line."""
        return dict(part.split("=", 1) for part in line.split()[1:])

    def kill(self) -> None:
        """SIGKILL the hub and reap it."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(timeout=10)
        return self.proc.returncode


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_host(argv) -> tuple:
    """Run ``host argv`` in-process; return ``(status, stdout, stderr)``."""
    import contextlib

    from host.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()
