"""The mean teacher: EMA, view-averaged pseudo labels, the confidence mask, per-sample views."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regda_dist import config as C
from regda_dist.engine.runtime import Runtime
from regda_dist.methods.mean_teacher import MeanTeacher, TeacherViews, rampup

SIZE = 64


class _DotFinder(nn.Module):
    """A 'detector' of the one bright dot in an image: its K heatmaps are the image's first
    channel pooled to the heatmap size (so each peaks where the dot is)."""

    def __init__(self, keypoints: int = 2, heatmap: int = 32):
        super().__init__()
        self.k, self.h = keypoints, heatmap
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.head = nn.Identity()

    def features(self, x):
        y = F.adaptive_avg_pool2d(x[:, :1].float(), self.h) * 0.2 * self.scale
        return y.expand(-1, self.k, -1, -1)


def _dots(centres: torch.Tensor) -> torch.Tensor:
    grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
    d2 = (grid[None, None] - centres[:, 0, None, None]) ** 2
    d2 = d2 + (grid[None, :, None] - centres[:, 1, None, None]) ** 2
    return (255 * torch.exp(-d2 / 8.0))[:, None].expand(-1, 3, -1, -1)


def _teacher(model=None, **mt) -> MeanTeacher:
    cfg = C.load(None, [f"mean_teacher.{k}={v}" for k, v in mt.items()]).mean_teacher
    return MeanTeacher(model or _DotFinder(), cfg, sigma=2.0, image_size=SIZE, runtime=Runtime())


def _views(n: int, k: int = 3) -> TeacherViews:
    cfg = C.load(None, [f"mean_teacher.views={k}", "mean_teacher.weak_rotation=40"]).mean_teacher
    return TeacherViews(_Blank(n), cfg)


class _Blank(torch.utils.data.Dataset):
    """n blank images, asked for as the training loader asks: by (index, sample seed)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        i, _ = key
        assert 0 <= i < self.n
        return torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)


def test_the_teacher_is_an_exponential_moving_average_of_the_student():
    student = nn.Linear(3, 2)
    mt = _teacher(student, ema_decay=0.9)
    before = [p.clone() for p in mt.teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    mt.update()
    for t, b, s in zip(mt.teacher.parameters(), before, student.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * s)
        assert not t.requires_grad
    assert mt.iteration == 1


def test_pseudo_labels_averaged_over_views_land_on_the_point_in_the_original_image():
    centres = torch.tensor([[24.0, 30.0], [40.0, 36.0], [30.0, 44.0]])
    views = _views(3)
    params = torch.stack([views[(i, 1000 + i)][1]["weak"] for i in range(3)])  # (B, K, 2, 3)
    teacher, images = _teacher(), _dots(centres)
    coords, peaks = teacher.pseudo_labels(images, params, lambda name: _null())
    assert coords.shape == (3, 2, 2) and peaks.shape == (3, 2)
    identity = torch.eye(2, 3).expand(3, 1, 2, 3)  # the image itself: what the views must match
    plain, _ = teacher.pseudo_labels(images, identity, lambda name: _null())
    assert (coords - plain).norm(dim=-1).max() <= 2.0  # a heatmap px (stride 2)
    assert (coords - centres[:, None]).norm(dim=-1).max() <= 3.0  # the finder's own rounding


def _null():
    from contextlib import nullcontext

    return nullcontext()


def test_the_confidence_mask_keeps_the_top_fraction_of_the_batch():
    peaks = torch.arange(20, dtype=torch.float32).view(4, 5)
    kept = _teacher(keep=0.25).confident(peaks)
    assert kept.sum() == 5 and kept.flatten()[-5:].all()


def test_view_parameters_come_from_the_sample_seed_alone():
    views = _views(4)
    a, b, c = views[(0, 7)][1], views[(3, 7)][1], views[(0, 8)][1]
    for key in a:
        assert torch.equal(a[key], b[key]), key  # same seed, another index: same views
    assert not torch.equal(a["weak"], c["weak"])
    assert a["weak"].shape == (3, 2, 3) and a["strong"].shape == (2, 3)


def test_the_consistency_weight_ramps_up():
    assert rampup(0, 100) == pytest.approx(0.0067, abs=1e-4)
    assert rampup(100, 100) == rampup(500, 100) == rampup(3, 0) == 1.0
