"""Target validation proxies: model-selection scores that need no target labels.

A proxy is a small class with a `name`, the named `splits` whose collected outputs it reads, and
`__call__(**outputs) -> float` where higher is always better. Outputs are collected once per
evaluation (engine/collect.py) and shared by every proxy. Labelled fields (`keypoints`, `loss`,
`correct`, `valid`) exist only for source splits: a target split is collected from images alone.
A proxy may leave numbers worth logging beside its value in `diagnostics` (proxy/<name>/<key>).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regda_dist.data.keypoints import KeypointSpec
from regda_dist.registry import Registry


@dataclass
class SplitOutputs:
    """What a model produced on one split. N samples, K keypoints, coordinates in heatmap px."""

    coords: torch.Tensor  # (N, K, 2) main-head argmax
    scores: torch.Tensor  # (N, K) peak of the main head's spatial softmax
    coords_adv: torch.Tensor  # (N, K, 2) adversarial-head argmax
    features: torch.Tensor  # (N, C) spatially pooled features of psi
    coords_aug: torch.Tensor | None = None  # (V, N, K, 2) on V augmented views, mapped back
    aug_valid: torch.Tensor | None = None  # (V, N, K) bool, coords within view V's picture
    keypoints: torch.Tensor | None = None  # (N, K, 2) ground truth (labelled splits only)
    loss: torch.Tensor | None = None  # (N,) supervised KL per sample (labelled splits only)
    correct: torch.Tensor | None = None  # (N, K) bool, PCK hit (labelled splits only)
    valid: torch.Tensor | None = None  # (N, K) bool, keypoint has ground truth (labelled only)
    spec: KeypointSpec | None = None  # the task's keypoint set (groups, skeleton)
    radius: float = 1.0  # PCK radius, heatmap px (agreement within it counts as agreeing)


class Proxy:
    """Base class: subclasses set `name` and `splits` and implement `score`."""

    name: str = ""
    splits: tuple[str, ...] = ()
    # smallest meaningful change (e.g. 1 PCK point, 1 px): the floor of the scale that makes
    # values comparable across tasks (joint searches: search/joint.py)
    unit: float = 1.0
    # the source-only model's value is a meaningful baseline (its adversarial head is untrained)
    has_baseline: bool = True
    # it judges skeletons: NaN on a keypoint set without bones, so it cannot select there
    needs_skeleton: bool = False

    def __init__(self):
        self.diagnostics: dict[str, float] = {}

    def __call__(self, **outputs: SplitOutputs) -> float:
        missing = [s for s in self.splits if s not in outputs]
        if missing:
            raise ValueError(f"proxy {self.name!r} needs split(s) {missing}")
        return float(self.score(*(outputs[s] for s in self.splits)))

    def score(self, *outputs: SplitOutputs) -> float:
        raise NotImplementedError


PROXIES: Registry[type[Proxy]] = Registry("proxy")


def register_proxy(cls: type[Proxy]) -> type[Proxy]:
    """Decorator: register a Proxy subclass under its `name`."""
    return PROXIES.register(cls.name, cls)


def create_proxy(name: str) -> Proxy:
    return PROXIES.create(name)


def list_proxies() -> list[str]:
    return PROXIES.list()


def auto_proxy(has_bones: bool, computed, blind=()) -> str:
    """The proxy 'auto' stands for (search.metric, and a plain run's comparison of candidates):
    pose_prior where the keypoint set has bones and it is computed (train.proxies) and no
    method judged is `blind` to it, else source_pck, which needs only source labels
    (benchmarks/results/proxy_study.md)."""
    usable = has_bones and "pose_prior" in computed and "pose_prior" not in blind
    return "pose_prior" if usable else "source_pck"


def mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean Euclidean distance between keypoint coordinates (..., K, 2)."""
    return float((a.float() - b.float()).norm(dim=-1).mean())


def agreement(a: torch.Tensor, b: torch.Tensor, radius: float, mask=None) -> float:
    """Percentage of keypoint pairs (..., K, 2) within `radius` of each other (where `mask`):
    bounded and robust, one far-off keypoint weighs what a near miss does."""
    hits = (a.float() - b.float()).norm(dim=-1) < radius
    if mask is not None:
        hits = hits[mask]
    return 100.0 * float(hits.float().mean()) if hits.numel() else float("nan")
