"""Fast unit tests of the HIL scoring and report writer (no hub, no rig)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil_tests.report import Figure, HilReport
from hil_tests.scoring import (Detection, TruthLift, buzz_agreement, match_detections,
                               score_stream, summarize)

REPO = Path(__file__).resolve().parents[1]


def _truth():
    return [TruthLift("a", 10.0, 12.0, "high"), TruthLift("b", 40.0, 43.0, "low"),
            TruthLift("c", 70.0, 72.0, "high"), TruthLift("d", 100.0, 102.0, "medium")]


def test_matching_pairs_each_lift_once():
    """Each detection pairs with at most one lift and vice versa; far detections are spurious."""
    dets = [Detection(9.0, 12.5, "high", True, 14.6), Detection(10.5, 12.2, "high", True, 14.0),
            Detection(39.0, 43.5, "low", False), Detection(200.0, 203.0, "high", True, 205.0)]
    m = match_detections(_truth(), dets, tolerance_s=1.0)
    assert [t.lift_id for t, _ in m.pairs] == ["a", "b"]
    assert [t.lift_id for t in m.missed] == ["c", "d"]
    assert len(m.spurious) == 2
    assert any(d.start_s == 200.0 for d in m.spurious)


def test_score_counts_recall_false_buzzes_and_latency():
    """Recall, hub-caused and model-caused false buzzes per hour and latencies are computed as documented."""
    dets = [Detection(9.5, 12.0, "high", True, 14.5, 3.0, 14.0, 30.0),  # a: correct buzz, 2.5 s after lift end
            Detection(39.5, 43.0, "high", True, 45.0),     # b: low lift buzzed -> model false buzz
            Detection(69.0, 72.5, "medium", False),        # c: high lift not buzzed (model miss)
            Detection(500.0, 503.0, "high", True, 505.0)]  # nothing there -> hub false buzz
    s = score_stream(_truth(), dets, duration_s=1800.0)
    assert s.recall == pytest.approx(0.75)
    assert s.missed_ids == ["d"]
    assert s.hub_false_buzzes_per_hour == pytest.approx(2.0)
    assert s.model_false_buzzes_per_hour == pytest.approx(2.0)
    assert s.false_windows_per_hour == pytest.approx(2.0)
    assert s.missed_high == 0
    assert sorted(s.lift_end_to_buzz_s) == pytest.approx([2.0, 2.5])
    assert s.realtime_lift_end_to_buzz_s == pytest.approx([2.003])  # 14.0 - 12.0 + 3 ms inference
    with pytest.raises(ValueError, match="duration_s"):
        score_stream(_truth(), dets, duration_s=0)


def test_summary_and_agreement():
    """Percentiles are interpolated; agreement names every trial that disagrees."""
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["n"], s["median"], s["max"]) == (5, 3.0, 5.0)
    assert s["p95"] == pytest.approx(4.8)
    assert math.isnan(summarize([])["median"])
    ag = buzz_agreement({"t1": "high", "t2": "low", "t3": "high"}, {"t1": True, "t2": True})
    assert ag.agree == 1 and ag.n_trials == 3
    assert ag.disagreements == ["t2: offline 'low', hub buzzed", "t3: offline 'high', hub silent"]


def test_report_writes_table_figures_and_histogram(tmp_path):
    """report.md holds the pass/fail table, the figures and the histogram; a failure makes the verdict FAIL."""
    rep = HilReport(tmp_path / "run")
    rep.add_outcome("hil_tests/test_x.py::test_ok", "passed", 1.5, "it works")
    rep.add_outcome("hil_tests/test_x.py::test_bad", "passed", 0.25, "it buzzes")  # setup
    rep.add_outcome("hil_tests/test_x.py::test_bad", "failed", 0.5, "it buzzes", "assert 1 == 2")  # call
    rep.add_outcome("hil_tests/test_x.py::test_bad", "passed", 0.25, "it buzzes")  # teardown
    rep.add_figure(Figure("hil_tests/test_x.py::test_ok", "recall", 0.99, "", ">= 0.98", True))
    rep.add_latencies("shift", [2.1, 2.2, 2.5, 3.0])
    path = rep.write()
    text = path.read_text()
    assert "Verdict: **FAIL**" in text
    assert "| `hil_tests/test_x.py::test_bad` | **FAIL** | 1.0 |" in text  # phases summed, failure kept
    assert "| recall | 0.99 |" in text
    assert (tmp_path / "run" / "latency.png").stat().st_size > 1000
    data = json.loads((tmp_path / "run" / "figures.json").read_text())
    assert data["latencies_s"]["shift"]["n"] == 4


def test_plugin_writes_junit_and_report(tmp_path):
    """A run with --hil-report writes junit.xml and report.md with each test's expectation and outcome."""
    (tmp_path / "conftest.py").write_text("from hil_tests.conftest import *  # noqa: F401,F403\n")
    (tmp_path / "test_demo.py").write_text(
        "def test_good(hil_report):\n"
        "    '''The good thing happens.'''\n"
        "    hil_report.figure('speed', 61.0, 'x', '>= 50', True)\n"
        "def test_broken():\n"
        "    '''The broken thing is reported.'''\n"
        "    assert 1 == 2, 'one is not two'\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "--hil-report", str(tmp_path / "out"), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "The good thing happens." in report and "The broken thing is reported." in report
    assert "**FAIL**" in report and "one is not two" in report
    assert "| speed | 61 | x | >= 50 | yes |" in report
    assert "<testcase" in (tmp_path / "out" / "junit.xml").read_text()


def test_link_check_allows_only_what_the_rig_could_not_deliver():
    """Frames missing at the hub pass only when the rig's own overrun explains them."""
    from types import SimpleNamespace

    from hil_tests.checks import link_problems

    def run(decoded, overflow):
        return SimpleNamespace(starts=1, hub_health={"source": {"counters": {"frames": decoded}}},
                               rig_counters={"frames_sent": 90000, "bytes_sent": 8_280_000,
                                             "tx_overflow_bytes": overflow})

    assert link_problems(run(90000, 0)) == []
    assert link_problems(run(89996, 216)) == []  # 216 B = 3 frames of 92 B, + 2
    assert "rig sent 90000" in link_problems(run(89999, 0))[0]
    assert "explain at most 3" in link_problems(run(89990, 50))[0]


def test_windows_go_on_the_stream_clock_through_each_events_own_clock_anchor():
    """Each hub process's anchor (host_s, device_s) maps its grid times exactly; an event without one is refused by name."""
    from hil_tests.rig import RigError, to_detections

    origin = 5.0  # the rig's device time of the stream's first sample
    lift = {"start": 100, "end": 150, "first": 50, "samples": 150, "t_start": 1004.0, "t_end": 1006.0}
    first = {"type": "lift", "risk": "high", "buzzed": True, "lift": lift,
             "clock": {"mode": "device", "host_s": 1000.0, "device_s": 5.0}}  # grid 1000 s = stream 0 s
    # a restarted process: another host clock entirely, anchored at stream second 60
    second = {"type": "lift", "risk": "low", "buzzed": False, "lift": dict(lift, t_start=50.0, t_end=52.0),
              "clock": {"mode": "device", "host_s": 40.0, "device_s": 65.0}}
    skipped = {"type": "skipped", "reason": "Back lost", "lift": dict(lift, t_start=1030.0, t_end=1031.0),
               "clock": {"host_s": 1000.0, "device_s": 5.0}}
    dets, skip = to_detections([{"type": "start"}, first, skipped, {"type": "start"}, second], origin, [7.9])
    assert [(d.start_s, d.end_s, d.risk) for d in dets] == [(4.0, 6.0, "high"), (30.0, 31.0, "skipped"),
                                                            (70.0, 72.0, "low")]
    assert dets[0].last_s == pytest.approx(2.0 + 149 / 25.0) and dets[0].buzz_s == 7.9
    assert skip == [skipped]
    with pytest.raises(RigError, match=r"hub event lift at rows 100: no clock anchor"):
        to_detections([dict(first, clock=None)], origin, [])


def test_hub_port_without_rig_port_is_refused_with_a_message(tmp_path):
    """--hub-port alone stops pytest with one line naming --rig-port (a usage error, no traceback)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "hil_tests/test_hil_scoring.py", "--hub-port", "/dev/ttyACM0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4
    assert "--hub-port /dev/ttyACM0 needs --rig-port PORT" in proc.stderr and "Traceback" not in proc.stderr
