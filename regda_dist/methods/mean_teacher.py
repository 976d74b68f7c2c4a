"""adapt.method mean_teacher, and the teacher that regda+mean_teacher shares
(methods/regda_mean_teacher.py), written from the method's description (Tarvainen & Valpola
2017; for pose, Kim et al., ECCV 2022):

- the teacher is an exponential moving average of the student's parameters (its BatchNorm
  statistics are its own: it sees only target images);
- it predicts on K weak views of each target image; its heatmaps (spatial softmax) are mapped
  back to the image's frame and averaged; each keypoint's peak is its confidence;
- the keypoints whose confidence is in the top `keep` fraction of the global batch become pseudo
  labels (a Gaussian at the peak; methods/prior_teacher.py ranks by confidence times the pose's
  plausibility), mapped into a strong view of the same image (geometry, colour, blur, and a
  patch of the image pasted over a confident keypoint), which the student must reproduce (KL,
  as every heatmap loss here), weighted with a sigmoid ramp-up.

Every random number comes from the target sample's own seed (data/loader.py), drawn in the
loader (TeacherViews) and applied on the device in one batch: identical for any worker count,
resumable. The teacher is what is evaluated and exported.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from regda_dist.data import heatmap, views
from regda_dist.fields import bounded
from regda_dist.losses import JointsKLLoss, joints_kl
from regda_dist.methods.base import (
    Domain,
    Method,
    adaptation_optimizers,
    epochs_until,
    no_domain,
    step_optimizer,
)


@dataclass
class MeanTeacherConfig:
    """The mean teacher of adapt.method mean_teacher and regda+mean_teacher (after Kim et al.,
    ECCV 2022): the teacher is an exponential moving average of the student; it predicts on
    `views` weak views of each target image, its heatmaps are mapped back and averaged; the
    most confident `keep` fraction of the batch's keypoints become pseudo labels, which the
    student must reproduce on a strong view of the same image (geometry, colour, blur, and a
    patch pasted over a confident keypoint). The teacher is what is evaluated and exported."""

    ema_decay: float = field(default=0.999, metadata=bounded(0.0, 0.99999))
    views: int = field(default=2, metadata=bounded(1, 8))
    keep: float = field(default=0.5, metadata=bounded(0.01, 1.0))
    weight: float = field(default=1.0, metadata=bounded(0.0))  # of the consistency loss
    rampup_iters: int = field(default=1000, metadata=bounded(0))  # sigmoid ramp-up of weight
    weak_rotation: float = field(default=15.0, metadata=bounded(0.0, 180.0))  # degrees
    weak_zoom: float = field(default=0.1, metadata=bounded(0.0, 0.9))  # 1 +- this
    strong_rotation: float = field(default=30.0, metadata=bounded(0.0, 180.0))
    strong_zoom: float = field(default=0.25, metadata=bounded(0.0, 0.9))
    shift: float = field(default=0.05, metadata=bounded(0.0, 0.5))  # of the image, both views
    color_jitter: float = field(default=0.25, metadata=bounded(0.0, 1.0))  # strong view
    blur: float = field(default=1.0, metadata=bounded(0.0, 10.0))  # px, strong view
    occlusion: float = field(default=0.5, metadata=bounded(0.0, 1.0))  # probability per image
    occlusion_size: float = field(default=0.15, metadata=bounded(0.01, 1.0))  # of the image
    # where the pasted patch comes from: "offset" (the patch's own place shifted by up to half
    # the image: it can come from beyond the border, black), "inside" (anywhere wholly inside
    # the strong view's frame, as UDAPE takes it; the view's own corners can still be black)
    occlusion_from: str = field(default="offset", metadata=bounded(choices=("offset", "inside")))
    shear: float = field(default=0.0, metadata=bounded(0.0, 60.0))  # degrees, strong view
    # the teacher's views: "weak" (weak_rotation, weak_zoom), or "strong": drawn from the strong
    # view's ranges (rotation, zoom, shear), as UDAPE draws teacher and student views alike
    teacher_views: str = field(default="weak", metadata=bounded(choices=("weak", "strong")))
    # the student's optimiser: "sgd" (optim's SGD, lrs and decay, as RegDA) or "adam" (Adam at
    # adam_lr for the whole model, constant, as UDAPE)
    optimizer: str = field(default="sgd", metadata=bounded(choices=("sgd", "adam")))
    adam_lr: float = field(default=1e-4, metadata=bounded(0.0))


_STREAM = 0x2545F4914F6CDD1D  # the views' random stream of a sample: apart from data.augment's


class TeacherViews(Dataset):
    """The target train split as a mean teacher reads it: item (i, seed) is the image and the
    parameters of its views, drawn from a generator seeded by the sample's seed: weak (K, 2, 3)
    and strong (2, 3) maps, colour factors (3,), blur sigma, and four numbers for the
    occlusion (apply if < probability, which confident keypoint, source offset x, y)."""

    def __init__(self, dataset: Dataset, cfg):
        self.dataset, self.cfg = dataset, cfg
        self.strong = views.Geometry(
            cfg.strong_rotation, (1 - cfg.strong_zoom, 1 + cfg.strong_zoom), cfg.shift, cfg.shear
        )
        self.weak = self.strong
        if cfg.teacher_views == "weak":
            self.weak = views.Geometry(
                cfg.weak_rotation, (1 - cfg.weak_zoom, 1 + cfg.weak_zoom), cfg.shift
            )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        i, seed = key
        g = torch.Generator().manual_seed((seed ^ _STREAM) & (2**63 - 1))
        c = self.cfg
        params = {
            "weak": torch.stack([self.weak.sample(g) for _ in range(c.views)]),
            "strong": self.strong.sample(g),
            "colour": 1 + c.color_jitter * (2 * torch.rand(3, generator=g) - 1),
            "blur": c.blur * torch.rand((), generator=g),
            "occlude": torch.rand(4, generator=g),
        }
        return self.dataset[(i, seed)], params


def rampup(i: int, length: int) -> float:
    """exp(-5 (1 - i / length)^2), rising from 0.007 to 1 over `length` iterations."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(i, length) / length
    return math.exp(-5.0 * phase * phase)


class MeanTeacher:
    """The teacher of a student model: EMA updates, pseudo labels and the consistency loss."""

    def __init__(self, student: nn.Module, cfg, sigma: float, image_size: int, runtime):
        self.student, self.cfg, self.sigma, self.size = student, cfg, sigma, image_size
        self.runtime = runtime
        self.teacher = copy.deepcopy(student).train()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.iteration = 0
        self.last_mask = None  # (B, K) the pseudo labels of the last consistency loss

    @torch.no_grad()
    def update(self) -> None:
        """teacher <- decay teacher + (1 - decay) student, parameters only."""
        params = [p for p in self.teacher.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(
            params, [p.detach() for p in self.student.parameters()], 1 - self.cfg.ema_decay
        )
        self.iteration += 1

    @torch.no_grad()
    def pseudo_labels(self, x: torch.Tensor, weak: torch.Tensor, domain):
        """(B, K, 2) keypoints in image px of the teacher's view-averaged heatmaps, and (B, K)
        their confidence (the averaged map's peak)."""
        total = None
        pixels = x.float()
        for k in range(weak.shape[1]):
            with self.runtime.autocast(), domain("target"):
                y = self.teacher.head(self.teacher.features(views.warp_images(pixels, weak[:, k])))
            p = torch.softmax(y.float().flatten(2), dim=-1).view_as(y)
            back = views.heatmaps_from_view(p, weak[:, k], self.size)
            total = back if total is None else total + back
        coords, peaks = heatmap.decode(total / weak.shape[1])
        return coords.float() * (self.size / total.shape[-1]), peaks

    def confident(self, peaks: torch.Tensor) -> torch.Tensor:
        """(B, K) the keypoints whose confidence is in the top `keep` of the global batch."""
        comm = self.runtime.comm
        everyone = comm.gather(peaks.flatten(), [peaks.numel()] * comm.world_size)
        threshold = torch.quantile(everyone.float(), 1 - self.cfg.keep)
        return peaks >= threshold

    def strong_view(self, x, params, coords, mask) -> torch.Tensor:
        """The strong view (pixels 0-255) of images x: geometry, colour, blur, and with
        probability `occlusion` a patch over one confident keypoint."""
        c, theta = self.cfg, params["strong"]
        view = views.warp_images(x.float() / 255, theta)
        view = views.blur(views.colour(view, params["colour"]), params["blur"])
        occ = params["occlude"]
        count = mask.sum(dim=1)  # (B,)
        pick = (occ[:, 1] * count).floor().clamp(max=count - 1).long()  # the pick-th confident
        order = torch.cumsum(mask.long(), dim=1) - 1  # rank among the confident keypoints
        chosen = (mask & (order == pick[:, None])).float()  # (B, K) one-hot (or all zero)
        centre = (chosen[..., None] * views.points_to_view(coords, theta, self.size)).sum(1)
        apply = (occ[:, 0] < c.occlusion) & (count > 0)
        centre = torch.where(apply[:, None], centre, torch.full_like(centre, float("nan")))
        offsets = occ[:, 2:] - 0.5
        if c.occlusion_from == "inside":
            offsets = views.offsets_from_inside(centre, c.occlusion_size, self.size, occ[:, 2:])
        view = views.occlude(view, centre, c.occlusion_size, offsets)
        return view * 255

    def consistency(self, x_t, params, domain) -> tuple[torch.Tensor, dict]:
        """The weighted consistency loss of the student on the strong views, and its logs."""
        coords, peaks = self.pseudo_labels(x_t, params["weak"], domain)
        score, logs = self.ranking(coords, peaks)
        mask = self.last_mask = self.confident(score)
        x_view = self.strong_view(x_t, params, coords, mask)
        with self.runtime.autocast(), domain("target"):
            y = self.student.head(self.student.features(x_view))
        there = views.points_to_view(coords, params["strong"], self.size)
        target, weight = heatmap.encode(there, mask, self.size, y.shape[-1], self.sigma)
        scale = self.cfg.weight * rampup(self.iteration, self.cfg.rampup_iters)
        loss = joints_kl(y.float(), target, weight)
        logs = {"train/loss_consistency": loss.detach(), "train/kept": weight.mean(), **logs}
        return scale * loss, {**logs, "train/consistency_weight": torch.tensor(scale)}

    def ranking(self, coords: torch.Tensor, peaks: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(B, K) what the top `keep` of the batch is taken by (here the teacher's confidence;
        methods/prior_teacher.py weighs it by the pose's plausibility), and its logs."""
        del coords
        return peaks, {}

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.state_dict(), "teacher_iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state.pop("teacher"))
        self.iteration = state.pop("teacher_iteration")


class WithTeacher:
    """What a step with a mean teacher (`self.teacher`) gives the trainer."""

    teacher: MeanTeacher

    def _add_teacher(self, model, cfg, runtime) -> None:
        mt = cfg.mean_teacher
        self.teacher = MeanTeacher(model, mt, cfg.adapt_sigma, cfg.data.image_size, runtime)

    @property
    def evaluated(self):
        """The teacher is evaluated and exported."""
        return self.teacher.teacher

    def target_data(self, split):
        """Target images with the parameters of their views (per-sample seeds)."""
        return TeacherViews(split, self.teacher.cfg)

    def state_dict(self) -> dict:
        return self.teacher.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state)


class MeanTeacherStep(WithTeacher):
    """adapt.method mean_teacher: the student (psi + main head; optim's SGD and schedule) on
    labelled source plus the teacher's consistency loss on target (MeanTeacher above);
    then the teacher's EMA update."""

    def __init__(self, model, cfg, runtime, domain: Domain = no_domain, sync=None):
        self.model, self.domain, self.runtime = model, domain, runtime
        self.sync = sync or runtime.comm.sync
        self.optimizers, self.schedules = student_optimizers(model, cfg)
        self.kl = JointsKLLoss()
        self._add_teacher(model, cfg, runtime)

    @classmethod
    def from_config(cls, model, cfg, runtime, domain: Domain = no_domain, sync=None):
        return cls(model, cfg, runtime, domain, sync)

    def __call__(self, x_s, target_s, weight_s, batch_t) -> dict:
        x_t, params = batch_t
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        with self.runtime.autocast(), self.domain("source"):
            y_s = self.model.head(self.model.features(x_s))
        loss_s = self.kl(y_s.float(), target_s, weight_s)
        loss_c, logs = self.teacher.consistency(x_t, params, self.domain)
        (loss_s + loss_c).backward()
        for opt in self.optimizers:
            step_optimizer(opt, self.sync)
        self.teacher.update()
        return {"train/loss_s": loss_s.detach(), **logs}


def student_optimizers(model, cfg):
    """The student's (feature generator, main head) optimisers and their schedules:
    mean_teacher.optimizer sgd is optim's SGD with its lrs and decay (RegDA's); adam is Adam at
    mean_teacher.adam_lr for both, constant (UDAPE's)."""
    if cfg.mean_teacher.optimizer == "sgd":
        optimizers, schedules = adaptation_optimizers(model, cfg.optim)
        return list(optimizers[:2]), list(schedules[:2])
    lr = cfg.mean_teacher.adam_lr
    parts = (model.feature_parameters(), list(model.head.parameters()))
    optimizers = [torch.optim.Adam(params, lr=lr) for params in parts]
    constant = lambda i: 1.0  # noqa: E731
    return optimizers, [torch.optim.lr_scheduler.LambdaLR(o, constant) for o in optimizers]


def rampup_epochs(cfg, share: float) -> int:
    """The first epoch by whose end the consistency weight's ramp-up has reached `share` of
    its height: exp(-5 (1 - i/N)^2) >= share from i = N (1 - sqrt(ln(1/share) / 5)). Before
    it, the student has barely begun to learn from its teacher."""
    n = cfg.mean_teacher.rampup_iters
    if n <= 0 or share <= 0:
        return 1
    return epochs_until(n * (1 - math.sqrt(math.log(1 / share) / 5)), cfg.adapt.iters_per_epoch)


def teacher_problems(cfg) -> list[str]:
    """A teacher method cannot evaluate with statistics tracked per domain in training: its
    teacher sees no source pass."""
    if cfg.adapt.batchnorm == "domain":
        return [
            "adapt.batchnorm 'domain' tracks the statistics of the model that trains; "
            f"{cfg.adapt.method} evaluates its teacher, which sees no source pass: use target"
        ]
    return []


METHOD = Method(
    name="mean_teacher",
    label="mean teacher",
    step=MeanTeacherStep,
    sections=("mean_teacher",),
    declares={"mean_teacher": MeanTeacherConfig},
    space={
        "mean_teacher.ema_decay": {"uniform": [0.95, 0.9995]},
        "mean_teacher.keep": {"uniform": [0.2, 0.8]},
        "mean_teacher.weight": {"loguniform": [0.3, 3.0]},
    },
    teacher=True,
    head_init=lambda cfg: "phase1",  # its teacher starts as the source model
    problems=teacher_problems,
    judge_from=rampup_epochs,
    waits_for="consistency ramp-up",
    rung_fields=("mean_teacher.rampup_iters",),
    blind_proxies={"head_agreement": "its adversarial head never trains"},
)
