"""Session fixtures of the HIL rig: the data set, the bundle under test, simulated shifts.

Without ``--data`` / ``--bundle`` everything is built once per session through
the real command lines, seeded with ``--hil-seed``:

* ``quantize synth`` – a small cohort (4 subjects x 12 zones x 1 repetition = 48 trials);
* ``quantize train`` (the simple CNN, random split, a few epochs), ``quantize convert``,
  ``quantize keygen``, ``quantize export`` – a signed int8 bundle, version 1.0.0;
* ``quantize synth-shift`` – shifts of the lengths the scenarios ask for.

The quick model is not the product's model (``make demo`` trains that); the
scenarios test the hub and the links, for which any real bundle will do, and
the replay scenario compares the hub with the same bundle offline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from .rig import REPO, RigError, tail

#: The session's quick model: the paper's simple CNN (Table 4's "CNN" column), which learns
#: the small cohort in seconds; the proposed network needs the full cohort (``make demo``).
QUICK_MODEL = "cnn"

#: Epochs of the session's quick model.
QUICK_EPOCHS = 20


@dataclasses.dataclass
class BundleUnderTest:
    """The bundle the hub runs, and the data its test split comes from.

    Attributes:
        bundle: The signed ``.lgb``.
        trust: Public keys that verify it.
        data: Data set folder.
        test_ids: Trial ids of its test split (all trials when no split is known).
        run: The training run folder (None for a given ``--bundle``).
        key: The private signing key (None for a given ``--bundle``).
        built: Whether this session built it.
    """

    bundle: Path
    trust: List[Path]
    data: Path
    test_ids: List[str]
    run: Optional[Path] = None
    key: Optional[Path] = None
    built: bool = False


def run_cli(tool: str, argv: List[object], log: Path, *, timeout: float = 1800.0) -> str:
    """Run ``python -m TOOL ARGV`` (output appended to ``log``); return its stdout.

    Raises:
        RigError: Naming the command, its exit status and the log's last lines.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", tool] + [str(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env, timeout=timeout)
        fh.write(proc.stdout)
        fh.write(f"# exit {proc.returncode} after {time.monotonic() - t0:.1f} s\n")
    if proc.returncode != 0:
        raise RigError(f"`{tool} {argv[0]}` exited with {proc.returncode}: {tail(log, 3)} (log {log})")
    return proc.stdout


def _say(text: str) -> None:
    print(f"[hil] {text}", file=sys.stderr, flush=True)


def build_bundle(work: Path, seed: int, *, data: Optional[Path] = None, epochs: int = QUICK_EPOCHS,
                 subjects: int = 4, reps: int = 1, model: str = QUICK_MODEL) -> BundleUnderTest:
    """Simulate (unless ``data``), train, convert and export a signed bundle into ``work``."""
    log = work / "build.log"
    if data is None:
        data = work / "data"
        if not (data / "index.csv").exists():
            _say(f"quantize synth: {subjects} subjects x 12 zones x {reps} (seed {seed})")
            run_cli("quantize", ["synth", "--out", data, "--subjects", subjects, "--reps", reps, "--seed", seed,
                                 "--no-progress"], log)
    run = work / "run"
    _say(f"quantize train: {model} model, random split, {epochs} epochs (seed {seed})")
    run_cli("quantize", ["train", "--data", data, "--out", run, "--model", model, "--split", "random",
                         "--seed", seed, "--epochs", epochs, "--quiet"], log)
    _say("quantize convert: int8 TFLite with parity")
    run_cli("quantize", ["convert", "--run", run, "--representative", 32, "--seed", seed], log)
    keys = work / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    if not (keys / "signing.pub").exists():
        run_cli("quantize", ["keygen", "--out", keys / "signing"], log)
    bundle = work / "bundle-1.0.0.lgb"
    _say("quantize export: signed bundle 1.0.0")
    run_cli("quantize", ["export", "--run", run, "--out", bundle, "--sign", keys / "signing",
                         "--model-version", "1.0.0", "--golden", 3, "--seed", seed], log)
    split = json.loads((run / "split.json").read_text())
    return BundleUnderTest(bundle, [keys / "signing.pub"], data, list(split["test"]), run, keys / "signing", True)


def export_version(but: BundleUnderTest, version: str, work: Path) -> Path:
    """Export the session's run again as another (newer) version, signed by the same key.

    Raises:
        RigError: For a given ``--bundle`` (no run folder or key to export from).
    """
    if but.run is None or but.key is None:
        raise RigError("a second bundle version needs the training run and signing key; with --bundle, "
                       "pass a newer bundle with --bundle-next")
    out = work / f"bundle-{version}.lgb"
    if not out.exists():
        run_cli("quantize", ["export", "--run", but.run, "--out", out, "--sign", but.key, "--model-version",
                             version, "--golden", 3], work / "build.log")
    return out


@pytest.fixture(scope="session")
def hil_bundle(hil_options, hil_workdir) -> BundleUnderTest:
    """The bundle under test (``--bundle``/``--trust``/``--data``, or built once per session)."""
    opts = hil_options
    if opts["bundle"] is not None:
        if not opts["trust"]:
            raise RigError("--bundle needs --trust KEY.pub (the key that signed it)")
        if opts["data"] is None:
            raise RigError("--bundle needs --data DIR (the trials to replay)")
        from edge.dataset import load_dataset

        ids = [m.trial_id for m in load_dataset(opts["data"]).trials]
        if opts.get("split") is not None:
            ids = list(json.loads(Path(opts["split"]).read_text())["test"])
        return BundleUnderTest(opts["bundle"], [opts["trust"]], opts["data"], ids)
    work = hil_workdir / "model"
    if opts["reuse"] and (work / "bundle-1.0.0.lgb").exists() and (work / "run" / "split.json").exists():
        # --hil-reuse with a kept --hil-work: use the bundle built last time
        split = json.loads((work / "run" / "split.json").read_text())
        _say(f"reusing the bundle built earlier in {work}")
        return BundleUnderTest(work / "bundle-1.0.0.lgb", [work / "keys" / "signing.pub"], Path(split["data"]),
                               list(split["test"]), work / "run", work / "keys" / "signing", True)
    t0 = time.monotonic()
    but = build_bundle(work, opts["seed"], data=opts["data"])
    _say(f"bundle under test built in {time.monotonic() - t0:.0f} s: {but.bundle}")
    return but


@pytest.fixture(scope="session")
def hil_shift(hil_options, hil_workdir) -> Callable[[float], Path]:
    """``hil_shift(minutes)``: a simulated shift folder (``quantize synth-shift``), made once per length."""
    made: Dict[float, Path] = {}

    def make(minutes: float) -> Path:
        if minutes not in made:
            out = hil_workdir / f"shift-{minutes:g}min"
            if not (out / "events.csv").exists():
                _say(f"quantize synth-shift: {minutes:g} min (seed {hil_options['seed']})")
                run_cli("quantize", ["synth-shift", "--out", out, "--minutes", minutes, "--seed",
                                     hil_options["seed"]], hil_workdir / "build.log")
            made[minutes] = out
        return made[minutes]

    return make


@pytest.fixture(scope="session")
def hil_clean_run(hil_bundle, hil_shift, hil_options, hil_workdir):
    """``hil_clean_run(minutes)``: the fault-free replay of a shift, once per length (the faults' reference)."""
    from .rig import links, play, stream_from_shift

    done = {}

    def get(minutes: float):
        if minutes not in done:
            stream = stream_from_shift(hil_shift(minutes))
            done[minutes] = play(stream, hil_workdir / f"clean-{minutes:g}min", bundle=hil_bundle.bundle,
                                 trust=hil_bundle.trust, progress=_say, **links(hil_options))
        return done[minutes]

    return get
