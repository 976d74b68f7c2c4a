"""What a run reports at each evaluation: every proxy (no target label can reach one), PCK on
the source test split and, for evaluation only, on the labelled target test split; each domain
seen with the model adapt.batchnorm gives it in phase 2 (engine/batchnorm.py)."""

from __future__ import annotations

import torch

from regda_dist.config import Config
from regda_dist.data.datasets import ImagesOnly, TaskData
from regda_dist.engine.batchnorm import PhaseTwoNorm
from regda_dist.engine.collect import collect
from regda_dist.engine.evaluate import Evaluation
from regda_dist.proxies import create_proxy


class Evaluator:
    """The evaluation of one run on this worker. `norm` is phase 2's BatchNorm handling (None
    outside phase 2: each domain is evaluated with the model itself); after each evaluation,
    `evaluated` is the target's model (what is exported) and `target_coords` its (N, K, 2)
    target val predictions."""

    def __init__(self, cfg: Config, task: TaskData, evaluation: Evaluation):
        self.cfg, self.task, self.eval = cfg, task, evaluation
        self.norm: PhaseTwoNorm | None = None
        self.evaluated = None
        self.target_coords: torch.Tensor | None = None

    def reestimate(self, model, domain: str):
        """A copy of `model` with BatchNorm statistics re-estimated on `domain`'s un-augmented
        train images (AdaBN on the current weights)."""
        images = (
            ImagesOnly(self.task.source_train) if domain == "source" else self.task.target_train
        )
        limit = self.cfg.adapt.reestimate_images
        return self.eval.adabn(model, images, self.cfg.train.seed, limit)

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

    def __call__(self, model) -> dict[str, float]:
        """Every worker first gets rank 0's parameters and BatchNorm statistics (broadcast);
        then each domain is evaluated with the model adapt.batchnorm gives it in phase 2 (the
        model itself outside phase 2). The target's is kept as `evaluated`."""
        comm = self.eval.runtime.comm
        comm.broadcast(model)
        if self.norm is None:
            models = {"source": model, "target": model}
        else:
            self.norm.broadcast(comm)
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
