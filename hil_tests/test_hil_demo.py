"""Fast tests of ``quantize demo``'s driver: missing steps are named, a failing step names its command and log."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from quantize.demo import Demo, DemoError, Step


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(out=tmp_path / "run", seed=1, subjects=1, reps=1, epochs=1, flash_baud=0,
                              shift_minutes=1.0, speed=60.0, max_replay_trials=0)


def test_every_step_of_this_checkout_is_available(tmp_path):
    """Every module the demo's steps need is present in this checkout."""
    assert Demo(_args(tmp_path)).unavailable() == []


def test_missing_module_is_named_before_anything_runs(tmp_path, monkeypatch):
    """A step whose module is missing stops the demo up front, naming the step and the module."""
    demo = Demo(_args(tmp_path))
    ran = []
    steps = [Step("synth", "simulate", ["quantize.liftsim.cli_synth"], lambda: ran.append("synth") or ""),
             Step("train", "train", ["quantize.no_such_trainer"], lambda: ran.append("train") or "")]
    monkeypatch.setattr(demo, "steps", lambda: steps)
    with pytest.raises(DemoError, match=r"step 'train' \(train\) needs quantize.no_such_trainer"):
        demo.run()
    assert ran == []


def test_failing_command_names_step_and_log(tmp_path):
    """A command that exits non-zero raises one line with the step, the command and its log's last lines."""
    demo = Demo(_args(tmp_path))
    demo.run_dir.mkdir(parents=True)
    with pytest.raises(DemoError) as exc:
        demo.cli("synth", "quantize", ["synth", "--out", tmp_path / "x", "--subjects", 0])
    text = str(exc.value)
    assert "step 'synth': `quantize synth` exited with 1" in text
    assert str(tmp_path / "run" / "logs" / "synth.log") in text
    assert "quantize: error:" in text
