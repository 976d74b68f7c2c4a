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


def test_the_ema_moves_parameters_and_leaves_the_teachers_batchnorm_statistics_its_own():
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    mt = _teacher(student, ema_decay=0.5)
    student(torch.randn(16, 3) + 5)  # the student's running statistics move, and its counter
    with torch.no_grad():
        student[1].weight.add_(2.0)
    before = {k: v.clone() for k, v in mt.teacher.state_dict().items()}
    mt.update()
    after = mt.teacher.state_dict()
    assert torch.allclose(after["1.weight"], 0.5 * before["1.weight"] + 0.5 * student[1].weight)
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(after[name], before[name]), name  # not averaged towards the student
    assert not torch.equal(student[1].running_mean, before["1.running_mean"])


def test_views_with_shear_and_teacher_views_from_the_strong_ranges():
    cfg = C.load(None, ["mean_teacher.shear=30", "mean_teacher.teacher_views=strong"]).mean_teacher
    views = TeacherViews(_Blank(2), cfg)
    assert views.weak is views.strong and views.strong.shear == 30
    theta = views[(0, 5)][1]["strong"][:, :2]
    columns = theta.T  # a sheared map's columns are no longer orthogonal
    assert abs(float(columns[0] @ columns[1])) > 1e-3
    plain = TeacherViews(_Blank(2), C.load(None, []).mean_teacher)
    assert plain.weak.rotation == 15 and plain.strong.shear == 0
    unsheared = plain[(0, 5)][1]["strong"][:, :2].T
    assert abs(float(unsheared[0] @ unsheared[1])) < 1e-5


def test_a_view_without_shear_draws_the_same_random_numbers_as_before_shear_existed():
    from regda_dist.data.views import Geometry

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    Geometry(15, (0.9, 1.1), 0.05).sample(g1)
    torch.rand(4, generator=g2, dtype=torch.float64)  # rotation, zoom, shift x, y
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))


def test_an_occlusion_patch_from_inside_is_never_padding():
    from regda_dist.data import views

    size, side = SIZE, 0.25
    centres = torch.tensor([[2.0, 2.0], [60.0, 33.0], [32.0, 62.0]])
    for u in (torch.zeros(3, 2), torch.ones(3, 2) * 0.999, torch.rand(3, 2)):
        offsets = views.offsets_from_inside(centres, side, size, u)
        source = centres + offsets * size
        half = side * size / 2
        assert (source >= half - 1e-4).all() and (source <= size - half + 1e-4).all()
    x = torch.ones(3, 3, size, size)
    out = views.occlude(x, centres, side, views.offsets_from_inside(centres, side, size, u))
    assert torch.allclose(out, x)  # every pasted pixel came from the image: none is black
    black = views.occlude(x, centres, side, torch.full((3, 2), 0.5))  # the offset rule can
    assert (black == 0).any()


def test_the_student_optimiser_is_sgd_by_default_and_constant_adam_on_request(tiny_cfg):
    from regda_dist.engine.build import model_for
    from regda_dist.methods.mean_teacher import student_optimizers

    model = model_for(tiny_cfg, Runtime(), 21)
    sgd, _ = student_optimizers(model, tiny_cfg)
    assert all(isinstance(o, torch.optim.SGD) for o in sgd)
    assert [o.param_groups[0]["lr"] for o in sgd] == [tiny_cfg.optim.backbone_lr, tiny_cfg.optim.lr]
    tiny_cfg.mean_teacher.optimizer, tiny_cfg.mean_teacher.adam_lr = "adam", 3e-4
    adam, schedules = student_optimizers(model, tiny_cfg)
    assert all(isinstance(o, torch.optim.Adam) for o in adam)
    for _ in range(50):
        for o, s in zip(adam, schedules, strict=True):
            o.step()  # no gradients: moves nothing
            s.step()
    assert [o.param_groups[0]["lr"] for o in adam] == [3e-4, 3e-4]  # constant, as UDAPE
    params = {id(p) for o in adam for g in o.param_groups for p in g["params"]}
    assert not params & {id(p) for p in model.head_adv.parameters()}  # head_adv never trains


def test_a_teacher_method_refuses_head_agreement_and_regda_mt_refuses_adam():
    from regda_dist.fields import ConfigError

    for method in ("mean_teacher", "prior_teacher"):
        with pytest.raises(ConfigError, match="head_agreement.*means nothing"):
            C.load(None, [f"adapt.method={method}", "train.select_metric=proxy/head_agreement"])
    C.load(None, ["adapt.method=regda+mean_teacher", "train.select_metric=proxy/head_agreement"])
    with pytest.raises(ConfigError, match="optimizer 'adam'"):
        C.load(None, ["adapt.method=regda+mean_teacher", "mean_teacher.optimizer=adam"])
