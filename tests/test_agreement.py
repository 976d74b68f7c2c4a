"""Ranks decide together, shown in 2 real gloo processes with short collective timeouts:
whether a phase restores its checkpoint (rank 0's view: a rank that alone sees the file must not
resume on its own), and when the phase-1 cache lock is theirs (every rank waits with rank 0, so
no rank sits in a collective while another run holds the lock)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from regda_dist import config as C
from regda_dist.data.datasets import build_task
from regda_dist.engine import checkpoint, phase1
from regda_dist.engine.collectives import Collectives
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.trainer import Trainer


def _runtime(rank: int, world: int) -> Runtime:
    return Runtime(rank=rank, world_size=world, comm=Collectives(torch.device("cpu")))


def _adapt(rank: int, world: int, cfg_dict: dict, folder: str) -> None:
    """One rank of phase 2, whose run folder view (its own checkpoint path) is `rank<r>/`."""
    runtime = _runtime(rank, world)
    cfg = C.from_dict(cfg_dict)
    trainer = Trainer(cfg, build_task(cfg.data), runtime)
    start = torch.load(Path(folder) / "start.pt", weights_only=True)
    model = trainer.adapt(start, Path(folder) / f"rank{rank}" / "adapt.ckpt").model
    torch.save(model.state_dict(), Path(folder) / f"final{rank}.pt")


class _Stop(Exception):
    pass


def _stop_after_epoch_1(phase, epoch, metrics):
    if phase == "adapt" and epoch == 1:
        raise _Stop


def test_a_checkpoint_only_one_rank_sees_is_not_restored_by_that_rank_alone(
    tiny_cfg, tmp_path, spawn
):
    tiny_cfg.train.proxies = ["source_pck"]  # evaluation (last epoch only) is not the point
    tiny_cfg.train.eval_every = tiny_cfg.adapt.epochs
    trainer = Trainer(tiny_cfg, build_task(tiny_cfg.data))
    torch.manual_seed(0)
    start = trainer.build_model().state_dict()
    torch.save(start, tmp_path / "start.pt")
    # a run interrupted after epoch 1 left its checkpoint where only rank 1 looks
    trainer.add_callback("on_eval", _stop_after_epoch_1)
    with pytest.raises(_Stop):
        trainer.adapt(start, tmp_path / "rank1" / "adapt.ckpt")
    assert (tmp_path / "rank1" / "adapt.ckpt").is_file()
    assert not (tmp_path / "rank0").exists()
    # rank 0 sees no checkpoint: both start from epoch 0 (rank 1 resuming alone at epoch 1
    # ran one epoch fewer than rank 0, whose collectives then found no partner)
    spawn(_adapt, tiny_cfg.to_dict(), str(tmp_path), timeout_s=20)
    final = [torch.load(tmp_path / f"final{r}.pt", weights_only=True) for r in (0, 1)]
    total = tiny_cfg.adapt.epochs * tiny_cfg.adapt.iters_per_epoch
    assert int(final[0]["grl.iters"]) == int(final[1]["grl.iters"]) == total


def _phase1(rank: int, world: int, cfg_dict: dict, out: str) -> None:
    runtime = _runtime(rank, world)
    phase1.LOCK_POLL_S = 0.3  # the test's collective timeout is 2 s
    cfg = C.from_dict(cfg_dict)
    trainer = Trainer(cfg, build_task(cfg.data), runtime)
    Path(out, f"ready{rank}").touch()
    _, info = phase1.pretrained_source(trainer)
    Path(out, f"rank{rank}.json").write_text(json.dumps(info))


def test_every_rank_waits_for_the_phase1_lock_without_a_collective_timing_out(
    tiny_cfg, tmp_path, spawn
):
    """Another run holds the phase-1 lock until 6 s after both ranks are ready (3 x the 2 s
    collective timeout), then leaves its phase 1 in the cache: both ranks wait for it and then
    read it."""
    build_task(tiny_cfg.data)  # the data, once, before the ranks read it
    folder = phase1.phase1_cache(tiny_cfg).path
    folder.mkdir(parents=True)
    model = Trainer(tiny_cfg, task=None).build_model(21)
    locked = threading.Event()

    def other_run():  # holds the lock 8 s, computing "phase 1"
        with FileLock(folder / ".lock"):
            locked.set()
            deadline = time.monotonic() + 120  # a rank that failed early never gets ready
            while not all((tmp_path / f"ready{r}").exists() for r in (0, 1)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            time.sleep(6)
            checkpoint.save(model.state_dict(), folder / "model.pt")
            (folder / "info.json").write_text(json.dumps({"best_epoch": 1}))

    holder = threading.Thread(target=other_run)
    holder.start()
    assert locked.wait(30)
    try:
        spawn(_phase1, tiny_cfg.to_dict(), str(tmp_path), timeout_s=2)
    finally:
        holder.join()
    for rank in (0, 1):
        info = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert info == {"best_epoch": 1, "cached": True}


def _cached_phase1(rank: int, world: int, cfg_dict: dict, out: str) -> None:
    cfg = C.from_dict(cfg_dict)
    if rank == 1:  # this rank's view of the shared folder: rank 0's files show up late
        cfg.train.output_dir = str(Path(out) / "late")
    trainer = Trainer(cfg, build_task(cfg.data), _runtime(rank, world))
    Path(out, f"ready{rank}").touch()
    model, info = phase1.pretrained_source(trainer)
    found, coords = phase1.baselines(trainer, model)
    saved = {"info": info, "baselines": found, "coords": coords.tolist()}
    Path(out, f"rank{rank}.json").write_text(json.dumps(saved))


def test_files_rank_0_wrote_are_read_once_they_are_visible_on_the_other_ranks(
    tiny_cfg, tmp_path, spawn
):
    """Rank 0 finds the phase-1 cache and its baselines complete; on another node a shared
    folder may show them up to a minute later (NFS attribute caches). Rank 1 reads each one
    once it is visible there (folders.visible), not on rank 0's word alone: before, it failed
    on the first file it did not see yet."""
    trainer = Trainer(tiny_cfg, build_task(tiny_cfg.data))
    model, _ = phase1.pretrained_source(trainer)
    phase1.baselines(trainer, model)
    cache = phase1.phase1_cache(tiny_cfg).path
    late = tmp_path / "late" / cache.relative_to(tiny_cfg.train.output_dir)

    def show_late():  # each file appears whole (as a rename does), 2 s after rank 1 is ready
        deadline = time.monotonic() + 120  # a rank that failed early never gets ready
        while not (tmp_path / "ready1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)
        late.mkdir(parents=True, exist_ok=True)
        for f in sorted(p for p in cache.iterdir() if p.is_file()):
            shutil.copyfile(f, late / f".{f.name}.part")
            (late / f".{f.name}.part").replace(late / f.name)

    copier = threading.Thread(target=show_late)
    copier.start()
    try:
        spawn(_cached_phase1, tiny_cfg.to_dict(), str(tmp_path), timeout_s=30)
    finally:
        copier.join()
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert seen[0] == seen[1] and seen[0]["info"]["cached"] is True
    assert set(seen[0]["baselines"]) == {"source_only", "adabn"}
