"""The pure-PyTorch trainer: phase 1 (supervised, source or oracle) and phase 2 (RegDA).

Side effects are callbacks (`add_callback("on_eval", fn)`): the loop has no branches for Ray,
TensorBoard or files. Distribution enters only through `Runtime` (device, rank, collectives).
Batches come from torch DataLoaders (data/loader.py); heatmap labels are encoded on the device;
losses stay on the device and are read once per epoch.
"""

from __future__ import annotations

import copy
import random
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.optim import Adam
from tqdm import tqdm

from regda_dist.config import Config, ConfigError
from regda_dist.data import heatmap
from regda_dist.data.datasets import ImagesOnly, TaskData
from regda_dist.data.loader import GlobalBatchSampler, LoaderBudget, loader_budget, make_loader
from regda_dist.engine import checkpoint
from regda_dist.engine.batchnorm import PhaseTwoNorm, freeze
from regda_dist.engine.collect import collect
from regda_dist.engine.console import Heartbeat
from regda_dist.engine.evaluate import Evaluation
from regda_dist.engine.overlap import grad_sync
from regda_dist.engine.runtime import Runtime, resolve_device, resolve_precision
from regda_dist.engine.steps import create_step, sgd, supervised_step
from regda_dist.models.backbones import list_backbones
from regda_dist.models.regda import RegDAModel, build_model
from regda_dist.proxies import create_proxy, list_proxies

__all__ = ["Runtime", "Trainer", "local_runtime", "preflight", "seed_everything"]


def local_runtime(cfg: Config) -> Runtime:
    """The runtime of a single process: train.device and train.precision resolved."""
    device = resolve_device(cfg.train.device)
    return Runtime(device, precision=resolve_precision(cfg.train.precision, device))


def preflight(cfg: Config, num_keypoints: int) -> RegDAModel:
    """Every check that needs more than the config file (registry, weights file, shapes,
    device), run where the command starts: before a run folder, data or Ray workers exist.
    Returns the model it checked, built on the CPU: the driver of a search lives as long as
    the search and must hold no GPU memory (nor a CUDA context) that its workers need."""
    for name in cfg.train.proxies:
        if name not in list_proxies():
            raise ConfigError(
                f"train.proxies: unknown proxy {name!r}; registered: {', '.join(list_proxies())}"
            )
    selectable = [f"proxy/{name}" for name in cfg.train.proxies] + ["oracle/target_pck"]
    if cfg.train.select_metric not in ("", *selectable):
        raise ConfigError(
            f"train.select_metric: {cfg.train.select_metric!r} is not computed; one of "
            f"{', '.join(selectable)} (or '' for the last epoch)"
        )
    resolve_device(cfg.train.device)  # the device must exist here (one line otherwise)
    cpu = Runtime(torch.device("cpu"), precision="fp32")
    return Trainer(cfg, task=None, runtime=cpu).build_model(num_keypoints)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, cfg: Config, task: TaskData, runtime: Runtime | None = None):
        self.cfg, self.task = cfg, task
        self.runtime = runtime or local_runtime(cfg)
        self.callbacks: dict[str, list[Callable]] = defaultdict(list)
        self.last_eval: dict | None = None  # eval_metrics of the final adaptation epoch
        self.selected: dict | None = None  # the epoch chosen by train.select_metric (adapt)
        self.target_coords: torch.Tensor | None = None  # (N, K, 2) of the last evaluation
        self.norm: PhaseTwoNorm | None = None  # adapt.batchnorm of phase 2 (set by adapt)
        self.evaluated: RegDAModel | None = None  # the target's model of the last evaluation
        t, rt = cfg.train, self.runtime
        budget = t.loader_workers if t.loader_workers >= 0 else loader_budget(rt.device, rt.cpus)
        self.loaders = LoaderBudget.split(budget)  # for all of this worker's loaders together
        sizes = (cfg.data.image_size, cfg.data.heatmap_size)
        self.eval = Evaluation(
            rt, t.eval_batch_size, self.loaders.evaluation, sizes, t.pck_threshold, t.pck_normalize
        )
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

    # ------------------------------------------------------------------------------------
    def build_model(
        self, num_keypoints: int | None = None, head_layers: int | None = None
    ) -> RegDAModel:
        """The model of phase 2 (heads of model.num_head_layers), or with `head_layers`."""
        c, m, d = self.cfg.regda, self.cfg.model, self.cfg.data
        warm = {
            "lo": c.warm_lo,
            "hi": c.warm_hi,
            "alpha": c.warm_alpha,
            "max_iters": c.warm_max_iters,
        }
        if m.backbone not in list_backbones():
            known = ", ".join(list_backbones())
            raise ConfigError(
                f"model.backbone: unknown backbone {m.backbone!r}; registered: {known}"
            )
        try:
            k = num_keypoints or self.task.spec.num_keypoints
            model = build_model(m, k, warm, head_layers or m.num_head_layers)
        except ValueError as err:  # weights file that does not fit the backbone
            raise ConfigError(f"model.pretrained: {err}") from None
        produced = d.image_size // model.backbone.stride * 2**m.num_deconv
        if produced != d.heatmap_size:
            raise ConfigError(
                f"data.heatmap_size is {d.heatmap_size} but {m.backbone} (stride "
                f"{model.backbone.stride}) with {m.num_deconv} deconvolutions at image_size "
                f"{d.image_size} produces {produced}"
            )
        rt = self.runtime
        if m.batchnorm == "sync" and rt.world_size > 1:
            if not rt.cuda:
                raise ConfigError("model.batchnorm 'sync' needs CUDA workers (scaling.use_gpu)")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        memory = torch.channels_last if rt.cuda else torch.contiguous_format
        return model.to(rt.device, memory_format=memory)

    def build_phase1_model(self) -> RegDAModel:
        """The model phase 1 trains (its head: pretrain.head_layers)."""
        return self.build_model(head_layers=self.cfg.pretrain.head_layers or None)

    def train_mode(self, model: RegDAModel) -> RegDAModel:
        """model.train(), with BatchNorm held in eval mode when model.batchnorm is 'frozen'."""
        model.train()
        if self.cfg.model.batchnorm == "frozen":
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return model

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

    def _progress(self, total: int, initial: int, desc: str):
        show = self.cfg.train.progress and self.runtime.is_main
        return tqdm(
            total=total,
            initial=initial,
            desc=desc,
            disable=not show,
            dynamic_ncols=True,
            leave=False,
        )

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
        bar = self._progress(iters, start, desc)
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
        state = {"epoch": 0, "best": None, "best_pck": -1.0, "best_epoch": 0}
        if self._resumes(ckpt_path):
            state = self._restore(ckpt_path, model, [opt], [sched])
        rt, sync = self.runtime, grad_sync(self.runtime, model, self.cfg.train.grad_bucket_mb)
        rt.comm.broadcast(model)
        self.train_mode(model)
        workers = self.loaders.source + self.loaders.target  # phase 1's one loader
        loader = self._loader(train_set, p.batch_size, p.iters_per_epoch, 1, workers)

        def step(batch):
            x, kp, vis = batch
            target, weight = self._labels(kp, vis, self.cfg.data.sigma)
            loss = supervised_step(model, opt, rt.to_device(x), target, weight, sync, rt.autocast)
            return {f"{phase}/loss": loss}

        def save(s):
            self._checkpoint(ckpt_path, s, model, [opt], [sched])

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

    def adapt(self, pretrained: dict, ckpt_path: Path) -> RegDAModel:
        """Phase 2 by adapt.method from the pretrained backbone + upsampling (and the main head
        where adapt.head_init resolves to phase1; else both heads start fresh). Returns the
        method's evaluated model (RegDA's own, a mean teacher's teacher) as adapt.batchnorm
        evaluates the target at the last evaluation: what a run exports."""
        r, a, rt, sigma = self.cfg.regda, self.cfg.adapt, self.runtime, self.cfg.adapt_sigma
        model = self.build_model()
        keep = (
            "backbone.",
            "upsampling.",
            *(("head.",) if self.cfg.adapt_head == "phase1" else ()),
        )
        model.load_state_dict(
            {k: v for k, v in pretrained.items() if k.startswith(keep)}, strict=False
        )
        self.norm = norm = PhaseTwoNorm(a.batchnorm, self._reestimate)
        sync = grad_sync(rt, model, self.cfg.train.grad_bucket_mb)
        method = create_step(a.method, model, self.cfg, rt, norm.domain, sync)
        norm.attach(method.evaluated)
        optimizers, schedules = method.optimizers, method.schedules
        state = {"epoch": 0, "selected": None}
        if self._resumes(ckpt_path):
            state = self._restore(ckpt_path, model, optimizers, schedules)
            norm.load_state_dict(state)
            method.load_state_dict(state)
        for m in {id(x): x for x in (model, method.evaluated)}.values():
            rt.comm.broadcast(m)
            self.train_mode(m)
            if a.batchnorm == "frozen":
                freeze(m)
        n, load = r.iters_per_epoch, self.loaders
        source = self._loader(self.task.source_train, r.batch_size, n, 2, load.source)
        target_data = method.target_data(self.task.target_train)
        target = self._loader(target_data, r.batch_size, n, 3, load.target)

        def step(batch_s, batch_t):
            x_s, kp_s, vis_s = batch_s
            target_s, weight_s = self._labels(kp_s, vis_s, sigma)
            logs = method(rt.to_device(x_s), target_s, weight_s, _to_device(rt, batch_t))
            for s in schedules:
                s.step()
            return logs

        def save(s):
            extra = {**norm.state_dict(), **method.state_dict()}
            self._checkpoint(ckpt_path, {**s, **extra}, model, optimizers, schedules)

        for epoch in range(state["epoch"], r.epochs):
            started, done = time.perf_counter(), r.iters_per_epoch - state.get("iteration", 0)
            desc = f"regda {epoch + 1}/{r.epochs}"
            metrics = self._epoch(
                [source, target], step, r.iters_per_epoch, epoch, state, save, desc
            )
            seconds = time.perf_counter() - started  # training only: no evaluation, checkpoint
            state["epoch"] = epoch + 1
            metrics.update(
                {
                    "time/epoch_s": seconds,
                    "time/images_per_s": 2 * r.batch_size * done / seconds,
                    "train/lr_f": schedules[0].get_last_lr()[0],
                    "train/lr_h": schedules[1].get_last_lr()[0],
                    "epoch": epoch + 1,
                }
            )
            if (epoch + 1) % self.cfg.train.eval_every == 0 or epoch + 1 == r.epochs:
                started = time.perf_counter()
                evaluated = self.eval_metrics(method.evaluated)
                metrics.update(evaluated, **{"time/eval_s": time.perf_counter() - started})
                self.last_eval = evaluated if epoch + 1 == r.epochs else None
                self._select(state, epoch + 1, evaluated, metrics)
            started = time.perf_counter()
            save(state)
            metrics["time/checkpoint_s"] = time.perf_counter() - started  # rank 0 writes
            self.trigger("on_eval", phase="adapt", epoch=epoch + 1, metrics=metrics)
        self.selected = state.get("selected")
        if self.last_eval is None:  # resumed after the last epoch: evaluate it again
            self.last_eval = self.eval_metrics(method.evaluated)
        return self.evaluated

    def _reestimate(self, model, domain: str):
        """A copy of `model` with BatchNorm statistics re-estimated on `domain`'s un-augmented
        train images (AdaBN on the current weights)."""
        images = (
            ImagesOnly(self.task.source_train) if domain == "source" else self.task.target_train
        )
        limit = self.cfg.adapt.reestimate_images
        return self.eval.adabn(model, images, self.cfg.train.seed, limit)

    def _select(self, state: dict, epoch: int, evaluated: dict, metrics: dict) -> None:
        """Keep the epoch with the best train.select_metric (higher is better; NaN never wins)
        and log best/<metric> (best so far) and best/epoch. The weights kept are the evaluated
        target model's (its BatchNorm statistics as adapt.batchnorm evaluates the target)."""
        key = self.cfg.train.select_metric
        if not key:
            return
        best, value = state.get("selected"), evaluated.get(key, float("nan"))
        if value == value and (best is None or value > best["value"]):
            model = self.evaluated
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best = {
                "epoch": epoch,
                "metric": key,
                "value": value,
                "metrics": evaluated,
                "weights": weights,
                "coords": self.target_coords,  # target val predictions (consensus)
            }
            state["selected"] = best
        if best is not None:
            metrics.update(best_logs(best))

    def proxy_metrics(self, models: dict) -> dict[str, float]:
        """proxy/<name> (and diag/<name>/<diagnostic>) for every configured proxy: source val
        (labelled) and target val seen through ImagesOnly, so no proxy can read a target label;
        `models` maps each domain to the model its split is evaluated with. The target
        predictions are kept (target_coords: the consensus of a search reads them)."""
        proxies = [create_proxy(name) for name in self.cfg.train.proxies]
        splits = {s for p in proxies for s in p.splits} | {"target_val"}
        datasets = {
            "source_val": self.task.source_val,
            "target_val": ImagesOnly(self.task.target_val),
        }
        sigma, spec = self.cfg.data.sigma, self.task.spec
        outputs = {
            name: collect(
                models[name.split("_")[0]],
                data,
                self.eval,
                labelled=name.startswith("source"),
                sigma=sigma,
                spec=spec,
            )  # fmt: skip
            for name, data in datasets.items()
            if name in splits
        }
        self.target_coords = outputs["target_val"].coords.to(torch.int16)
        out = {}
        for p in proxies:
            out[f"proxy/{p.name}"] = p(**outputs)
            out.update({f"diag/{p.name}/{k}": v for k, v in p.diagnostics.items()})
        return out

    def eval_metrics(self, model) -> dict[str, float]:
        """Every worker first gets rank 0's parameters and BatchNorm statistics (broadcast);
        then each domain is evaluated with the model adapt.batchnorm gives it in phase 2 (the
        model itself outside phase 2). The target's is kept as `evaluated`."""
        self.runtime.comm.broadcast(model)
        if self.norm is None:
            models = {"source": model, "target": model}
        else:
            self.norm.broadcast(self.runtime.comm)
            models = self.norm.models(model)
        self.evaluated = models["target"]
        return self.evaluate(models)

    def evaluate(self, models: dict) -> dict[str, float]:
        """source/pck* on the source test split and the source proxies with models["source"];
        oracle/target_pck* on the labelled target test split (for evaluation only: nothing
        selects on it) and the target proxies with models["target"]. Callers make the models
        the same on every worker."""
        out = self.proxy_metrics(models)
        for prefix, domain, split in (
            ("source/pck", "source", self.task.source_test),
            ("oracle/target_pck", "target", self.task.target_test),
        ):
            for group, value in self.eval.pck(models[domain], split, self.task.spec).items():
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

    def _resumes(self, path: Path) -> bool:
        """Whether a phase restores its checkpoint `path`: rank 0 decides for every rank. Ranks
        that saw the file differently (NFS attribute caches) would train different epochs and
        hang in their collectives."""
        return self.runtime.comm.agree(path.is_file())

    def _restore(self, path, model, optimizers, schedules) -> dict:
        checkpoint.wait_visible(path)  # rank 0 saw it; a shared folder may show it later here
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


def _to_device(runtime: Runtime, batch):
    """A loader's batch (a tensor, or tuples / dicts of them) onto the device."""
    if isinstance(batch, torch.Tensor):
        return runtime.to_device(batch)
    if isinstance(batch, dict):
        return {k: _to_device(runtime, v) for k, v in batch.items()}
    return type(batch)(_to_device(runtime, v) for v in batch)


def best_logs(selected: dict) -> dict:
    """best/<metric> and best/epoch of a selected epoch: what the logs, Tune and Optuna see."""
    return {f"best/{selected['metric']}": selected["value"], "best/epoch": selected["epoch"]}


def _floats(values: dict, device: torch.device) -> dict[str, float]:
    """Logged values (0-dim device tensors or numbers) as floats, read in one transfer."""
    if not values:
        return {}
    keys = list(values)
    stacked = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float64, device=device) for k in keys]
    )
    return dict(zip(keys, stacked.tolist(), strict=True))
