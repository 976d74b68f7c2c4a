import math

import pytest
import torch

from regda_dist.metrics import PCK, correct_keypoints, pck_radius

THRESHOLD = 3.2  # 0.05 * 256 image px = 3.2 heatmap px at 64x64


def _logits_at(points, size=16):
    """(B, K, size, size) logits whose argmax of map [b, k] is points[b][k] = (x, y)."""
    logits = torch.zeros(len(points), len(points[0]), size, size)
    for b, row in enumerate(points):
        for k, (x, y) in enumerate(row):
            logits[b, k, y, x] = 1.0
    return logits


def test_correct_keypoints_threshold_boundaries():
    pred = [[(5, 5)] * 6]
    logits = _logits_at(pred)
    target = torch.tensor(
        [[[8.0, 6.0], [8.0, 7.0], [5.0, 8.0], [5.0, 9.0], [8.19, 5.0], [5.0, 8.21]]]
    )
    # distances: sqrt(10) = 3.16, sqrt(13) = 3.61, 3, 4, 3.19, 3.21
    ok = correct_keypoints(logits, target, torch.ones(1, 6), THRESHOLD)
    assert ok.dtype == torch.bool
    assert ok.tolist() == [[True, False, True, False, True, False]]


def test_correct_keypoints_uses_x_y_order():
    logits = _logits_at([[(2, 11)]])  # x = 2, y = 11
    assert correct_keypoints(logits, torch.tensor([[[2, 11]]]), torch.ones(1, 1), 1.0).item()
    assert not correct_keypoints(logits, torch.tensor([[[11, 2]]]), torch.ones(1, 1), 1.0).item()


def test_correct_keypoints_invalid_is_false():
    logits = _logits_at([[(5, 5), (7, 7)]])
    target = torch.tensor([[[5, 5], [7, 7]]])  # both exactly right
    ok = correct_keypoints(logits, target, torch.tensor([[1.0, 0.0]]), THRESHOLD)
    assert ok.tolist() == [[True, False]]


def test_pck_excludes_invalid_from_numerator_and_denominator():
    pck = PCK({"all": (0, 1, 2), "a": (0,), "b": (1, 2)}, num_keypoints=3)
    # kp 0 right, kp 1 right but invalid, kp 2 wrong but invalid
    logits = _logits_at([[(5, 5), (7, 7), (1, 1)]])
    target = torch.tensor([[[5, 5], [7, 7], [12, 12]]])
    pck.update(logits, target, torch.tensor([[1.0, 0.0, 0.0]]), THRESHOLD)
    out = pck.compute()
    assert out["all"] == pytest.approx(100.0)  # 1 / 1, not 1 / 3 or 2 / 3
    assert out["a"] == pytest.approx(100.0)
    assert math.isnan(out["b"])
    assert pck.counts.tolist() == [[1, 0, 0], [1, 0, 0]]  # (correct, total)


def test_pck_is_global_ratio_not_mean_of_batch_ratios():
    groups = {"all": (0, 1), "first": (0,), "second": (1,)}
    pck = PCK(groups, num_keypoints=2)
    # batch 1: one sample, kp 0 right, kp 1 invalid
    pck.update(
        _logits_at([[(5, 5), (5, 5)]]),
        torch.tensor([[[5, 5], [0, 0]]]),
        torch.tensor([[1.0, 0.0]]),
        THRESHOLD,
    )
    # batch 2: three samples, kp 0 wrong in all of them; kp 1 right in one of three
    pck.update(
        _logits_at([[(5, 5), (9, 9)]] * 3),
        torch.tensor([[[12, 12], [9, 9]], [[12, 12], [0, 0]], [[0, 12], [0, 0]]]),
        torch.ones(3, 2),
        THRESHOLD,
    )
    out = pck.compute()
    # kp 0: 1 of 4 -> 25 (mean of per-batch ratios would give (100 + 0) / 2 = 50)
    assert out["first"] == pytest.approx(25.0)
    # kp 1: 1 of 3
    assert out["second"] == pytest.approx(100.0 / 3)
    # all: (1 + 1) of (4 + 3) -> 28.57 (mean of per-batch ratios: (1/1 + 1/6) / 2 = 58.3;
    # mean of per-keypoint ratios: (25 + 33.3) / 2 = 29.2)
    assert out["all"] == pytest.approx(200.0 / 7)
    assert set(out) == set(groups)


def test_pck_group_without_valid_keypoint_is_nan():
    pck = PCK({"all": (0, 1), "empty": (1,)}, num_keypoints=2)
    assert all(math.isnan(v) for v in pck.compute().values())  # nothing seen yet
    pck.update(
        _logits_at([[(5, 5), (5, 5)]]),
        torch.tensor([[[5, 5], [5, 5]]]),
        torch.tensor([[1, 0]]),
        THRESHOLD,
    )
    out = pck.compute()
    assert math.isnan(out["empty"])
    assert out["all"] == pytest.approx(100.0)


@pytest.mark.parametrize("threshold", [0.0, -1.0, -3.2, math.nan])
def test_pck_bad_threshold_raises(threshold):
    with pytest.raises(ValueError, match="threshold"):
        pck_radius(torch.zeros(1, 1, 2), torch.ones(1, 1), threshold, "heatmap", 64, 16)


def test_pck_radius_of_the_heatmap_or_of_each_samples_keypoint_box():
    kp = torch.tensor([[[8.0, 8.0], [40.0, 16.0], [60.0, 60.0]], [[0.0, 0.0], [4.0, 20.0], [9, 9]]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    assert pck_radius(kp, valid, 0.05, "heatmap", 64, 16) == pytest.approx(0.8)
    # box of the valid keypoints: 32 x 8 and 9 x 20 image px -> longer sides 32, 20; x 16/64
    radius = pck_radius(kp, valid, 0.5, "bbox", 64, 16)
    assert radius.shape == (2, 1) and radius.flatten().tolist() == pytest.approx([4.0, 2.5])
    assert pck_radius(kp, torch.zeros(2, 3), 0.5, "bbox", 64, 16).flatten().tolist() == [0, 0]


def test_pck_radius_takes_the_annotations_box_where_the_dataset_gives_one():
    kp = torch.tensor([[[8.0, 8.0], [40.0, 16.0]], [[0.0, 0.0], [4.0, 20.0]]])
    valid = torch.ones(2, 2)
    box_side = torch.tensor([48.0, float("nan")])  # sample 2: no annotation box, keypoints' box
    radius = pck_radius(kp, valid, 0.5, "bbox", 64, 16, box_side)
    assert radius.flatten().tolist() == pytest.approx([6.0, 2.5])


def test_coco_samples_know_their_annotation_box_in_item_pixels(tmp_path):
    from regda_dist.data.images import ImageSamples
    from regda_dist.data.keypoints import BODY16
    from regda_dist.data.samples import Sample

    with_box = Sample(tmp_path / "a.png", torch.zeros(16, 2).numpy(), torch.ones(16).numpy(),
                      box=(0, 0, 125), bbox_side=100.0)  # fmt: skip
    without = Sample(tmp_path / "b.png", torch.zeros(16, 2).numpy(), torch.ones(16).numpy())
    sides = ImageSamples([with_box, without], 64).box_sides()
    assert sides[0].item() == pytest.approx(51.2) and math.isnan(sides[1].item())
    assert BODY16.num_keypoints == 16
