"""`regda-dist predict` and `evaluate` on a run of real-format COCO files (a 7-keypoint robot
arm, its target test split with boxes): results the COCO API loads, keypoints that are the
trainer's evaluation decoding mapped to the file's pixels, the run's own target PCK reproduced,
and bad inputs as one line each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from regda_dist.cli import main
from regda_dist.data.coco import read_file
from regda_dist.data.images import ImageSamples
from regda_dist.engine import predict as P
from regda_dist.metrics import pck_radius
from tests.conftest import write_experiment
from tests.keypoint_domains import ARM_SET, write_arm_pair


def _boxes(test_json):
    """Give each annotation of a COCO file the box of its visible keypoints (2 px margin)."""
    data = json.loads(test_json.read_text())
    for ann in data["annotations"]:
        kp = np.array(ann["keypoints"], float).reshape(-1, 3)
        seen = kp[kp[:, 2] > 0, :2]
        (x0, y0), (x1, y1) = seen.min(0) - 2, seen.max(0) + 2
        ann["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    test_json.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def arm_run(tmp_path_factory):
    """A finished `train --no-ray` of the arm pair; its target test split has boxes."""
    root = tmp_path_factory.mktemp("predict")
    arm = write_arm_pair(root / "arm")
    _boxes(arm["target"] / "test.json")
    data = {"task": "", "keypoints": "custom", "keypoint_set": ARM_SET,
            "source": {"dataset": "coco", "root": str(arm["source"])},
            "target": {"dataset": "coco", "root": str(arm["target"])}}  # fmt: skip
    exp = write_experiment(root, data=data, train={"num_threads": 1})
    assert main(["train", "--no-ray", str(exp), "--name", "arm"]) == 0
    return {"run": root / "runs" / "arm", "target": arm["target"], "root": root}


def test_predict_writes_coco_results_that_are_the_evaluations_decoding(arm_run, tmp_path):
    from pycocotools.coco import COCO

    test_json = arm_run["target"] / "test.json"
    out = tmp_path / "out"
    assert main(["predict", str(arm_run["run"]), str(test_json), "--out", str(out),
                 "--draw"]) == 0  # fmt: skip
    gt = COCO(str(test_json))
    found = gt.loadRes(str(out / "keypoints.json"))  # the COCO API reads them as results
    results = json.loads((out / "keypoints.json").read_text())
    assert len(found.getAnnIds()) == len(results) == len(gt.getAnnIds()) == 8
    assert len(list((out / "drawn").iterdir())) == 8
    COCO(str(out / "images.json"))  # the images and categories they refer to

    # the same crops, model and argmax as the run's evaluation of its target test split
    predictor = P.load_predictor(arm_run["run"], "cpu")
    cfg = predictor.cfg
    labelled, _ = read_file(test_json, predictor.spec)  # as the run read its target test split
    split = ImageSamples(labelled, cfg.data.image_size)
    items = [split.read(i) for i in range(len(split))]
    images = torch.stack([it[0] for it in items])
    with torch.no_grad():
        cells, _ = P.heatmap.decode(predictor.model(images))
    cuts = torch.stack([it[3] for it in items])
    back = torch.tensor([r["keypoints"] for r in results], dtype=torch.float64).view(8, -1, 3)
    in_crop = (back[..., :2] - cuts[:, None, :2]) * cfg.data.image_size / cuts[:, None, 2:]
    assert torch.allclose(in_crop / predictor.stride, cells.double(), atol=1e-2)  # 3 decimals
    assert all(0 < r["score"] <= 1 for r in results)

    # PCK of the written keypoints against the file's labels, by the reference's rule (the
    # argmax cell against the label's rounded cell) = the run's own target PCK
    kp = torch.stack([it[1] for it in items])
    centres, valid = P.heatmap.targets(kp, torch.stack([it[2] for it in items]),
                                       cfg.data.image_size, cfg.data.heatmap_size)  # fmt: skip
    radius = pck_radius(kp, valid, cfg.train.pck_threshold, cfg.train.pck_normalize,
                        cfg.data.image_size, cfg.data.heatmap_size)  # fmt: skip
    dist = ((in_crop / predictor.stride).round() - centres).norm(dim=-1)
    mine = 100.0 * float(((dist < radius) & valid).sum()) / float(valid.sum())
    result = json.loads((arm_run["run"] / "result.json").read_text())
    assert mine == pytest.approx(result["adapted"]["oracle/target_pck"], abs=1e-6)


def test_evaluate_reproduces_the_runs_target_pck(arm_run, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(arm_run["run"]), str(arm_run["target"]), "--out", str(out)]) == 0
    found = json.loads(out.read_text())
    result = json.loads((arm_run["run"] / "result.json").read_text())["adapted"]
    for group in ("all", "joints", "claws"):
        assert found["pck"][group] == pytest.approx(result[f"oracle/target_pck/{group}"]
                                                    if group != "all"
                                                    else result["oracle/target_pck"])  # fmt: skip
    assert "PCK@0.05 (heatmap)" in capsys.readouterr().out


def test_predict_on_image_files_and_folders_maps_the_whole_image(arm_run, tmp_path):
    wide = tmp_path / "imgs" / "wide.jpg"
    wide.parent.mkdir()
    Image.new("RGB", (96, 40), (90, 90, 90)).save(wide)
    out = tmp_path / "out"
    assert main(["predict", str(arm_run["run"]), str(wide.parent), "--out", str(out)]) == 0
    (result,) = json.loads((out / "keypoints.json").read_text())
    xy = np.array(result["keypoints"]).reshape(-1, 3)[:, :2]
    # the whole image padded to a 96 px square: every keypoint inside that square
    assert (xy[:, 0] >= 0).all() and (xy[:, 0] < 96).all()
    assert (xy[:, 1] >= -28).all() and (xy[:, 1] < 68).all()


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("empty_folder", "no images in this folder"),
        ("missing", "no such file or folder"),
        ("unreadable", "unreadable image"),
        ("not_a_model", "not an export, run or search folder"),
    ],
)
def test_bad_predict_inputs_are_one_line(arm_run, tmp_path, capsys, case, needle):
    model, images = str(arm_run["run"]), tmp_path / "in"
    images.mkdir()
    if case == "missing":
        images = images / "nope.png"
    elif case == "unreadable":
        (images / "broken.png").write_bytes(b"not a png")
    elif case == "not_a_model":
        model = str(tmp_path)
        Image.new("RGB", (8, 8)).save(images / "a.png")
    out = tmp_path / "out"
    assert main(["predict", model, str(images), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.strip().count("\n") == 0, err
    assert not out.exists()  # nothing written


def test_a_taken_out_folder_is_never_overwritten(arm_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    test_json = arm_run["target"] / "test.json"
    assert main(["predict", str(arm_run["run"]), str(test_json), "--out", str(out)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_baseline_with_phase_1s_own_head_predicts_and_evaluates_as_its_run(arm_run, tmp_path):
    # a baseline's weights are phase 1's model, whose head has pretrain.head_layers layers
    root = arm_run["root"]
    exp = root / "tiny.yaml"
    sets = [
        "--set",
        "adapt.method=adabn",
        "--set",
        "pretrain.head_layers=1",
        "--set",
        "adapt.head_init=fresh",
    ]
    assert main(["train", "--no-ray", str(exp), "--name", "adabn", *sets]) == 0
    run = root / "runs" / "adabn"
    predictor = P.load_predictor(run, "cpu")
    assert predictor.cfg.pretrain.head_layers == 1 and predictor.label == "AdaBN"
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(run), str(arm_run["target"]), "--out", str(out)]) == 0
    result = json.loads((run / "result.json").read_text())["adapted"]
    assert json.loads(out.read_text())["pck"]["all"] == pytest.approx(result["oracle/target_pck"])


def test_crop_pixels_map_back_to_the_files_as_the_labels_were_mapped_in():
    from regda_dist.data.images import crop_keypoints

    rng = np.random.default_rng(0)
    for cut in ((10.0, -4.0, 50.0), (0.0, 0.0, 32.0), (-7.5, 3.0, 120.0)):
        file_kp = rng.uniform(-5, 60, (7, 2))
        in_crop = crop_keypoints(file_kp, cut, 32, flip=False)  # how a label enters the crop
        back = P.to_file_pixels(torch.tensor(in_crop)[None], torch.tensor([cut]), 32)[0]
        assert np.allclose(back.numpy(), file_kp)


def test_image_ids_are_unique_over_every_input(arm_run, tmp_path):
    test_json = arm_run["target"] / "test.json"
    loose = tmp_path / "loose.png"
    Image.new("RGB", (20, 20)).save(loose)
    inputs = P.read_inputs([str(loose), test_json], 7)  # file first: numbered after the COCO ids
    ids = [img["id"] for img in inputs.images]
    assert len(ids) == len(set(ids)) == 9 and max(ids) == ids[-1]
    data = json.loads(test_json.read_text())
    data["images"][1]["id"] = data["images"][0]["id"]
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(data))
    with pytest.raises(P.PredictError, match="is used twice"):
        P.read_inputs([twice], 7)
    with pytest.raises(P.PredictError, match="is used twice"):
        P.read_inputs([test_json, test_json], 7)


def test_the_onnx_file_gives_torchs_heatmaps_and_predicts_keypoints(arm_run, tmp_path):
    import onnxruntime

    from regda_dist.engine.onnx_export import to_onnx

    predictor = P.load_predictor(arm_run["run"], "cpu")
    path = tmp_path / "model.onnx"
    assert to_onnx(predictor, path) <= 1e-4
    test_json = arm_run["target"] / "test.json"
    inputs = P.read_inputs([test_json], predictor.spec.num_keypoints)
    crops = P.Crops(inputs.samples, predictor.cfg.data.image_size)
    images = torch.stack([crops[i][0] for i in range(len(crops))])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (heatmaps,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        want = predictor.model(images)
    assert np.abs(heatmaps - want.numpy()).max() <= 1e-4
    got, _ = P.heatmap.decode(torch.from_numpy(heatmaps))
    cells, _ = P.heatmap.decode(want)
    assert torch.equal(got, cells)
