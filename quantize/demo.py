"""``quantize demo --out RUN``: the whole LiftGuard story end to end (what ``make demo`` runs).

Every step is the real command-line tool in a subprocess, seeded, with its
output kept in ``RUN/logs/<step>.log``:

1. ``quantize synth`` simulates the cohort (LiftSim) into ``RUN/data``;
2. ``quantize train`` trains the proposed model on a random split into ``RUN/train``,
   and the demo prints Table 4's proposed row beside the paper's;
3. ``quantize keygen`` makes a signing key pair in ``RUN/keys``;
4. ``quantize convert`` converts to int8 TFLite and prints the parity table;
5. ``quantize train-gate`` learns the lift gate (is a detected window a lift at
   all?) on simulated shifts, and ``quantize export`` writes the signed bundle
   ``RUN/bundle/liftguard.lgb`` with it;
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
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from edge.errors import LiftGuardError

HELP = "run the whole story: simulate, train, export a signed int8 bundle, flash an emulated hub, replay, summarize"

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
    parser.add_argument("--seed", type=int, default=7,
                        help="seed of every step (default 7: of the simulator's ten CNN calibration seeds at its "
                             "default difficulty, the one whose accuracy and recalls are nearest the ten-seed mean; "
                             "see docs/qa.md)")
    parser.add_argument("--subjects", type=int, default=10, help="simulated subjects (default 10, as the paper)")
    parser.add_argument("--reps", type=int, default=6, help="repetitions per zone and subject (default 6)")
    parser.add_argument("--epochs", type=int, default=40,
                        help="training epochs (default 40, the simulator's CNN calibration budget: about 2-4 "
                             "minutes on 2 cores; the paper trained longer)")
    parser.add_argument("--flash-baud", type=int, default=0,
                        help="pace the flash link to this baud rate (default 0: unthrottled, as USB CDC gadget "
                             "serial is; 921600 emulates a UART and takes about 2 minutes for the bundle)")
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
        self.results: Dict[str, Any] = {}
        self._report: Any = None
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
            Step("gate", "learn the lift gate on simulated shifts (quantize train-gate)",
                 ["quantize.lift_gate", "edge.lift_gate"], self.step_gate),
            Step("export", "export the signed int8 bundle with its lift gate (quantize export)",
                 ["quantize.export"], self.step_export),
            Step("flash", "provision an emulated hub and flash the bundle over a pty pair "
                 "(edge.hub_process, host provision, host flash, host status)",
                 ["edge.hub_process", "edge.manage", "host.provision", "host.flash", "host.status",
                  "host.serial_relay"], self.step_flash),
            Step("replay", "replay the test split through the sensor rig into the hub (edge run); "
                 "compare with edge classify",
                 ["edge.daemon", "edge.classify", "host.sensorhub_emulator", "hil_tests.rig"], self.step_replay),
            Step("shift", "simulate a short shift (quantize synth-shift) and replay it through the rig",
                 ["quantize.liftsim.cli_shift", "edge.daemon", "host.sensorhub_emulator", "hil_tests.rig"],
                 self.step_shift),
        ]

    def step_synth(self) -> str:
        data = self.run_dir / "data"
        if not (data / "index.csv").exists():
            self.cli("synth", "quantize", ["synth", "--out", data, "--seed", self.args.seed,
                                            "--subjects", self.args.subjects, "--reps", self.args.reps,
                                            "--workers", 2, "--no-progress"])
        n = sum(1 for _ in open(data / "index.csv")) - 1
        self.results["trials"] = n
        return f"{n} trials in {data}"

    def step_train(self) -> str:
        train = self.run_dir / "train"
        argv = ["train", "--data", self.run_dir / "data", "--out", train, "--model", "proposed",
                "--split", "random", "--seed", self.args.seed, "--epochs", self.args.epochs]
        proc = self.cli("train", "quantize", argv)
        table = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
        if table:  # quantize train prints the Table 4 row beside the paper's
            print("Table 4, proposed model (ours: simulated cohort, random split, "
                  f"{self.args.epochs} epochs):", flush=True)
            print("\n".join(table), flush=True)
        metrics = json.loads((train / "metrics.json").read_text())
        self.results["offline_float"] = {"accuracy": metrics["accuracy"], "rk": metrics["rk"]}
        return f"accuracy {metrics['accuracy']:.3f}, RK {metrics['rk']:.3f} (float model, test split)"

    def step_keygen(self) -> str:
        keys = self.run_dir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        if not (keys / "signing.pub").exists():
            self.cli("keygen", "quantize", ["keygen", "--out", keys / "signing"])
        return f"{keys / 'signing'} and {keys / 'signing.pub'}"

    def step_convert(self) -> str:
        proc = self.cli("convert", "quantize", ["convert", "--run", self.run_dir / "train", "--seed",
                                                 self.args.seed])
        table = [ln for ln in proc.stdout.splitlines() if ln.startswith("|") or ln.startswith("- int8")]
        print("int8 parity (test split):", flush=True)
        print("\n".join(table), flush=True)
        return f"int8 model and parity table in {self.run_dir / 'train'}"

    def step_gate(self) -> str:
        train = self.run_dir / "train"
        seeds = ",".join(str(101 + i) for i in range(6))
        eval_seeds = ",".join(str(201 + i) for i in range(3))
        self.cli("gate", "quantize", ["train-gate", "--recipe", train / "recipe.json", "--out", train / "gate.json",
                                       "--synth-minutes", 10, "--seeds", seeds, "--eval-seeds", eval_seeds,
                                       "--work", self.run_dir / "gate_shifts", "--seed", self.args.seed])
        gate = json.loads((train / "gate.json").read_text())
        held = gate.get("metrics", {}).get("held_out") or {}
        a, b = held.get("without_gate", {}), held.get("with_gate", {})
        self.results["gate"] = {"threshold": gate.get("threshold"), "held_out_without": a, "held_out_with": b}
        if not (a and b):
            return f"gate threshold {gate.get('threshold', float('nan')):.3f} (report: {train / 'gate_report.md'})"
        return (f"held-out shifts: lift recall {a['recall']:.3f} -> {b['recall']:.3f}, false windows/h "
                f"{a['false_windows_per_hour']:.1f} -> {b['false_windows_per_hour']:.1f} "
                f"(report: {train / 'gate_report.md'})")

    def step_export(self) -> str:
        bundle = self.run_dir / "bundle" / "liftguard.lgb"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        self.cli("export", "quantize", ["export", "--run", self.run_dir / "train", "--sign",
                                         self.run_dir / "keys" / "signing", "--out", bundle,
                                         "--model-version", "1.0.0", "--seed", self.args.seed])
        self.results["bundle"] = str(bundle)
        return f"{bundle} ({bundle.stat().st_size / 1e6:.1f} MB), signed"

    def step_flash(self) -> str:
        from host.serial_relay import SerialRelay

        store = self.run_dir / "hub" / "store"
        if store.exists():
            shutil.rmtree(store)  # a factory-fresh hub every time
        store.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        baud = self.args.flash_baud or None
        with SerialRelay(baud=baud) as link, open(self.logs / "hub_process.log", "a") as fh:
            hub = subprocess.Popen([self.python, "-m", "edge.hub_process", "--store", str(store), "--port",
                                    link.hub_path, "--events", str(self.run_dir / "hub" / "manage.jsonl")],
                                   stdout=fh, stderr=subprocess.STDOUT, env=self.env, text=True)
            try:
                self.say(f"      emulated hub (pid {hub.pid}) on {link.hub_path}; host side {link.host_path} "
                         f"({f'{baud:,} baud' if baud else 'unthrottled, like USB CDC'})")
                self.cli("flash", "host", ["provision", "--port", link.host_path, "--trust",
                                           self.run_dir / "keys" / "signing.pub", "--hub-id", "demo-hub"])
                t0 = time.monotonic()
                self.cli("flash", "host", ["flash", self.run_dir / "bundle" / "liftguard.lgb", "--port",
                                           link.host_path, "--quiet"], echo=True, timeout=900)
                seconds = time.monotonic() - t0
                self.cli("flash", "host", ["status", "--port", link.host_path])
            finally:
                hub.terminate()
                try:
                    hub.wait(10)
                except subprocess.TimeoutExpired:
                    hub.kill()
                    hub.wait(5)
        self.results["flash_s"] = round(seconds, 1)
        return f"bundle 1.0.0 flashed and active in {store} ({seconds:.1f} s over the serial link)"

    def _hil_report(self) -> Any:
        if self._report is None:
            from hil_tests.report import HilReport

            self._report = HilReport(self.run_dir / "hil")
        return self._report

    def _figure(self, name: str, value: float, unit: str = "", expectation: str = "",
                met: Any = None) -> None:
        from hil_tests.report import Figure

        self._hil_report().add_figure(Figure("quantize demo", name, float(value), unit, expectation, met))

    def step_replay(self) -> str:
        from hil_tests.rig import (classify_offline, hub_buzz_per_trial, play, stream_from_dataset,
                                   subset_dataset)
        from hil_tests.scoring import buzz_agreement, match_detections

        work = self.run_dir / "hil" / "replay"
        if work.exists():
            shutil.rmtree(work)
        split = json.loads((self.run_dir / "train" / "split.json").read_text())
        ids = list(split["test"])
        if self.args.max_replay_trials:
            ids = ids[:self.args.max_replay_trials]
        bundle = self.run_dir / "bundle" / "liftguard.lgb"
        trust = [self.run_dir / "keys" / "signing.pub"]
        subset = subset_dataset(self.run_dir / "data", ids, work / "trials")
        self.say(f"      edge classify (offline int8) on {len(ids)} test-split trials ...")
        offline = classify_offline(bundle, trust, subset, work / "offline_detector.csv", markers="detector")
        offline_index = classify_offline(bundle, trust, subset, work / "offline_index.csv", markers="index")
        stream = stream_from_dataset(subset)
        self.say(f"      replaying {stream.duration_s / 60:.0f} min of trials at {self.args.speed:g}x through the "
                 f"rig into edge run ...")
        result = play(stream, work / "run", bundle_store=self.run_dir / "hub" / "store",
                      speed=self.args.speed, progress=lambda t: self.say("      " + t))
        agreement = buzz_agreement({t: row["predicted"] for t, row in offline.items()},
                                   hub_buzz_per_trial(result))
        m = match_detections(stream.truth, result.detections)
        hub_risk = {t.lift_id: d.risk for t, d in m.pairs}
        truth = {t.lift_id: t.risk for t in stream.truth}
        n = len(truth)
        r = {
            "trials": n,
            "offline_int8_accuracy": sum(offline_index[t]["predicted"] == k for t, k in truth.items()) / n,
            "hub_accuracy": sum(hub_risk.get(t) == k for t, k in truth.items()) / n,
            "hub_lifts_found": len(m.pairs) / n,
            "hub_buzzes": len(result.buzzes_s),
            "offline_high": sum(1 for row in offline.values() if row["predicted"] == "high"),
            "agreement": agreement.rate,
            "disagreements": agreement.disagreements,
            "wall_s": round(result.wall_s, 1),
        }
        self.results["replay"] = r
        self._figure("test split: trials replayed", n, "trials")
        self._figure("test split: accuracy offline (int8, edge classify)", r["offline_int8_accuracy"])
        self._figure("test split: accuracy on the hub (int8, own lift detection)", r["hub_accuracy"])
        self._figure("test split: hub buzz agrees with edge classify (detector markers)", agreement.rate, "",
                     "= 1.0", agreement.rate == 1.0)
        self._figure("test split: buzzes", r["hub_buzzes"], "buzzes")
        return (f"{n} trials: hub accuracy {r['hub_accuracy']:.3f}, {r['hub_buzzes']} buzzes, agreement with "
                f"edge classify {agreement.rate:.1%}")

    def step_shift(self) -> str:
        from hil_tests.checks import score
        from hil_tests.scoring import summarize
        from hil_tests.rig import play, stream_from_shift

        shift = self.run_dir / "shift"
        if not (shift / "events.csv").exists():
            self.cli("shift", "quantize", ["synth-shift", "--out", shift, "--minutes", self.args.shift_minutes,
                                            "--seed", self.args.seed])
        stream = stream_from_shift(shift)
        work = self.run_dir / "hil" / "shift"
        if work.exists():
            shutil.rmtree(work)
        result = play(stream, work, bundle_store=self.run_dir / "hub" / "store", speed=self.args.speed,
                      progress=lambda t: self.say("      " + t))
        sc = score(result)
        rt = summarize(sc.realtime_lift_end_to_buzz_s)
        self.results["shift"] = {
            "minutes": self.args.shift_minutes, "lifts": sc.n_lifts, "recall": sc.recall,
            "buzzes": len(result.buzzes_s), "false_windows_per_hour": sc.false_windows_per_hour,
            "hub_false_buzzes_per_hour": sc.hub_false_buzzes_per_hour,
            "model_false_buzzes_per_hour": sc.model_false_buzzes_per_hour,
            "lift_end_to_buzz_realtime_s": rt, "wall_s": round(result.wall_s, 1)}
        self._figure("shift: lifts played", sc.n_lifts, "lifts")
        self._figure("shift: lift detection recall", sc.recall, "", ">= 0.98", sc.recall >= 0.98)
        self._figure("shift: false buzzes per hour, hub (no lift there)", sc.hub_false_buzzes_per_hour, "/h")
        self._figure("shift: false buzzes per hour, model (lift not high)", sc.model_false_buzzes_per_hour, "/h")
        self._figure("shift: lift end to buzz, real-time equivalent, median", rt["median"], "s")
        rep = self._hil_report()
        rep.add_latencies("demo shift", sc.realtime_lift_end_to_buzz_s)
        rep.add_note(f"written by quantize demo --out {self.run_dir} (seed {self.args.seed}); the full QA run "
                     f"is make hil")
        rep.add_outcome("quantize demo: test split and shift through the rig", "passed", result.wall_s,
                        "the demo's rig steps ran end to end (figures below)")
        rep.write()
        return (f"{self.args.shift_minutes:g} min, {sc.n_lifts} lifts: recall {sc.recall:.3f}, "
                f"{len(result.buzzes_s)} buzzes, false buzzes/h {sc.false_buzzes_per_hour:.1f}")

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
        r = self.results
        lines = ["", "LiftGuard demo summary", "======================"]
        if "offline_float" in r:
            lines.append(f"offline, float model (test split):   accuracy {r['offline_float']['accuracy']:.3f}, "
                         f"RK {r['offline_float']['rk']:.3f}")
        rp = r.get("replay")
        if rp:
            lines.append(f"offline, int8 (edge classify):       accuracy {rp['offline_int8_accuracy']:.3f} on "
                         f"{rp['trials']} test-split trials")
            lines.append(f"on the hub (int8, over the rig):     accuracy {rp['hub_accuracy']:.3f}, lifts found "
                         f"{rp['hub_lifts_found']:.1%}, buzzes {rp['hub_buzzes']} (offline high: "
                         f"{rp['offline_high']}), agreement {rp['agreement']:.1%}")
        sh = r.get("shift")
        if sh:
            lat = sh["lift_end_to_buzz_realtime_s"]
            lines.append(f"{'shift (%g min, %d lifts):' % (sh['minutes'], sh['lifts']):37s}recall {sh['recall']:.3f}, "
                         f"buzzes {sh['buzzes']}, false buzzes/h {sh['hub_false_buzzes_per_hour']:.1f} (no lift) + "
                         f"{sh['model_false_buzzes_per_hour']:.1f} (lift not high)")
            lines.append(f"lift end to buzz (real-time equiv.): median {lat['median']:.2f} s, p95 {lat['p95']:.2f} s, "
                         f"n={lat['n']}")
        g = r.get("gate")
        if g and g.get("held_out_with"):
            lines.append(f"lift gate (held-out shifts):         false windows/h "
                         f"{g['held_out_without']['false_windows_per_hour']:.1f} -> "
                         f"{g['held_out_with']['false_windows_per_hour']:.1f}, lift recall "
                         f"{g['held_out_without']['recall']:.3f} -> {g['held_out_with']['recall']:.3f}")
        if "flash_s" in r:
            lines.append(f"flash over the pty link:             {r['flash_s']:.1f} s")
        lines.append(f"total:                               {r.get('total_s', 0) / 60:.1f} min")
        lines += ["", "reports:",
                  f"  training     {self.run_dir / 'train' / 'report.md'}",
                  f"  int8 parity  {self.run_dir / 'train' / 'parity.md'}",
                  f"  hub (HIL)    {self.run_dir / 'hil' / 'report.md'}",
                  f"  logs         {self.logs}/",
                  f"  everything   {self.run_dir / 'demo.json'}"]
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
