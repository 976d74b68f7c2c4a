"""COCO round trip: a synthetic task exported to COCO JSON + PNGs and read back through the
'coco' reader gives the same items, and trains to the same PCK with the same seed."""

import torch

from regda_dist import config as C
from regda_dist.data.coco import export_task
from regda_dist.data.datasets import build_task, task_spec
from regda_dist.engine import run
from tests.conftest import TINY


def _coco_cfg(tmp_path, folder):
    return C.load(
        None,
        [
            *TINY,
            "data.task=''",
            "data.keypoints=hand21",
            "data.source.dataset=coco",
            f"data.source.root={folder / 'source'}",
            "data.target.dataset=coco",
            f"data.target.root={folder / 'target'}",
            f"train.output_dir={tmp_path / 'runs_coco'}",
        ],
    )


SPLITS = ("source_train", "source_val", "source_test", "target_val", "target_test")


def test_export_then_read_back_gives_identical_items(tiny_cfg, tmp_path):
    task = build_task(tiny_cfg.data)
    files = export_task(task, tmp_path / "coco")
    assert files["target_train"] == tmp_path / "coco" / "target" / "train.json"
    cfg = _coco_cfg(tmp_path, tmp_path / "coco")
    assert task_spec(cfg.data, check_roots=True) is task.spec
    back = build_task(cfg.data)
    for name in (*SPLITS, "target_train_labelled"):
        ours, theirs = getattr(task, name), getattr(back, name)
        assert len(ours) == len(theirs), name
        for i in range(len(ours)):
            (x, kp, vis), (x2, kp2, w2) = ours[i], theirs[i]
            assert torch.equal(x, x2) and torch.equal(kp[vis], kp2[vis]), (name, i)
            assert torch.equal(vis.float(), w2), (name, i)
    assert torch.equal(task.target_train[0], back.target_train[0])  # still label-free


def test_coco_round_trip_trains_to_the_same_pck(tiny_cfg, tmp_path):
    export_task(build_task(tiny_cfg.data), tmp_path / "coco")
    memory = run.run_here(tiny_cfg, tmp_path / "runs" / "memory")
    coco_cfg = _coco_cfg(tmp_path, tmp_path / "coco")
    coco = run.run_here(coco_cfg, tmp_path / "runs_coco" / "coco")
    for method in ("source_only", "adabn", "adapted"):
        same = {k: v for k, v in memory[method].items() if k != "seconds"}
        assert same == {k: v for k, v in coco[method].items() if k != "seconds"}, method
    # a real number was compared (the tiny model's PCKs are near 0: any of them, any method)
    assert any(v > 0 for m in ("source_only", "adabn", "adapted")
               for k, v in memory[m].items() if "pck" in k)  # fmt: skip


def test_pck_normalised_by_the_annotation_box_is_stated_in_the_result(tiny_cfg, tmp_path):
    export_task(build_task(tiny_cfg.data), tmp_path / "coco")
    cfg = _coco_cfg(tmp_path, tmp_path / "coco")
    cfg.train.pck_normalize = "bbox"
    result = run.run_here(cfg, tmp_path / "runs_coco" / "bbox")
    assert result["pck"] == {"threshold": 0.05, "normalize": "bbox"}
    assert 0 <= result["adapted"]["oracle/target_pck"] <= 100
