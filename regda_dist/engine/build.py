"""The models a run trains, built for its runtime (checked, on its device, in its memory
format), and `preflight`: every check that needs more than the config file, run where a command
starts, before a run folder, data or Ray workers exist."""

from __future__ import annotations

import random

import torch

from regda_dist.config import Config, ConfigError
from regda_dist.engine.runtime import Runtime, resolve_device, resolve_precision
from regda_dist.models.backbones import list_backbones
from regda_dist.models.regda import RegDAModel, build_model
from regda_dist.proxies import list_proxies


def local_runtime(cfg: Config) -> Runtime:
    """The runtime of a single process: train.device and train.precision resolved."""
    device = resolve_device(cfg.train.device)
    return Runtime(device, precision=resolve_precision(cfg.train.precision, device))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def model_for(
    cfg: Config, runtime: Runtime, num_keypoints: int, head_layers: int | None = None
) -> RegDAModel:
    """The model of phase 2 (heads of model.num_head_layers), or with `head_layers`; the
    warm-start of its gradient layer from regda:, on the runtime's device."""
    c, m, d = cfg.regda, cfg.model, cfg.data
    warm = {"lo": c.warm_lo, "hi": c.warm_hi, "alpha": c.warm_alpha, "max_iters": c.warm_max_iters}
    if m.backbone not in list_backbones():
        known = ", ".join(list_backbones())
        raise ConfigError(f"model.backbone: unknown backbone {m.backbone!r}; registered: {known}")
    try:
        model = build_model(m, num_keypoints, warm, head_layers or m.num_head_layers)
    except ValueError as err:  # weights file that does not fit the backbone
        raise ConfigError(f"model.pretrained: {err}") from None
    produced = d.image_size // model.backbone.stride * 2**m.num_deconv
    if produced != d.heatmap_size:
        raise ConfigError(
            f"data.heatmap_size is {d.heatmap_size} but {m.backbone} (stride "
            f"{model.backbone.stride}) with {m.num_deconv} deconvolutions at image_size "
            f"{d.image_size} produces {produced}"
        )
    if m.batchnorm == "sync" and runtime.world_size > 1:
        if not runtime.cuda:
            raise ConfigError("model.batchnorm 'sync' needs CUDA workers (scaling.use_gpu)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory = torch.channels_last if runtime.cuda else torch.contiguous_format
    return model.to(runtime.device, memory_format=memory)


def train_mode(cfg: Config, model: RegDAModel) -> RegDAModel:
    """model.train(), with BatchNorm held in eval mode when model.batchnorm is 'frozen'."""
    model.train()
    if cfg.model.batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


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
    return model_for(cfg, cpu, num_keypoints)
