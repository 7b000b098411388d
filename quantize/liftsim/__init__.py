"""LiftSim: a numpy-only simulator of six-IMU lifting trials and whole shifts.

A physical model of bodies lifting (``docs/simulator.md``,
``../shared/reference/liftsim-spec.md``): subjects (:mod:`.subjects`), a
segment model with forward kinematics (:mod:`.body`), a posture solver
(:mod:`.posture`), minimum-jerk timelines (:mod:`.timeline`), sensor placement,
physics, errors and decimation (:mod:`.sensors`), band-energy artefacts
(:mod:`.artefacts`), trials and cohorts (:mod:`.trials`) and whole-shift
streams (:mod:`.shift`). Command lines: ``quantize synth`` (:mod:`.cli_synth`),
``quantize synth-shift`` (:mod:`.cli_shift`), ``quantize calibrate``
(:mod:`.calibrate`).
"""

from .options import SimOptions

__all__ = ["SimOptions"]
