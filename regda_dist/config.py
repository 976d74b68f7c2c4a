"""Typed configuration: dataclasses with the reference defaults, and a strict loader.

An experiment YAML (read by config_yaml) holds only overrides of these defaults. Unknown keys,
wrong types, out-of-range and non-finite values raise ConfigError with one line naming the key,
the file and the line.
It imports one module of data/, keypoints (plain value types that import nothing else of the
project), to check data.keypoints and a set defined in YAML where they are written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regda_dist.config_yaml import ConfigError, nest, parse_override, read_yaml  # also C.<name>
from regda_dist.data.keypoints import CUSTOM, FROM_DATA, KeypointError, define, list_keypoint_sets


def _range(lo=None, hi=None, choices=None):
    return {"min": lo, "max": hi, "choices": choices}


@dataclass
class DomainConfig:
    """One domain read from disk: a registered reader (`regda-dist data check --help` lists them)
    and the folder holding the dataset's public layout."""

    dataset: str = ""  # rhd, h3d, freihand, surreal, surreal_faithful, lsp, human36m, coco
    root: str = ""
    augment: bool = True  # apply data.augment to this domain's train split (when configured)
    # coco: the categories this domain reads, by name (text) or id (integer), e.g. one species
    # of a file that has several sharing one keypoint set; [] = every category with keypoints
    categories: list = field(default_factory=list)


@dataclass
class AugmentConfig:
    """Keypoint-aware training augmentation (train splits only); the defaults do nothing."""

    rotation: float = field(default=0.0, metadata=_range(0.0, 180.0))  # degrees, U(-r, r)
    scale_min: float = field(default=1.0, metadata=_range(0.1, 4.0))  # square crop area scale
    scale_max: float = field(default=1.0, metadata=_range(0.1, 4.0))
    color_jitter: float = field(default=0.0, metadata=_range(0.0, 1.0))  # brightness etc. 1+-j
    blur: float = field(default=0.0, metadata=_range(0.0, 10.0))  # max Gaussian blur radius, px


@dataclass
class KeypointSetConfig:
    """A keypoint set defined in the experiment, used with data.keypoints: custom. Groups, bones
    and flip pairs give keypoints by name or 0-based index; the group "all" (PCK's headline) is
    every keypoint unless given."""

    name: str = CUSTOM
    names: list = field(default_factory=list)  # heatmap order; numbers are read as names ("1")
    groups: dict = field(default_factory=dict)  # PCK groups: {group: [keypoint, ...]}
    skeleton: list = field(default_factory=list)  # bones [[a, b], ...] (drawings, pose prior)
    flip_pairs: list = field(default_factory=list)  # [[left, right], ...] swapped by a flip


@dataclass
class DataConfig:
    # A synthetic task, or "" for real datasets named by `source` and `target`.
    task: str = field(
        default="synth_hand", metadata=_range(choices=("synth_hand", "synth_body", ""))
    )
    root: str = ""  # cache of generated data; "" = $REGDA_DIST_CACHE or ~/.cache/regda-dist
    image_size: int = field(default=256, metadata=_range(16, 1024))
    heatmap_size: int = field(default=64, metadata=_range(4, 512))
    sigma: float = field(default=2.0, metadata=_range(0.25, 16))  # label Gaussian, heatmap px
    num_train: int = field(default=4000, metadata=_range(1))  # synthetic images per domain
    num_val: int = field(default=500, metadata=_range(1))
    num_test: int = field(default=500, metadata=_range(1))
    seed: int = field(default=0, metadata=_range(0))  # data generation seed (not training seed)
    # Real datasets (task ""): the keypoint set. "" = the datasets' own (rhd: hand21); a
    # registered set (hand21, body16); from_data = the COCO categories of the source's train.json;
    # custom = the set defined in data.keypoint_set. COCO files map onto it by name (or alias).
    keypoints: str = ""
    keypoint_set: KeypointSetConfig = field(default_factory=KeypointSetConfig)
    # With a registered set (hand21, body16): the share of its keypoints a COCO file's names
    # must label (by name or alias), else data check, train and tune stop; 0 = any match.
    min_keypoint_match: float = field(default=0.5, metadata=_range(0.0, 1.0))
    source: DomainConfig = field(default_factory=DomainConfig)
    target: DomainConfig = field(default_factory=DomainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    backbone: str = "resnet101"
    pretrained: str = ""  # local ImageNet weights file for the backbone; "" = random init
    upsample_channels: int = field(default=256, metadata=_range(1))
    num_deconv: int = field(default=3, metadata=_range(0, 6))
    num_head_layers: int = field(default=2, metadata=_range(1, 8))
    # train: BN in train mode in every pass (the reference; per-worker statistics under several
    # workers); frozen: BN always uses running statistics, affine weights still train;
    # sync: SyncBatchNorm across workers (CUDA only).
    batchnorm: str = field(default="train", metadata=_range(choices=("train", "frozen", "sync")))


@dataclass
class OptimConfig:
    """SGD of phase 2 (adaptation): backbone_lr for psi (backbone + upsampling), lr for head and
    head_adv, each multiplied by (1 + lr_gamma * i)^(-lr_decay). momentum, weight_decay and
    nesterov are shared with phase 1."""

    lr: float = field(default=0.1, metadata=_range(0.0))
    backbone_lr: float = field(default=0.01, metadata=_range(0.0))
    momentum: float = field(default=0.9, metadata=_range(0.0, 1.0))
    weight_decay: float = field(default=1e-4, metadata=_range(0.0))
    nesterov: bool = True
    lr_gamma: float = field(default=1e-4, metadata=_range(0.0))
    lr_decay: float = field(default=0.75, metadata=_range(0.0))


@dataclass
class PretrainConfig:
    """Phase 1, source-only (also the recipe of the oracle baseline on target labels).
    lr for upsampling + head, backbone_lr for the backbone; x milestone_gamma at milestones.
    optimizer sgd: the reference's RegDA phase 1 (momentum, nesterov and weight decay of optim);
    adam: the reference's ERM baseline recipe (Adam, no weight decay; lr 1e-3 there)."""

    optimizer: str = field(default="sgd", metadata=_range(choices=("sgd", "adam")))
    epochs: int = field(default=70, metadata=_range(1))
    iters_per_epoch: int = field(default=500, metadata=_range(1))
    batch_size: int = field(default=32, metadata=_range(1))  # global: split across the workers
    lr: float = field(default=0.1, metadata=_range(0.0))
    backbone_lr: float = field(default=0.01, metadata=_range(0.0))
    milestones: list[int] = field(default_factory=lambda: [45, 60])  # epochs
    milestone_gamma: float = field(default=0.1, metadata=_range(0.0, 1.0))
    # layers of the head phase 1 trains: 0 = model.num_head_layers (the head phase 2 uses);
    # 1 = a single 1x1 convolution (the reference's phase 1)
    head_layers: int = field(default=0, metadata=_range(0, 8))


@dataclass
class RegDAConfig:
    """Phase 2, adaptation."""

    epochs: int = field(default=30, metadata=_range(0))
    iters_per_epoch: int = field(default=500, metadata=_range(1))
    batch_size: int = field(default=32, metadata=_range(1))  # global, per domain (split)
    margin: float = field(default=4.0, metadata=_range(0.0))
    trade_off: float = field(default=1.0, metadata=_range(0.0))
    warm_lo: float = field(default=0.0, metadata=_range(0.0))
    warm_hi: float = field(default=0.1, metadata=_range(0.0))
    warm_alpha: float = field(default=1.0, metadata=_range(0.0))
    warm_max_iters: int = field(default=1000, metadata=_range(1))
    # Gaussian sigma (heatmap px) of the phase-2 source labels and pseudo labels; 0 = data.sigma.
    # Separate from data.sigma (a phase-1 field) so a search over it shares one phase 1.
    sigma: float = field(default=0.0, metadata=_range(0.0, 16))


ADAPTERS = ("regda", "mean_teacher", "regda+mean_teacher")  # adapt.method: phase 2 trains
BASELINES = ("source_only", "adabn")  # adapt.method: no phase 2
REGDA_HEAD_INIT = "phase1"  # adapt.head_init auto for RegDA: benchmarks/results/ablation.md


@dataclass
class AdaptConfig:
    """Phase 2 beyond the schedule (regda:): how it starts and how BatchNorm is handled."""

    # regda (RegDA's steps A, B, C), mean_teacher (an EMA teacher's pseudo heatmaps on weak
    # views taught to the student on strong views, plus the source loss: mean_teacher:), or
    # regda+mean_teacher (RegDA's steps with the consistency loss added to step A); or a
    # baseline, source_only or adabn: no phase 2, the run is phase 1's model (with the target's
    # BatchNorm statistics for adabn): what `export` writes when a baseline beats every trial
    method: str = field(default="regda", metadata=_range(choices=(*ADAPTERS, *BASELINES)))
    # which running statistics each domain is evaluated and exported with (engine/batchnorm.py):
    # mixed (the reference: what training left, source and target passes mixed), target
    # (the default: re-estimated on each domain's un-augmented train images before every
    # evaluation; benchmarks/results/ablation.md), domain (tracked per domain during
    # training), frozen (BatchNorm uses running statistics in every pass)
    batchnorm: str = field(
        default="target", metadata=_range(choices=("mixed", "target", "domain", "frozen"))
    )
    # the main head of phase 2: fresh (the reference), phase 1's trained head (same layers),
    # or auto (Config.adapt_head): phase 1's for a mean teacher (its teacher starts as the
    # source model); for RegDA, REGDA_HEAD_INIT where phase 1 trains the same head, else fresh
    head_init: str = field(default="auto", metadata=_range(choices=("auto", "fresh", "phase1")))
    # adapt.batchnorm target: re-estimate on at most this many of each domain's train images
    # (a seeded random subset; 0 = all of them). Every evaluation pays it: cap it on large sets
    reestimate_images: int = field(default=0, metadata=_range(0))


@dataclass
class MeanTeacherConfig:
    """The mean teacher of adapt.method mean_teacher and regda+mean_teacher (after Kim et al.,
    ECCV 2022): the teacher is an exponential moving average of the student; it predicts on
    `views` weak views of each target image, its heatmaps are mapped back and averaged; the
    most confident `keep` fraction of the batch's keypoints become pseudo labels, which the
    student must reproduce on a strong view of the same image (geometry, colour, blur, and a
    patch pasted over a confident keypoint). The teacher is what is evaluated and exported."""

    ema_decay: float = field(default=0.999, metadata=_range(0.0, 0.99999))
    views: int = field(default=2, metadata=_range(1, 8))
    keep: float = field(default=0.5, metadata=_range(0.01, 1.0))
    weight: float = field(default=1.0, metadata=_range(0.0))  # of the consistency loss
    rampup_iters: int = field(default=1000, metadata=_range(0))  # sigmoid ramp-up of weight
    weak_rotation: float = field(default=15.0, metadata=_range(0.0, 180.0))  # degrees
    weak_zoom: float = field(default=0.1, metadata=_range(0.0, 0.9))  # 1 +- this
    strong_rotation: float = field(default=30.0, metadata=_range(0.0, 180.0))
    strong_zoom: float = field(default=0.25, metadata=_range(0.0, 0.9))
    shift: float = field(default=0.05, metadata=_range(0.0, 0.5))  # of the image, both views
    color_jitter: float = field(default=0.25, metadata=_range(0.0, 1.0))  # strong view
    blur: float = field(default=1.0, metadata=_range(0.0, 10.0))  # px, strong view
    occlusion: float = field(default=0.5, metadata=_range(0.0, 1.0))  # probability per image
    occlusion_size: float = field(default=0.15, metadata=_range(0.01, 1.0))  # of the image


@dataclass
class ScalingConfig:
    """Ray Train: data-parallel workers. A phase's batch_size is the global batch, split evenly
    across them (per-worker batch = batch_size / num_workers), at the configured learning rates:
    the same experiment at any worker count."""

    num_workers: int = field(default=1, metadata=_range(1))
    use_gpu: bool = False
    cpus_per_worker: float = field(default=1.0, metadata=_range(0.01))
    # GPUs each worker reserves when use_gpu; a fraction (0.25) runs several small trials per
    # GPU (Ray: amounts above 1 must be whole numbers)
    gpus_per_worker: float = field(default=1.0, metadata=_range(0.01))
    max_failures: int = field(default=2, metadata=_range(-1))  # -1: retry forever


@dataclass
class TrainConfig:
    seed: int = field(default=0, metadata=_range(0))
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: str = "runs"
    eval_every: int = field(default=1, metadata=_range(1))  # epochs
    eval_batch_size: int = field(default=64, metadata=_range(1))
    num_threads: int = field(default=0, metadata=_range(0))  # torch CPU threads; 0 = torch default
    # PCK radius: pck_threshold x the heatmap size ('heatmap', the reference's PCK@0.05) or x the
    # longer side of each sample's keypoint box ('bbox', COCO-style)
    pck_threshold: float = field(default=0.05, metadata=_range(0.0, 1.0))
    pck_normalize: str = field(default="heatmap", metadata=_range(choices=("heatmap", "bbox")))
    # forward passes: auto = bf16 autocast on CUDA, fp32 on CPU
    precision: str = field(default="auto", metadata=_range(choices=("auto", "fp32", "bf16")))
    # loader processes per training process, for all of its loaders together (data/loader.py
    # LoaderBudget); -1 = auto: 0 on CPU, on CUDA scaling.cpus_per_worker (without Ray: the
    # node's cores per GPU) minus one, at least 1
    loader_workers: int = field(default=-1, metadata=_range(-1))
    # gradient all-reduce (several workers): buckets of this many MB launched while backward
    # runs and waited for before each optimiser step; 0 = one all-reduce per optimiser after
    # backward (engine/overlap.py)
    grad_bucket_mb: float = field(default=25.0, metadata=_range(0.0))
    # iterations between mid-epoch checkpoints (0: only at the end of each epoch)
    checkpoint_every: int = field(default=0, metadata=_range(0))
    progress: bool = True
    tensorboard: bool = True  # rank 0 writes <run folder>/tb
    # target validation proxies computed at every evaluation (proxy/<name>); see regda_dist.proxies
    proxies: list[str] = field(
        default_factory=lambda: [
            "source_pck",
            "dev",
            "aug_consistency",
            "confidence",
            "head_agreement",
            "pose_prior",
        ]
    )
    # epoch selection: "" reports the last epoch; "proxy/<name>" keeps the evaluated epoch with
    # the best proxy value (no target label); "oracle/target_pck" selects with target LABELS
    select_metric: str = ""


# The RegDA knobs a search varies by default (ranges around the reference defaults of
# REGDA_SPEC.md); a plain run logs their values as its TensorBoard HParams.
DEFAULT_SPACE = {  # conditional on the method: a trial samples only its method's knobs
    "adapt.method": {"choice": list(ADAPTERS)},
    "regda.trade_off": {"loguniform": [0.1, 10.0]},
    "regda.margin": {"uniform": [1.0, 8.0]},
    "regda.sigma": {"choice": [1.5, 2.0, 3.0]},
    "regda.warm_hi": {"loguniform": [0.03, 0.3]},
    "optim.lr": {"loguniform": [0.01, 0.3]},
    "optim.backbone_lr": {"loguniform": [0.001, 0.03]},
    "mean_teacher.ema_decay": {"uniform": [0.95, 0.9995]},
    "mean_teacher.keep": {"uniform": [0.2, 0.8]},
    "mean_teacher.weight": {"loguniform": [0.3, 3.0]},
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    regda: RegDAConfig = field(default_factory=RegDAConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    mean_teacher: MeanTeacherConfig = field(default_factory=MeanTeacherConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def adapt_sigma(self) -> float:
        """Label and pseudo-label sigma of phase 2: regda.sigma, or data.sigma when it is 0."""
        return self.regda.sigma or self.data.sigma

    @property
    def adapt_head(self) -> str:
        """adapt.head_init resolved: fresh or phase1 (benchmarks/results/ablation.md)."""
        a = self.adapt
        if a.head_init != "auto":
            return a.head_init
        if "mean_teacher" in a.method:
            return "phase1"
        same = (
            self.pretrain.head_layers or self.model.num_head_layers
        ) == self.model.num_head_layers
        return REGDA_HEAD_INIT if same else "fresh"

    def pretrain_key(self) -> str:
        """Hash of every field phase 1 depends on (none of the adaptation's): its cache key."""
        d = self.to_dict()
        picked = {k: d[k] for k in ("data", "model", "pretrain")}
        # Fields added with real datasets count only when set, so older caches stay valid.
        defaults = dataclasses.asdict(DataConfig())
        for key in ("keypoints", "keypoint_set", "source", "target", "augment"):
            if picked["data"][key] == defaults[key]:
                del picked["data"][key]
        for side in ("source", "target"):  # categories: added later, counted only when set
            if side in picked["data"] and not picked["data"][side]["categories"]:
                del picked["data"][side]["categories"]
        del picked["data"]["min_keypoint_match"]  # it gates what is read, not phase 1
        for key, default in (("optimizer", "sgd"), ("head_layers", 0)):  # added later: older
            if picked["pretrain"][key] == default:  # caches stay valid
                del picked["pretrain"][key]
        picked["optim"] = {k: d["optim"][k] for k in ("momentum", "weight_decay", "nesterov")}
        picked["train"] = {k: d["train"][k] for k in ("seed", "pck_threshold")}
        # phase 1 keeps its best val-PCK epoch; bf16 trains another model (set values only)
        train_defaults = dataclasses.asdict(TrainConfig())
        for key in ("pck_normalize", "precision"):
            if d["train"][key] != train_defaults[key]:
                picked["train"][key] = d["train"][key]
        # The workers change phase 1 only through BatchNorm in train mode, which normalises over
        # each worker's share of the (global) batch: that share is keyed when it is not the
        # whole batch. "workers" stays 1 so that caches written before batch_size became global
        # (keyed by the worker count, which was 1 for all but multi-worker runs) stay valid.
        picked["workers"] = 1
        groups = d["scaling"]["num_workers"] if d["model"]["batchnorm"] == "train" else 1
        if groups > 1:
            picked["bn_batch"] = d["pretrain"]["batch_size"] // groups
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Loading


def field_type(f: dataclasses.Field) -> Any:
    return f.type if not isinstance(f.type, str) else _HINTS[f.type]


def check_value(path: str, value: Any, f: dataclasses.Field, where: str):
    """value, converted (int -> float for float fields), if it fits the field's type and range."""
    hint = field_type(f)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(_is_type(v, item) for v in value):
            raise ConfigError(f"{where}: {path} must be a list of {item.__name__}, got {value!r}")
        return list(value)
    if origin in (typing.Union, types.UnionType):
        hint = typing.get_args(hint)[0]
    if not _is_type(value, hint):
        raise ConfigError(f"{where}: {path} must be {hint.__name__}, got {value!r}")
    value = float(value) if hint is float else value
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{where}: {path} must be a finite number, got {value!r}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where}: {path} must be one of {list(meta['choices'])}, got {value!r}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{where}: {path} must be >= {meta['min']}, got {value!r}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{where}: {path} must be <= {meta['max']}, got {value!r}")
    return value


_HINTS = {
    "str": str, "int": int, "float": float, "bool": bool, "list[int]": list[int],
    "list[str]": list[str], "list": list, "dict": dict,
}  # fmt: skip


def _is_type(value: Any, hint: type) -> bool:
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def apply(obj: Any, values: dict, source: str, lines: dict[str, int], prefix: str = "") -> None:
    """Set nested `values` on a config dataclass, checking keys, types and ranges."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        where = f"{source}:{lines[path]}" if path in lines else source
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {path!r}; known: {', '.join(fields)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {path} must be a mapping, got {value!r}")
            apply(current, value, source, lines, path + ".")
        else:
            setattr(obj, key, check_value(path, value, fields[key], where))


def validate(cfg: Config, source: str = "config", lines: dict[str, int] | None = None) -> Config:
    """Cross-field checks that single values cannot express (`lines`: dotted key -> line of
    `source`, for the checks that point at one key)."""
    d = cfg.data
    if d.image_size % d.heatmap_size:
        raise ConfigError(
            f"{source}: data.image_size ({d.image_size}) must be a multiple of "
            f"data.heatmap_size ({d.heatmap_size})"
        )
    _validate_data(d, source)
    _validate_keypoints(d, source, lines or {})
    _validate_categories(d, source, lines or {})
    if cfg.regda.warm_hi < cfg.regda.warm_lo:
        raise ConfigError(f"{source}: regda.warm_hi ({cfg.regda.warm_hi}) < regda.warm_lo")
    for phase in ("pretrain", "regda"):
        batch, workers = getattr(cfg, phase).batch_size, cfg.scaling.num_workers
        if batch % workers:
            lo, hi = batch // workers * workers, -(-batch // workers) * workers
            raise ConfigError(
                f"{source}: {phase}.batch_size ({batch}) is the global batch and must split "
                f"evenly across scaling.num_workers ({workers}); use {lo or hi} or {hi}"
            )
        if d.task and d.num_train < batch:
            raise ConfigError(
                f"{source}: data.num_train ({d.num_train}) is smaller than one global batch of "
                f"{phase} ({phase}.batch_size = {batch})"
            )
    gpus = cfg.scaling.gpus_per_worker
    if gpus > 1 and not gpus.is_integer():
        raise ConfigError(
            f"{source}: scaling.gpus_per_worker ({gpus}) above 1 must be a whole number (Ray)"
        )
    if cfg.adapt.batchnorm == "domain" and "mean_teacher" in cfg.adapt.method:
        raise ConfigError(
            f"{source}: adapt.batchnorm 'domain' tracks the statistics of the model that trains; "
            f"{cfg.adapt.method} evaluates its teacher, which sees no source pass: use target"
        )
    heads = cfg.pretrain.head_layers or cfg.model.num_head_layers
    if cfg.adapt_head == "phase1" and heads != cfg.model.num_head_layers:
        raise ConfigError(
            f"{source}: adapt.head_init {cfg.adapt.head_init!r} (phase 1's head, for "
            f"{cfg.adapt.method}) needs the head phase 1 trains "
            f"(pretrain.head_layers {heads}) to have model.num_head_layers "
            f"({cfg.model.num_head_layers}) layers"
        )
    ms = cfg.pretrain.milestones
    if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
        raise ConfigError(f"{source}: pretrain.milestones must be strictly increasing, got {ms}")
    return cfg


def _validate_data(d: DataConfig, source: str) -> None:
    """A synthetic task or a (source, target) pair of real datasets, never both, never half."""
    named = [f"data.{side}" for side in ("source", "target") if getattr(d, side).dataset]
    if d.task and named:
        raise ConfigError(
            f"{source}: data.task ({d.task!r}) and {' and '.join(named)} are both set; "
            "use data.task: '' for real datasets"
        )
    if not d.task and len(named) < 2:
        raise ConfigError(
            f"{source}: data.task is '' so data.source.dataset and data.target.dataset "
            "must both be set"
        )
    for side in ("source", "target"):
        domain = getattr(d, side)
        if domain.dataset and not domain.root:
            raise ConfigError(f"{source}: data.{side}.root is empty (the dataset's folder)")
        if domain.root and not domain.dataset:
            raise ConfigError(f"{source}: data.{side}.root is set but data.{side}.dataset is not")
    if d.augment.scale_min > d.augment.scale_max:
        raise ConfigError(
            f"{source}: data.augment.scale_min ({d.augment.scale_min}) > "
            f"data.augment.scale_max ({d.augment.scale_max})"
        )


def _validate_keypoints(d: DataConfig, source: str, lines: dict[str, int]) -> None:
    """data.keypoints names a registered set, from_data or custom; a custom set holds together."""

    def at(*keys: str) -> str:  # the line of the first key written in the file
        found = [lines[key] for key in keys if key in lines]
        return f"{source}:{found[0]}" if found else source

    if d.task and d.keypoints:
        raise ConfigError(
            f"{at('data.keypoints')}: data.keypoints is for real datasets; synthetic task "
            f"{d.task!r} has its own"
        )
    if d.keypoints and d.keypoints not in (FROM_DATA, CUSTOM, *list_keypoint_sets()):
        raise ConfigError(
            f"{at('data.keypoints')}: data.keypoints must be a registered keypoint set "
            f"({', '.join(list_keypoint_sets())}), {FROM_DATA} or {CUSTOM}, got {d.keypoints!r}"
        )
    if d.keypoint_set != KeypointSetConfig() and d.keypoints != CUSTOM:
        raise ConfigError(
            f"{at('data.keypoint_set')}: data.keypoint_set is used with data.keypoints: "
            f"{CUSTOM}, not {d.keypoints!r}"
        )
    if d.keypoints == CUSTOM:
        k = d.keypoint_set
        try:
            define(k.name, k.names, k.groups, k.skeleton, k.flip_pairs)
        except KeypointError as err:
            key = f"data.keypoint_set.{err.key}"
            where = at(key, "data.keypoint_set", "data.keypoints")
            raise ConfigError(f"{where}: {key}: {err}") from None


def categories_problem(value: Any) -> str:
    """'' when `value` lists COCO categories by name (text) or id (integer), each once; else
    what is wrong with it."""
    if not isinstance(value, list) or not all(
        (isinstance(v, str) and v) or (isinstance(v, int) and not isinstance(v, bool))
        for v in value
    ):
        return f"must list category names (text) or ids (integers), got {value!r}"
    twice = next((v for i, v in enumerate(value) if v in value[:i]), None)
    return f"lists {twice!r} twice" if twice is not None else ""


def _validate_categories(d: DataConfig, source: str, lines: dict[str, int]) -> None:
    """data.<side>.categories: names or ids, each once, of a domain read from disk."""
    for side in ("source", "target"):
        key, domain = f"data.{side}.categories", getattr(d, side)
        where = f"{source}:{lines[key]}" if key in lines else source
        problem = categories_problem(domain.categories)
        if problem:
            raise ConfigError(f"{where}: {key} {problem}")
        if domain.categories and not domain.dataset:
            raise ConfigError(f"{where}: {key} is set but data.{side}.dataset is not")


def build(values: dict, lines: dict[str, int], source: str, overrides: list[str] = ()) -> Config:
    """Defaults, then `values` (read from `source`), then `--set` overrides; validated."""
    cfg = Config()
    apply(cfg, values, source, lines)
    for text in overrides:
        key, value = parse_override(text)
        apply(cfg, nest(key, value), f"--set {key}", {})
        lines = {k: n for k, n in lines.items() if k != key and not k.startswith(key + ".")}
    return validate(cfg, source, lines)


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then `--set` overrides; validated. An experiment's
    `search:` block is not part of the run config (see regda_dist.search.spec) and is skipped."""
    if path is None:
        return build({}, {}, "config", overrides)
    values, lines = read_yaml(path)
    values.pop("search", None)
    return build(values, lines, str(path), overrides)


def get(cfg: Config, key: str) -> Any:
    """The value at a dotted path, e.g. get(cfg, "regda.trade_off")."""
    obj = cfg
    for part in key.split("."):
        if not dataclasses.is_dataclass(obj) or part not in {
            f.name for f in dataclasses.fields(obj)
        }:
            raise ConfigError(f"{key!r} is not a config field")
        obj = getattr(obj, part)
    return obj


def from_dict(values: dict) -> Config:
    """A Config from a plain dict (e.g. a resolved config.yaml), with the same checks."""
    cfg = Config()
    apply(cfg, values, "config", {})
    return validate(cfg)


def save(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
