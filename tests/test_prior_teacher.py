"""adapt.method prior_teacher: the source pose prior ranks the teacher's pseudo labels (a
confident but implausible keypoint gives way to a plausible one), a mirrored pose is as
plausible as the pose, and a keypoint set without bones is refused in one line."""

import pytest
import torch

from regda_dist import config as C
from regda_dist.data.keypoints import KeypointSpec
from regda_dist.engine.runtime import Runtime
from regda_dist.fields import ConfigError
from regda_dist.methods.prior_teacher import PriorTeacher, PriorTeacherStep
from regda_dist.proxies.pose_prior import PoseModel
from tests.test_mean_teacher import SIZE, _DotFinder

# a zig-zag chain of 5 keypoints: its bones meet at non-straight angles, so a mirror image
# flips the angles' signs
CHAIN = ((0, 1), (1, 2), (2, 3), (3, 4))
TEMPLATE = torch.tensor([[10.0, 10.0], [20.0, 20.0], [30.0, 12.0], [40.0, 22.0], [50.0, 14.0]])


def _source_poses(n: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return TEMPLATE + 1.5 * torch.randn(n, *TEMPLATE.shape, generator=g)


def _teacher(**prior) -> PriorTeacher:
    cfg = C.load(None, [f"prior_teacher.{k}={v}" for k, v in prior.items()])
    teacher = PriorTeacher(_DotFinder(keypoints=5), cfg.mean_teacher, cfg.prior_teacher,
                           sigma=2.0, image_size=SIZE, runtime=Runtime())  # fmt: skip
    poses = _source_poses()
    teacher.fit(poses, torch.ones(poses.shape[:2], dtype=torch.bool), CHAIN)
    return teacher


def test_a_keypoint_off_its_skeleton_is_the_least_plausible_and_the_source_pose_plausible():
    teacher = _teacher()
    broken = TEMPLATE.clone()
    broken[2] = torch.tensor([30.0, 45.0])  # the middle keypoint far off its place
    plausible = teacher.plausibility(torch.stack((TEMPLATE, broken)))
    assert plausible[0].min() > 0.99  # the source's own pose
    assert plausible[1].argmin() == 2 and plausible[1, 2] < 0.1
    assert (plausible[1, [0, 1, 3, 4]] > 0.5).all()  # its neighbours' bones are not blamed on them
    # every bone looks wrong (lengths are relative to the pose's mean bone): without leaving
    # one keypoint out, the blame would spread over all five
    z2, _ = teacher.prior.z2(broken[None])
    assert (z2[0, :4] > 1).all()


def test_a_mirrored_pose_is_judged_as_its_mirror_image():
    prior = _teacher().prior
    mirrored = (TEMPLATE * torch.tensor([-1.0, 1.0]) + torch.tensor([SIZE, 0.0]))[None]
    assert prior.mirror_signs(mirrored).item() == -1 and prior.mirror_signs(TEMPLATE[None]) == 1
    as_mirror = prior.z2(mirrored, sign=prior.mirror_signs(mirrored))[0]
    assert as_mirror.mean() < 1 < prior.z2(mirrored)[0].mean()
    # as its mirror image nothing is off; as it is, every angle is, and the keypoint at the
    # middle of all three angles would take the blame
    assert prior.blame(mirrored, mirrored=True).max() < 0.5 < 2 < prior.blame(mirrored)[0, 2]
    broken = mirrored.clone()
    broken[0, 2] = torch.tensor([SIZE - 30.0, 45.0])
    assert prior.blame(broken, mirrored=True)[0].argmax() == 2


def test_a_confident_but_implausible_keypoint_gives_way_to_a_plausible_one():
    teacher = _teacher(strength=0.5)
    teacher.cfg.keep = 0.5
    broken = TEMPLATE.clone()
    broken[2] = torch.tensor([30.0, 45.0])
    coords = torch.stack((broken, TEMPLATE))
    peaks = torch.arange(10.0).view(2, 5) / 20 + 0.1
    peaks[0, 2] = 0.99  # the teacher is surest of the keypoint that is off its skeleton
    by_confidence = teacher.confident(peaks)
    score, logs = teacher.ranking(coords, peaks)
    ranked = teacher.confident(score)
    assert by_confidence[0, 2] and not ranked[0, 2]
    assert ranked.sum() == by_confidence.sum()  # as many pseudo labels as the mean teacher's
    assert 0 < logs["train/plausibility"] < 1


def test_strength_zero_ranks_by_confidence_alone():
    teacher = _teacher(strength=0)
    coords = TEMPLATE.clone()[None]
    coords[0, 2] = torch.tensor([30.0, 45.0])
    peaks = torch.rand(1, 5)
    assert torch.equal(teacher.ranking(coords, peaks)[0], peaks)


def test_the_prior_fits_only_the_source_and_a_set_without_bones_is_refused(tiny_cfg):
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.build import model_for

    tiny_cfg.adapt.method = "prior_teacher"
    task, rt = build_task(tiny_cfg.data), Runtime()
    model = model_for(tiny_cfg, rt, task.spec.num_keypoints)
    step = PriorTeacherStep.from_config(model, tiny_cfg, rt)
    step.fit_source(task.source_val, task.spec)
    kp = torch.stack([task.source_val[i][1] for i in range(len(task.source_val))])
    vis = torch.stack([task.source_val[i][2] for i in range(len(task.source_val))]).bool()
    direct = PoseModel(kp, vis, task.spec.skeleton)
    for (c, s), (c2, s2) in zip(step.teacher.prior.fits, direct.fits, strict=True):
        assert torch.equal(c, c2) and torch.equal(s, s2)
    every = tuple(range(len(task.spec.names)))
    boneless = KeypointSpec(name="dots", names=task.spec.names, groups={"all": every})
    with pytest.raises(ConfigError, match="no bones") as err:
        step.fit_source(task.source_val, boneless)
    assert "\n" not in str(err.value)


def test_strength_zero_trains_exactly_the_mean_teacher(tiny_cfg, tmp_path):
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.trainer import Trainer

    tiny_cfg.mean_teacher.rampup_iters = 0
    torch.manual_seed(0)
    source, _ = Trainer(tiny_cfg, build_task(tiny_cfg.data)).pretrain(tmp_path / "p1.ckpt")
    weights = {}
    for method in ("mean_teacher", "prior_teacher"):
        tiny_cfg.adapt.method, tiny_cfg.prior_teacher.strength = method, 0.0
        trainer = Trainer(tiny_cfg, build_task(tiny_cfg.data))
        torch.manual_seed(0)
        weights[method] = trainer.adapt(source.state_dict(), tmp_path / f"{method}.ckpt").model
    a, b = (weights[m].state_dict() for m in ("mean_teacher", "prior_teacher"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_trainer_fits_the_prior_on_the_source_val_split_and_nothing_else(
    tiny_cfg, tmp_path, monkeypatch
):
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.trainer import Trainer

    tiny_cfg.adapt.method = "prior_teacher"
    task = build_task(tiny_cfg.data)
    given = []
    fit = PriorTeacherStep.fit_source

    def spy(self, labelled, spec):
        given.append(labelled)
        return fit(self, labelled, spec)

    monkeypatch.setattr(PriorTeacherStep, "fit_source", spy)
    trainer = Trainer(tiny_cfg, task)
    trainer._start_adaptation(trainer.build_model().state_dict(), tmp_path / "a.ckpt")
    assert len(given) == 1 and given[0] is task.source_val


def test_pose_prior_never_judges_the_method_that_trains_towards_it(tiny_cfg, tmp_path):
    """pose_prior would favour the prior teacher by construction: refused as its selection
    metric, and 'auto' stands for source_pck for it (a run's candidates, a search's metric)."""
    import yaml

    from regda_dist.data.datasets import build_task
    from regda_dist.engine.run import selection_metric
    from regda_dist.search.spec import load_search

    with pytest.raises(ConfigError, match="pose_prior' means nothing for prior-guided"):
        C.load(None, ["adapt.method=prior_teacher", "train.select_metric=proxy/pose_prior"])
    task = build_task(tiny_cfg.data)
    assert task.spec.skeleton and selection_metric(tiny_cfg, task) == "proxy/pose_prior"
    tiny_cfg.adapt.method = "prior_teacher"
    assert selection_metric(tiny_cfg, task) == "proxy/source_pck"
    picked = {}
    for methods in (["regda", "mean_teacher"], ["mean_teacher", "prior_teacher"]):
        path = tmp_path / "exp.yaml"
        space = {"adapt.method": {"choice": methods}}
        path.write_text(yaml.safe_dump({"search": {"num_samples": 2, "space": space}}))
        picked[methods[-1]] = load_search(path).settings.metric
    assert picked == {"mean_teacher": "pose_prior", "prior_teacher": "source_pck"}
