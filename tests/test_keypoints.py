import pytest

from regda_dist.data.keypoints import (
    BODY16,
    HAND21,
    KeypointError,
    KeypointSpec,
    canonical,
    define,
    flip_pairs_by_name,
    keypoint_set,
    list_keypoint_sets,
    name_difference,
)


def test_hand21_names():
    assert HAND21.num_keypoints == 21
    assert len(HAND21.names) == 21
    assert len(set(HAND21.names)) == 21
    assert HAND21.names[0] == "wrist"
    # per finger, thumb .. little, the joints run MCP -> PIP -> DIP -> tip
    assert HAND21.names[1:5] == ("thumb_mcp", "thumb_pip", "thumb_dip", "thumb_tip")
    assert HAND21.names[17:21] == ("little_mcp", "little_pip", "little_dip", "little_tip")


def test_hand21_groups():
    assert HAND21.groups == {
        "MCP": (1, 5, 9, 13, 17),
        "PIP": (2, 6, 10, 14, 18),
        "DIP": (3, 7, 11, 15, 19),
        "Fingertip": (4, 8, 12, 16, 20),
        "all": tuple(range(21)),
    }
    for group, suffix in (("MCP", "mcp"), ("PIP", "pip"), ("DIP", "dip"), ("Fingertip", "tip")):
        assert all(HAND21.names[i].endswith("_" + suffix) for i in HAND21.groups[group])


def test_body16_names_in_mpii_order():
    assert BODY16.num_keypoints == 16
    assert BODY16.names == (
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
        "l_wrist",
    )  # fmt: skip


def test_body16_groups():
    expected = {
        "Shoulder": (12, 13),
        "Elbow": (11, 14),
        "Wrist": (10, 15),
        "Hip": (2, 3),
        "Knee": (1, 4),
        "Ankle": (0, 5),
    }
    groups = dict(BODY16.groups)
    all_ = groups.pop("all")
    assert {k: tuple(sorted(v)) for k, v in groups.items()} == expected
    assert len(all_) == 12
    assert sorted(all_) == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15]
    # pelvis, thorax, upper neck, head top are not evaluated
    assert not {6, 7, 8, 9} & set(all_)


@pytest.mark.parametrize("spec", [HAND21, BODY16], ids=lambda s: s.name)
def test_skeleton_and_group_indices_in_range(spec):
    assert spec.skeleton
    for a, b in spec.skeleton:
        assert 0 <= a < spec.num_keypoints
        assert 0 <= b < spec.num_keypoints
        assert a != b
    assert "all" in spec.groups
    for index in spec.groups.values():
        assert all(0 <= i < spec.num_keypoints for i in index)
        assert len(set(index)) == len(index)


def test_built_in_sets_are_registered():
    assert list_keypoint_sets() == ["body16", "hand21"]
    assert keypoint_set("hand21") is HAND21 and keypoint_set("body16") is BODY16
    with pytest.raises(ValueError, match="unknown keypoint set 'face68'; registered: body16"):
        keypoint_set("face68")


def test_body16_flip_pairs_swap_left_and_right():
    names = BODY16.names
    assert {(names[a], names[b]) for a, b in BODY16.flip_pairs} == {
        (f"l_{j}", f"r_{j}") for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")
    }
    assert HAND21.flip_pairs == ()  # one hand: nothing to swap


ARM = ["base", "shoulder", "elbow", "wrist", "left_finger", "right_finger", "tip"]


def test_define_takes_names_or_indices_and_adds_all():
    spec = define(
        "arm7",
        ARM,
        {"joints": ["shoulder", 2, "Wrist"], "fingers": [4, 5, "tip"]},
        [["base", "shoulder"], [1, 2], ["elbow", "wrist"], [3, "tip"]],
        [["left_finger", "right_finger"]],
    )
    assert spec.num_keypoints == 7 and spec.names == tuple(ARM)
    assert spec.groups == {"joints": (1, 2, 3), "fingers": (4, 5, 6), "all": tuple(range(7))}
    assert spec.skeleton == ((0, 1), (1, 2), (2, 3), (3, 6)) and spec.flip_pairs == ((4, 5),)
    assert define("x", ARM, {"all": ["tip", 0]}).groups == {"all": (6, 0)}  # given: kept


def test_numbered_landmarks_are_names():
    face = define("face68", list(range(1, 69)), skeleton=[[1, 2]])
    assert face.names[:3] == ("1", "2", "3") and face.num_keypoints == 68
    assert face.skeleton == ((1, 2),)  # ints in bones are 0-based indices, not names


@pytest.mark.parametrize(
    ("kwargs", "key", "message"),
    [
        ({"names": []}, "names", "at least one keypoint"),
        ({"names": ["a", "A"]}, "names", "'A' and 'a' are the same name"),
        ({"names": ["left_eye", "l_eye"]}, "names", "same name"),
        ({"names": ["a", ""]}, "names", "non-empty text"),
        ({"names": "ab"}, "names", "must be a list"),
        ({"names": ["a", "b"], "groups": [1]}, "groups", "must map group names"),
        ({"names": ["a", "b"], "groups": {"g": ["c"]}}, "groups.g", "'c' is not a keypoint"),
        ({"names": ["a", "b"], "groups": {"g": [2]}}, "groups.g", r"index 2 is out of range"),
        ({"names": ["a", "b"], "groups": {"g": "a"}}, "groups.g", "must be a list"),
        ({"names": ["a", "b"], "groups": {"g": ["a", 0]}}, "groups.g", "keypoints once"),
        ({"names": ["a", "b"], "skeleton": [["a", "a"]]}, "skeleton", "two different"),
        ({"names": ["a", "b"], "skeleton": [["a"]]}, "skeleton", r"a pair \[a, b\]"),
        ({"names": ["a", "b"], "skeleton": [[0, True]]}, "skeleton", "True"),
        ({"names": ["a", "b", "c"], "flip_pairs": [[0, 1], [1, 2]]}, "flip_pairs", "more than"),
    ],
)  # fmt: skip
def test_a_set_that_does_not_hold_together_names_the_part(kwargs, key, message):
    with pytest.raises(KeypointError, match=message) as info:
        define("x", **kwargs)
    assert info.value.key == key


def test_a_spec_checks_itself_whoever_builds_it():
    with pytest.raises(KeypointError, match="'all' is missing"):
        KeypointSpec("x", ("a", "b"), {"g": (0,)})
    with pytest.raises(KeypointError, match=r"3 is not a keypoint index \(0..1\)"):
        KeypointSpec("x", ("a", "b"), {"all": (0, 1)}, skeleton=((0, 3),))


def test_canonical_names_and_flip_pairs_by_name():
    assert canonical(" Left-Shoulder ") == "l_shoulder" == canonical("l_shoulder")
    assert canonical("right eye") == "r_eye" and canonical("17") == "17"
    assert flip_pairs_by_name(["nose", "left_eye", "right_eye", "l_paw", "R_Paw"]) == (
        (1, 2), (3, 4)
    )  # fmt: skip


def test_name_difference_says_which_keypoints_differ():
    arm = define("arm7", ARM)
    assert name_difference(arm, define("again", list(reversed(ARM))), ("a", "b")) == ""
    assert name_difference(arm, define("arm6", ARM[:6]), ("source", "target")) == (
        "only in source: tip"
    )
    assert name_difference(arm, HAND21, ("s", "t")).startswith("only in s: base, shoulder")


def test_describe_shows_names_groups_bones_and_flip_pairs():
    text = "\n".join(define("arm7", ARM, {"joints": [1, 2]}, [[0, 1]], [[4, 5]]).describe())
    assert text.splitlines()[0] == "keypoint set arm7: 7 keypoints"
    for part in ("0:base", "6:tip", "group joints (2): shoulder, elbow", "group all (7): every",
                 "bones: base-shoulder", "flip pairs: left_finger/right_finger"):  # fmt: skip
        assert part in text, part
    assert max(len(line) for line in "\n".join(BODY16.describe()).splitlines()) <= 96


def test_alias_tables_name_the_sets_own_points_and_collide_with_nothing():
    # every registered set's aliases are other names of its own keypoints
    for spec in (HAND21, BODY16):
        assert set(spec.aliases) <= set(spec.names)
    assert HAND21.aliases["thumb_mcp"] == ("thumb1",) and HAND21.aliases["wrist"] == ("hand_root",)
    assert HAND21.aliases["little_tip"] == ("pinky_finger4",)
    assert BODY16.aliases["upper_neck"] == ("neck",)
    with pytest.raises(KeypointError, match="alias of 'c', which is not a keypoint of the set"):
        KeypointSpec("x", ("a", "b"), {"all": (0, 1)}, aliases={"c": ("z",)})
    with pytest.raises(KeypointError, match="'B' names keypoint 'b' already"):
        KeypointSpec("x", ("a", "b"), {"all": (0, 1)}, aliases={"a": ("B",)})
    with pytest.raises(KeypointError, match="'Z' is an alias of both 'a' and 'b'"):
        KeypointSpec("x", ("a", "b"), {"all": (0, 1)}, aliases={"a": ("z",), "b": ("Z",)})
    assert "aliases: wrist=hand_root, thumb_mcp=thumb1" in "\n".join(HAND21.describe())
