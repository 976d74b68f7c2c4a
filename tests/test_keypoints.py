import pytest

from regda_dist.data.keypoints import BODY16, HAND21, SPECS


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


def test_specs_registry():
    assert SPECS == {"hand21": HAND21, "body16": BODY16}
