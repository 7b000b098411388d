"""Posture solver: whole-body keyframes that put the grip on a target (spec §4).

A vectorised grid search over knee flexion, thorax inclination and shank
inclination (3 degree steps) with a closed-form two-link arm at every grid
point, minimising::

    J = 1e4 reach_err^2 + 8 (theta_k - theta_k*)^2 + w_t phi_x^2 + 0.3 (theta_e - theta_e*)^2
        + 400 (x_COM - 0.04 H)^2 + 0.3 phi_s^2 + hinge^2 penalties

in radians and metres. Above-knee targets come out stoop-like, below-knee
targets squat-like through the preferred knee flexion
``theta_k* = s * 120 deg * clip((0.34 H - V) / 0.28 H, 0, 1)``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np

from .body import COM_ALONG, MASS_FRACTIONS, BodyDims

_D = np.pi / 180.0
#: Solver grid, radians (spec §4: 3 degree steps).
GRID_THETA_K = np.arange(0.0, 130.0 + 1e-9, 3.0) * _D
GRID_PHI_X = np.arange(-10.0, 110.0 + 1e-9, 3.0) * _D
GRID_PHI_S = np.arange(-6.0, 35.0 + 1e-9, 3.0) * _D


@dataclasses.dataclass(frozen=True)
class Style:
    """A subject's (and trial's) movement preferences.

    Attributes:
        squat_index: s in [0, 1]: 0 pure stoop, 1 full squat preference.
        rho: Lumbopelvic share of thorax inclination taken by the pelvis.
        w_t: Weight of the trunk-flexion cost.
        theta_e_pref: Preferred elbow flexion, rad.
    """

    squat_index: float
    rho: float
    w_t: float
    theta_e_pref: float


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """A solved posture (radians).

    Attributes:
        phi_s, theta_k, phi_x: Legs and trunk.
        psi_u, theta_e: Arm (both arms, symmetric lift).
        reach_err: Distance (m) the grip misses the target by.
    """

    phi_s: float
    theta_k: float
    phi_x: float
    psi_u: float
    theta_e: float
    reach_err: float = 0.0


def preferred_knee(dims: BodyDims, target_z: float, squat_index: float) -> float:
    """Preferred knee flexion (rad) for a grip height ``target_z`` (spec §4)."""
    H = dims.stature
    return float(squat_index * 120.0 * _D * np.clip((0.34 * H - target_z) / (0.28 * H), 0.0, 1.0))


def _shoulder(dims: BodyDims, phi_s, theta_k, phi_x, rho):
    """Sagittal shoulder (x, z) and trunk/leg joint x positions for angle arrays."""
    knee_x = dims.shank * np.sin(phi_s)
    knee_z = dims.ankle_height + dims.shank * np.cos(phi_s)
    phi_t = phi_s - theta_k
    hip_x = knee_x + dims.thigh * np.sin(phi_t)
    hip_z = knee_z + dims.thigh * np.cos(phi_t)
    phi_p = rho * phi_x
    lum_x = hip_x + dims.pelvis * np.sin(phi_p)
    lum_z = hip_z + dims.pelvis * np.cos(phi_p)
    sh_x = lum_x + dims.thorax * np.sin(phi_x)
    sh_z = lum_z + dims.thorax * np.cos(phi_x)
    return knee_x, hip_x, lum_x, sh_x, sh_z


def solve_arm(dims: BodyDims, sh_x, sh_z, target_x: float, target_z: float):
    """Closed-form sagittal two-link IK, elbow-flexed solution.

    Returns:
        ``(psi_u, theta_e, reach_err)`` arrays broadcast like ``sh_x``.
    """
    cos_add = np.cos(dims.adduction)
    lu = dims.upper_arm * cos_add
    lf = (dims.forearm + dims.hand) * cos_add
    dx = target_x - sh_x
    dz = target_z - sh_z
    d = np.hypot(dx, dz)
    d_min, d_max = abs(lu - lf) + 1e-6, lu + lf - 1e-6
    reach_err = np.maximum(d - d_max, 0.0) + np.maximum(d_min - d, 0.0)
    dc = np.clip(d, d_min, d_max)
    theta_e = np.pi - np.arccos(np.clip((lu ** 2 + lf ** 2 - dc ** 2) / (2 * lu * lf), -1.0, 1.0))
    direction = np.arctan2(dx, -dz)
    delta = np.arccos(np.clip((lu ** 2 + dc ** 2 - lf ** 2) / (2 * lu * dc), -1.0, 1.0))
    return direction - delta, theta_e, reach_err


def _hinge(x, lo=None, hi=None):
    out = 0.0
    if lo is not None:
        out = out + np.maximum(lo - x, 0.0) ** 2
    if hi is not None:
        out = out + np.maximum(x - hi, 0.0) ** 2
    return out


def posture_cost(dims: BodyDims, style: Style, target_x: float, target_z: float,
                 theta_k, phi_x, phi_s, theta_k_pref: float):
    """Cost J and the arm solution for broadcastable angle arrays.

    Returns:
        ``(J, psi_u, theta_e, reach_err)``.
    """
    H = dims.stature
    rho = style.rho
    knee_x, hip_x, lum_x, sh_x, sh_z = _shoulder(dims, phi_s, theta_k, phi_x, rho)
    psi_u, theta_e, reach_err = solve_arm(dims, sh_x, sh_z, target_x, target_z)
    m = MASS_FRACTIONS
    # Centre of mass (x only): legs (both), trunk + head, both arms.
    shank_x = COM_ALONG["shank"] * knee_x
    thigh_x = knee_x + COM_ALONG["thigh"] * (hip_x - knee_x)
    trunk_x = lum_x + COM_ALONG["trunk"] * dims.thorax * np.sin(phi_x)
    cos_add = np.cos(dims.adduction)
    ua_x = sh_x + COM_ALONG["upper_arm"] * dims.upper_arm * cos_add * np.sin(psi_u)
    elbow_x = sh_x + dims.upper_arm * cos_add * np.sin(psi_u)
    fa_x = elbow_x + COM_ALONG["forearm_hand"] * (dims.forearm + dims.hand) * cos_add * np.sin(psi_u + theta_e)
    total = 2 * m["shank"] + 2 * m["thigh"] + m["trunk"] + 2 * m["upper_arm"] + 2 * m["forearm_hand"]
    com_x = (2 * m["shank"] * shank_x + 2 * m["thigh"] * thigh_x + m["trunk"] * trunk_x
             + 2 * m["upper_arm"] * ua_x + 2 * m["forearm_hand"] * fa_x) / total
    hip_flex = rho * phi_x - (phi_s - theta_k)
    lumbar_flex = (1 - rho) * phi_x
    shoulder_flex = psi_u + phi_x
    J = (1e4 * reach_err ** 2 + 8 * (theta_k - theta_k_pref) ** 2 + style.w_t * phi_x ** 2
         + 0.3 * (theta_e - style.theta_e_pref) ** 2 + 400 * (com_x - 0.04 * H) ** 2 + 0.3 * phi_s ** 2
         + 100 * _hinge(hip_flex, 0.0, 125 * _D) + 200 * _hinge(lumbar_flex, None, 60 * _D)
         + 100 * _hinge(phi_x, -3 * _D, None) + 50 * _hinge(shoulder_flex, -40 * _D, 160 * _D)
         + 50 * _hinge(psi_u, -60 * _D, None))
    return J, psi_u, theta_e, reach_err


def solve_posture(dims: BodyDims, style: Style, target_x: float, target_z: float, *,
                  theta_k_pref: Optional[float] = None, fixed: Optional[Tuple[float, float]] = None) -> Keyframe:
    """Find the grid posture of least cost that puts the grip at the target.

    Args:
        dims: Segment lengths.
        style: Preferences.
        target_x: Grip target, m ahead of the ankles.
        target_z: Grip target height, m.
        theta_k_pref: Override the preferred knee flexion (rad).
        fixed: ``(theta_k, phi_x)`` to force (atypical kneel trials); only
            the shank is then searched.
    """
    if theta_k_pref is None:
        theta_k_pref = preferred_knee(dims, target_z, style.squat_index)
    if fixed is not None:
        tk = np.array([fixed[0]])[:, None, None]
        px = np.array([fixed[1]])[None, :, None]
    else:
        tk = GRID_THETA_K[:, None, None]
        px = GRID_PHI_X[None, :, None]
    ps = GRID_PHI_S[None, None, :]
    J, psi_u, theta_e, err = posture_cost(dims, style, target_x, target_z, tk, px, ps, theta_k_pref)
    i, j, k = np.unravel_index(int(np.argmin(J)), J.shape)
    return Keyframe(phi_s=float(GRID_PHI_S[k]), theta_k=float(tk[i, 0, 0]), phi_x=float(px[0, j, 0]),
                    psi_u=float(psi_u[i, j, k]), theta_e=float(theta_e[i, j, k]), reach_err=float(err[i, j, k]))


def perturb(dims: BodyDims, style: Style, key: Keyframe, target_x: float, target_z: float,
            rng: np.random.Generator, scale: float = 1.0) -> Keyframe:
    """Add trial noise to legs and trunk (spec §4) and re-solve the arm.

    Noise: N(0, 1.5 deg) on the shank, N(0, 3 deg) on the knee and thorax,
    each times ``scale`` (the difficulty); knee kept in [0, 135 deg].
    """
    phi_s = key.phi_s + rng.normal(0.0, 1.5 * _D * scale)
    theta_k = float(np.clip(key.theta_k + rng.normal(0.0, 3.0 * _D * scale), 0.0, 135 * _D))
    phi_x = key.phi_x + rng.normal(0.0, 3.0 * _D * scale)
    _, _, _, sh_x, sh_z = _shoulder(dims, phi_s, theta_k, phi_x, style.rho)
    psi_u, theta_e, err = solve_arm(dims, sh_x, sh_z, target_x, target_z)
    return Keyframe(phi_s=float(phi_s), theta_k=theta_k, phi_x=float(phi_x), psi_u=float(psi_u),
                    theta_e=float(theta_e), reach_err=float(err))
