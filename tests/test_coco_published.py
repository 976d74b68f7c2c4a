"""COCO keypoint files as people publish them (issue 20), each case in a file written here:
several categories sharing one keypoint set (species), 0-based skeletons and skeletons naming
keypoints a category lacks, keypoints as nested [x, y, v] triples, the field's names for the
points of hand21 and body16 (aliases), and data.min_keypoint_match, which stops a mapping onto a
registered set that labels too little of it. (The whole pipeline on such files: test_search.)"""

import json

import numpy as np
import pytest

from regda_dist import config as C
from regda_dist.cli import main
from regda_dist.data.datasets import build_task, keypoint_notes, task_spec
from regda_dist.data.keypoints import BODY16, HAND21
from regda_dist.data.registry import create_dataset
from tests.conftest import write_experiment
from tests.keypoint_domains import ARM_BONES, ARM_NAMES, write_categories, write_points

# OpenMMLab's hand names (mmpose dataset_info of OneHand10K, FreiHAND, CMU Panoptic, RHD,
# COCO-WholeBody hands): each finger's four points from the palm out
OPENMMLAB_HAND = ["wrist"] + [f"{f}{i}" for f in ("thumb", "forefinger", "middle_finger",
                  "ring_finger", "pinky_finger") for i in range(1, 5)]  # fmt: skip
# COCO's 17-keypoint skeleton, as CrowdPose ships it beside its 14 keypoints
COCO_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7],
                 [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5],
                 [4, 6], [5, 7]]  # fmt: skip
CROWDPOSE = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
             "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
             "right_ankle", "top_head", "neck"]  # fmt: skip


@pytest.fixture(scope="module")
def arms(tmp_path_factory):
    """Two arm "species" in one COCO folder, 0-based skeleton (tests/keypoint_domains.py)."""
    return write_categories(tmp_path_factory.mktemp("arms") / "arms")


def _experiment(tmp_path, source, target, keypoints="from_data", **data):
    """An experiment reading two COCO folders; source / target may be (root, categories)."""
    domains = {}
    for side, value in (("source", source), ("target", target)):
        root, categories = value if isinstance(value, tuple) else (value, None)
        domains[side] = {"dataset": "coco", "root": str(root)}
        if categories is not None:
            domains[side]["categories"] = categories
    return write_experiment(tmp_path, data={"task": "", "keypoints": keypoints, **domains, **data})


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("regda-dist: error: ") and "\n" not in err, err
    return err


def _check(capsys, *args) -> tuple[int, str]:
    code = main(["data", "check", "--dataset", "coco", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _edit(file, change) -> None:
    data = json.loads(file.read_text())
    change(data)
    file.write_text(json.dumps(data))


def _rename(names: list[str]):
    """An edit that renames the keypoints of every category with keypoints."""

    def change(data):
        for cat in data["categories"]:
            if "keypoints" in cat:
                cat["keypoints"] = list(names)

    return change


# --------------------------------------------------------------------------------------------
# Categories


def test_each_domain_reads_the_categories_it_names(tmp_path, arms):
    exp = _experiment(tmp_path, (arms, ["factory_arm"]), (arms, [2]))  # by name, by id
    cfg = C.load(exp)
    spec = task_spec(cfg.data)
    assert (spec.name, spec.names) == ("factory_arm", tuple(ARM_NAMES))
    task = build_task(cfg.data)
    sizes = [len(getattr(task, f"{d}_{s}")) for d in ("source", "target")
             for s in ("train", "val", "test")]  # fmt: skip
    assert sizes == [24, 8, 8, 24, 8, 8]
    data = json.loads((arms / "test.json").read_text())
    image_of = {image["id"]: image["file_name"] for image in data["images"]}
    category = {
        image_of[a["image_id"]]: a["category_id"] for a in data["annotations"] if "keypoints" in a
    }
    for side, cid in (("source", 1), ("target", 2)):
        root, cats = (arms, ["factory_arm"]) if side == "source" else (arms, [2])
        domain = create_dataset("coco", root, "from_data", cats)
        assert {category[s.image.name] for s in domain.splits["test"]} == {cid}
    notes = keypoint_notes(cfg.data, spec)
    assert f"data.target ({arms}): train.json: categories with keypoints (samples): factory_arm " \
           "(id 1) 24, field_arm (id 2) 24; used: field_arm; 25 annotations of other " \
           "categories are ignored" in notes  # fmt: skip


def test_data_check_lists_the_categories_their_samples_and_which_it_used(arms, capsys):
    code, out = _check(capsys, "--keypoints", "from_data", str(arms))
    assert code == 0 and out.rstrip().endswith("OK"), out
    assert "note: train.json: categories with keypoints (samples): factory_arm (id 1) 24, " \
           "field_arm (id 2) 24; used: factory_arm, field_arm; 1 annotations of other " \
           "categories are ignored" in out  # fmt: skip
    assert out.split("\ntrain ")[1].split()[0] == "48"  # all categories by default
    code, out = _check(capsys, "--keypoints", "from_data", "--categories", "[field_arm]", str(arms))
    assert code == 0 and "used: field_arm; 25 annotations of other" in out
    assert out.split("\ntrain ")[1].split()[0] == "24"


@pytest.mark.parametrize(
    ("change", "categories", "expected"),
    [
        (lambda d: d["categories"][1]["keypoints"].__setitem__(3, "hand"), None,
         "categories 'factory_arm' and 'field_arm' do not share one keypoint set: keypoint 3 is "
         "'wrist' in 'factory_arm' but 'hand' in 'field_arm'"),
        (lambda d: d["categories"][1]["keypoints"].pop(), None,
         "'factory_arm' has 7 keypoints but 'field_arm' has 6"),
        (None, "[lynx]", "no category 'lynx' with keypoints; it has: factory_arm (id 1), "
         "field_arm (id 2)"),
        (None, "[9]", "no category 9 with keypoints"),
    ],
)  # fmt: skip
def test_categories_that_do_not_share_a_set_or_do_not_exist_are_one_line(
    tmp_path, capsys, change, categories, expected
):
    arms = write_categories(tmp_path / "arms", n=2, n_eval=1)
    if change:
        for split in ("train", "val", "test"):
            _edit(arms / f"{split}.json", change)
    extra = ["--categories", categories] if categories else []
    code, out = _check(capsys, "--keypoints", "from_data", *extra, str(arms))
    assert code == 2 and expected in out, out
    assert out.count("\n") == 1 and out.startswith("regda-dist: error: ")
    if change:  # one category alone is read
        code, _ = _check(capsys, "--keypoints", "from_data", "--categories", "[1]", str(arms))
        assert code == 0


def test_categories_are_checked_where_they_are_written(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "data:\n  task: ''\n  keypoints: from_data\n  source: {dataset: coco, root: /s}\n"
        "  target:\n    dataset: coco\n    root: /t\n    categories: [dog, true]\n"
    )
    with pytest.raises(C.ConfigError, match=rf"^{path}:8: data.target.categories must list .*"):
        C.load(path)
    path.write_text(path.read_text().replace("[dog, true]", "[dog, dog]"))
    with pytest.raises(C.ConfigError, match=r":8: data.target.categories lists 'dog' twice"):
        C.load(path)
    rhd = C.load(None, ["data.task=''", "data.source.dataset=rhd", "data.source.root=/s",
                        "data.source.categories=[1]", "data.target.dataset=h3d",
                        "data.target.root=/t"])  # fmt: skip
    with pytest.raises(C.ConfigError, match=r"dataset 'rhd' has no categories to choose"):
        task_spec(rhd.data)


# --------------------------------------------------------------------------------------------
# Skeletons


def _arm(folder, skeleton):
    """A one-category arm domain (train, test) whose category has this skeleton."""
    write_points(folder, ARM_NAMES)
    for split in ("train", "test"):
        _edit(folder / f"{split}.json", lambda d: d["categories"][0].update(skeleton=skeleton))
    return folder


def test_a_zero_based_skeleton_is_recognised_and_said(tmp_path, arms, capsys):
    zero = _arm(tmp_path / "zero", ARM_BONES)
    spec = task_spec(C.load(_experiment(tmp_path, zero, zero)).data)
    assert spec.skeleton == tuple(map(tuple, ARM_BONES))
    one = _arm(tmp_path / "one", [[a + 1, b + 1] for a, b in ARM_BONES])
    assert task_spec(C.load(_experiment(tmp_path, one, one)).data) == spec
    code, out = _check(capsys, "--keypoints", "from_data", str(zero))
    assert code == 0 and "note: train.json: category 'points': its skeleton is read as " \
                         "0-based (it has keypoint 0)" in out  # fmt: skip
    code, out = _check(capsys, "--keypoints", "from_data", str(one))
    assert code == 0 and "0-based" not in out
    code, out = _check(capsys, "--keypoints", "from_data", str(arms))  # several categories too
    assert code == 0 and "category 'factory_arm': its skeleton is read as 0-based" in out


def test_bones_naming_keypoints_the_category_lacks_are_dropped_and_named(tmp_path, capsys):
    crowd = write_points(tmp_path / "crowd", CROWDPOSE)
    for split in ("train", "test"):
        _edit(crowd / f"{split}.json", lambda d: d["categories"][0].update(skeleton=COCO_SKELETON))
    code, out = _check(capsys, "--keypoints", "from_data", str(crowd))
    assert code == 0, out
    dropped = "3 of its 19 bones name keypoints it does not have (14, 1-based) and are dropped: " \
              "[16, 14], [17, 15], [15, 13]"  # fmt: skip
    assert f"note: train.json: category 'points': {dropped}" in out
    cfg = C.load(_experiment(tmp_path, crowd, crowd))
    spec = task_spec(cfg.data)
    assert len(spec.skeleton) == 16 and spec.skeleton[0] == (13, 11)  # [14, 12] 1-based
    assert f"data.source ({crowd}): train.json: category 'points': {dropped}" in keypoint_notes(
        cfg.data, spec
    )


@pytest.mark.parametrize("skeleton", [[1, 2, 3], [[1, 2, 3]], [["a", "b"]], "1-2", [[1.5, 2]]])
def test_a_skeleton_that_is_not_a_list_of_pairs_is_one_line(tmp_path, capsys, skeleton):
    arm = _arm(tmp_path / "arm", skeleton)
    code, out = _check(capsys, "--keypoints", "from_data", str(arm))
    assert code == 2 and out.count("\n") == 1, out
    assert f"{arm / 'train.json'}: category 'points': 'skeleton' must be a list of [a, b] " \
           "pairs of keypoint numbers" in out  # fmt: skip


# --------------------------------------------------------------------------------------------
# Nested keypoints


def _nest(data):
    for ann in data["annotations"]:
        flat = ann["keypoints"]
        ann["keypoints"] = [flat[i : i + 3] for i in range(0, len(flat), 3)]


def test_nested_keypoint_triples_read_as_flat_ones_and_their_count_is_checked(tmp_path, capsys):
    flat = write_points(tmp_path / "flat", ARM_NAMES, n=4)
    nested = write_points(tmp_path / "nested", ARM_NAMES, n=4)
    for split in ("train", "test"):
        _edit(nested / f"{split}.json", _nest)
    a, b = create_dataset("coco", flat, "from_data"), create_dataset("coco", nested, "from_data")
    for split in ("train", "val", "test"):
        assert len(a.splits[split]) == len(b.splits[split]) >= 1
        for x, y in zip(a.splits[split], b.splits[split], strict=True):
            assert np.array_equal(x.keypoints, y.keypoints) and np.array_equal(x.weight, y.weight)
    categories = write_categories(tmp_path / "arms", n=2, n_eval=1, nested=True)  # published
    assert len(create_dataset("coco", categories, "from_data").splits["test"]) == 2
    _edit(nested / "test.json", lambda d: d["annotations"][2]["keypoints"].pop())
    code, out = _check(capsys, "--keypoints", "from_data", str(nested))
    assert code == 2 and out.count("\n") == 1, out
    assert f"{nested / 'test.json'}: annotation 2: 'keypoints' has 6 triples, expected 7 " \
           "([x, y, v] per keypoint of the category)" in out  # fmt: skip


# --------------------------------------------------------------------------------------------
# The field's names for the points of the registered sets


def _read_as(folder, spec_name):
    """(the file's keypoints by name, the sample read in the set) of the first test sample."""
    test = json.loads((folder / "test.json").read_text())
    flat = np.asarray(test["annotations"][0]["keypoints"], float).reshape(-1, 3)[:, :2]
    sample = create_dataset("coco", folder, spec_name).splits["test"][0]  # test: not carved
    return dict(zip(test["categories"][0]["keypoints"], flat, strict=True)), sample


def test_openmmlab_hand_names_map_onto_hand21(tmp_path, capsys):
    hand = write_points(tmp_path / "hand", OPENMMLAB_HAND)
    by_name, sample = _read_as(hand, "hand21")
    assert sample.weight.tolist() == [1.0] * 21
    for k, name in enumerate(HAND21.names):
        expected = "wrist" if k == 0 else OPENMMLAB_HAND[k]  # both run palm -> tip per finger
        assert np.array_equal(sample.keypoints[k], by_name[expected]), name
    code, out = _check(capsys, "--keypoints", "hand21", str(hand))
    assert code == 0 and "no match" not in out and "dropped" not in out, out
    assert "note: train.json, test.json: 20 of its keypoints match hand21 under other names: " \
           "thumb1 as thumb_mcp, thumb2 as thumb_pip" in out  # fmt: skip


H36M_MMPOSE = ["root", "right_hip", "right_knee", "right_foot", "left_hip", "left_knee",
               "left_foot", "spine", "thorax", "neck_base", "head", "left_shoulder", "left_elbow",
               "left_wrist", "right_shoulder", "right_elbow", "right_wrist"]  # fmt: skip
H36M_OWN = ["Hip", "RHip", "RKnee", "RFoot", "LHip", "LKnee", "LFoot", "Spine", "Thorax",
            "Neck/Nose", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow",
            "RWrist"]  # fmt: skip
AIC = ["right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
       "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
       "left_ankle", "top_head", "Neck"]  # fmt: skip
MPII_MMHUMAN3D = ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                  "pelvis", "thorax", "neck", "headtop", "right_wrist", "right_elbow",
                  "right_shoulder", "left_shoulder", "left_elbow", "left_wrist"]  # fmt: skip
# body16 keypoint -> the file's name for it, where the file has that point
H36M_POINTS = {"pelvis": 0, "r_hip": 1, "r_knee": 2, "r_ankle": 3, "l_hip": 4, "l_knee": 5,
               "l_ankle": 6, "thorax": 8, "l_shoulder": 11, "l_elbow": 12, "l_wrist": 13,
               "r_shoulder": 14, "r_elbow": 15, "r_wrist": 16}  # fmt: skip


@pytest.mark.parametrize(
    ("names", "points"),
    [
        (H36M_MMPOSE, {k: H36M_MMPOSE[i] for k, i in H36M_POINTS.items()}),
        (H36M_OWN, {k: H36M_OWN[i] for k, i in H36M_POINTS.items()}),
        (AIC, {"upper_neck": "Neck", "head_top": "top_head", "r_ankle": "right_ankle",
               "l_wrist": "left_wrist", "r_shoulder": "right_shoulder"}),
        (MPII_MMHUMAN3D, {"upper_neck": "neck", "head_top": "headtop", "pelvis": "pelvis"}),
        (CROWDPOSE, {"upper_neck": "neck", "head_top": "top_head", "l_knee": "left_knee"}),
    ],
    ids=["h36m_mmpose", "h36m", "ai_challenger", "mpii_mmhuman3d", "crowdpose"],
)  # fmt: skip
def test_body_names_of_the_field_map_onto_body16(tmp_path, names, points):
    by_name, sample = _read_as(write_points(tmp_path / "body", names), "body16")
    for point, name in points.items():
        k = BODY16.names.index(point)
        assert sample.weight[k] == 1 and np.array_equal(sample.keypoints[k], by_name[name]), point
    if names in (H36M_MMPOSE, H36M_OWN):  # exactly these 14; its head is not aliased (below)
        assert sample.weight.sum() == len(points)


def test_points_that_differ_between_conventions_are_not_aliased(tmp_path):
    # Human3.6M's neck_base and Neck/Nose lie between the neck and the nose, not at MPII's
    # upper neck; "head" is the top of the head in Human3.6M but its centre in Penn Action
    for name in ("neck_base", "Neck/Nose", "head", "spine", "nose", "left_foot_tip"):
        assert all(name.lower() not in aliases for aliases in BODY16.aliases.values()), name
    _, sample = _read_as(write_points(tmp_path / "h", H36M_MMPOSE), "body16")
    for point in ("upper_neck", "head_top"):
        assert sample.weight[BODY16.names.index(point)] == 0


# --------------------------------------------------------------------------------------------
# data.min_keypoint_match


def _hand_matching(tmp_path, matched: int):
    """A 21-keypoint hand whose first `matched` names are hand21's, the others its own."""
    names = list(HAND21.names[:matched]) + [f"point{i}" for i in range(matched, 21)]
    return write_points(tmp_path / f"hand{matched}", names)


def test_too_few_matching_keypoints_stop_check_train_and_tune(tmp_path, capsys):
    one = _hand_matching(tmp_path, 1)
    code, out = _check(capsys, "--keypoints", "hand21", str(one))
    assert code == 2 and out.count("\n") == 1 and out.startswith("regda-dist: error: "), out
    assert "train.json: its keypoint names label 1 of the 21 keypoints of hand21 " \
           "(data.min_keypoint_match 0.5 needs 11); read it in its own set (--keypoints " \
           "from_data), define the set in an experiment (--keypoints EXPERIMENT.yaml), or pass " \
           "--min-keypoint-match 0 to proceed" in out  # fmt: skip
    code, out = _check(capsys, "--keypoints", "hand21", "--min-keypoint-match", "0", str(one))
    assert code == 0 and "20 of the 21 keypoints of hand21 have no match" in out

    exp = _experiment(tmp_path, one, one, "hand21")
    fix = "(data.min_keypoint_match 0.5 needs 11); read it in its own set (data.keypoints: " \
          "from_data), define the set in YAML (data.keypoints: custom), or set " \
          "data.min_keypoint_match: 0 to proceed"  # fmt: skip
    assert main(["train", "--no-ray", str(exp)]) == 2
    assert f"data.source ({one}): train.json: its keypoint names label 1 of the 21 " \
           f"keypoints of hand21 {fix}" in _one_line(capsys)  # fmt: skip
    values = exp.read_text() + "search: {num_samples: 1, metric: source_pck}\n"
    search = tmp_path / "search.yaml"
    search.write_text(values)
    assert main(["tune", str(search)]) == 2
    assert fix in _one_line(capsys)
    assert not (tmp_path / "runs").exists()  # nothing written
    proceed = C.load(exp, ["data.min_keypoint_match=0"])
    assert task_spec(proceed.data) is HAND21


def test_the_threshold_is_a_share_of_the_sets_keypoints(tmp_path):
    for matched, ok in ((10, False), (11, True)):  # 10/21 < 0.5 <= 11/21
        root = _hand_matching(tmp_path, matched)
        cfg = C.load(_experiment(tmp_path, root, root, "hand21"))
        if ok:
            assert task_spec(cfg.data) is HAND21
        else:
            with pytest.raises(C.ConfigError, match="label 10 of the 21 keypoints of hand21"):
                task_spec(cfg.data)
    cfg = C.load(_experiment(tmp_path, root, root, "hand21", min_keypoint_match=0.6))
    with pytest.raises(C.ConfigError, match=r"label 11 of the 21 .* 0.6 needs 13\)"):
        task_spec(cfg.data)


def test_annotations_of_a_category_the_file_does_not_define_are_one_line(tmp_path, capsys):
    # a published Animal Kingdom test file names category 4 and defines 1 and 2: the run ended
    # in "the train split is empty" three times, the cause in a note
    arms = write_categories(tmp_path / "arms", n=2, n_eval=1)

    def to_four(data):
        for ann in data["annotations"]:
            ann["category_id"] = 4

    _edit(arms / "test.json", to_four)
    code, out = _check(capsys, "--keypoints", "from_data", str(arms))
    assert code == 2 and out.count("\n") == 1, out
    assert "test.json: its annotations name category id 4 (" in out
    assert "which its 'categories' do not define (it defines 1 'factory_arm', 2" in out
    path = _experiment(tmp_path, arms, arms)
    assert main(["train", "--no-ray", str(path)]) == 2
    assert "category id 4" in capsys.readouterr().err
