"""LiftGuard hardware-in-the-loop (HIL) rig: the real hub process driven by a scripted sensor rig.

* :mod:`hil_tests.plugin` – the pytest plugin (options, fixtures, QA report).
* :mod:`hil_tests.rig` – starting the hub under test and the sensor rig, collecting buzzes.
* :mod:`hil_tests.scoring` – matching detections and buzzes against ground-truth lifts.
* :mod:`hil_tests.report` – the QA report (JUnit XML via pytest, ``report.md``, latency PNG).
* :mod:`hil_tests.bench` – the bench emulator: ``edge run`` on "another board" (its own
  process, store and links), for the ``--hub-port`` path without hardware.

See ``docs/qa.md`` for how to run it against emulated sensors or a bench.
"""
