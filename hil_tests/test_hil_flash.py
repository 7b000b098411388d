"""Scenario (d): a new bundle flashed over the management link while the hub works a shift.

The hub runs from a bundle store prepared like a factory-fresh hub
(``host provision --to`` and ``host flash --to``: version 1.0.0). At 40 % of
the shift ``host flash`` sends version 1.1.0 over the hub's management port
(a pseudo-terminal pair through :class:`host.serial_relay.SerialRelay`,
unthrottled like USB CDC). Expectations: the flash succeeds; the daemon takes
the new bundle up without a restart; every lift that ends before the flash
starts is classified by 1.0.0 and every lift that starts after it finished by
1.1.0; no lift is skipped for want of a model; lift recall >= 98 % outside
the switch (from the flash's start to its end) -- and it is reported over the
whole shift too.

With ``--hub-port`` the hub is the bench's: the rig installs 1.0.0 on it
(``host flash --force`` unless already active), restarts its daemon, and at
40 % runs ``host flash 1.1.0 --port <hub-port>``; the expectations are the
same.
"""

from __future__ import annotations

import json

import pytest

from hil_tests.checks import alert_problems, record_shift_figures, score, shift_problems
from hil_tests.fixtures import export_version, run_cli
from hil_tests.rig import links, play, stream_from_shift

SHORT_MINUTES = 5.0
SHIFT_MINUTES = 60.0


def _flash_during(minutes, hil_bundle, hil_shift, hil_options, hil_workdir, hil_report):
    from host.serial_relay import SerialRelay

    label = f"flash during shift ({minutes:g} min)"
    stream = stream_from_shift(hil_shift(minutes))
    work = hil_workdir / f"flash-{minutes:g}min"
    log = work / "host.log"
    store = work / "store"
    if store.exists():
        import shutil

        shutil.rmtree(store)  # a fresh hub every run
    store.mkdir(parents=True)
    v1 = hil_bundle.bundle
    v2 = hil_options["bundle_next"] or export_version(hil_bundle, "1.1.0", hil_workdir / "model")
    outcome = {}

    def flash_over(port):
        def flash():
            outcome["stdout"] = run_cli("host", ["flash", v2, "--port", port, "--quiet", "--json",
                                                 "--timeout", 30], log, timeout=600)
        return flash

    at = stream.duration_s * 0.4
    if hil_options["hub_port"]:  # the bench hub's own store and management port
        result = play(stream, work, bundle=v1, trust=hil_bundle.trust,
                      during=(at, flash_over(hil_options["hub_port"])), **links(hil_options))
    else:
        run_cli("host", ["provision", "--to", store, "--trust", hil_bundle.trust[0], "--hub-id", "hil-hub"], log)
        run_cli("host", ["flash", v1, "--to", store, "--quiet"], log)
        with SerialRelay(baud=None) as relay:
            result = play(stream, work, bundle_store=store, manage_port=relay.hub_path,
                          during=(at, flash_over(relay.host_path)), **links(hil_options))
    problems = []
    if "stdout" not in outcome:
        problems.append("host flash did not finish")
    t0, t1 = result.marks.get("action_start"), result.marks.get("action_end")
    versions = sorted({e.get("model_version") for e in result.lift_events()})
    loaded = [e for e in result.events if e.get("type") == "bundle" and e.get("status") == "loaded"]
    before = [d for d in result.detections if t0 is not None and d.end_s < t0]
    after = [d for d in result.detections if t1 is not None and d.start_s > t1 + 2.0]
    old_v = {d.model_version for d in before if d.risk != "skipped"}
    new_v = {d.model_version for d in after if d.risk != "skipped"}
    hil_report.figure(f"{label}: switch, stream seconds (flash start to end)", (t1 or 0) - (t0 or 0), "s",
                      "reported")
    hil_report.figure(f"{label}: bundles taken up by the running hub", len(loaded), "loads", ">= 2 (1.0.0, 1.1.0)",
                      len(loaded) >= 2)
    if len(loaded) < 2:
        problems.append(f"hub loaded {len(loaded)} bundles ({[e.get('model_version') for e in loaded]}); expected "
                        f"1.0.0 then 1.1.0 without a restart")
    if old_v - {"1.0.0"}:
        problems.append(f"lifts before the flash were classified by {sorted(old_v)}; expected 1.0.0")
    if new_v != {"1.1.0"} and after:
        problems.append(f"lifts after the flash were classified by {sorted(new_v)}; expected 1.1.0")
    if result.skipped:
        problems.append(f"{len(result.skipped)} lifts skipped: {[e.get('reason') for e in result.skipped][:3]}")
    if result.starts != 1:
        problems.append("the hub was restarted")
    sc_all = score(result)
    sc = score(result, exclude=(t0, t1)) if t0 is not None and t1 is not None else sc_all
    record_shift_figures(hil_report, label, sc, result)
    hil_report.figure(f"{label}: recall over the whole shift, switch included", sc_all.recall, "", "reported")
    hil_report.figure(f"{label}: model versions seen", len(versions), "versions", "reported")
    problems += alert_problems(result) + shift_problems(sc)
    assert not problems, "; ".join(problems)
    return json.loads(outcome["stdout"])


def test_flash_during_short_shift(hil_bundle, hil_shift, hil_options, hil_workdir, hil_report):
    """Flash 1.1.0 over the management port during a 5-min shift: taken up live, no lift skipped or missed outside the switch."""
    _flash_during(SHORT_MINUTES, hil_bundle, hil_shift, hil_options, hil_workdir, hil_report)


@pytest.mark.slow
def test_flash_during_shift(hil_bundle, hil_shift, hil_options, hil_workdir, hil_report):
    """Flash 1.1.0 over the management port during a 60-min shift: taken up live, no lift skipped or missed outside the switch."""
    _flash_during(SHIFT_MINUTES, hil_bundle, hil_shift, hil_options, hil_workdir, hil_report)
