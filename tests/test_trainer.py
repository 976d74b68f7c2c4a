"""Trainer: phases run, resume is exact, target labels are never read in training."""

import pytest
import torch

from regda_dist.data.datasets import build_task
from regda_dist.engine.trainer import Trainer


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
    straight = trainer.adapt(state, tmp_path / "straight.ckpt")

    interrupted = Trainer(tiny_cfg, task)
    interrupted.add_callback("on_eval", _crash_after(1))
    torch.manual_seed(1)
    with pytest.raises(_Crash):
        interrupted.adapt(state, tmp_path / "resumed.ckpt")
    torch.manual_seed(999)  # the restored RNG state, not this seed, must drive the rest
    resumed = Trainer(tiny_cfg, task).adapt(state, tmp_path / "resumed.ckpt")

    expected = straight.state_dict()
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, expected[name]), name
    total = tiny_cfg.regda.epochs * tiny_cfg.regda.iters_per_epoch
    assert int(resumed.grl.iters) == total  # the warm-start counter continued


def test_adaptation_never_reads_target_labels(tiny_cfg):
    task = build_task(tiny_cfg.data)

    class Forbidden(torch.utils.data.Dataset):
        def __len__(self):
            return len(task.target_train_labelled)

        def __getitem__(self, i):
            raise AssertionError("training read a labelled target sample")

    task.target_train_labelled = Forbidden()  # only the oracle baseline may use it
    trainer = Trainer(tiny_cfg, task)
    events = []
    trainer.add_callback("on_eval", lambda phase, epoch, metrics: events.append((phase, metrics)))
    source, _ = trainer.pretrain(_tmp(trainer))
    trainer.adapt(source.state_dict(), _tmp(trainer, "adapt"))
    adapt = [m for phase, m in events if phase == "adapt"]
    assert len(adapt) == tiny_cfg.regda.epochs
    assert {"oracle/target_pck", "source/pck", "train/loss_c", "train/lambda"} <= set(adapt[-1])


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
        trainer._batches(trainer.task.source_train, 32, 1, 0, 1)
