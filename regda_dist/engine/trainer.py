"""The pure-PyTorch trainer: the loop of phase 1 (supervised, source or oracle) and of phase 2
(adapt.method's step class, methods/).

Side effects are callbacks (`add_callback("on_eval", fn)`; `"on_adapt_model"` sees the model a
phase-2 evaluation reads): the loop has no branches for Ray, TensorBoard or files, nor for the
method. Distribution enters only through `Runtime` (device, rank, collectives). What is built
(engine/build.py), evaluated (engine/evaluator.py), selected (engine/selection.py) and
checkpointed (engine/checkpoint.py) lives beside it. Batches come from torch DataLoaders
(data/loader.py); heatmap labels are encoded on the device; losses stay on the device and are
read once per epoch.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim import Adam
from tqdm import tqdm

from regda_dist.config import Config, ConfigError
from regda_dist.data import heatmap
from regda_dist.data.datasets import TaskData
from regda_dist.data.loader import GlobalBatchSampler, LoaderBudget, loader_budget, make_loader
from regda_dist.engine import checkpoint, selection
from regda_dist.engine.batchnorm import PhaseTwoNorm, freeze
from regda_dist.engine.build import local_runtime, model_for, train_mode
from regda_dist.engine.console import Heartbeat
from regda_dist.engine.evaluate import Evaluation
from regda_dist.engine.evaluator import Evaluator
from regda_dist.engine.overlap import grad_sync
from regda_dist.engine.runtime import Runtime
from regda_dist.methods import get_method
from regda_dist.methods.base import sgd, supervised_step
from regda_dist.models.regda import RegDAModel


@dataclass
class Adapted:
    """What phase 2 leaves: the method's evaluated model as adapt.batchnorm evaluates the target
    at the last evaluation (what a run exports without selection), the last epoch's metrics,
    the epoch train.select_metric kept (None without one) and the last target predictions."""

    model: RegDAModel
    last: dict
    selected: dict | None
    coords: torch.Tensor


class Trainer:
    def __init__(self, cfg: Config, task: TaskData | None, runtime: Runtime | None = None):
        self.cfg, self.task = cfg, task
        self.runtime = runtime or local_runtime(cfg)
        self.callbacks: dict[str, list[Callable]] = defaultdict(list)
        t, rt = cfg.train, self.runtime
        budget = t.loader_workers if t.loader_workers >= 0 else loader_budget(rt.device, rt.cpus)
        self.loaders = LoaderBudget.split(budget)  # for all of this worker's loaders together
        sizes = (cfg.data.image_size, cfg.data.heatmap_size)
        self.eval = Evaluation(
            rt, t.eval_batch_size, self.loaders.evaluation, sizes, t.pck_threshold, t.pck_normalize
        )
        self.evaluator = Evaluator(cfg, task, self.eval)
        if task is not None:  # the evaluation pool starts once, serving every split
            # (source train: adapt.batchnorm target re-estimates the source's statistics on it)
            self.eval.pool.register(
                task.source_val, task.source_test, task.target_val, task.target_test,
                task.target_train, task.source_train,
            )  # fmt: skip
        if rt.cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels

    def add_callback(self, event: str, fn: Callable) -> None:
        self.callbacks[event].append(fn)

    def trigger(self, event: str, **kwargs) -> None:
        for fn in self.callbacks[event]:
            fn(**kwargs)

    def build_model(
        self, num_keypoints: int | None = None, head_layers: int | None = None
    ) -> RegDAModel:
        """The model of phase 2 on this runtime (engine/build.py), or with `head_layers`."""
        k = num_keypoints or self.task.spec.num_keypoints
        return model_for(self.cfg, self.runtime, k, head_layers)

    def build_phase1_model(self) -> RegDAModel:
        """The model phase 1 trains (its head: pretrain.head_layers)."""
        return self.build_model(head_layers=self.cfg.pretrain.head_layers or None)

    # ------------------------------------------------------------------------------------
    def _loader(self, dataset, batch_size: int, iters: int, salt: int, workers: int):
        """A training DataLoader with `workers` processes: this worker's slices of seeded global
        batches of `batch_size` (index, sample seed) items, so augmentation is per global sample
        (data/loader.py)."""
        rt = self.runtime
        if batch_size % rt.world_size:
            raise ConfigError(
                f"the global batch ({batch_size}) does not split evenly across "
                f"{rt.world_size} workers"
            )
        if len(dataset) < batch_size:  # a real dataset's split can be small
            raise ConfigError(
                f"a training split has {len(dataset)} samples, fewer than one global batch "
                f"({batch_size}): lower the batch size"
            )
        seed, share = self.cfg.train.seed * 7 + salt, batch_size // rt.world_size
        sampler = GlobalBatchSampler(len(dataset), share, iters, seed, rt.rank, rt.world_size)
        return make_loader(dataset, sampler, workers, rt.cuda)

    def _labels(self, kp, vis, sigma: float):
        """Label heatmaps and weights, encoded on the device."""
        d, rt = self.cfg.data, self.runtime
        kp, vis = rt.to_device(kp), rt.to_device(vis)
        return heatmap.encode(kp, vis, d.image_size, d.heatmap_size, sigma)

    def _epoch(
        self, loaders, step: Callable, iters: int, epoch: int, state: dict, save, desc: str
    ) -> dict[str, float]:
        """One epoch of `step` over the zipped loaders, from state["iteration"] (a resumed
        epoch); a checkpoint every train.checkpoint_every iterations; returns the epoch's mean
        logs over workers (the one read of the device per epoch)."""
        start, every = state.get("iteration", 0), self.cfg.train.checkpoint_every
        for loader in loaders:
            loader.batch_sampler.set_epoch(epoch, start)
        sums: dict = dict(state.get("sums", {}))
        show = self.cfg.train.progress and self.runtime.is_main
        bar = tqdm(total=iters, initial=start, desc=desc, disable=not show, dynamic_ncols=True,
                   leave=False)  # fmt: skip
        heartbeat = Heartbeat(desc, iters, bar.disable and self.runtime.is_main)
        for i, batch in enumerate(zip(*loaders, strict=True), start + 1):
            for key, value in step(*batch).items():
                sums[key] = sums[key] + value if key in sums else value
            bar.update()
            heartbeat(i)
            if every and i % every == 0 and i < iters:
                save({**state, "iteration": i, "sums": _floats(sums, self.runtime.device)})
        bar.close()
        state.update(iteration=0, sums={})
        means = self.runtime.comm.average({k: v / iters for k, v in sums.items()})
        return _floats(means, self.runtime.device)

    # ------------------------------------------------------------------------------------
    def pretrain(self, ckpt_path: Path, labelled: str = "source") -> tuple[RegDAModel, dict]:
        """Supervised training on a labelled train split ('source': phase 1; 'target': the
        oracle). Keeps the epoch with the best PCK on the same domain's val split."""
        p, phase = self.cfg.pretrain, "pretrain" if labelled == "source" else "oracle"
        train_set = getattr(
            self.task, f"{labelled}_train" if labelled == "source" else "target_train_labelled"
        )
        val_set = getattr(self.task, f"{labelled}_val")
        model = self.build_phase1_model()
        feature_lr = [
            {"params": list(model.backbone.parameters()), "lr": p.backbone_lr},
            {"params": [*model.upsampling.parameters(), *model.head.parameters()], "lr": p.lr},
        ]
        opt = sgd(feature_lr, self.cfg.optim) if p.optimizer == "sgd" else Adam(feature_lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, p.milestones, p.milestone_gamma)
        rt = self.runtime
        state = {"epoch": 0, "best": None, "best_pck": -1.0, "best_epoch": 0}
        if checkpoint.resumes(ckpt_path, rt):
            state = checkpoint.restore_training(ckpt_path, model, [opt], [sched])
        sync = grad_sync(rt, model, self.cfg.train.grad_bucket_mb)
        rt.comm.broadcast(model)
        train_mode(self.cfg, model)
        workers = self.loaders.source + self.loaders.target  # phase 1's one loader
        loader = self._loader(train_set, p.batch_size, p.iters_per_epoch, 1, workers)

        def step(batch):
            x, kp, vis = batch
            target, weight = self._labels(kp, vis, self.cfg.data.sigma)
            loss = supervised_step(model, opt, rt.to_device(x), target, weight, sync, rt.autocast)
            return {f"{phase}/loss": loss}

        def save(s):
            checkpoint.save_training(ckpt_path, s, model, [opt], [sched], rt)

        for epoch in range(state["epoch"], p.epochs):
            desc = f"{phase} {epoch + 1}/{p.epochs}"
            metrics = self._epoch([loader], step, p.iters_per_epoch, epoch, state, save, desc)
            sched.step()
            rt.comm.broadcast(model)  # every worker evaluates rank 0's BN statistics
            val = self.eval.pck(model, val_set, self.task.spec)
            metrics.update({f"{phase}/val_pck": val["all"], "epoch": epoch + 1})
            if state["best"] is None or val["all"] > state["best_pck"]:  # NaN: keep the first
                state.update(
                    best=copy.deepcopy(model.state_dict()),
                    best_pck=val["all"],
                    best_epoch=epoch + 1,
                )
            state["epoch"] = epoch + 1
            save(state)
            self.trigger("on_eval", phase=phase, epoch=epoch + 1, metrics=metrics)
        model.load_state_dict(state["best"])
        return model.eval(), {"best_epoch": state["best_epoch"], "best_val_pck": state["best_pck"]}

    def adapt(self, pretrained: dict, ckpt_path: Path) -> Adapted:
        """Phase 2 by adapt.method from the pretrained backbone + upsampling (and the main head
        where adapt.head_init resolves to phase1; else both heads start fresh)."""
        a, rt, sigma = self.cfg.adapt, self.runtime, self.cfg.adapt_sigma
        model, method, norm, state = self._start_adaptation(pretrained, ckpt_path)
        optimizers, schedules = method.optimizers, method.schedules
        n, load = a.iters_per_epoch, self.loaders
        source = self._loader(self.task.source_train, a.batch_size, n, 2, load.source)
        target_data = method.target_data(self.task.target_train)
        target = self._loader(target_data, a.batch_size, n, 3, load.target)

        def step(batch_s, batch_t):
            x_s, kp_s, vis_s = batch_s
            target_s, weight_s = self._labels(kp_s, vis_s, sigma)
            logs = method(rt.to_device(x_s), target_s, weight_s, _to_device(rt, batch_t))
            for s in schedules:
                s.step()
            return logs

        def save(s):
            extra = {**norm.state_dict(), **method.state_dict()}
            checkpoint.save_training(ckpt_path, {**s, **extra}, model, optimizers, schedules, rt)

        last = None
        for epoch in range(state["epoch"], a.epochs):
            started, done = time.perf_counter(), n - state.get("iteration", 0)
            desc = f"{a.method} {epoch + 1}/{a.epochs}"
            metrics = self._epoch([source, target], step, n, epoch, state, save, desc)
            seconds = time.perf_counter() - started  # training only: no evaluation, checkpoint
            state["epoch"] = epoch + 1
            metrics.update(
                {
                    "time/epoch_s": seconds,
                    "time/images_per_s": 2 * a.batch_size * done / seconds,
                    "train/lr_f": schedules[0].get_last_lr()[0],
                    "train/lr_h": schedules[1].get_last_lr()[0],
                    "epoch": epoch + 1,
                }
            )
            if (epoch + 1) % self.cfg.train.eval_every == 0 or epoch + 1 == a.epochs:
                evaluated = self._evaluate_epoch(method.evaluated, state, epoch + 1, metrics)
                last = evaluated if epoch + 1 == a.epochs else None
            started = time.perf_counter()
            save(state)
            metrics["time/checkpoint_s"] = time.perf_counter() - started  # rank 0 writes
            self.trigger("on_eval", phase="adapt", epoch=epoch + 1, metrics=metrics)
        if last is None:  # resumed after the last epoch: evaluate it again
            last = self.evaluator(method.evaluated)
        ev = self.evaluator
        return Adapted(ev.evaluated, last, state.get("selected"), ev.target_coords)

    def _start_adaptation(self, pretrained: dict, ckpt_path: Path):
        """Phase 2's model (the pretrained parts loaded), its method's step, adapt.batchnorm's
        handling and the state to go on from (restored from ckpt_path where rank 0 has it),
        every model on every worker as rank 0 has it, in train mode."""
        a, rt, cfg = self.cfg.adapt, self.runtime, self.cfg
        model = self.build_model()
        keep = ("backbone.", "upsampling.", *(("head.",) if cfg.adapt_head == "phase1" else ()))
        model.load_state_dict(
            {k: v for k, v in pretrained.items() if k.startswith(keep)}, strict=False
        )
        evaluator = self.evaluator
        evaluator.norm = norm = PhaseTwoNorm(a.batchnorm, evaluator.reestimate)
        sync = grad_sync(rt, model, cfg.train.grad_bucket_mb)
        method = get_method(a.method).step.from_config(model, cfg, rt, norm.domain, sync)
        if hasattr(method, "fit_source"):  # what it learns from labelled source (a pose prior)
            method.fit_source(self.task.source_val, self.task.spec)
        norm.attach(method.evaluated)
        state = {"epoch": 0, "selected": None}
        if checkpoint.resumes(ckpt_path, rt):
            state = checkpoint.restore_training(
                ckpt_path, model, method.optimizers, method.schedules
            )
            norm.load_state_dict(state)
            method.load_state_dict(state)
        for m in {id(x): x for x in (model, method.evaluated)}.values():
            rt.comm.broadcast(m)
            train_mode(cfg, m)
            if a.batchnorm == "frozen":
                freeze(m)
        return model, method, norm, state

    def _evaluate_epoch(self, evaluated_model, state: dict, epoch: int, metrics: dict) -> dict:
        """Evaluate the method's evaluated model, keep the epoch if it is the best by
        train.select_metric, and add both (and the time it took) to the epoch's metrics."""
        started = time.perf_counter()
        self.trigger("on_adapt_model", epoch=epoch, model=evaluated_model)
        ev = self.evaluator
        evaluated = ev(evaluated_model)
        metrics.update(evaluated, **{"time/eval_s": time.perf_counter() - started})
        kept = selection.offer(state, self.cfg.train.select_metric, epoch, evaluated,
                               ev.evaluated, ev.target_coords)  # fmt: skip
        metrics.update(kept)
        return evaluated


def _to_device(runtime: Runtime, batch):
    """A loader's batch (a tensor, or tuples / dicts of them) onto the device."""
    if isinstance(batch, torch.Tensor):
        return runtime.to_device(batch)
    if isinstance(batch, dict):
        return {k: _to_device(runtime, v) for k, v in batch.items()}
    return type(batch)(_to_device(runtime, v) for v in batch)


def _floats(values: dict, device: torch.device) -> dict[str, float]:
    """Logged values (0-dim device tensors or numbers) as floats, read in one transfer."""
    if not values:
        return {}
    keys = list(values)
    stacked = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float64, device=device) for k in keys]
    )
    return dict(zip(keys, stacked.tolist(), strict=True))
