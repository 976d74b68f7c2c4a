"""adapt.batchnorm: which running statistics each domain is evaluated and exported with."""

import pytest
import torch
from torch import nn

from regda_dist import config as C
from regda_dist.data.datasets import ImagesOnly, build_task
from regda_dist.engine.batchnorm import DomainStatistics, PhaseTwoNorm, norms
from regda_dist.engine.trainer import Trainer
from tests.conftest import TINY


def _stats(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in norms(model) for t in (m.running_mean, m.running_var)]


def _equal(a: list[torch.Tensor], b: list[torch.Tensor], **tol) -> bool:
    return all(torch.allclose(x, y, **tol) for x, y in zip(a, b, strict=True))


def test_domain_statistics_follow_only_their_own_domains_passes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    stats = DomainStatistics(model)
    x_s, x_t = torch.randn(8, 3, 5, 5) + 4, torch.randn(8, 3, 5, 5) - 4
    only_target = nn.BatchNorm2d(4).train()
    for _ in range(5):
        with stats.track("source"):
            model(x_s)
        with stats.track("target"):
            model(x_t)
        only_target(model[0](x_t).detach())
    model(x_s)  # outside any domain: tracked by the module's own statistics only
    target = stats.applied(model, "target")[1]
    assert torch.allclose(target.running_mean, only_target.running_mean, atol=1e-5)
    assert torch.allclose(target.running_var, only_target.running_var, atol=1e-4)
    assert not torch.allclose(model[1].running_mean, only_target.running_mean, atol=1e-2)  # mixed
    source = stats.applied(model, "source")[1]
    assert not torch.allclose(source.running_mean, target.running_mean, atol=1e-2)


def _cfg(tmp_path, *extra) -> C.Config:
    return C.load(
        None, [*TINY, f"data.root={tmp_path / 'data'}", f"train.output_dir={tmp_path}", *extra]
    )


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """{mode: (trainer, phase-1 model, the model adapt returned)}: one tiny run per mode, from
    the same phase 1 and seeds."""
    tmp_path = tmp_path_factory.mktemp("batchnorm")
    runs = {}
    for mode in ("mixed", "target", "domain", "frozen"):
        cfg = _cfg(tmp_path, f"adapt.batchnorm={mode}", "train.select_metric=proxy/source_pck")
        torch.manual_seed(0)
        trainer = Trainer(cfg, build_task(cfg.data))
        source, _ = trainer.pretrain(tmp_path / f"p1-{mode}.ckpt")
        torch.manual_seed(0)
        out = trainer.adapt(source.state_dict(), tmp_path / f"{mode}.ckpt")
        runs[mode] = trainer, source, out.model, out
    return runs


@pytest.mark.parametrize("mode", ["target", "domain"])
def test_every_mode_but_frozen_trains_the_same_weights(adapted, mode):
    reference, other = adapted["mixed"][2], adapted[mode][2]
    for (name, a), b in zip(
        reference.state_dict().items(), other.state_dict().values(), strict=True
    ):
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(a, b), name


def test_target_mode_exports_the_weights_with_statistics_reestimated_on_target(adapted):
    trainer, _, exported, out = adapted["target"]
    expected = trainer.eval.adabn(exported, trainer.task.target_train, trainer.cfg.train.seed)
    assert _equal(_stats(exported), _stats(expected), atol=1e-6)
    source = trainer.eval.adabn(exported, ImagesOnly(trainer.task.source_train), seed=0)
    assert not _equal(_stats(exported), _stats(source), atol=1e-3)
    # the epoch selection keeps the same kind of model: its statistics are the target's too
    selected = dict(exported.state_dict())
    selected.update(out.selected["weights"])
    model = trainer.build_model()
    model.load_state_dict(selected)
    again = trainer.eval.adabn(model, trainer.task.target_train, trainer.cfg.train.seed)
    assert _equal(_stats(model), _stats(again), atol=1e-6)


def test_target_mode_reestimates_on_at_most_reestimate_images(adapted):
    """adapt.reestimate_images caps each re-estimation at the first N of its seeded order."""
    trainer, _, exported, _ = adapted["target"]
    images, seed = trainer.task.target_train, trainer.cfg.train.seed
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    expected = trainer.eval.adabn(exported, torch.utils.data.Subset(images, order[:6].tolist()), 0)
    trainer.cfg.adapt.reestimate_images = 6
    try:
        capped = trainer.evaluator.reestimate(exported, "target")
    finally:
        trainer.cfg.adapt.reestimate_images = 0
    assert _equal(_stats(capped), _stats(expected), atol=1e-6)
    assert not _equal(
        _stats(capped), _stats(trainer.evaluator.reestimate(exported, "target")), atol=1e-4
    )


def test_target_mode_evaluates_each_domain_with_its_own_statistics(adapted):
    trainer, _, exported, out = adapted["target"]
    task, spec = trainer.task, trainer.task.spec
    source_model = trainer.evaluator.reestimate(exported, "source")
    assert (
        out.last["oracle/target_pck"] == trainer.eval.pck(exported, task.target_test, spec)["all"]
    )
    assert out.last["source/pck"] == trainer.eval.pck(source_model, task.source_test, spec)["all"]


def test_mixed_mode_evaluates_with_the_statistics_training_left(adapted):
    trainer, _, exported, out = adapted["mixed"]
    task = trainer.task
    assert exported is trainer.evaluator.norm.models(exported)["target"]
    assert (
        out.last["oracle/target_pck"]
        == trainer.eval.pck(exported, task.target_test, task.spec)["all"]
    )


def test_frozen_mode_keeps_phase_one_statistics_in_the_feature_generator(adapted):
    _, source, exported, _ = adapted["frozen"]
    feature = [
        m for name, m in exported.named_modules() if name.startswith(("backbone", "upsampling"))
    ]
    before = [
        m for name, m in source.named_modules() if name.startswith(("backbone", "upsampling"))
    ]
    for a, b in zip(feature, before, strict=True):
        if isinstance(a, nn.modules.batchnorm._BatchNorm):
            assert torch.equal(a.running_mean, b.running_mean)
            assert torch.equal(a.running_var, b.running_var)


def test_domain_mode_statistics_survive_a_resume(tmp_path):
    cfg = _cfg(tmp_path, "adapt.batchnorm=domain", "adapt.epochs=2")
    task = build_task(cfg.data)
    trainer = Trainer(cfg, task)
    source, _ = trainer.pretrain(tmp_path / "p1.ckpt")
    torch.manual_seed(1)
    straight = trainer.adapt(source.state_dict(), tmp_path / "straight.ckpt").model

    def crash(phase, epoch, metrics):
        if phase == "adapt" and epoch == 1:
            raise KeyboardInterrupt

    interrupted = Trainer(cfg, task)
    interrupted.add_callback("on_eval", crash)
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        interrupted.adapt(source.state_dict(), tmp_path / "resumed.ckpt")
    resumed = Trainer(cfg, task).adapt(source.state_dict(), tmp_path / "resumed.ckpt").model
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, straight.state_dict()[name]), name


def test_an_unknown_mode_and_a_head_that_cannot_be_carried_over_are_refused():
    with pytest.raises(C.ConfigError, match="adapt.batchnorm must be one of"):
        C.load(None, ["adapt.batchnorm=sometimes"])
    with pytest.raises(C.ConfigError, match="adapt.head_init 'phase1' .* needs the head"):
        C.load(None, ["adapt.head_init=phase1", "pretrain.head_layers=1"])
    with pytest.raises(C.ConfigError, match="adapt.head_init 'auto' .*mean_teacher.* needs"):
        C.load(None, ["adapt.method=mean_teacher", "pretrain.head_layers=1"])
    # RegDA's auto: phase 1's head where phase 1 trains the same head, else a fresh one
    assert C.load(None, ["pretrain.head_layers=1"]).adapt_head == "fresh"
    assert C.load(None, []).adapt_head == "phase1"
    with pytest.raises(ValueError, match="adapt.batchnorm must be one of"):
        PhaseTwoNorm("sometimes", None)


def test_a_teacher_method_under_target_mode_exports_its_teacher_with_target_statistics(tmp_path):
    cfg = _cfg(tmp_path, "adapt.method=mean_teacher", "adapt.batchnorm=target",
               "mean_teacher.rampup_iters=0", "mean_teacher.ema_decay=0.5")  # fmt: skip
    torch.manual_seed(0)
    trainer = Trainer(cfg, build_task(cfg.data))
    source, _ = trainer.pretrain(tmp_path / "p1.ckpt")
    out = trainer.adapt(source.state_dict(), tmp_path / "mt.ckpt")
    exported = out.model
    expected = trainer.eval.adabn(exported, trainer.task.target_train, cfg.train.seed)
    assert _equal(_stats(exported), _stats(expected), atol=1e-6)
    saved = torch.load(tmp_path / "mt.ckpt", weights_only=True)
    teacher, student = saved["teacher"], saved["model"]
    weights = [k for k in teacher if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(exported.state_dict()[k], teacher[k]) for k in weights)
    assert not all(torch.equal(teacher[k], student[k]) for k in weights)  # not the student
