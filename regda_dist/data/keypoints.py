"""Keypoint definitions: names, evaluation groups and skeletons of the hand and body tasks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeypointSpec:
    """A keypoint definition shared by the source and target domain of a task."""

    name: str
    names: tuple[str, ...]
    groups: dict[str, tuple[int, ...]]  # evaluation groups; must contain "all"
    skeleton: tuple[tuple[int, int], ...]  # bones as (parent, child) index pairs

    @property
    def num_keypoints(self) -> int:
        return len(self.names)


_FINGERS = ("thumb", "index", "middle", "ring", "little")
_JOINTS = ("mcp", "pip", "dip", "tip")

HAND21 = KeypointSpec(
    name="hand21",
    names=("wrist",) + tuple(f"{f}_{j}" for f in _FINGERS for j in _JOINTS),
    groups={
        "MCP": (1, 5, 9, 13, 17),
        "PIP": (2, 6, 10, 14, 18),
        "DIP": (3, 7, 11, 15, 19),
        "Fingertip": (4, 8, 12, 16, 20),
        "all": tuple(range(21)),
    },
    skeleton=tuple(
        pair
        for f in range(5)
        for pair in (
            (0, 1 + 4 * f),
            (1 + 4 * f, 2 + 4 * f),
            (2 + 4 * f, 3 + 4 * f),
            (3 + 4 * f, 4 + 4 * f),
        )
    ),
)

BODY16 = KeypointSpec(
    name="body16",
    names=(
        "r_ankle",
        "r_knee",
        "r_hip",
        "l_hip",
        "l_knee",
        "l_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "r_wrist",
        "r_elbow",
        "r_shoulder",
        "l_shoulder",
        "l_elbow",
        "l_wrist",
    ),
    groups={
        "Shoulder": (12, 13),
        "Elbow": (11, 14),
        "Wrist": (10, 15),
        "Hip": (2, 3),
        "Knee": (1, 4),
        "Ankle": (0, 5),
        "all": (12, 13, 11, 14, 10, 15, 2, 3, 1, 4, 0, 5),
    },
    skeleton=(
        (6, 2),
        (2, 1),
        (1, 0),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (7, 12),
        (12, 11),
        (11, 10),
        (7, 13),
        (13, 14),
        (14, 15),
    ),
)

SPECS = {spec.name: spec for spec in (HAND21, BODY16)}
