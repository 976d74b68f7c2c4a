"""The core config sections (data, model, optim, pretrain, adapt, scaling, train): typed
dataclasses whose defaults are the reference's (REGDA_SPEC.md) or measured (benchmarks/results/).
An adaptation method's own knobs are its section, declared in its module (methods/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from regda_dist.data.keypoints import CUSTOM
from regda_dist.fields import bounded
from regda_dist.methods import METHODS


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

    rotation: float = field(default=0.0, metadata=bounded(0.0, 180.0))  # degrees, U(-r, r)
    scale_min: float = field(default=1.0, metadata=bounded(0.1, 4.0))  # square crop area scale
    scale_max: float = field(default=1.0, metadata=bounded(0.1, 4.0))
    color_jitter: float = field(default=0.0, metadata=bounded(0.0, 1.0))  # brightness etc. 1+-j
    blur: float = field(default=0.0, metadata=bounded(0.0, 10.0))  # max Gaussian blur radius, px


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
        default="synth_hand", metadata=bounded(choices=("synth_hand", "synth_body", ""))
    )
    root: str = ""  # cache of generated data; "" = $REGDA_DIST_CACHE or ~/.cache/regda-dist
    image_size: int = field(default=256, metadata=bounded(16, 1024))
    heatmap_size: int = field(default=64, metadata=bounded(4, 512))
    sigma: float = field(default=2.0, metadata=bounded(0.25, 16))  # label Gaussian, heatmap px
    num_train: int = field(default=4000, metadata=bounded(1))  # synthetic images per domain
    num_val: int = field(default=500, metadata=bounded(1))
    num_test: int = field(default=500, metadata=bounded(1))
    seed: int = field(default=0, metadata=bounded(0))  # data generation seed (not training seed)
    # Real datasets (task ""): the keypoint set. "" = the datasets' own (rhd: hand21); a
    # registered set (hand21, body16); from_data = the COCO categories of the source's train.json;
    # custom = the set defined in data.keypoint_set. COCO files map onto it by name (or alias).
    keypoints: str = ""
    keypoint_set: KeypointSetConfig = field(default_factory=KeypointSetConfig)
    # With a registered set (hand21, body16): the share of its keypoints a COCO file's names
    # must label (by name or alias), else data check, train and tune stop; 0 = any match.
    min_keypoint_match: float = field(default=0.5, metadata=bounded(0.0, 1.0))
    source: DomainConfig = field(default_factory=DomainConfig)
    target: DomainConfig = field(default_factory=DomainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    backbone: str = "resnet101"
    pretrained: str = ""  # local ImageNet weights file for the backbone; "" = random init
    upsample_channels: int = field(default=256, metadata=bounded(1))
    num_deconv: int = field(default=3, metadata=bounded(0, 6))
    num_head_layers: int = field(default=2, metadata=bounded(1, 8))
    # train: BN in train mode in every pass (the reference; per-worker statistics under several
    # workers); frozen: BN always uses running statistics, affine weights still train;
    # sync: SyncBatchNorm across workers (CUDA only).
    batchnorm: str = field(default="train", metadata=bounded(choices=("train", "frozen", "sync")))


@dataclass
class OptimConfig:
    """SGD of phase 2 (adaptation): backbone_lr for psi (backbone + upsampling), lr for head and
    head_adv, each multiplied by (1 + lr_gamma * i)^(-lr_decay). momentum, weight_decay and
    nesterov are shared with phase 1."""

    lr: float = field(default=0.1, metadata=bounded(0.0))
    backbone_lr: float = field(default=0.01, metadata=bounded(0.0))
    momentum: float = field(default=0.9, metadata=bounded(0.0, 1.0))
    weight_decay: float = field(default=1e-4, metadata=bounded(0.0))
    nesterov: bool = True
    lr_gamma: float = field(default=1e-4, metadata=bounded(0.0))
    lr_decay: float = field(default=0.75, metadata=bounded(0.0))


@dataclass
class PretrainConfig:
    """Phase 1, source-only (also the recipe of the oracle baseline on target labels).
    lr for upsampling + head, backbone_lr for the backbone; x milestone_gamma at milestones.
    optimizer sgd: the reference's RegDA phase 1 (momentum, nesterov and weight decay of optim);
    adam: the reference's ERM baseline recipe (Adam, no weight decay; lr 1e-3 there)."""

    optimizer: str = field(default="sgd", metadata=bounded(choices=("sgd", "adam")))
    epochs: int = field(default=70, metadata=bounded(1))
    iters_per_epoch: int = field(default=500, metadata=bounded(1))
    batch_size: int = field(default=32, metadata=bounded(1))  # global: split across the workers
    lr: float = field(default=0.1, metadata=bounded(0.0))
    backbone_lr: float = field(default=0.01, metadata=bounded(0.0))
    milestones: list[int] = field(default_factory=lambda: [45, 60])  # epochs
    milestone_gamma: float = field(default=0.1, metadata=bounded(0.0, 1.0))
    # layers of the head phase 1 trains: 0 = model.num_head_layers (the head phase 2 uses);
    # 1 = a single 1x1 convolution (the reference's phase 1)
    head_layers: int = field(default=0, metadata=bounded(0, 8))


@dataclass
class AdaptConfig:
    """Phase 2, whatever the method: its schedule, which method (methods/), how it starts and
    how BatchNorm is handled. The methods' own knobs are in their sections (regda:,
    mean_teacher:)."""

    epochs: int = field(default=30, metadata=bounded(0))
    iters_per_epoch: int = field(default=500, metadata=bounded(1))
    batch_size: int = field(default=32, metadata=bounded(1))  # global, per domain (split)
    # Gaussian sigma (heatmap px) of the phase-2 source labels and pseudo labels; 0 = data.sigma.
    # Separate from data.sigma (a phase-1 field) so a search over it shares one phase 1.
    sigma: float = field(default=0.0, metadata=bounded(0.0, 16))
    # a registered method (methods/): regda (RegDA's steps A, B, C), mean_teacher (an EMA
    # teacher's pseudo heatmaps on weak views taught to the student on strong views, plus the
    # source loss), regda+mean_teacher (RegDA's steps with the consistency loss added to step
    # A); or a baseline, source_only or adabn: no phase 2, the run is phase 1's model (with the
    # target's BatchNorm statistics for adabn): what `export` writes when a baseline beats
    # every trial
    method: str = field(default="regda", metadata=bounded(choices=tuple(METHODS.ordered())))
    # which running statistics each domain is evaluated and exported with (engine/batchnorm.py):
    # mixed (the reference: what training left, source and target passes mixed), target
    # (the default: re-estimated on each domain's un-augmented train images before every
    # evaluation; benchmarks/results/ablation.md), domain (tracked per domain during
    # training), frozen (BatchNorm uses running statistics in every pass)
    batchnorm: str = field(
        default="target", metadata=bounded(choices=("mixed", "target", "domain", "frozen"))
    )
    # the main head of phase 2: fresh (the reference), phase 1's trained head (same layers),
    # or auto: the method's own default (Method.head_init: phase 1's for a teacher method, whose
    # teacher starts as the source model; RegDA's where phase 1 trains the same head)
    head_init: str = field(default="auto", metadata=bounded(choices=("auto", "fresh", "phase1")))
    # adapt.batchnorm target: re-estimate on at most this many of each domain's train images
    # (a seeded random subset; 0 = all of them). Every evaluation pays it: cap it on large sets
    reestimate_images: int = field(default=0, metadata=bounded(0))


@dataclass
class ScalingConfig:
    """Ray Train: data-parallel workers. A phase's batch_size is the global batch, split evenly
    across them (per-worker batch = batch_size / num_workers), at the configured learning rates:
    the same experiment at any worker count."""

    num_workers: int = field(default=1, metadata=bounded(1))
    use_gpu: bool = False
    cpus_per_worker: float = field(default=1.0, metadata=bounded(0.01))
    # GPUs each worker reserves when use_gpu: 1 (a worker trains on one device), or a fraction
    # (0.25) for one-worker runs, several search trials per GPU (config/validate.py says why)
    gpus_per_worker: float = field(default=1.0, metadata=bounded(0.01))
    max_failures: int = field(default=2, metadata=bounded(-1))  # -1: retry forever


@dataclass
class TrainConfig:
    seed: int = field(default=0, metadata=bounded(0))
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: str = "runs"
    eval_every: int = field(default=1, metadata=bounded(1))  # epochs
    eval_batch_size: int = field(default=64, metadata=bounded(1))
    num_threads: int = field(default=0, metadata=bounded(0))  # torch CPU threads; 0 = torch default
    # PCK radius: pck_threshold x the heatmap size ('heatmap', the reference's PCK@0.05) or x the
    # longer side of each sample's keypoint box ('bbox', COCO-style)
    pck_threshold: float = field(default=0.05, metadata=bounded(0.0, 1.0))
    pck_normalize: str = field(default="heatmap", metadata=bounded(choices=("heatmap", "bbox")))
    # forward passes: auto = bf16 autocast on CUDA, fp32 on CPU
    precision: str = field(default="auto", metadata=bounded(choices=("auto", "fp32", "bf16")))
    # loader processes per training process, for all of its loaders together (data/loader.py
    # LoaderBudget); -1 = auto: 0 on CPU, on CUDA scaling.cpus_per_worker (without Ray: the
    # node's cores per GPU) minus one, at least 1
    loader_workers: int = field(default=-1, metadata=bounded(-1))
    # gradient all-reduce (several workers): buckets of this many MB launched while backward
    # runs and waited for before each optimiser step; 0 = one all-reduce per optimiser after
    # backward (engine/overlap.py)
    grad_bucket_mb: float = field(default=25.0, metadata=bounded(0.0))
    # iterations between mid-epoch checkpoints (0: only at the end of each epoch)
    checkpoint_every: int = field(default=0, metadata=bounded(0))
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
