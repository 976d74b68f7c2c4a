"""Your own keypoints: a COCO pair of a set that is neither a hand nor a body (a 7-keypoint
robot arm, tests/keypoint_domains.py) trains end to end with the set of its COCO category
(from_data) or one defined in the experiment YAML; numbered landmarks work; a partial name match
is said, never silent; source and target must agree. (The search on it: tests/test_search.py.)"""

import json

import numpy as np
import pytest
import torch

from regda_dist import config as C
from regda_dist.cli import main
from regda_dist.data.datasets import keypoint_notes, task_spec
from regda_dist.data.keypoints import define
from tests.conftest import write_experiment
from tests.keypoint_domains import (
    ARM_BONES,
    ARM_NAMES,
    ARM_SET,
    arm_poses,
    write_arm_pair,
    write_coco,
    write_points,
)
from tests.test_tensorboard import read_events

ANIMAL = ["nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder", "left_knee",
          "right_knee", "tail", "left_paw", "right_paw"]  # fmt: skip


@pytest.fixture(scope="module")
def arm(tmp_path_factory):
    """The arm's source and target COCO folders (written once per module)."""
    return write_arm_pair(tmp_path_factory.mktemp("arm"))


def _experiment(tmp_path, source, target, keypoints="from_data", **data):
    domains = {side: {"dataset": "coco", "root": str(root)}
               for side, root in (("source", source), ("target", target))}  # fmt: skip
    return write_experiment(tmp_path, data={"task": "", "keypoints": keypoints, **domains, **data})


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("regda-dist: error: ") and "\n" not in err, err
    return err


def test_from_data_is_the_set_of_the_source_category(tmp_path, arm):
    spec = task_spec(C.load(_experiment(tmp_path, arm["source"], arm["target"])).data)
    assert (spec.name, spec.names, spec.groups) == (
        "arm7",
        tuple(ARM_NAMES),
        {"all": tuple(range(7))},
    )
    assert spec.skeleton == tuple(map(tuple, ARM_BONES)) and spec.flip_pairs == ((4, 5),)


def test_a_yaml_set_gives_keypoints_by_name_or_index(tmp_path, arm):
    exp = _experiment(tmp_path, arm["source"], arm["target"], "custom", keypoint_set=ARM_SET)
    spec = task_spec(C.load(exp).data)
    assert spec.groups == {"joints": (1, 2, 3), "claws": (4, 5, 6), "all": tuple(range(7))}
    assert spec.skeleton == tuple(map(tuple, ARM_BONES)) and spec.flip_pairs == ((4, 5),)
    assert not keypoint_notes(C.load(exp).data, spec)  # every name matches: nothing to say


def _tb_image(run):
    acc = read_events(run / "tb")
    (tag,) = acc.Tags()["images"]
    return acc.Images(tag)[-1]


def test_train_from_data_end_to_end(tmp_path, arm, capsys):
    exp = _experiment(tmp_path, arm["source"], arm["target"])
    assert main(["train", "--no-ray", str(exp)]) == 0
    table = capsys.readouterr().out.split("target PCK")[1].splitlines()[1].split()
    assert table == ["method", "all", "source"]  # one group: "all"
    run = tmp_path / "runs" / "tiny"
    result = json.loads((run / "result.json").read_text())
    assert not [k for k in result["adapted"] if k.startswith("oracle/target_pck/")]
    state = torch.load(run / "model.pt", weights_only=True)
    for head in ("head.", "head_adv."):  # its last convolution has one channel per keypoint
        last = [v for k, v in state.items() if k.startswith(head) and v.dim() == 4][-1]
        assert last.shape[0] == 7
    image = _tb_image(run)  # 8 target-val images of 32 px drawn at 2x, two rows
    assert (image.width, image.height) == (8 * 64, 2 * 64)


def test_train_with_a_yaml_set_reports_its_groups(tmp_path, arm, capsys):
    exp = _experiment(tmp_path, arm["source"], arm["target"], "custom", keypoint_set=ARM_SET)
    assert main(["train", "--no-ray", str(exp)]) == 0
    out = capsys.readouterr().out
    header = out.split("target PCK")[1].splitlines()[1].split()
    assert sorted(header[1:3]) == ["claws", "joints"] and header[3:] == ["all", "source"]
    result = json.loads((tmp_path / "runs" / "tiny" / "result.json").read_text())
    for method in ("source_only", "adabn", "adapted"):
        assert {"oracle/target_pck/joints", "oracle/target_pck/claws", "source/pck/claws"} <= set(
            result[method]
        )
    saved = C.load(tmp_path / "runs" / "tiny" / "config.yaml")  # the resolved config re-loads
    assert saved.data.keypoint_set.groups == ARM_SET["groups"] and saved == C.load(exp)


def test_source_and_target_must_have_the_same_keypoints(tmp_path, arm, capsys):
    rng = np.random.default_rng(0)  # a target without the tool keypoint
    poses = {s: arm_poses(4, rng, 30)[:, :6] for s in ("train", "test")}
    six = write_coco(tmp_path / "six", ARM_NAMES[:6], ARM_BONES[:5], poses, name="arm6")
    assert main(["train", "--no-ray", str(_experiment(tmp_path, arm["source"], six))]) == 2
    err = _one_line(capsys)
    assert (
        "source 'coco' has arm7 keypoints but target 'coco' has arm6: only in source: tool" in err
    )
    assert not (tmp_path / "runs").exists()


def test_a_partial_name_match_is_said_by_data_check_and_when_a_run_starts(tmp_path, capsys):
    # an animal whose shoulders and knees match body16: its eyes, nose, tail, paws are dropped
    # (4 of body16's 16 keypoints labelled: below data.min_keypoint_match's 0.5, so lowered)
    animal = write_points(tmp_path / "animal", ANIMAL, n=12)
    assert main(["data", "check", "--dataset", "coco", "--keypoints", "body16",
                 "--min-keypoint-match", "0.25", str(animal)]) == 0  # fmt: skip
    dropped = "6 of its 10 keypoints are not in body16 and are dropped: nose, left_eye, " \
              "right_eye, tail, left_paw, right_paw"  # fmt: skip
    assert f"note: train.json, test.json: {dropped}; 12 of the 16" in capsys.readouterr().out
    exp = _experiment(tmp_path, animal, animal, "body16", min_keypoint_match=0.25)
    assert main(["train", "--no-ray", str(exp)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert [n.split(": ", 3)[1:3] for n in notes] == [
        [f"data.source ({animal})", "train.json, test.json"],
        [f"data.target ({animal})", "train.json, test.json"],
    ]
    assert all(dropped in n for n in notes)
    assert (
        main(["data", "check", "--dataset", "coco", "--keypoints", "from_data", str(animal)]) == 0
    )
    assert "keypoint set points: 10 keypoints" in capsys.readouterr().out  # every one kept


def test_numbered_landmarks_work_with_from_data_and_a_yaml_set(tmp_path):
    face = write_points(tmp_path / "face", list(range(1, 69)))
    spec = task_spec(C.load(_experiment(tmp_path, face, face)).data)
    assert spec.num_keypoints == 68 and spec.names[:2] == ("1", "2") and spec.skeleton[0] == (0, 1)
    face_set = {"name": "face68", "names": list(range(1, 69)), "groups": {"jaw": list(range(17))}}
    exp = _experiment(tmp_path, face, face, "custom", keypoint_set=face_set)
    spec = task_spec(C.load(exp).data)
    assert spec.groups["jaw"] == tuple(range(17)) and spec.num_keypoints == 68
    assert not keypoint_notes(C.load(exp).data, spec)  # "1".."68" match 1..68


def test_data_check_prints_the_set_it_resolved(tmp_path, arm, capsys):
    assert main(["data", "check", "--dataset", "coco", "--keypoints", "from_data",
                 str(arm["target"])]) == 0  # fmt: skip
    out = capsys.readouterr().out
    shown = [  # fmt: skip
        "keypoint set arm7: 7 keypoints",
        "names: 0:base, 1:shoulder",
        "group all (7)",
        "bones: base-shoulder, shoulder-elbow",
        "flip pairs: left_claw/right_claw",
    ]
    for part in shown:
        assert part in out, part
    exp = _experiment(tmp_path, arm["source"], arm["target"], "custom", keypoint_set=ARM_SET)
    assert main(["data", "check", "--dataset", "coco", "--keypoints", str(exp),
                 str(arm["source"])]) == 0  # fmt: skip
    assert "group claws (3): left_claw, right_claw, tool" in capsys.readouterr().out


def test_tensorboard_draws_the_sets_own_skeleton():
    from regda_dist.engine.tensorboard import _COLOURS, draw_predictions

    class Peaks(torch.nn.Module):
        """Heatmaps (N, 3, 8, 8) peaked at fixed points: a=(1, 1), b=(6, 1), c=(6, 6)."""

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            y = torch.zeros(len(x), 3, 8, 8)
            for k, (px, py) in enumerate([(1, 1), (6, 1), (6, 6)]):
                y[:, k, py, px] = 1
            return y

    spec = define("tri", ["a", "b", "c"], skeleton=[["a", "b"], ["b", "c"]])
    tile = draw_predictions(Peaks(), torch.zeros(1, 3, 16, 16, dtype=torch.uint8), spec, scale=2)
    # stride 2 and scale 2: a=(4, 4), b=(24, 4), c=(24, 24) in the tile's pixels
    assert tuple(tile[4, 14]) == _COLOURS[0] and tuple(tile[14, 24]) == _COLOURS[1]
    assert tuple(tile[14, 14]) not in _COLOURS  # no bone a-c


def test_a_real_reader_keeps_its_set(tmp_path):
    hand = json.dumps({"names": ["wrist"] + [f"f{i}" for i in range(20)]})
    real = ["data.task=''", "data.source.dataset=rhd", "data.source.root=/s",
            "data.target.dataset=h3d", "data.target.root=/t"]  # fmt: skip
    cfg = C.load(None, [*real, "data.keypoints=custom", f"data.keypoint_set={hand}"])
    with pytest.raises(C.ConfigError, match="dataset 'rhd' has hand21 keypoints, not custom"):
        task_spec(cfg.data)
