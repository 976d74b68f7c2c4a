"""The pure-PyTorch trainer: phase 1 (supervised, source or oracle) and phase 2 (RegDA).

Side effects are callbacks (`add_callback("on_eval", fn)`): the loop has no branches for Ray,
TensorBoard or files. Distribution enters only through `Runtime` (device, rank, gradient sync).
"""

from __future__ import annotations

import copy
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from regda_dist.config import Config, ConfigError
from regda_dist.data import heatmap
from regda_dist.data.datasets import ImagesOnly, TaskData
from regda_dist.engine import checkpoint
from regda_dist.engine.collect import collect
from regda_dist.engine.evaluate import evaluate
from regda_dist.engine.loader import batches
from regda_dist.engine.steps import (
    RegDAStep,
    Sync,
    adaptation_optimizers,
    no_sync,
    sgd,
    supervised_step,
)
from regda_dist.models.backbones import list_backbones
from regda_dist.models.regda import RegDAModel, build_model
from regda_dist.proxies import create_proxy, list_proxies


@dataclass
class Runtime:
    """Where and how this process trains: one process by default, a Ray Train worker otherwise."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    sync: Sync = no_sync  # all-reduce the gradients of the parameters about to be stepped
    broadcast: Callable[[torch.nn.Module], None] = lambda module: None  # rank 0's tensors to all
    average: Callable[[dict], dict] = lambda values: values  # mean of logged values over workers
    agree: Callable[[object], object] = lambda value: value  # rank 0's value on every worker

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device: {name!r} is not a device (auto, cpu, cuda, cuda:N)"
        ) from None


def preflight(cfg: Config, num_keypoints: int) -> None:
    """Every check that needs more than the config file (registry, weights file, shapes,
    device), run where the command starts: before a run folder, data or Ray workers exist."""
    resolve_device(cfg.train.device)
    for name in cfg.train.proxies:
        if name not in list_proxies():
            raise ConfigError(
                f"train.proxies: unknown proxy {name!r}; registered: {', '.join(list_proxies())}"
            )
    Trainer(cfg, task=None, runtime=Runtime()).build_model(num_keypoints)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: Config, task: TaskData, runtime: Runtime | None = None):
        self.cfg, self.task = cfg, task
        self.runtime = runtime or Runtime(resolve_device(cfg.train.device))
        self.callbacks: dict[str, list[Callable]] = defaultdict(list)
        self.last_eval: dict | None = None  # eval_metrics of the final adaptation epoch

    def add_callback(self, event: str, fn: Callable) -> None:
        self.callbacks[event].append(fn)

    def trigger(self, event: str, **kwargs) -> None:
        for fn in self.callbacks[event]:
            fn(**kwargs)

    # ------------------------------------------------------------------------------------
    def build_model(self, num_keypoints: int | None = None) -> RegDAModel:
        c = self.cfg.regda
        warm = {
            "lo": c.warm_lo,
            "hi": c.warm_hi,
            "alpha": c.warm_alpha,
            "max_iters": c.warm_max_iters,
        }
        m = self.cfg.model
        if m.backbone not in list_backbones():
            known = ", ".join(list_backbones())
            raise ConfigError(
                f"model.backbone: unknown backbone {m.backbone!r}; registered: {known}"
            )
        try:
            k = num_keypoints or self.task.spec.num_keypoints
            model = build_model(m, k, warm)
        except ValueError as err:  # weights file that does not fit the backbone
            raise ConfigError(f"model.pretrained: {err}") from None
        d = self.cfg.data
        produced = d.image_size // model.backbone.stride * 2**m.num_deconv
        if produced != d.heatmap_size:
            raise ConfigError(
                f"data.heatmap_size is {d.heatmap_size} but {m.backbone} (stride "
                f"{model.backbone.stride}) with {m.num_deconv} deconvolutions at image_size "
                f"{d.image_size} produces {produced}"
            )
        if m.batchnorm == "sync" and self.runtime.world_size > 1:
            if self.runtime.device.type != "cuda":
                raise ConfigError("model.batchnorm 'sync' needs CUDA workers (scaling.use_gpu)")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.runtime.device)

    def train_mode(self, model: RegDAModel) -> RegDAModel:
        """model.train(), with BatchNorm held in eval mode when model.batchnorm is 'frozen'."""
        model.train()
        if self.cfg.model.batchnorm == "frozen":
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return model

    def _encode(self, kp, vis, sigma: float | None = None):
        d = self.cfg.data
        sigma = sigma or d.sigma
        target, weight = heatmap.encode(kp, vis, d.image_size, d.heatmap_size, sigma)
        return target.to(self.runtime.device), weight.to(self.runtime.device)

    def _batches(self, dataset, batch_size, iters, epoch, salt):
        rt = self.runtime
        if len(dataset) < batch_size * rt.world_size:  # a real dataset's split can be small
            raise ConfigError(
                f"a training split has {len(dataset)} samples, fewer than one global batch "
                f"({batch_size} x {rt.world_size} workers): lower the batch size"
            )
        return batches(
            dataset,
            batch_size,
            iters,
            self.cfg.train.seed * 7 + salt,
            epoch,
            rt.rank,
            rt.world_size,
        )

    def evaluate(self, model, dataset) -> dict[str, float]:
        """PCK on a labelled split (callers broadcast rank 0's model first)."""
        t = self.cfg.train
        return evaluate(
            model,
            dataset,
            self.task.spec,
            self.cfg.data.image_size,
            t.pck_threshold,
            t.eval_batch_size,
        )

    def _progress(self, total: int, desc: str):
        show = self.cfg.train.progress and self.runtime.is_main
        return tqdm(total=total, desc=desc, disable=not show, dynamic_ncols=True, leave=False)

    # ------------------------------------------------------------------------------------
    def pretrain(self, ckpt_path: Path, labelled: str = "source") -> tuple[RegDAModel, dict]:
        """Supervised training on a labelled train split ('source': phase 1; 'target': the
        oracle). Keeps the epoch with the best PCK on the same domain's val split."""
        p, phase = self.cfg.pretrain, "pretrain" if labelled == "source" else "oracle"
        train_set = getattr(
            self.task, f"{labelled}_train" if labelled == "source" else "target_train_labelled"
        )
        val_set = getattr(self.task, f"{labelled}_val")
        model = self.build_model()
        feature_lr = [
            {"params": list(model.backbone.parameters()), "lr": p.backbone_lr},
            {"params": [*model.upsampling.parameters(), *model.head.parameters()], "lr": p.lr},
        ]
        opt = sgd(feature_lr, self.cfg.optim)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, p.milestones, p.milestone_gamma)
        state = {"epoch": 0, "best": None, "best_pck": -1.0, "best_epoch": 0}
        if ckpt_path.is_file():
            state = self._restore(ckpt_path, model, [opt], [sched])
        self.runtime.broadcast(model)
        self.train_mode(model)
        for epoch in range(state["epoch"], p.epochs):
            bar = self._progress(p.iters_per_epoch, f"{phase} {epoch + 1}/{p.epochs}")
            total = 0.0
            for x, kp, vis in self._batches(train_set, p.batch_size, p.iters_per_epoch, epoch, 1):
                loss = supervised_step(
                    model,
                    opt,
                    x.to(self.runtime.device),
                    *self._encode(kp, vis),
                    sync=self.runtime.sync,
                )
                total += loss
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}")
            bar.close()
            sched.step()
            self.runtime.broadcast(model)  # every worker evaluates rank 0's BN statistics
            val = self.evaluate(model, val_set)
            metrics = self.runtime.average({f"{phase}/loss": total / p.iters_per_epoch})
            metrics.update({f"{phase}/val_pck": val["all"], "epoch": epoch + 1})
            if state["best"] is None or val["all"] > state["best_pck"]:  # NaN: keep the first
                state.update(
                    best=copy.deepcopy(model.state_dict()),
                    best_pck=val["all"],
                    best_epoch=epoch + 1,
                )
            state["epoch"] = epoch + 1
            self._checkpoint(ckpt_path, state, model, [opt], [sched])
            self.trigger("on_eval", phase=phase, epoch=epoch + 1, metrics=metrics)
        model.load_state_dict(state["best"])
        return model.eval(), {"best_epoch": state["best_epoch"], "best_val_pck": state["best_pck"]}

    def adapt(self, pretrained: dict, ckpt_path: Path) -> RegDAModel:
        """Phase 2: RegDA from the pretrained backbone + upsampling; both heads start fresh."""
        r = self.cfg.regda
        model = self.build_model()
        psi = {k: v for k, v in pretrained.items() if k.startswith(("backbone.", "upsampling."))}
        model.load_state_dict(psi, strict=False)
        optimizers, schedules = adaptation_optimizers(model, self.cfg.optim)
        step = RegDAStep(
            model, optimizers, r.margin, r.trade_off, self.cfg.adapt_sigma, self.runtime.sync
        )
        state = {"epoch": 0}
        if ckpt_path.is_file():
            state = self._restore(ckpt_path, model, optimizers, schedules)
        self.runtime.broadcast(model)
        self.train_mode(model)
        dev = self.runtime.device
        for epoch in range(state["epoch"], r.epochs):
            src = self._batches(self.task.source_train, r.batch_size, r.iters_per_epoch, epoch, 2)
            tgt = self._batches(self.task.target_train, r.batch_size, r.iters_per_epoch, epoch, 3)
            bar = self._progress(r.iters_per_epoch, f"regda {epoch + 1}/{r.epochs}")
            sums: dict[str, float] = defaultdict(float)
            started = time.perf_counter()
            for (x_s, kp_s, vis_s), x_t in zip(src, tgt, strict=True):
                logs = step(
                    x_s.to(dev), *self._encode(kp_s, vis_s, self.cfg.adapt_sigma), x_t.to(dev)
                )
                for s in schedules:
                    s.step()
                for k, v in logs.items():
                    sums[k] += v
                bar.update()
                bar.set_postfix(
                    loss_a=f"{logs['train/loss_a']:.3f}", loss_c=f"{logs['train/loss_c']:.3f}"
                )
            bar.close()
            seconds = time.perf_counter() - started  # training only: no evaluation, no checkpoint
            images = 2 * r.batch_size * self.runtime.world_size * r.iters_per_epoch
            state["epoch"] = epoch + 1
            self._checkpoint(ckpt_path, state, model, optimizers, schedules)
            metrics = self.runtime.average({k: v / r.iters_per_epoch for k, v in sums.items()})
            metrics.update({"time/epoch_s": seconds, "time/images_per_s": images / seconds})
            metrics.update(
                {
                    "train/lr_f": schedules[0].get_last_lr()[0],
                    "train/lr_h": schedules[1].get_last_lr()[0],
                    "epoch": epoch + 1,
                }
            )
            if (epoch + 1) % self.cfg.train.eval_every == 0 or epoch + 1 == r.epochs:
                evaluated = self.eval_metrics(model)
                metrics.update(evaluated)
                self.last_eval = evaluated if epoch + 1 == r.epochs else None
            self.trigger("on_eval", phase="adapt", epoch=epoch + 1, metrics=metrics)
        return model.eval()

    def proxy_metrics(self, model) -> dict[str, float]:
        """proxy/<name> for every configured proxy: source val (labelled) and target val seen
        through ImagesOnly, so no proxy can read a target label."""
        d, t = self.cfg.data, self.cfg.train
        proxies = [create_proxy(name) for name in t.proxies]
        splits = {s for p in proxies for s in p.splits}
        datasets = {
            "source_val": self.task.source_val,
            "target_val": ImagesOnly(self.task.target_val),
        }
        outputs = {
            name: collect(
                model,
                datasets[name],
                labelled=name.startswith("source"),
                image_size=d.image_size,
                sigma=d.sigma,
                threshold=t.pck_threshold * d.heatmap_size,
                batch_size=t.eval_batch_size,
            )
            for name in sorted(splits)
        }
        return {f"proxy/{p.name}": p(**outputs) for p in proxies}

    def eval_metrics(self, model) -> dict[str, float]:
        """source/pck* on the source test split; oracle/target_pck* on the labelled target test
        split (for evaluation only: nothing selects on it); proxy/* (no target labels). Every
        worker first gets rank 0's parameters and BN statistics (one broadcast)."""
        self.runtime.broadcast(model)
        out = self.proxy_metrics(model)
        for prefix, split in (
            ("source/pck", self.task.source_test),
            ("oracle/target_pck", self.task.target_test),
        ):
            for group, value in self.evaluate(model, split).items():
                out[prefix if group == "all" else f"{prefix}/{group}"] = value
        return out

    # ------------------------------------------------------------------------------------
    def _checkpoint(self, path, state, model, optimizers, schedules) -> None:
        if self.runtime.is_main:
            checkpoint.save(
                {
                    **state,
                    "model": model.state_dict(),
                    "optimizers": [o.state_dict() for o in optimizers],
                    "schedules": [s.state_dict() for s in schedules],
                    "rng": torch.get_rng_state(),
                },
                path,
            )

    def _restore(self, path, model, optimizers, schedules) -> dict:
        saved = checkpoint.load(path)
        try:
            model.load_state_dict(saved.pop("model"))
            for obj, s in zip(
                [*optimizers, *schedules],
                [*saved.pop("optimizers"), *saved.pop("schedules")],
                strict=True,
            ):
                obj.load_state_dict(s)
        except (KeyError, RuntimeError, ValueError) as err:
            raise checkpoint.CheckpointError(
                f"{path}: does not match this model/config ({err})"
            ) from None
        torch.set_rng_state(saved.pop("rng"))
        return saved
