"""Segment model of the body and its forward kinematics (spec §3).

World frame: x anterior, y left, z up; origin on the floor between the
ankles. Every segment has a local frame that equals the world frame when the
subject stands upright with arms hanging; legs and trunk point along local
+z, arms along local -z. Angles are radians inside the code.

Degrees of freedom (all arrays of shape ``(T,)``):

* ``phi_s`` shank inclination (forward +), ``theta_k`` knee flexion; the
  thigh's inclination is ``phi_s - theta_k``.
* ``phi_x`` thorax inclination; the pelvis inclines by ``rho * phi_x``.
* ``beta`` / ``gamma`` small trunk lateral bend / axial rotation (pelvis 0.4x).
* Per arm (``_l`` / ``_r``): ``psi_u`` upper arm from the downward vertical,
  ``theta_e`` elbow flexion, ``pron`` forearm pronation.
* ``root_x``, ``root_y``, ``root_z``, ``yaw``: the whole body's translation
  and heading (steps, walking, turning).

All functions are vectorised over time with numpy.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import numpy as np

#: Segment lengths as fractions of stature (spec §3, Winter / Drillis-Contini; pelvis [E]).
SEGMENT_FRACTIONS: Dict[str, float] = {
    "shank": 0.246, "thigh": 0.245, "pelvis": 0.100, "thorax": 0.188,
    "upper_arm": 0.186, "forearm": 0.146, "hand": 0.054,
}
ANKLE_HEIGHT_FRACTION = 0.039
SHOULDER_HALF_WIDTH_FRACTION = 0.129
HIP_HALF_WIDTH_FRACTION = 0.05
HANDLE_HALF_WIDTH_M = 0.18

#: Mass fractions (spec §3, Winter).
MASS_FRACTIONS: Dict[str, float] = {
    "shank": 0.0465, "thigh": 0.100, "trunk": 0.578, "upper_arm": 0.028, "forearm_hand": 0.022,
}
#: Centre-of-mass positions along each segment from its distal (legs) or proximal (arms) end.
#: Shank/thigh 0.567 from the distal joint (Winter 0.433 from proximal); trunk+head mass at
#: 0.6 of the thorax above the lumbar joint [E]; upper arm 0.436, forearm+hand 0.682 (Winter).
COM_ALONG = {"shank": 0.567, "thigh": 0.567, "trunk": 0.6, "upper_arm": 0.436, "forearm_hand": 0.682}

#: Degrees of freedom of a pose track, in a fixed order.
DOF_NAMES: Tuple[str, ...] = (
    "phi_s", "theta_k", "phi_x", "beta", "gamma",
    "psi_u_l", "theta_e_l", "pron_l", "psi_u_r", "theta_e_r", "pron_r",
    "root_x", "root_y", "root_z", "yaw",
)


@dataclasses.dataclass(frozen=True)
class BodyDims:
    """Segment lengths (m) of one subject.

    Attributes:
        stature: Body height H, m.
        shank, thigh, pelvis, thorax, upper_arm, forearm, hand: Segment lengths, m
            (``hand`` is wrist to grip centre).
        ankle_height: Ankle joint height above the floor, m.
        shoulder_half: Lateral distance of each shoulder from the midline, m.
        hip_half: Lateral distance of each hip joint from the midline, m.
        adduction: Fixed arm adduction (rad) that brings the left hand to the
            handle width; the right arm uses the opposite sign.
    """

    stature: float
    shank: float
    thigh: float
    pelvis: float
    thorax: float
    upper_arm: float
    forearm: float
    hand: float
    ankle_height: float
    shoulder_half: float
    hip_half: float
    adduction: float

    @classmethod
    def from_stature(cls, stature: float, factors: Dict[str, float] | None = None) -> "BodyDims":
        """Scale the standard fractions by ``stature``, times per-segment ``factors``."""
        factors = factors or {}
        lengths = {k: v * stature * float(factors.get(k, 1.0)) for k, v in SEGMENT_FRACTIONS.items()}
        arm = lengths["upper_arm"] + lengths["forearm"] + lengths["hand"]
        shoulder_half = SHOULDER_HALF_WIDTH_FRACTION * stature
        adduction = float(np.arcsin(np.clip((HANDLE_HALF_WIDTH_M - shoulder_half) / arm, -0.5, 0.5)))
        return cls(stature=float(stature), ankle_height=ANKLE_HEIGHT_FRACTION * stature,
                   shoulder_half=shoulder_half, hip_half=HIP_HALF_WIDTH_FRACTION * stature,
                   adduction=adduction, **lengths)

    @property
    def hip_height(self) -> float:
        """Hip joint height when standing upright, m."""
        return self.ankle_height + self.shank + self.thigh


# --------------------------------------------------------------------------- rotations

def rot_x(a: np.ndarray) -> np.ndarray:
    """Rotation matrices about x for angles ``a`` (any shape) -> ``a.shape + (3, 3)``."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(a: np.ndarray) -> np.ndarray:
    """Rotation matrices about y (positive tips +z toward +x, i.e. forward lean)."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(a: np.ndarray) -> np.ndarray:
    """Rotation matrices about z."""
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def rotation_from_vector(v: np.ndarray) -> np.ndarray:
    """Rotation matrix (Rodrigues) for rotation vectors ``v`` of shape ``(..., 3)``."""
    v = np.asarray(v, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = v / safe[..., None]
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([np.stack([zero, -kz, ky], -1), np.stack([kz, zero, -kx], -1),
                  np.stack([-ky, kx, zero], -1)], -2)
    s = np.where(theta > 1e-12, np.sin(theta), 0.0)[..., None, None]
    c = np.where(theta > 1e-12, 1 - np.cos(theta), 0.0)[..., None, None]
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + s * K + c * (K @ K)


def rotation_angle(R: np.ndarray) -> np.ndarray:
    """Angle (rad) of rotation matrices ``R``."""
    tr = np.trace(R, axis1=-2, axis2=-1)
    return np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0))


# --------------------------------------------------------------------------- kinematics

@dataclasses.dataclass
class Frames:
    """World pose of every segment over time.

    Attributes:
        origin: segment name -> ``(T, 3)`` position of the segment's origin joint, m.
        rotation: segment name -> ``(T, 3, 3)`` segment-to-world rotation.
        grip: ``(T, 3)`` midpoint between the two grips, m.
    """

    origin: Dict[str, np.ndarray]
    rotation: Dict[str, np.ndarray]
    grip: np.ndarray


def forward_kinematics(dims: BodyDims, dofs: Dict[str, np.ndarray], rho: float, dominant: str = "r") -> Frames:
    """Compute segment frames from degree-of-freedom tracks.

    Args:
        dims: Segment lengths.
        dofs: Arrays ``(T,)`` for every name in :data:`DOF_NAMES` (radians, metres).
        rho: Lumbopelvic share: pelvis inclination = ``rho * phi_x``.
        dominant: ``"r"`` or ``"l"``: the side of the leg that the thigh and
            waist frames belong to.

    Returns:
        :class:`Frames` with segments ``shank``, ``thigh`` (dominant leg),
        ``pelvis``, ``thorax``, ``upper_arm_l/r``, ``forearm_l/r``.
    """
    side = 1.0 if dominant == "l" else -1.0
    phi_s, theta_k, phi_x = dofs["phi_s"], dofs["theta_k"], dofs["phi_x"]
    root_R = rot_z(dofs["yaw"])
    root_p = np.stack([dofs["root_x"], dofs["root_y"], dofs["root_z"]], -1)

    def world(p_body: np.ndarray) -> np.ndarray:
        return root_p + np.einsum("tij,tj->ti", root_R, p_body)

    R_shank_b = rot_y(phi_s)
    R_thigh_b = rot_y(phi_s - theta_k)
    trunk_extra = rot_x(dofs["beta"]) @ rot_z(dofs["gamma"])
    R_pelvis_b = rot_y(rho * phi_x) @ rot_x(0.4 * dofs["beta"]) @ rot_z(0.4 * dofs["gamma"])
    R_thorax_b = rot_y(phi_x) @ trunk_extra

    T = phi_s.shape[0]
    ankle = np.zeros((T, 3))
    ankle[:, 1] = side * dims.hip_half
    ankle[:, 2] = dims.ankle_height
    knee = ankle + dims.shank * R_shank_b[:, :, 2]
    hip_dom = knee + dims.thigh * R_thigh_b[:, :, 2]
    hip_c = hip_dom.copy()
    hip_c[:, 1] = 0.0
    lumbar = hip_c + dims.pelvis * R_pelvis_b[:, :, 2]

    origin_b = {"shank": ankle, "thigh": knee, "pelvis": hip_c, "thorax": lumbar}
    rot_b = {"shank": R_shank_b, "thigh": R_thigh_b, "pelvis": R_pelvis_b, "thorax": R_thorax_b}
    grips = []
    for arm, sign in (("l", 1.0), ("r", -1.0)):
        shoulder = lumbar + np.einsum("tij,j->ti", R_thorax_b, np.array([0.0, sign * dims.shoulder_half, dims.thorax]))
        add = rot_x(np.full(T, sign * dims.adduction))
        psi_u = dofs[f"psi_u_{arm}"]
        psi_f = psi_u + dofs[f"theta_e_{arm}"]
        R_ua = R_thorax_b @ rot_y(-(psi_u + phi_x)) @ add
        R_fa = R_thorax_b @ rot_y(-(psi_f + phi_x)) @ add @ rot_z(-sign * dofs[f"pron_{arm}"])
        elbow = shoulder - dims.upper_arm * R_ua[:, :, 2]
        wrist = elbow - dims.forearm * R_fa[:, :, 2]
        grips.append(wrist - dims.hand * R_fa[:, :, 2])
        origin_b[f"upper_arm_{arm}"] = shoulder
        origin_b[f"forearm_{arm}"] = elbow
        rot_b[f"upper_arm_{arm}"] = R_ua
        rot_b[f"forearm_{arm}"] = R_fa
    origin = {k: world(v) for k, v in origin_b.items()}
    rotation = {k: root_R @ v for k, v in rot_b.items()}
    return Frames(origin=origin, rotation=rotation, grip=world(0.5 * (grips[0] + grips[1])))


def standing_dofs(T: int, elbow_deg: float = 10.0) -> Dict[str, np.ndarray]:
    """Degree-of-freedom tracks for quiet upright standing (spec §4 'Stand')."""
    d = {k: np.zeros(T) for k in DOF_NAMES}
    d["theta_e_l"][:] = np.radians(elbow_deg)
    d["theta_e_r"][:] = np.radians(elbow_deg)
    return d


def hip_height_of(dims: BodyDims, phi_s: np.ndarray, theta_k: np.ndarray) -> np.ndarray:
    """Hip joint height (m) for leg angles, before root translation."""
    return dims.ankle_height + dims.shank * np.cos(phi_s) + dims.thigh * np.cos(phi_s - theta_k)
