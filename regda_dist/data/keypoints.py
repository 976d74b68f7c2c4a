"""Keypoint sets: names in heatmap order, evaluation groups, skeleton bones, left/right pairs.

Sets are registered by name like backbones (`hand21`, `body16` built in). A user's own set comes
from its COCO category (`data.keypoints: from_data`) or from the experiment YAML
(`data.keypoints: custom` + `data.keypoint_set`); every set checks itself when built. A
registered set also knows the other names its keypoints go by in published files (aliases), so
a file named in another convention maps onto it (coco.name_map).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from regda_dist.registry import Registry

FROM_DATA = "from_data"  # data.keypoints: the set the source's data declares (COCO category)
CUSTOM = "custom"  # data.keypoints: the set defined in the experiment (data.keypoint_set)


class KeypointError(ValueError):
    """A keypoint set that does not hold together; `key` names the part that is wrong
    (names, groups.<group>, skeleton or flip_pairs)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def canonical(name: str) -> str:
    """The form names are matched in: case-insensitive, '-'/' ' as '_', left_/right_ as l_/r_."""
    n = name.strip().lower().replace("-", "_").replace(" ", "_")
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if n.startswith(long):
            n = short + n[len(long) :]
    return n


@dataclass(frozen=True)
class KeypointSpec:
    """A keypoint set shared by the source and the target domain of a task. Indices are 0-based
    positions in `names` (the heatmap channels)."""

    name: str
    names: tuple[str, ...]
    groups: dict[str, tuple[int, ...]]  # evaluation groups; "all" is required
    skeleton: tuple[tuple[int, int], ...] = ()  # bones (parent, child)
    flip_pairs: tuple[tuple[int, int], ...] = ()  # (left, right) swapped by a horizontal flip
    # other names of a keypoint in published files: {name: (alias, ...)}, matched canonically
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        _check(self)
        _check_aliases(self)

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def forms(self, k: int) -> tuple[str, ...]:
        """The canonical names keypoint k is matched by: its own, then its aliases."""
        return (canonical(self.names[k]), *map(canonical, self.aliases.get(self.names[k], ())))

    def describe(self) -> list[str]:
        """Lines that show the set: names with indices, groups, bones, flip pairs, aliases."""
        n = self.names
        groups = [
            _wrap(
                f"group {g} ({len(ix)})", ["every keypoint"] if len(ix) == len(n) else _pick(n, ix)
            )
            for g, ix in self.groups.items()
        ]
        aliases = [f"{k}={'/'.join(a)}" for k, a in self.aliases.items()]
        return [
            f"keypoint set {self.name}: {len(n)} keypoints",
            *_wrap("names", [f"{i}:{name}" for i, name in enumerate(n)]),
            *(line for group in groups for line in group),
            *_wrap("bones", [f"{n[a]}-{n[b]}" for a, b in self.skeleton] or ["none"]),
            *_wrap("flip pairs", [f"{n[a]}/{n[b]}" for a, b in self.flip_pairs] or ["none"]),
            *(_wrap("aliases", aliases) if aliases else []),  # registered sets: other names
        ]


def _pick(names: Sequence[str], index: Iterable[int]) -> list[str]:
    return [names[i] for i in index]


def _wrap(label: str, items: list[str], width: int = 96) -> list[str]:
    lines, line = [], f"  {label}: "
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "")
        if len(line) + len(piece) > width and line.strip():
            lines.append(line.rstrip())
            line = "    "
        line += piece
    return [*lines, line.rstrip()]


def _check(spec: KeypointSpec) -> None:
    if not spec.names:
        raise KeypointError("names", "a keypoint set needs at least one keypoint")
    seen: dict[str, str] = {}
    for name in spec.names:
        if not isinstance(name, str) or not canonical(name):
            raise KeypointError("names", f"keypoint names must be non-empty text, got {name!r}")
        if canonical(name) in seen:
            raise KeypointError(
                "names", f"{name!r} and {seen[canonical(name)]!r} are the same name"
            )
        seen[canonical(name)] = name
    k = len(spec.names)
    if "all" not in spec.groups:
        raise KeypointError("groups", "the group 'all' is missing")
    for group, index in spec.groups.items():
        _indices(index, k, f"groups.{group}")
        if not index or len(set(index)) != len(index):
            raise KeypointError(f"groups.{group}", "a group lists keypoints once, at least one")
    for key, pairs in (("skeleton", spec.skeleton), ("flip_pairs", spec.flip_pairs)):
        for pair in pairs:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise KeypointError(key, f"a pair joins two different keypoints, got {pair!r}")
            _indices(pair, k, key)
    flipped = [i for pair in spec.flip_pairs for i in pair]
    if len(set(flipped)) != len(flipped):
        raise KeypointError("flip_pairs", "a keypoint is in more than one flip pair")


def _check_aliases(spec: KeypointSpec) -> None:
    """Aliases name keypoints of the set, each alias once, never another keypoint's name."""
    names = {canonical(n): n for n in spec.names}
    seen: dict[str, str] = {}  # canonical alias -> the keypoint it names
    for name, aliases in spec.aliases.items():
        if name not in spec.names:
            raise KeypointError("aliases", f"alias of {name!r}, which is not a keypoint of the set")
        for alias in aliases:
            c = canonical(alias)
            if c in names:
                raise KeypointError("aliases", f"{alias!r} names keypoint {names[c]!r} already")
            if c in seen:
                raise KeypointError(
                    "aliases", f"{alias!r} is an alias of both {seen[c]!r} and {name!r}"
                )
            seen[c] = name


def _indices(index: Iterable[Any], k: int, key: str) -> None:
    for i in index:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < k:
            raise KeypointError(key, f"{i!r} is not a keypoint index (0..{k - 1})")


def _resolve(ref: Any, index: Mapping[str, int], k: int, key: str) -> int:
    """A keypoint given by name or 0-based index -> its index."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        if 0 <= ref < k:
            return ref
        raise KeypointError(key, f"index {ref} is out of range (0..{k - 1})")
    if isinstance(ref, str) and canonical(ref) in index:
        return index[canonical(ref)]
    raise KeypointError(key, f"{ref!r} is not a keypoint name or 0-based index of this set")


def _pairs(pairs: Any, index: Mapping[str, int], k: int, key: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(pairs, list | tuple):
        raise KeypointError(key, f"must be a list of [a, b] pairs, got {pairs!r}")
    out = []
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise KeypointError(key, f"each entry must be a pair [a, b], got {pair!r}")
        out.append((_resolve(pair[0], index, k, key), _resolve(pair[1], index, k, key)))
    return tuple(out)


def define(
    name: str,
    names: Sequence[str],
    groups: Mapping[str, Any] | None = None,
    skeleton: Any = (),
    flip_pairs: Any = (),
) -> KeypointSpec:
    """A set from plain values (YAML, a COCO category): groups, bones and flip pairs give
    keypoints by name or 0-based index; the group "all" is every keypoint unless given."""
    if not isinstance(names, list | tuple):
        raise KeypointError("names", f"must be a list of keypoint names, got {names!r}")
    names = tuple(str(n) if isinstance(n, int) and not isinstance(n, bool) else n for n in names)
    KeypointSpec(name or CUSTOM, names, {"all": tuple(range(len(names)))})  # names checked
    index, k = {canonical(n): i for i, n in enumerate(names)}, len(names)
    if not isinstance(groups or {}, Mapping):
        raise KeypointError("groups", f"must map group names to keypoint lists, got {groups!r}")
    resolved = {}
    for group, members in (groups or {}).items():
        key = f"groups.{group}"
        if not isinstance(members, list | tuple):
            raise KeypointError(key, f"must be a list of keypoints, got {members!r}")
        resolved[str(group)] = tuple(_resolve(m, index, k, key) for m in members)
    resolved.setdefault("all", tuple(range(k)))
    return KeypointSpec(
        name or CUSTOM,
        names,
        resolved,
        _pairs(skeleton, index, k, "skeleton"),
        _pairs(flip_pairs, index, k, "flip_pairs"),
    )


def flip_pairs_by_name(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """(left, right) index pairs of names that differ only by a left/right prefix."""
    index = {canonical(n): i for i, n in enumerate(names)}
    return tuple(
        (i, index["r_" + c[2:]])
        for c, i in index.items()
        if c.startswith("l_") and "r_" + c[2:] in index
    )


def name_difference(a: KeypointSpec, b: KeypointSpec, labels: tuple[str, str]) -> str:
    """'' when both sets have the same names (in any order and spelling), else which differ."""
    ca, cb = {canonical(n): n for n in a.names}, {canonical(n): n for n in b.names}
    only = ([n for c, n in ca.items() if c not in cb], [n for c, n in cb.items() if c not in ca])
    parts = [
        f"only in {label}: {shorten(names)}" for label, names in zip(labels, only, strict=True)
    ]
    return "; ".join(p for p, names in zip(parts, only, strict=True) if names)


def shorten(names: list[str], shown: int = 8) -> str:
    """The first `shown` of a list, comma-separated, and how many there are in all."""
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# --------------------------------------------------------------------------------------------
# Built-in sets and the registry

KEYPOINT_SETS: Registry[KeypointSpec] = Registry("keypoint set")


def register_keypoints(spec: KeypointSpec) -> KeypointSpec:
    """Register a set under its name (data.keypoints: NAME)."""
    return KEYPOINT_SETS.register(spec.name, spec)


def keypoint_set(name: str) -> KeypointSpec:
    return KEYPOINT_SETS.get(name)


def list_keypoint_sets() -> list[str]:
    return KEYPOINT_SETS.list()


_FINGERS = ("thumb", "index", "middle", "ring", "little")
_JOINTS = ("mcp", "pip", "dip", "tip")

# Other names of hand21's points. OpenMMLab (mmpose's dataset_info of OneHand10K, FreiHAND,
# CMU Panoptic hand, RHD, COCO-WholeBody hand, InterHand) names the same 21-point hand model:
# wrist, then each finger's four points from the palm out, thumb1..4, forefinger1..4,
# middle_finger1..4, ring_finger1..4, pinky_finger1..4 (the thumb's first point is the one
# hand21 calls thumb_mcp, as RHD does); COCO-WholeBody's hand_root is the wrist. Not aliased:
# MediaPipe's names, whose THUMB_MCP is the thumb's second point (hand21's thumb_pip).
_OPENMMLAB_FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
HAND21_ALIASES = {
    "wrist": ("hand_root",),
    **{
        f"{finger}_{joint}": (f"{theirs}{i}",)
        for finger, theirs in zip(_FINGERS, _OPENMMLAB_FINGERS, strict=True)
        for i, joint in enumerate(_JOINTS, 1)
    },
}

HAND21 = register_keypoints(
    KeypointSpec(
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
        aliases=HAND21_ALIASES,
    )
)

_BODY16_NAMES = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
    "l_wrist",
)  # fmt: skip

# Other names of body16's (MPII's) points; COCO's left_x / right_x need none (canonical: l_x).
# LSP, AI Challenger and CrowdPose call MPII's upper neck "neck" (mmpose's body8 configs map MPII
# upper_neck, AIC neck and CrowdPose neck onto one point, Halpe's neck; mmhuman3d names MPII's
# and LSP's "neck"; OpenPose's Neck, the shoulders' midpoint, lies lower: its files say "Neck
# as upper_neck" in their notes); the top of the head is "top_head" in CrowdPose (mmpose) and
# AI Challenger converters, "headtop" in LSP's and mmhuman3d's. Human3.6M: its root joint ("Hip"
# in the dataset, "root" in mmpose) is the pelvis, its "Foot" joints are the ankles (as our
# human36m reader maps them), and it writes sides as a prefix letter (RHip, LShoulder). Not
# aliased, as conventions differ on where they lie: "head" (the top of the head in Human3.6M
# and CrowdPose, its centre in Penn Action), Human3.6M's neck_base / "Neck/Nose".
BODY16_ALIASES = {
    "upper_neck": ("neck",),
    "head_top": ("top_head", "headtop"),
    "pelvis": ("hip", "root"),
    "r_ankle": ("r_foot", "rfoot", "rankle"),
    "l_ankle": ("l_foot", "lfoot", "lankle"),
    **{f"{side}_{joint}": (f"{side}{joint}",) for side in "rl"
       for joint in ("hip", "knee", "shoulder", "elbow", "wrist")},
}  # fmt: skip

BODY16 = register_keypoints(
    KeypointSpec(
        name="body16",
        names=_BODY16_NAMES,
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
        ),  # fmt: skip
        flip_pairs=flip_pairs_by_name(_BODY16_NAMES),
        aliases=BODY16_ALIASES,
    )
)
