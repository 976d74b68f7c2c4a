"""Keypoint-aware augmentation: keypoints move with the image; off by default, train only."""

import numpy as np
import torch

from regda_dist import config as C
from regda_dist.data.datasets import Augmented, ImagesOnly, build_task
from regda_dist.data.transforms import Augment, is_active

REFERENCE = C.AugmentConfig(rotation=180, scale_min=0.6, scale_max=1.3, color_jitter=0.25, blur=0.8)


def _marked(size=64, point=(20, 30)) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    x, y = point
    image[:, y - 2 : y + 3, x - 2 : x + 3] = 255
    return image, torch.tensor([[x + 0.5, y + 0.5]])


def _centroid(image: torch.Tensor) -> np.ndarray:
    w = image.float().sum(0)
    w = torch.where(w > 0.5 * w.max(), w, torch.zeros_like(w))
    size = image.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


def test_defaults_do_nothing_and_reference_values_do():
    assert not is_active(C.AugmentConfig())
    assert is_active(REFERENCE)
    assert is_active(C.AugmentConfig(blur=0.5))


def test_keypoints_follow_rotation_and_random_resized_crop():
    image, kp = _marked()
    augment = Augment(C.AugmentConfig(rotation=180, scale_min=0.6, scale_max=1.3))
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out, moved = augment(image, kp, g)
        assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
        assert moved.dtype == torch.float32
        if ((moved > 3) & (moved < 61)).all():  # the marker stayed in the picture
            assert np.abs(_centroid(out) - moved[0].numpy()).max() < 1.0


def test_colour_and_blur_leave_keypoints_and_are_seeded():
    image, kp = _marked()
    augment = Augment(C.AugmentConfig(color_jitter=0.25, blur=0.8))
    first, moved = augment(image, kp, torch.Generator().manual_seed(3))
    assert torch.equal(moved, kp)
    assert np.abs(_centroid(first) - kp[0].numpy()).max() < 0.5
    torch.manual_seed(99)  # the global generator plays no part
    assert torch.equal(augment(image, kp, torch.Generator().manual_seed(3))[0], first)
    assert not torch.equal(augment(image, kp, torch.Generator().manual_seed(4))[0], first)


def test_synthetic_task_augments_train_splits_only(tmp_path):
    overrides = ["data.augment.rotation=30", "data.target.augment=false"]
    cfg = C.load(None, [f"data.root={tmp_path}", *_sizes(), *overrides])
    plain = build_task(C.load(None, [f"data.root={tmp_path}", *_sizes()]).data)
    task = build_task(cfg.data)
    assert isinstance(task.source_train, Augmented) and task.source_train.augment
    assert not isinstance(task.source_val, Augmented)
    assert not isinstance(task.target_test, Augmented)
    assert task.target_train_labelled.augment is None  # data.target.augment: false
    assert isinstance(task.target_train, ImagesOnly)
    assert torch.equal(task.source_val[0][0], plain.source_val[0][0])
    assert torch.equal(task.source_train[0][0], plain.source_train[0][0])  # no seed: as it is
    assert not torch.equal(task.source_train[(0, 1)][0], plain.source_train[0][0])


def _sizes():
    return [
        "data.image_size=32", "data.heatmap_size=16", "data.num_train=32", "data.num_val=4",
        "data.num_test=4",
    ]  # fmt: skip


def test_a_batch_augmented_at_once_on_the_device_matches_each_sample_alone():
    """augment_batch (for a GPU worker's device) from each sample's drawn numbers gives the
    per-sample augmentation (the loader processes') up to float rounding."""
    from regda_dist.data.loader import sample_seed
    from regda_dist.data.transforms import augment_batch

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=g)
    kp = torch.rand(8, 5, 2, generator=g) * 32
    seeds = [sample_seed(0, 1, i) for i in range(8)]
    for cfg in (REFERENCE, C.AugmentConfig(blur=2.0), C.AugmentConfig(color_jitter=0.25),
                C.AugmentConfig(rotation=30, scale_min=0.8)):  # fmt: skip
        augment = Augment(cfg)
        alone = [augment(images[i], kp[i], torch.Generator().manual_seed(s))
                 for i, s in enumerate(seeds)]  # fmt: skip
        params = torch.stack([augment.draw(torch.Generator().manual_seed(s)) for s in seeds])
        x, moved = augment_batch(cfg, images, kp, params)
        diff = (x.int() - torch.stack([a[0] for a in alone]).int()).abs()
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, cfg
        assert torch.allclose(moved, torch.stack([a[1] for a in alone]), atol=1e-4), cfg
