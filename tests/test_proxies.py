"""Target validation proxies: the registry contract, hand-computed values, DEV, and collection."""

import math

import pytest
import torch
import torch.nn.functional as F

from regda_dist.data.datasets import ImagesOnly, KeypointDataset
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.engine.collect import VIEWS, collect
from regda_dist.engine.evaluate import Evaluation
from regda_dist.engine.runtime import Runtime
from regda_dist.proxies import SplitOutputs, create_proxy, list_proxies
from regda_dist.proxies.dev import (
    density_ratio,
    dev_risk,
    effective_sample_size,
    normalised_weights,
)

CHAIN = KeypointSpec("chain3", ("a", "b", "c"), {"all": (0, 2)}, ((0, 1), (1, 2)))


def _outputs(n=6, k=3, labelled=True, seed=0) -> SplitOutputs:
    g = torch.Generator().manual_seed(seed)
    coords = torch.randint(0, 16, (n, k, 2), generator=g)
    return SplitOutputs(
        coords=coords,
        scores=torch.rand(n, k, generator=g),
        coords_adv=torch.randint(0, 16, (n, k, 2), generator=g),
        coords_aug=None if labelled else coords.float() + torch.rand(2, n, k, 2, generator=g),
        aug_valid=None if labelled else torch.ones(2, n, k, dtype=torch.bool),
        features=torch.randn(n, 4, generator=g),
        keypoints=torch.rand(n, k, 2, generator=g) * 16 if labelled else None,
        loss=torch.rand(n, generator=g) if labelled else None,
        correct=torch.rand(n, k, generator=g) > 0.5 if labelled else None,
        valid=torch.ones(n, k, dtype=torch.bool) if labelled else None,
        spec=CHAIN if k == 3 else None,
        radius=1.6,
    )


def test_the_issue_proxies_are_registered():
    expected = {"source_pck", "dev", "aug_consistency", "confidence", "head_agreement"}
    assert expected | {"pose_prior"} <= set(list_proxies())


@pytest.mark.parametrize("name", list_proxies())
def test_every_proxy_gives_a_finite_float_without_target_labels(name):
    proxy = create_proxy(name)
    assert set(proxy.splits) <= {"source_val", "target_val"}
    value = proxy(source_val=_outputs(), target_val=_outputs(labelled=False, seed=1))
    assert isinstance(value, float) and math.isfinite(value)


def test_unknown_proxy_and_missing_split_are_named():
    with pytest.raises(ValueError, match="unknown proxy 'nope'; registered: .*source_pck"):
        create_proxy("nope")
    with pytest.raises(ValueError, match=r"needs split\(s\) \['target_val'\]"):
        create_proxy("confidence")(source_val=_outputs())


def test_source_pck_is_a_global_ratio_over_the_all_group():
    out = _outputs(n=2, k=3)  # CHAIN: "all" is keypoints 0 and 2
    out.correct = torch.tensor([[True, False, False], [True, True, True]])
    out.valid = torch.tensor([[True, True, True], [True, False, False]])
    assert create_proxy("source_pck")(source_val=out) == pytest.approx(100 * 2 / 3)


def test_distance_proxies_and_confidence_by_hand():
    out = _outputs(labelled=False)
    out.coords_adv = out.coords + torch.tensor([3, 4])  # 5 px away everywhere
    out.coords_aug = out.coords.float().unsqueeze(0).repeat(2, 1, 1, 1)
    out.coords_aug[1, :, :, 0] += 2.0  # one view 2 px off (beyond the 1.6 px radius)
    out.scores = torch.full_like(out.scores, 0.25)
    assert create_proxy("head_agreement")(target_val=out) == pytest.approx(-5.0)
    assert create_proxy("aug_consistency")(target_val=out) == pytest.approx(50.0)
    out.coords_aug[1, :, :, 0] += 100.0  # far off: a miss, not a 50 px mean
    assert create_proxy("aug_consistency")(target_val=out) == pytest.approx(50.0)
    out.aug_valid[1] = False  # view 1 cannot see the keypoints: it does not count
    assert create_proxy("aug_consistency")(target_val=out) == pytest.approx(100.0)
    assert create_proxy("confidence")(target_val=out) == pytest.approx(0.25)


def test_pose_prior_prefers_source_like_skeletons_and_punishes_collapse():
    g = torch.Generator().manual_seed(0)
    n = 200
    # source: a bent chain a-b-c, bone lengths 4 and 2, elbow angle ~ 90 degrees, any rotation
    turn = torch.rand(n, generator=g) * 6.28
    unit = torch.stack((turn.cos(), turn.sin()), -1)
    perp = torch.stack((-turn.sin(), turn.cos()), -1)
    base = torch.full((n, 2), 8.0)
    noisy = lambda: 0.1 * torch.randn(n, 2, generator=g)  # noqa: E731
    kp = torch.stack((base, base + 4 * unit + noisy(), base + 4 * unit + 2 * perp + noisy()), 1)
    source = _outputs(n=n, k=3)
    source.keypoints, source.valid = kp, torch.ones(n, 3, dtype=torch.bool)
    prior = create_proxy("pose_prior")

    def score(coords):
        target = _outputs(n=n, k=3, labelled=False)
        target.coords = coords
        return prior(source_val=source, target_val=target)

    good = score(kp.round().long())
    straight = score(torch.stack((base, base + 4 * unit, base + 6 * unit), 1).round().long())
    collapsed = score(torch.full((n, 3, 2), 8, dtype=torch.long))
    assert good > straight > collapsed
    assert collapsed == pytest.approx(-9.0)  # every feature at the cap
    # per image: the score is their mean; a pose broken in half the images scores the cap there
    mixed = kp.round().long()
    mixed[::2] = 8
    target = _outputs(n=n, k=3, labelled=False)
    target.coords = mixed
    each = prior.per_image(source, target)
    assert each.shape == (n,)
    assert float(each.mean()) == pytest.approx(score(mixed), abs=1e-6)
    assert torch.allclose(each[::2], torch.tensor(-9.0))
    assert float(each[1::2].mean()) == pytest.approx(good, abs=1.0)


def test_pose_prior_needs_a_skeleton():
    source, target = _outputs(k=2), _outputs(k=2, labelled=False)
    assert math.isnan(create_proxy("pose_prior")(source_val=source, target_val=target))


def test_dev_weights_are_self_normalised_clipped_and_their_ess_logged():
    ratio = torch.tensor([1.0, 1.0, 1.0, 1000.0], dtype=torch.float64)
    w = normalised_weights(ratio)
    assert w.mean().item() == pytest.approx(1.0) and w.max() < 4  # one sample cannot carry it
    assert effective_sample_size(torch.ones(5)) == pytest.approx(1.0)
    assert effective_sample_size(torch.tensor([1.0, 0, 0, 0])) == pytest.approx(0.25)
    dev = create_proxy("dev")
    dev(source_val=_outputs(n=40, k=3), target_val=_outputs(n=40, k=3, labelled=False, seed=1))
    assert 0 < dev.diagnostics["ess"] <= 1


def test_density_ratio_is_about_one_without_shift():
    g = torch.Generator().manual_seed(0)
    ratio = density_ratio(torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g))
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.1)
    assert ratio.std().item() < 0.3


def test_dev_weights_the_source_samples_that_look_like_target():
    g = torch.Generator().manual_seed(0)
    half = 200
    features_s = torch.cat(
        (torch.randn(half, 2, generator=g) - 2, torch.randn(half, 2, generator=g) + 2)
    )
    loss_s = torch.cat((torch.zeros(half), torch.ones(half)))  # the target-like half is wrong
    features_t = torch.randn(300, 2, generator=g) + 2
    risk = dev_risk(loss_s, normalised_weights(density_ratio(features_s, features_t)))
    assert loss_s.mean() == 0.5 and risk == pytest.approx(1.0, abs=0.15)
    s = _outputs(n=2 * half, k=1)
    s.features, s.loss = features_s, loss_s
    t = _outputs(n=300, k=1, labelled=False)
    t.features = features_t
    assert create_proxy("dev")(source_val=s, target_val=t) == pytest.approx(-risk)


class _DotFinder(torch.nn.Module):
    """Heatmap = the image's first channel pooled to 16 x 16: argmax finds the bright dot."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def features(self, x):  # pixels 0-255
        return F.avg_pool2d(x[:, :1].float(), 2) * self.scale / 255

    def head(self, f):
        return f.repeat(1, 2, 1, 1) * 50

    head_adv = head


def _dots(n=4, size=32):
    g = torch.Generator().manual_seed(0)
    kp = torch.randint(8, 24, (n, 2), generator=g).float()
    images = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    for i, (x, y) in enumerate(kp.long()):
        images[i, :, y - 1 : y + 2, x - 1 : x + 2] = 255
    return images, kp.unsqueeze(1).repeat(1, 2, 1), torch.ones(n, 2)


def test_collect_maps_augmented_views_back_and_hides_target_labels():
    data = KeypointDataset(*_dots())
    ev = Evaluation(Runtime(), batch_size=3, workers=0, sizes=(32, 16), threshold=0.1)
    src = collect(_DotFinder(), data, ev, labelled=True, sigma=1.0, spec=CHAIN)
    tgt = collect(_DotFinder(), ImagesOnly(data), ev, labelled=False, sigma=1.0)
    assert tgt.coords_aug.shape == (len(VIEWS), 4, 2, 2) and src.coords_aug is None
    seen = tgt.aug_valid.unsqueeze(-1).expand_as(tgt.coords_aug)
    error = (tgt.coords_aug - tgt.coords.float())[seen].view(-1, 2).norm(dim=-1)
    assert error.max() <= 1.5 and seen.any()  # within a heatmap px, where the view sees it
    assert bool(src.correct.all()) and src.loss.shape == (4,) and src.spec is CHAIN
    assert torch.allclose(src.keypoints, data.keypoints / 2)  # heatmap px
    assert tgt.loss is None and tgt.correct is None and tgt.valid is None
    assert torch.equal(tgt.coords, src.coords)
    assert create_proxy("aug_consistency")(target_val=tgt) == pytest.approx(100.0)


class _Constant(_DotFinder):
    """Predicts the same heatmap cell whatever the image: a collapsed model."""

    def head(self, f):
        y = torch.zeros(len(f), 2, 16, 16)
        y[:, :, 8, 8] = 1.0
        return y


def test_a_constant_prediction_scores_badly_on_augmentation_consistency():
    data = ImagesOnly(KeypointDataset(*_dots(n=8)))
    ev = Evaluation(Runtime(), batch_size=4, workers=0, sizes=(32, 16), threshold=0.1)
    constant = collect(_Constant(), data, ev, labelled=False, sigma=1.0)
    tracking = collect(_DotFinder(), data, ev, labelled=False, sigma=1.0)
    score = create_proxy("aug_consistency")
    assert score(target_val=constant) < 50.0 < score(target_val=tracking)


def test_trainer_hands_proxies_target_val_as_images_only(tiny_cfg, monkeypatch):
    from regda_dist.data.datasets import build_task
    from regda_dist.engine import evaluator as evaluator_module
    from regda_dist.engine.trainer import Trainer

    seen = {}
    real = evaluator_module.collect

    def spy(model, dataset, ev, **kwargs):
        seen[kwargs["labelled"]] = type(dataset)
        return real(model, dataset, ev, **kwargs)

    monkeypatch.setattr(evaluator_module, "collect", spy)
    t = Trainer(tiny_cfg, build_task(tiny_cfg.data))
    model = t.build_model()
    values = t.evaluator.proxy_metrics({"source": model, "target": model})
    assert {k for k in values if not k.startswith("diag/")} == {
        f"proxy/{n}" for n in tiny_cfg.train.proxies
    }
    assert "diag/dev/ess" in values
    assert seen == {True: KeypointDataset, False: ImagesOnly}
