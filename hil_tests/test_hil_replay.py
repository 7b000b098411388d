"""Scenario (a): test-split trials replayed through the rig; the hub buzzes exactly when the offline int8 model says high.

The offline reference is ``edge classify --markers detector`` with the same
bundle on the same trials: the hub's own aligner and lift detector run over
each trial, then the same tensorizer and int8 interpreter. The hub gets the
trials over the sensor-hub serial protocol (int16 on the wire, 2 s of silence
between trials) from the emulated sensor hub.
"""

from __future__ import annotations

import pytest

from hil_tests.checks import alert_problems, link_problems
from hil_tests.rig import (classify_offline, hub_buzz_per_trial, links, play, stream_from_dataset,
                           subset_dataset)
from hil_tests.scoring import buzz_agreement, match_detections

#: Trials replayed by the fast variant (make test).
FAST_TRIALS = 6


def _replay(trial_ids, name, hil_bundle, hil_options, hil_workdir, hil_report):
    work = hil_workdir / name
    subset = subset_dataset(hil_bundle.data, trial_ids, work / "trials")
    offline = classify_offline(hil_bundle.bundle, hil_bundle.trust, subset, work / "offline_detector.csv",
                               markers="detector")
    offline_index = classify_offline(hil_bundle.bundle, hil_bundle.trust, subset, work / "offline_index.csv",
                                     markers="index")
    stream = stream_from_dataset(subset)
    result = play(stream, work / "run", bundle=hil_bundle.bundle, trust=hil_bundle.trust, **links(hil_options))
    hub = hub_buzz_per_trial(result)
    agreement = buzz_agreement({t: r["predicted"] for t, r in offline.items()}, hub)

    # hub risk per trial (the detection inside each trial's span), for accuracy against ground truth
    m = match_detections(stream.truth, result.detections)
    hub_risk = {t.lift_id: d.risk for t, d in m.pairs}
    truth = {t.lift_id: t.risk for t in stream.truth}
    n = len(truth)
    hub_acc = sum(hub_risk.get(t) == r for t, r in truth.items()) / n
    off_acc = sum(offline_index[t]["predicted"] == r for t, r in truth.items()) / n
    hil_report.figure(f"{name}: trials replayed", n, "trials")
    hil_report.figure(f"{name}: hub buzz agrees with offline int8 (edge classify, detector markers)",
                      agreement.rate, "", "= 1.0 (100%)", agreement.rate == 1.0)
    hil_report.figure(f"{name}: accuracy offline (int8, index markers)", off_acc, "", "reported")
    hil_report.figure(f"{name}: accuracy on the hub (int8, its own lift detection)", hub_acc, "", "reported")
    hil_report.figure(f"{name}: trials with a lift found by the hub", len(m.pairs) / n, "", "reported")
    hil_report.figure(f"{name}: buzzes", len(result.buzzes_s), "buzzes", "reported")
    problems = link_problems(result) + alert_problems(result)
    hub_probs = {t.lift_id: d for t, d in m.pairs}
    for text in agreement.disagreements:
        tid = text.split(":")[0]
        row = offline.get(tid, {})
        problems.append(f"trial {text} (offline p low/medium/high {row.get('p_low')}/{row.get('p_medium')}/"
                        f"{row.get('p_high')} on rows {row.get('start')}-{row.get('end')}; hub window "
                        f"{hub_probs[tid].start_s:.2f}-{hub_probs[tid].end_s:.2f} s classified "
                        f"{hub_probs[tid].risk})" if tid in hub_probs else f"trial {text}")
    assert not problems, "; ".join(problems)
    return result


def test_replay_test_split_fast(hil_bundle, hil_options, hil_workdir, hil_report):
    """The hub buzzes for exactly the trials the offline int8 model calls high (first 6 test-split trials)."""
    _replay(hil_bundle.test_ids[:FAST_TRIALS], "replay-fast", hil_bundle, hil_options, hil_workdir, hil_report)


@pytest.mark.slow
def test_replay_test_split_all(hil_bundle, hil_options, hil_workdir, hil_report):
    """The hub buzzes for exactly the trials the offline int8 model calls high (every test-split trial)."""
    _replay(hil_bundle.test_ids, "replay-all", hil_bundle, hil_options, hil_workdir, hil_report)
