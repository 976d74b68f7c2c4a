"""The contract every registered adaptation method passes (regda_dist/methods/: adding a method
is one module there and nothing else): it adapts (its steps run, its losses are finite, the
model it exports moved from phase 1's), it exports the model it declares (a teacher method its
teacher, said in the run's label), and 2 workers x 4 target images give the weights of 1 worker
x 8 (real gloo ranks): the views come from each sample's seed, every global quantity (the mean
teacher's confidence threshold) from the global batch."""

from __future__ import annotations

import math

import pytest
import torch

from regda_dist import config as C
from regda_dist.engine.runtime import Runtime
from regda_dist.methods import adapters, get_method


def _adapt_rank(rank: int, world: int, cfg_dict: dict, phase1: str, out: str):
    """One rank of an adaptation with real gloo collectives (one process: the engine's local
    no-ops); rank 0 saves what it exports, its last epoch's metrics and what it evaluated."""
    from pathlib import Path

    from regda_dist.data.datasets import build_task
    from regda_dist.engine.collectives import Collectives
    from regda_dist.engine.trainer import Trainer

    comm = {"comm": Collectives(torch.device("cpu"))} if world > 1 else {}
    cfg = C.from_dict(cfg_dict)
    trainer = Trainer(cfg, build_task(cfg.data), Runtime(rank=rank, world_size=world, **comm))
    seen = {}
    trainer.add_callback("on_adapt_model", lambda epoch, model: seen.update(model=model))
    trainer.add_callback("on_eval", lambda phase, epoch, metrics: seen.update(metrics=metrics))
    torch.manual_seed(0)
    adapted = trainer.adapt(torch.load(phase1, weights_only=True), Path(f"{out}.{rank}.ckpt"))
    if rank == 0:
        evaluated = {k: v.clone() for k, v in seen["model"].state_dict().items()}
        torch.save({"exported": adapted.model.state_dict(), "evaluated": evaluated,
                    "metrics": seen["metrics"]}, out)  # fmt: skip


@pytest.mark.parametrize("name", adapters())
def test_every_method_adapts_exports_what_it_declares_and_two_workers_equal_one(
    tiny_cfg, tmp_path, name, spawn
):
    from regda_dist.data.datasets import build_task
    from regda_dist.engine.trainer import Trainer

    method = get_method(name)
    tiny_cfg.adapt.method, tiny_cfg.adapt.head_init = name, "phase1"
    tiny_cfg.adapt.batchnorm = "frozen"  # phase 2 only: batch statistics depend on the share
    tiny_cfg.mean_teacher.rampup_iters, tiny_cfg.mean_teacher.ema_decay = 0, 0.5
    tiny_cfg.pretrain.iters_per_epoch = 15  # running statistics and a head worth following
    torch.manual_seed(0)
    source, _ = Trainer(tiny_cfg, build_task(tiny_cfg.data)).pretrain(tmp_path / "p1.ckpt")
    torch.save(source.state_dict(), tmp_path / "p1.pt")
    single, double = tiny_cfg.to_dict(), tiny_cfg.to_dict()
    single["adapt"]["batch_size"] = double["adapt"]["batch_size"] = 8  # global: 2 x 4
    _adapt_rank(0, 1, single, str(tmp_path / "p1.pt"), str(tmp_path / "one.pt"))
    spawn(_adapt_rank, double, str(tmp_path / "p1.pt"), str(tmp_path / "two.pt"))
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two"))

    losses = {k: v for k, v in one["metrics"].items() if k.startswith("train/loss")}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    moved = (one["exported"]["head.3.weight"] - source.state_dict()["head.3.weight"]).abs().max()
    assert moved > 1e-3  # the exported model learned (a teacher followed its student)
    # what it exports is what it evaluated at its last epoch (a teacher method: the teacher)
    for key, value in one["exported"].items():
        assert torch.equal(value, one["evaluated"][key]), key
    trained = torch.load(tmp_path / "one.pt.0.ckpt", weights_only=True)["model"]  # the student
    same = all(torch.equal(v, trained[k]) for k, v in one["exported"].items())
    assert same != method.teacher  # a teacher method exports its teacher, not what it trains
    assert method.shown_as.endswith("(teacher)") == method.teacher
    for key, value in one["exported"].items():
        assert torch.allclose(value.float(), two["exported"][key].float(), rtol=1e-3,
                              atol=1e-5), key  # fmt: skip
