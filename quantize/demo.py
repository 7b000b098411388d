"""``quantize demo --out RUN``: the whole LiftGuard story end to end (what ``make demo`` runs).

Every step is the real command-line tool in a subprocess, seeded, with its
output kept in ``RUN/logs/<step>.log``:

1. ``quantize synth`` simulates the cohort (LiftSim) into ``RUN/data``;
2. ``quantize train`` trains the proposed model on a random split into ``RUN/train``,
   and the demo prints Table 4's proposed row beside the paper's;
3. ``quantize keygen`` makes a signing key pair in ``RUN/keys``;
4. ``quantize convert`` converts to int8 TFLite and prints the parity table;
5. ``quantize export`` writes the signed bundle ``RUN/bundle/liftguard.lgb``;
6. an emulated hub (``edge run`` with an empty bundle store) is provisioned with
   ``host provision`` and flashed with ``host flash`` over a pseudo-terminal;
7. the test split is replayed through the sensor rig (``host emulate`` on a
   pseudo-terminal into the hub) and compared with ``edge classify``;
8. a short simulated shift (``quantize synth-shift``) is replayed the same way;
9. a summary: accuracy offline and on the hub, buzzes, false alarms, latencies,
   and where the reports are.

A step that is missing from this checkout, or fails, stops the demo with one
line naming the step, the command and its log. Nothing is faked: when a
component is absent the demo says which.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from edge.errors import LiftGuardError

HELP = "run the whole story: simulate, train, export a signed int8 bundle, flash an emulated hub, replay, summarize"

#: The paper's Table 4 row for the proposed model (Snyder et al. 2021).
PAPER_PROPOSED = {"low_f1": 0.776, "medium_f1": 0.862, "high_f1": 0.964, "accuracy": 0.906, "rk": 0.839}


class DemoError(LiftGuardError, RuntimeError):
    """A demo step is unavailable or failed."""


@dataclasses.dataclass
class Step:
    """One step of the demo.

    Attributes:
        key: Short name (used for the log file).
        title: What the step does, one line.
        modules: Python modules the step needs (checked before anything runs).
        action: Callable doing the work; returns a short result line.
    """

    key: str
    title: str
    modules: Sequence[str]
    action: Callable[[], str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags."""
    parser.add_argument("--out", required=True, type=Path, metavar="RUN", help="run folder (created)")
    parser.add_argument("--seed", type=int, default=8, help="seed of every step (default 8)")
    parser.add_argument("--subjects", type=int, default=10, help="simulated subjects (default 10, as the paper)")
    parser.add_argument("--reps", type=int, default=6, help="repetitions per zone and subject (default 6)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: quantize train's default)")
    parser.add_argument("--shift-minutes", type=float, default=10.0,
                        help="length of the replayed shift, minutes of worker time (default 10)")
    parser.add_argument("--speed", type=float, default=60.0,
                        help="replay speed, multiple of real time (default 60)")
    parser.add_argument("--max-replay-trials", type=int, default=0,
                        help="replay at most this many test-split trials (default 0: all)")


class Demo:
    """Runs the steps in order, printing one progress line per step on stderr.

    Args:
        args: Parsed flags.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir: Path = args.out.resolve()
        self.logs = self.run_dir / "logs"
        self.results: Dict[str, object] = {}
        self.python = sys.executable
        self.env = dict(os.environ, PYTHONHASHSEED=str(args.seed), TF_CPP_MIN_LOG_LEVEL="2",
                        PYTHONUNBUFFERED="1")
        repo = str(Path(__file__).resolve().parents[1])
        self.env["PYTHONPATH"] = repo + (os.pathsep + self.env["PYTHONPATH"] if self.env.get("PYTHONPATH") else "")

    # ------------------------------------------------------------ helpers
    def say(self, text: str) -> None:
        """One progress line on stderr."""
        print(text, file=sys.stderr, flush=True)

    def cli(self, key: str, tool: str, argv: List[str], *, echo: bool = False,
            timeout: float = 1800.0) -> subprocess.CompletedProcess:
        """Run ``python -m TOOL ARGV`` with output in ``logs/KEY.log``.

        Args:
            key: Step key (log name).
            tool: ``quantize``, ``edge`` or ``host``.
            argv: The subcommand and its flags.
            echo: Also copy the tool's stdout (its data, e.g. tables) to our stdout.
            timeout: Seconds before the step counts as hung.

        Raises:
            DemoError: If the command exits non-zero or hangs; names the log.
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{key}.log"
        cmd = [self.python, "-m", tool] + [str(a) for a in argv]
        with open(log, "a") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n")
            fh.flush()
            try:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True,
                                      env=self.env, timeout=timeout, cwd=self.run_dir)
            except subprocess.TimeoutExpired:
                raise DemoError(f"step {key!r}: `{tool} {argv[0]}` did not finish within {timeout:.0f} s; "
                                f"see {log}") from None
            fh.write(proc.stdout)
        if echo and proc.stdout.strip():
            print(proc.stdout.rstrip("\n"), flush=True)
        if proc.returncode != 0:
            tail = _tail(log, 3)
            raise DemoError(f"step {key!r}: `{tool} {' '.join(map(str, argv[:1]))}` exited with "
                            f"{proc.returncode}; see {log}" + (f" (last lines: {tail})" if tail else ""))
        return proc

    # ------------------------------------------------------------ steps
    def steps(self) -> List[Step]:
        """The demo's steps in order."""
        return [
            Step("synth", "simulate the cohort (quantize synth)",
                 ["quantize.liftsim.cli_synth"], self.step_synth),
            Step("train", "train the proposed model on a random split (quantize train)",
                 ["quantize.train", "quantize.models"], self.step_train),
            Step("keygen", "make a signing key pair (quantize keygen)", ["quantize.keygen"], self.step_keygen),
            Step("convert", "convert to int8 TFLite, parity table (quantize convert)",
                 ["quantize.convert"], self.step_convert),
            Step("export", "export the signed int8 bundle (quantize export)", ["quantize.export"],
                 self.step_export),
            Step("flash", "start an emulated hub, provision it and flash the bundle over a pty "
                 "(edge run, host provision, host flash)",
                 ["edge.daemon", "edge.manage", "host.provision", "host.flash", "host.serial_relay"],
                 self.step_flash),
            Step("replay", "replay the test split through the sensor rig into the hub; compare with edge classify",
                 ["host.emulate", "edge.classify", "hil_tests.rig"], self.step_replay),
            Step("shift", "simulate a short shift and replay it through the rig (quantize synth-shift)",
                 ["quantize.liftsim.cli_shift", "host.emulate", "hil_tests.rig"], self.step_shift),
        ]

    def step_synth(self) -> str:
        data = self.run_dir / "data"
        if (data / "index.csv").exists():
            return f"kept existing {data}"
        self.cli("synth", "quantize", ["synth", "--out", data, "--seed", self.args.seed,
                                        "--subjects", self.args.subjects, "--reps", self.args.reps])
        n = sum(1 for _ in open(data / "index.csv")) - 1
        self.results["n_trials"] = n
        return f"{n} trials in {data}"

    def step_train(self) -> str:
        train = self.run_dir / "train"
        argv = ["train", "--data", self.run_dir / "data", "--out", train, "--split", "random",
                "--seed", self.args.seed]
        if self.args.epochs:
            argv += ["--epochs", self.args.epochs]
        self.cli("train", "quantize", argv)
        metrics = json.loads((train / "metrics.json").read_text())
        self.results["offline_float"] = metrics
        print(table4_rows(metrics), flush=True)
        return f"accuracy {metrics['accuracy']:.3f}, RK {metrics['rk']:.3f} (float model, test split)"

    def step_keygen(self) -> str:
        keys = self.run_dir / "keys"
        if (keys / "signing.pub").exists():
            return f"kept existing keys in {keys}"
        self.cli("keygen", "quantize", ["keygen", "--out", keys / "signing"])
        return f"{keys / 'signing'} and {keys / 'signing.pub'}"

    def step_convert(self) -> str:
        self.cli("convert", "quantize", ["convert", "--run", self.run_dir / "train"], echo=True)
        return "int8 model written beside the float model"

    def step_export(self) -> str:
        bundle = self.run_dir / "bundle" / "liftguard.lgb"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        self.cli("export", "quantize", ["export", "--run", self.run_dir / "train", "--sign",
                                         self.run_dir / "keys" / "signing", "--out", bundle])
        self.results["bundle"] = str(bundle)
        return f"{bundle} ({bundle.stat().st_size / 1024:.0f} KiB)"

    def step_flash(self) -> str:
        raise DemoError("step 'flash': not wired yet")

    def step_replay(self) -> str:
        raise DemoError("step 'replay': not wired yet")

    def step_shift(self) -> str:
        raise DemoError("step 'shift': not wired yet")

    # ------------------------------------------------------------ driver
    def unavailable(self) -> List[str]:
        """Name every step whose modules are missing from this checkout."""
        missing = []
        for step in self.steps():
            gone = [m for m in step.modules if _find_spec(m) is None]
            if gone:
                missing.append(f"step {step.key!r} ({step.title}) needs {', '.join(gone)}, "
                               f"not present in this checkout")
        return missing

    def run(self) -> int:
        """Run every step; print the summary. Returns 0 on success."""
        missing = self.unavailable()
        if missing:
            raise DemoError("cannot run the demo end to end; unavailable here:\n  - " + "\n  - ".join(missing))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        steps = self.steps()
        t_all = time.monotonic()
        for i, step in enumerate(steps, 1):
            self.say(f"[demo {i}/{len(steps)}] {step.title} ...")
            t0 = time.monotonic()
            result = step.action()
            self.say(f"[demo {i}/{len(steps)}] {step.key}: {result} ({time.monotonic() - t0:.1f} s)")
        self.results["total_s"] = time.monotonic() - t_all
        (self.run_dir / "demo.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        print(self.summary(), flush=True)
        return 0

    def summary(self) -> str:
        """The closing summary."""
        return json.dumps(self.results, indent=2, default=str)


def table4_rows(metrics: dict) -> str:
    """Table 4's proposed-model row, ours beside the paper's."""
    ours = {"low_f1": metrics["low"]["f1"], "medium_f1": metrics["medium"]["f1"],
            "high_f1": metrics["high"]["f1"], "accuracy": metrics["accuracy"], "rk": metrics["rk"]}
    cols = ["low_f1", "medium_f1", "high_f1", "accuracy", "rk"]
    head = "| Table 4, proposed model | low F | medium F | high F | accuracy | RK |"
    lines = [head, "|---|---|---|---|---|---|",
             "| paper (Snyder et al. 2021, real data) | " + " | ".join(f"{PAPER_PROPOSED[c]:.3f}" for c in cols) + " |",
             "| ours (simulated cohort, random split) | " + " | ".join(f"{ours[c]:.3f}" for c in cols) + " |"]
    return "\n".join(lines)


def _find_spec(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def _tail(path: Path, n: int) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " / ".join(lines[-n:])


def run(args: argparse.Namespace) -> int:
    """Entry point of ``quantize demo``."""
    return Demo(args).run()
