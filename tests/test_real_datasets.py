"""Readers of the public layouts: tiny fixtures in the real file formats, read back through the
registry (counts, keypoint order, weights, flips, crops within 1 px)."""

import numpy as np
import pytest
import torch

from regda_dist.data import registry
from regda_dist.data.images import ImageSamples, crop_keypoints
from regda_dist.data.keypoints import BODY16, HAND21
from regda_dist.data.real import surreal
from regda_dist.data.samples import DatasetError, reference_split
from tests import data_fixtures as fx

SIZE = 64


def _counts(domain):
    return {name: len(samples) for name, samples in domain.splits.items()}


def _marker(image: torch.Tensor) -> np.ndarray:
    """Intensity centroid (continuous pixel coordinates) of the white marker."""
    w = image.float().sum(0)
    w = (w - w.min()).clamp(min=0)
    w = torch.where(w > 0.2 * w.max(), w, torch.zeros_like(w))
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


def _assert_marker_on(domain, k: int):
    """Every item: the marker painted on keypoint k is where the reader says keypoint k is."""
    for name, samples in domain.splits.items():
        for i, (image, kp, weight) in enumerate(ImageSamples(samples, SIZE)):
            assert image.shape == (3, SIZE, SIZE) and kp.shape == (domain.spec.num_keypoints, 2)
            assert weight.shape == (domain.spec.num_keypoints,)
            err = np.abs(_marker(image) - kp[k].numpy()).max()
            assert err < 1.0, f"{name}[{i}]: marker {_marker(image)} vs keypoint {kp[k]}"


def test_registry_lists_every_reader_with_its_keypoints():
    assert set(registry.list_datasets()) >= {
        "rhd", "h3d", "freihand", "surreal", "surreal_faithful", "lsp", "human36m", "coco"
    }  # fmt: skip
    assert registry.dataset_spec("rhd") is HAND21 and registry.dataset_spec("lsp") is BODY16
    assert registry.dataset_spec("coco", "body16") is BODY16
    with pytest.raises(DatasetError, match="data.keypoints"):
        registry.dataset_spec("coco")
    with pytest.raises(DatasetError, match="hand21 keypoints, not body16"):
        registry.dataset_spec("rhd", "body16")
    with pytest.raises(DatasetError, match="registered: coco"):
        registry.dataset_spec("mpii")


def test_rhd_filter_reindex_and_right_hand_flip(tmp_path):
    hands = fx.write_rhd(tmp_path)
    domain = registry.create_dataset("rhd", tmp_path)
    assert _counts(domain) == {"train": 1, "val": 1, "test": 1}
    train = domain.splits["train"] + domain.splits["val"]
    by_flip = {s.flip: s for s in train}
    assert set(by_flip) == {False, True}  # the left hand of image 0, the right hand of image 1
    left, right = by_flip[False], by_flip[True]
    assert left.image.name == "00000.png" and right.image.name == "00001.png"
    np.testing.assert_allclose(left.keypoints, hands["left"])  # MCP -> tip again
    np.testing.assert_allclose(right.keypoints, hands["right"])
    assert right.weight.tolist() == [1.0] * 21
    flipped = crop_keypoints(right.keypoints, right.box, SIZE, True)
    plain = crop_keypoints(right.keypoints, right.box, SIZE, False)
    np.testing.assert_allclose(flipped[:, 0], SIZE - plain[:, 0])
    x0, y0, side = left.box  # 1.5 x the longer side of the keypoint box
    span = hands["left"].max(0) - hands["left"].min(0)
    assert abs(side - 1.5 * span.max()) <= 1
    _assert_marker_on(domain, 0)


def test_h3d_keeps_hands_without_object_and_splits_by_the_reference_rule(tmp_path):
    kps = fx.write_h3d(tmp_path, n=10)
    domain = registry.create_dataset("h3d", tmp_path)
    assert _counts(domain) == {"train": 7, "val": 1, "test": 2}
    _, test = reference_split(list(range(10)))
    assert [s.image.name for s in domain.splits["test"]] == [f"{i:04d}.png" for i in test]
    sample = domain.splits["test"][0]
    np.testing.assert_allclose(sample.keypoints, kps[test[0]])
    assert sample.weight.tolist() == [1.0] * 21 and sample.box is None
    _assert_marker_on(domain, 0)
    _, kp, _ = ImageSamples([sample], SIZE)[0]  # 80 x 60: resized whole, padded 10 px top
    np.testing.assert_allclose(kp, (kps[test[0]] + [0, 10]) * SIZE / 80, atol=1e-5)


def test_freihand_projects_splits_by_frame_and_flips(tmp_path):
    uvs = fx.write_freihand(tmp_path, frames=5, versions=2)
    domain = registry.create_dataset("freihand", tmp_path)
    assert _counts(domain) == {"train": 6, "val": 2, "test": 2}
    frames = {name: {int(s.image.stem) % 5 for s in ss} for name, ss in domain.splits.items()}
    assert sum(len(f) for f in frames.values()) == 5  # no frame in two splits
    sample = domain.splits["test"][0]
    np.testing.assert_allclose(sample.keypoints, uvs[int(sample.image.stem) % 5], atol=1e-9)
    assert all(s.flip for ss in domain.splits.values() for s in ss)
    _assert_marker_on(domain, 0)


@pytest.mark.parametrize(
    ("name", "shoulder"), [("surreal", 16), ("surreal_faithful", 13)]
)  # fmt: skip
def test_surreal_maps_smpl24_to_body16(tmp_path, name, shoulder):
    fx.write_surreal(tmp_path)
    domain = registry.create_dataset(name, tmp_path)
    assert _counts(domain) == {"train": 4, "val": 2, "test": 1}
    sample = domain.splits["train"][0]
    smpl = fx.smpl_pose(0)
    mapping = surreal.CLEAN if name == "surreal" else surreal.FAITHFUL
    np.testing.assert_allclose(sample.keypoints, smpl[list(mapping)])
    np.testing.assert_allclose(sample.keypoints[12], smpl[shoulder])  # r_shoulder
    if name == "surreal":  # the marker is on SMPL joint 16, our r_shoulder
        _assert_marker_on(domain, 12)


def test_lsp_weights_fillers_and_resize_pad(tmp_path):
    joints = fx.write_lsp(tmp_path, n=3)
    domain = registry.create_dataset("lsp", tmp_path)
    assert _counts(domain) == {"train": 3, "val": 3, "test": 3}
    assert domain.splits["train"] is domain.splits["test"]  # LSP: target-train = test
    assert any("test set" in note for note in domain.notes)
    first = domain.splits["train"][0]
    expected = np.ones(16)
    expected[[2, 6, 7]] = 0  # r_hip flagged invisible; pelvis, thorax are fillers
    assert first.weight.tolist() == expected.tolist()
    np.testing.assert_allclose(first.keypoints[9], joints[:2, 13, 0])  # head top
    np.testing.assert_allclose(first.keypoints[10], joints[:2, 6, 0])  # r_wrist
    _, kp, weight = ImageSamples([first], SIZE)[0]
    np.testing.assert_allclose(kp, (first.keypoints + [0, 10]) * SIZE / 60, atol=1e-5)
    assert weight.dtype == torch.float32
    _assert_marker_on(domain, 0)


def test_human36m_subjects_every_fifth_frame_projection_and_crop(tmp_path):
    fx.write_human36m(tmp_path, images_per_subject=6)
    domain = registry.create_dataset("human36m", tmp_path)
    assert _counts(domain) == {"train": 9, "val": 1, "test": 4}
    test_dirs = {s.image.parent.name for s in domain.splits["test"]}
    assert test_dirs == {"s_09", "s_11"}
    frames = {s.image.name for ss in domain.splits.values() for s in ss}
    assert frames == {"000000.png", "000005.png"}
    sample = next(s for s in domain.splits["test"] if s.image.name == "000000.png")
    j = np.arange(17)
    uv = np.stack([34.5 + 2 * j, 20.5 + 3 * j], 1)
    np.testing.assert_allclose(sample.keypoints[[0, 2, 12, 13]], uv[[3, 1, 14, 11]], atol=1e-9)
    np.testing.assert_allclose(sample.keypoints[7], (uv[14] + uv[11]) / 2, atol=1e-9)
    x0, y0, side = sample.box
    assert abs(side - 1.5 * (uv.max(0) - uv.min(0)).max()) <= 1
    _assert_marker_on(domain, 0)


def test_coco_maps_names_skips_crowds_and_crops_to_bbox(tmp_path):
    fx.write_coco(tmp_path)
    domain = registry.create_dataset("coco", tmp_path, "body16")
    assert _counts(domain) == {"train": 2, "val": 1, "test": 3}
    sample = domain.splits["test"][0]
    assert sample.box == (6, -7, 40)  # bbox 32 x 16 at (10, 5): square, 1.25x
    assert domain.splits["test"][1].box is None
    names = fx.COCO_PERSON
    for k, body in enumerate(BODY16.names):
        coco = body.replace("l_", "left_").replace("r_", "right_")
        assert sample.weight[k] == (coco in names), body
    np.testing.assert_allclose(sample.keypoints[5], [10 + 30 + 0.5, 5 + 15 + 0.5])  # l_ankle
    _assert_marker_on(domain, 5)


def test_coco_reads_val_json_when_present(tmp_path):
    fx.write_coco(tmp_path, splits=("train", "val", "test"))
    assert _counts(registry.create_dataset("coco", tmp_path, "body16")) == {
        "train": 3, "val": 3, "test": 3
    }  # fmt: skip


def test_human36m_reads_the_reference_precropped_copy(tmp_path):
    import json

    ann = tmp_path / "annotations"
    ann.mkdir()
    for s in fx.H36M_SUBJECTS:
        kp = np.stack([np.arange(16) * 3 + 4.5, np.arange(16) + 10.5], 1)
        fx.marked_image(tmp_path / "crop_images" / f"s{s}.png", (64, 64), kp[0])
        entry = {"name": f"s{s}.png", "keypoint2d": kp.tolist(), "keypoint3d": [[0, 0, 1]] * 16}
        (ann / f"keypoints2d_{s}.json").write_text(json.dumps([entry]))
    domain = registry.create_dataset("human36m", tmp_path)
    assert _counts(domain) == {"train": 4, "val": 1, "test": 2}
    _assert_marker_on(domain, 0)


def test_build_task_reads_real_domains_augments_train_and_hides_target_labels(tmp_path):
    from regda_dist import config as C
    from regda_dist.data.datasets import ImagesOnly, build_task

    fx.write_rhd(tmp_path / "rhd")
    fx.write_h3d(tmp_path / "h3d")
    cfg = C.load(
        None,
        ["data.task=''", "data.image_size=32", "data.heatmap_size=16",
         "data.source.dataset=rhd", f"data.source.root={tmp_path / 'rhd'}",
         "data.target.dataset=h3d", f"data.target.root={tmp_path / 'h3d'}",
         "data.augment.rotation=180"],
    )  # fmt: skip
    task = build_task(cfg.data)
    assert task.spec is HAND21
    assert len(task.source_test) == 1 and len(task.target_test) == 2
    assert isinstance(task.target_train, ImagesOnly)
    assert task.target_train[0].shape == (3, 32, 32)
    assert task.source_train.augment is not None and not hasattr(task.source_test, "augment")
    image, kp, weight = task.source_test[0]
    assert image.shape == (3, 32, 32) and kp.shape == (21, 2) and weight.dtype == torch.float32
    assert image.dtype == torch.uint8
