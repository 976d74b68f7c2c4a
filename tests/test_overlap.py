"""The gradient all-reduce overlapped with backward (engine/overlap.py) gives the synchronous
path's parameters, in 2 real gloo processes: RegDA steps A, B, C (each a different optimiser
set) and a supervised step, with buckets small enough that most launch during backward."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

from regda_dist.config import ModelConfig, OptimConfig
from regda_dist.data import heatmap
from regda_dist.distributed.local_cluster import free_port
from regda_dist.engine.collectives import Collectives
from regda_dist.engine.overlap import OverlappedSync
from regda_dist.methods.base import adaptation_optimizers, supervised_step
from regda_dist.methods.regda import RegDAStep
from regda_dist.models.regda import build_model
from tests.ranks import GLOO_THREADS, threads

K, STEPS = 3, 2


def _model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="small_resnet", upsample_channels=8), K,
                        {"max_iters": 10})  # fmt: skip
    model.grl.load_state_dict({"iters": torch.tensor(50)})  # lambda > 0: step C reaches psi
    return model.train()


def _batches(rank: int):
    """Each rank its own images, so an unreduced gradient shows in the parameters."""
    g = torch.Generator().manual_seed(100 + rank)
    for _ in range(STEPS):
        x_s = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
        x_t = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
        target, weight = heatmap.encode(torch.rand(2, K, 2, generator=g) * 30, torch.ones(2, K),
                                        32, 16, 2.0)  # fmt: skip
        yield x_s, target, weight, x_t


def _train(model, sync) -> None:
    optimizers, _ = adaptation_optimizers(model, OptimConfig())
    step = RegDAStep(model, optimizers, margin=4.0, trade_off=1.0, sigma=2.0, sync=sync)
    rank = dist.get_rank()
    for x_s, target, weight, x_t in _batches(rank):
        step(x_s, target, weight, x_t)
        supervised_step(model, optimizers[0], x_s, target, weight, sync)


def _rank(rank: int, world: int, out: str) -> None:
    comm = Collectives(torch.device("cpu"))
    synchronous, overlapped = _model(), _model()
    _train(synchronous, comm.sync)
    sync = OverlappedSync(comm, overlapped, bucket_mb=0.02)
    _train(overlapped, sync)
    sync.close()
    torch.save(
        {name: p.detach() for name, p in overlapped.named_parameters()},
        Path(out) / f"rank{rank}.pt",
    )
    numel = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    model = overlapped
    per_iteration = (  # A: every part; B: head_adv; C: psi; supervised: psi (optimizer_f)
        numel(model.parameters()) + numel(model.head_adv.parameters())
        + 2 * numel(model.feature_parameters())
    )  # fmt: skip
    report = {
        "equal": all(
            torch.equal(a, b)
            for a, b in zip(synchronous.parameters(), overlapped.parameters(), strict=True)
        ),
        "stats": sync.stats,
        "reduced_bytes": 4 * STEPS * per_iteration,
        "overlap": sync.overlap(),
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def test_overlapped_all_reduce_gives_the_synchronous_parameters(tmp_path, spawn):
    spawn(_rank, str(tmp_path))
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["equal"], "overlapped and synchronous all-reduce trained differently"
        s = report["stats"]
        # exactly the gradients each step's optimisers update, all by the hooks
        assert s["backward_bytes"] + s["sync_bytes"] == report["reduced_bytes"]
        assert s["fallback_bytes"] == 0
        assert report["overlap"] > 0.5  # most of it launched while backward still ran
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in ranks[0].items():  # the workers hold the same model
        assert torch.equal(value, ranks[1][name]), name


def test_a_gradient_zeroed_in_place_is_reduced_at_sync_not_skipped():
    """The hooks reduce gradients that started from None; one zeroed in place (not set to
    None) is all-reduced at sync, synchronously: nothing sync is asked for is left unreduced.
    In this process's one-rank group, ended as tests/ranks.py ends its ranks' (no gloo thread
    left to abort pytest's exit)."""
    import torch._dynamo  # noqa: F401 - before the group exists (tests/ranks.py)

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        model = torch.nn.Linear(2, 1)
        sync = OverlappedSync(Collectives(torch.device("cpu")), model)
        params = list(model.parameters())
        model(torch.ones(1, 2)).sum().backward()
        sync(params)  # from None: by the hooks
        assert sync.stats["sync_bytes"] == 12 and sync.stats["fallback_bytes"] == 0
        for p in params:
            p.grad.zero_()  # in place: the next backward accumulates onto it
        model(torch.ones(1, 2)).sum().backward()
        sync(params)
        assert sync.stats["sync_bytes"] == 12 and sync.stats["fallback_bytes"] == 12
        sync.close()
        assert not any(p._post_accumulate_grad_hooks for p in params)
    finally:
        dist.destroy_process_group()
    assert not [name for name in threads() if name in GLOO_THREADS]
