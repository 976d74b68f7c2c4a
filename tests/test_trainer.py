"""Trainer: phases run, resume is exact, target labels are never read in training."""

import pytest
import torch

from regda_dist.data.datasets import ImagesOnly, build_task
from regda_dist.engine.trainer import Trainer
from regda_dist.methods import adapters


class _Crash(Exception):
    pass


def _crash_after(epoch_to_crash):
    def fn(phase, epoch, metrics):
        if phase == "adapt" and epoch == epoch_to_crash:
            raise _Crash

    return fn


def test_adapt_resumes_exactly_after_an_interruption(tiny_cfg, tmp_path):
    task = build_task(tiny_cfg.data)
    trainer = Trainer(tiny_cfg, task)
    source, _ = trainer.pretrain(tmp_path / "p1.ckpt")
    state = source.state_dict()

    torch.manual_seed(1)
    straight = trainer.adapt(state, tmp_path / "straight.ckpt").model

    interrupted = Trainer(tiny_cfg, task)
    interrupted.add_callback("on_eval", _crash_after(1))
    torch.manual_seed(1)
    with pytest.raises(_Crash):
        interrupted.adapt(state, tmp_path / "resumed.ckpt")
    torch.manual_seed(999)  # the restored RNG state, not this seed, must drive the rest
    resumed = Trainer(tiny_cfg, task).adapt(state, tmp_path / "resumed.ckpt").model

    expected = straight.state_dict()
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, expected[name]), name
    total = tiny_cfg.adapt.epochs * tiny_cfg.adapt.iters_per_epoch
    assert int(resumed.grl.iters) == total  # the warm-start counter continued


class _Forbidden(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        raise AssertionError("training read a labelled target sample")


class _ImageOnly(tuple):
    """A labelled item whose image (item[0]) may be read and nothing else."""

    def __getitem__(self, i):
        if i != 0:
            raise AssertionError(f"training read item[{i}] of a target sample: its labels")
        return super().__getitem__(0)

    def __iter__(self):
        raise AssertionError("training unpacked a target sample: its labels")


class _LabelsTrapped(torch.utils.data.Dataset):
    """The labelled set that ImagesOnly wraps, its labels out of reach."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        return _ImageOnly(self.dataset[key])


@pytest.mark.parametrize("method", adapters())
def test_adaptation_never_reads_target_labels(tiny_cfg, method):
    """Neither the labelled target split (only the oracle's) nor the labels inside the set that
    target_train's ImagesOnly wraps are read, by any method."""
    task = build_task(tiny_cfg.data)
    tiny_cfg.adapt.method = method
    assert task.target_train._dataset is task.target_train_labelled  # what the trap must cover
    task.target_train = ImagesOnly(_LabelsTrapped(task.target_train_labelled))
    task.target_train_labelled = _Forbidden(len(task.target_train_labelled))
    trainer = Trainer(tiny_cfg, task)
    events = []
    trainer.add_callback("on_eval", lambda phase, epoch, metrics: events.append((phase, metrics)))
    source, _ = trainer.pretrain(_tmp(trainer))
    trainer.adapt(source.state_dict(), _tmp(trainer, "adapt"))
    adapt = [m for phase, m in events if phase == "adapt"]
    assert len(adapt) == tiny_cfg.adapt.epochs
    assert {"oracle/target_pck", "source/pck"} <= set(adapt[-1])
    assert any(k.startswith("train/loss") for k in adapt[-1])
    # an epoch's fixed cost is visible: evaluation and the checkpoint, apart from training
    assert all(m["time/eval_s"] > 0 and m["time/checkpoint_s"] > 0 for m in adapt)


def _tmp(trainer, name="p1"):
    from pathlib import Path

    return Path(trainer.cfg.train.output_dir) / f"{name}.ckpt"


def test_pretrain_keeps_best_source_val_epoch_and_oracle_uses_target(tiny_cfg, tmp_path):
    task = build_task(tiny_cfg.data)
    trainer = Trainer(tiny_cfg, task)
    events = []
    trainer.add_callback("on_eval", lambda phase, epoch, metrics: events.append((phase, metrics)))
    _, info = trainer.pretrain(tmp_path / "p1.ckpt")
    best = max(m["pretrain/val_pck"] for p, m in events if p == "pretrain")
    assert info["best_val_pck"] == best
    trainer.pretrain(tmp_path / "oracle.ckpt", labelled="target")
    assert any(p == "oracle" for p, _ in events)


def test_a_split_smaller_than_one_batch_is_a_config_error(tiny_cfg):
    from regda_dist.config import ConfigError
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.trainer import Trainer

    trainer = Trainer(tiny_cfg, build_task(tiny_cfg.data))
    with pytest.raises(ConfigError, match="has 24 samples, fewer than one global batch"):
        trainer._loader(trainer.task.source_train, 32, 1, 1, workers=0)


AUGMENT = [
    "data.augment.rotation=180",
    "data.augment.scale_min=0.6",
    "data.augment.color_jitter=0.25",
]


class _CrashingImages(torch.utils.data.Dataset):
    """The target train images; the n-th read (counted over the whole run) raises."""

    def __init__(self, images, n):
        self.images, self.left = images, n

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        self.left -= 1
        if self.left < 0:
            raise _Crash
        return self.images[key]


def test_adapt_resumes_mid_epoch_with_the_same_batches_and_augmentations(tiny_cfg, tmp_path):
    from regda_dist import config as C

    cfg = C.load(
        None,
        [*_overrides(tiny_cfg), *AUGMENT, "train.checkpoint_every=1", "adapt.iters_per_epoch=4",
         "adapt.batchnorm=mixed", "adapt.head_init=fresh"],  # only training reads target train
    )  # fmt: skip
    task = build_task(cfg.data)
    source, _ = Trainer(cfg, task).pretrain(tmp_path / "p1.ckpt")
    state = source.state_dict()
    torch.manual_seed(1)  # the fresh heads
    straight = Trainer(cfg, task).adapt(state, tmp_path / "straight.ckpt").model

    images = task.target_train
    # 4 iterations of 4 images per epoch: the crash is in iteration 3 of epoch 2
    task.target_train = _CrashingImages(images, n=(4 + 2) * cfg.adapt.batch_size + 1)
    torch.manual_seed(1)
    with pytest.raises(_Crash):
        Trainer(cfg, task).adapt(state, tmp_path / "resumed.ckpt")
    saved = torch.load(tmp_path / "resumed.ckpt", weights_only=True)
    assert (saved["epoch"], saved["iteration"]) == (1, 2)  # mid-epoch checkpoint
    task.target_train = images
    resumed = Trainer(cfg, task).adapt(state, tmp_path / "resumed.ckpt").model
    expected = straight.state_dict()
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, expected[name]), name


def _overrides(cfg):
    """The tiny config's data and output folders as --set overrides (conftest.TINY + these)."""
    from tests.conftest import TINY

    return [*TINY, f"data.root={cfg.data.root}", f"train.output_dir={cfg.train.output_dir}"]


def test_adabn_sees_the_target_train_images_without_augmentation(tiny_cfg):
    from regda_dist import config as C

    cfg = C.load(None, [*_overrides(tiny_cfg), *AUGMENT])
    task = build_task(cfg.data)
    trainer = Trainer(cfg, task)
    model = trainer.build_model()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    trainer.eval.adabn(model, task.target_train, seed=0)  # hooks are copied with the model
    images = torch.cat(seen)
    raw = torch.stack([task.target_train_labelled.dataset[i][0] for i in range(len(images))])
    assert images.shape == raw.shape
    assert not torch.equal(images, raw)  # shuffled ...
    assert sorted(map(_key, images)) == sorted(map(_key, raw))  # ... the raw images, each once


def _key(image):
    return hash(image.numpy().tobytes())


def test_adapt_keeps_the_epoch_its_select_metric_prefers(tiny_cfg, tmp_path):
    from regda_dist.engine.run import run_here

    tiny_cfg.train.select_metric = "proxy/source_pck"
    tiny_cfg.adapt.epochs = 3
    events = []
    result = run_here(tiny_cfg, tmp_path / "run", callbacks=[lambda **e: events.append(e)])
    values = [e["metrics"]["proxy/source_pck"] for e in events if e["phase"] == "adapt"]
    best = max(range(3), key=lambda i: (values[i], -i))  # the first epoch of the best value
    chosen = result["selected"]
    assert (chosen["epoch"], chosen["value"]) == (best + 1, values[best])
    assert chosen["metrics"]["proxy/source_pck"] == values[best]
    last = events[-1]["metrics"]
    assert (last["best/proxy/source_pck"], last["best/epoch"]) == (values[best], best + 1)
    kept = torch.load(tmp_path / "run" / "model.pt", weights_only=True)  # the chosen epoch's
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert set(kept) == set(last)
    same = all(torch.equal(kept[k], last[k]) for k in kept)
    assert same == (chosen["epoch"] == 3)


def test_the_best_candidate_by_the_metric_wins_ties_go_to_the_more_adapted_and_nan_never_wins():
    from regda_dist.engine.run import candidates

    def result(so, ab, last, selected=None):
        out = {"source_only": {"m": so}, "adabn": {"m": ab}, "regda": {"m": last}}
        if selected is not None:
            out["selected"] = {"metrics": {"m": selected}}
        return out

    assert candidates(result(3.0, 2.0, 1.0), "m")["best"] == "source_only"
    assert candidates(result(1.0, 2.0, 2.0), "m")["best"] == "adapted"
    assert candidates(result(2.0, 2.0, 1.0), "m")["best"] == "adabn"
    assert candidates(result(1.0, 2.0, 9.0, selected=0.5), "m")["best"] == "adabn"  # the epoch kept
    assert candidates(result(1.0, float("nan"), float("nan")), "m")["best"] == "source_only"
    assert candidates(result(1.0, 2.0, 3.0), "other")["best"] == "adapted"  # nothing to compare


def test_preflight_builds_the_model_on_the_cpu_not_on_the_run_device(tiny_cfg):
    """The driver of a search runs preflight and lives as long as the search: a model built on
    train.device 'auto' took GPU 0 of the driver's node. The meta device stands for the GPU."""
    from regda_dist.engine.build import preflight

    tiny_cfg.train.device = "meta"
    model = preflight(tiny_cfg, 21)
    assert {t.device.type for t in model.state_dict().values()} == {"cpu"}


@pytest.mark.parametrize("head_init", ["phase1", "fresh"])
def test_head_init_carries_phase_ones_main_head_and_never_its_adversarial_one(tiny_cfg, head_init):
    tiny_cfg.adapt.head_init = head_init
    trainer = Trainer(tiny_cfg, build_task(tiny_cfg.data))
    torch.manual_seed(1)
    pretrained = trainer.build_model().state_dict()
    for key, value in pretrained.items():
        if key.startswith("head_adv.") and value.is_floating_point():
            value.fill_(7.0)  # what phase 1's file holds for head_adv must never be read
        elif key.startswith("head.") and value.is_floating_point():
            value.add_(0.5)  # unlike any fresh initialisation
    torch.manual_seed(2)
    model, _, _, _ = trainer._start_adaptation(pretrained, _tmp(trainer, "adapt"))
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith(("backbone.", "upsampling.")):
            assert torch.equal(value, pretrained[key]), key
        elif key.startswith("head.") and value.is_floating_point():
            assert torch.equal(value, pretrained[key]) == (head_init == "phase1"), key
        elif key.startswith("head_adv.") and value.is_floating_point():
            assert not (value == 7.0).all(), key  # fresh
