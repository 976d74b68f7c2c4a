"""Cross-field checks of a Config that single values cannot express: one ConfigError line each,
naming the key (and its line where the file has it)."""

from __future__ import annotations

import dataclasses
from typing import Any

from regda_dist.config.schema import Config
from regda_dist.config.sections import DataConfig, KeypointSetConfig
from regda_dist.data.keypoints import CUSTOM, FROM_DATA, KeypointError, define, list_keypoint_sets
from regda_dist.fields import ConfigError
from regda_dist.methods import blind_proxy_problems, get_method


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
    for f in dataclasses.fields(cfg):  # a section's own checks (a method's section too)
        _refuse(getattr(getattr(cfg, f.name), "problems", list)(), source)
    for phase in ("pretrain", "adapt"):
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
    _validate_gpus(cfg.scaling, source)
    _refuse(get_method(cfg.adapt.method).problems(cfg), source)
    if cfg.train.select_metric.startswith("proxy/"):
        blind = blind_proxy_problems(cfg.adapt.method, cfg.train.select_metric)
        _refuse([f"train.select_metric: {line}" for line in blind], source)
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


def _validate_gpus(s, source: str) -> None:
    """A worker trains on one device (its cuda:N): more than one GPU a worker would sit idle.
    A fraction lets one-worker runs (search trials) share a GPU; with several workers Ray may
    pack two workers of one run on the same GPU (fractional GPU ids are not unique), and NCCL
    refuses a group whose ranks share a device ("Duplicate GPU detected")."""
    gpus = s.gpus_per_worker
    if not s.use_gpu or gpus == 1:
        return
    if gpus > 1:
        raise ConfigError(
            f"{source}: scaling.gpus_per_worker ({gpus:g}) above 1: a worker trains on one GPU "
            f"and the rest would sit idle; for {gpus:g} GPUs a run use scaling.num_workers: "
            f"{int(gpus * s.num_workers) if gpus.is_integer() else 'N'} with gpus_per_worker: 1"
        )
    if s.num_workers > 1:
        raise ConfigError(
            f"{source}: scaling.gpus_per_worker ({gpus:g}) below 1 with scaling.num_workers "
            f"({s.num_workers}): Ray may put two workers of one run on the same GPU, which "
            "NCCL refuses; a fraction shares a GPU between one-worker runs (search trials): "
            "use num_workers: 1, or gpus_per_worker: 1"
        )


def _refuse(problems: list[str], source: str) -> None:
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")


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
