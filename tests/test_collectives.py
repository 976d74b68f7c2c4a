"""Every collective runs on the runtime's device (NCCL has no CPU backend), and training steps
never read the device back to the host. Both are shown without a GPU on PyTorch's `meta`
device: a tensor there has no data, so a collective handed a CPU tensor is refused by the
stand-in below, and any host read (.item(), int(), .tolist()) raises."""

import pytest
import torch
from torch import nn

from regda_dist.config import ModelConfig, OptimConfig
from regda_dist.data import heatmap
from regda_dist.engine.collectives import Collectives
from regda_dist.engine.runtime import Local, Runtime
from regda_dist.engine.trainer import Trainer
from regda_dist.methods.base import adaptation_optimizers, supervised_step
from regda_dist.methods.regda import RegDAStep
from regda_dist.models.regda import build_model

META = torch.device("meta")


class DeviceCheckingDist:
    """A recording stand-in of torch.distributed (world size 2) that refuses a tensor whose
    device is not `device`, as NCCL refuses CPU tensors."""

    def __init__(self, device):
        self.device, self.calls = torch.device(device), []

    def _check(self, op, *tensors):
        for t in tensors:
            if t.device != self.device:
                raise RuntimeError(f"{op}: tensor on {t.device}, the group is on {self.device}")
        self.calls.append(op)

    def get_world_size(self):
        return 2

    def all_reduce(self, tensor, op=None):
        self._check("all_reduce", tensor)

    def broadcast(self, tensor, src):
        self._check("broadcast", tensor)

    def all_gather(self, outputs, tensor):
        self._check("all_gather", tensor, *outputs)

    def broadcast_object_list(self, objects, src, device=None):
        if torch.device(device) != self.device if device is not None else True:
            raise RuntimeError(f"broadcast_object_list on {device}, the group is on {self.device}")
        self.calls.append("broadcast_object_list")


def _meta_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="small_resnet", upsample_channels=8), 3)
    return model.to(META)


def test_every_collective_moves_its_tensors_to_the_runtime_device():
    dist = DeviceCheckingDist(META)
    comm = Collectives(META, dist)
    model = _meta_model()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    comm.sync(list(model.parameters()))  # gradient all-reduce
    comm.broadcast(model)  # rank 0's parameters and buffers
    averaged = comm.average({"loss": torch.ones((), device=META), "lr": 0.1})  # logged values
    assert all(v.device == META for v in averaged.values())
    comm.agree(True)  # rank 0's decision
    assert comm.reduce_sum(torch.ones(2, 3, dtype=torch.long)).device == META  # PCK counts
    gathered = comm.gather(torch.ones(3, 2, dtype=torch.bool), sizes=[3, 2])  # eval outputs
    assert gathered.device == META and gathered.shape == (5, 2) and gathered.dtype == torch.bool
    assert {"all_reduce", "broadcast", "broadcast_object_list", "all_gather"} <= set(dist.calls)


def test_the_stand_in_refuses_what_nccl_refuses():
    with pytest.raises(RuntimeError, match="tensor on cpu"):
        DeviceCheckingDist(META).all_reduce(torch.zeros(2))


def test_a_regda_iteration_never_reads_the_device():
    model = _meta_model()
    model.train()
    optimizers, schedules = adaptation_optimizers(model, OptimConfig())
    step = RegDAStep(model, optimizers, margin=4.0, trade_off=1.0, sigma=2.0)
    x_s = torch.zeros(2, 3, 64, 64, dtype=torch.uint8, device=META)
    kp = torch.zeros(2, 3, 2, device=META)
    target, weight = heatmap.encode(kp, torch.ones(2, 3, device=META), 64, 32, 2.0)
    for _ in range(2):
        logs = step(x_s, target, weight, x_s.clone())
        for s in schedules:
            s.step()
    assert all(v.device == META for k, v in logs.items() if k != "train/lambda")
    assert model.grl.count == 2 and isinstance(logs["train/lambda"], float)  # host mirror
    loss = supervised_step(model, optimizers[0], x_s, target, weight)
    assert loss.device == META


def test_an_epoch_of_the_trainer_reads_the_device_once_at_its_end(tiny_cfg):
    from regda_dist.data.datasets import build_task

    task = build_task(tiny_cfg.data)
    trainer = Trainer(tiny_cfg, task, Runtime(device=META))
    model = trainer.build_model()  # on the meta device
    optimizers, schedules = adaptation_optimizers(model, tiny_cfg.optim)
    regda = RegDAStep(model, optimizers, 4.0, 1.0, 2.0)
    loaders = [
        trainer._loader(task.source_train, 4, 3, 2, workers=0),
        trainer._loader(task.target_train, 4, 3, 3, workers=0),
    ]

    def step(batch_s, x_t):  # the body of Trainer.adapt's step, on the runtime's device
        x_s, kp_s, vis_s = batch_s
        target_s, weight_s = trainer._labels(kp_s, vis_s, 2.0)
        rt = trainer.runtime
        return regda(rt.to_device(x_s), target_s, weight_s, rt.to_device(x_t))

    with pytest.raises(NotImplementedError, match="meta tensor"):  # the epoch's one read
        trainer._epoch(loaders, step, 3, epoch=0, state={}, save=None, desc="meta")
    assert model.grl.count == 3  # ... came after all its iterations


def test_local_collectives_are_no_ops():
    local, t = Local(), torch.arange(3)
    assert local.gather(t, [3]) is t and local.reduce_sum(t) is t and local.agree(5) == 5
    local.sync([nn.Parameter(torch.zeros(1))])
    assert float(local.average({"a": 2.0})["a"]) == 2.0


# --------------------------------------------------------------------------------------------
# Evaluation sharded over two real gloo processes gives what one process gives


def _evaluate(rank: int, world_size: int, cfg_dict: dict, weights: str, out: str):
    """One rank: the trainer's evaluation of a fixed model, with real collectives (one process:
    the engine's local no-ops)."""
    import json

    from regda_dist import config as C
    from regda_dist.data.datasets import build_task

    comm = {"comm": Collectives(torch.device("cpu"))} if world_size > 1 else {}
    cfg = C.from_dict(cfg_dict)
    runtime = Runtime(rank=rank, world_size=world_size, **comm)
    trainer = Trainer(cfg, build_task(cfg.data), runtime)
    model = trainer.build_model()
    model.load_state_dict(torch.load(weights, weights_only=True))
    metrics = trainer.evaluator(model)
    adapted = trainer.eval.adabn(model, trainer.task.target_train, seed=0)
    stats = {k: v.tolist() for k, v in adapted.state_dict().items() if "running" in k}
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"metrics": metrics, "adabn": stats}, f)


def test_one_and_two_workers_evaluate_to_the_same_metrics(tiny_cfg, tmp_path, spawn):
    import json

    from regda_dist.data.datasets import build_task

    # batches of 4: test shards of unequal size (19 = 3 + 2 batches); val (3 samples, one
    # batch) leaves rank 1 an empty shard, which must still join every gather
    tiny_cfg.data.num_val, tiny_cfg.data.num_test = 3, 19
    tiny_cfg.train.eval_batch_size = 4
    build_task(tiny_cfg.data)  # generate the data once, before two processes read it
    torch.manual_seed(0)
    model = Trainer(tiny_cfg, task=None).build_model(21)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    args = (tiny_cfg.to_dict(), str(tmp_path / "w.pt"))
    _evaluate(0, 1, *args, str(tmp_path / "one.json"))
    spawn(_evaluate, *args, str(tmp_path / "two.json"))
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["metrics"] == two["metrics"]  # PCK counts summed, proxy outputs gathered
    assert set(one["metrics"]) >= {"proxy/dev", "proxy/aug_consistency", "oracle/target_pck"}
    for key, value in one["adabn"].items():  # BN statistics: mean of per-worker averages
        assert torch.allclose(
            torch.tensor(two["adabn"][key]), torch.tensor(value), rtol=1e-5, atol=1e-6
        ), key
