"""The phase-1 cache key: a hash of every field phase 1 depends on and of none of the
adaptation's, so every trial of a search and every run of a task share one phase 1."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from regda_dist.config.sections import DataConfig, TrainConfig


def pretrain_key(cfg) -> str:
    """Hash of every field phase 1 depends on (none of the adaptation's): its cache key."""
    d = cfg.to_dict()
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
