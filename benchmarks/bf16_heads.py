"""PCK of a trained model under fp32 and bf16 autocast, with the heads' last 1x1 convolution in
bf16 (as before: the logits argmaxed into PCK and pseudo labels were bf16) and in float32 (now:
models/regda.py Float32Conv2d). On the CPU (bf16 autocast exists there too), one torch thread.

    python -m benchmarks bf16_heads [--tasks synth_hand synth_body] [--iters 200]

Each task: phase 1 of its experiment (experiments/<task>.yaml, --iters per epoch), then PCK on
the source and target test splits, and how often the bf16 argmax (pseudo label) of a target val
keypoint equals the fp32 one. Writes benchmarks/results/bf16_heads.{md,json}.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from benchmarks import RESULTS, domains, record
from regda_dist import config as C
from regda_dist.data import heatmap
from regda_dist.data.datasets import ImagesOnly, build_task
from regda_dist.engine.build import seed_everything
from regda_dist.engine.phase1 import pretrained_source
from regda_dist.engine.runtime import Runtime
from regda_dist.engine.trainer import Trainer
from regda_dist.models.regda import Float32Conv2d


def bf16_last_layer(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose heads' last layer is a plain Conv2d again (the code before the fix)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, Float32Conv2d):
            m.__class__ = torch.nn.Conv2d
    return model


@torch.no_grad()
def argmaxes(trainer: Trainer, model, dataset) -> torch.Tensor:
    """(N, K, 2) heatmap argmax of `model` on every image of `dataset`."""
    model.eval()
    out = []
    for x, _ in trainer.eval.batches(dataset):
        with trainer.runtime.autocast():
            y = model(x)
        out.append(heatmap.decode(y.float())[0])
    return torch.cat(out)


def measure(cfg: C.Config) -> dict:
    seed_everything(cfg.train.seed)
    task = build_task(cfg.data)
    model, info = pretrained_source(Trainer(cfg, task))
    rows, reference = {}, None
    for label, precision, make in (
        ("fp32", "fp32", lambda m: m),
        ("bf16, last layer bf16 (before)", "bf16", bf16_last_layer),
        ("bf16, last layer fp32 (now)", "bf16", lambda m: m),
    ):
        trainer = Trainer(cfg, task, Runtime(torch.device("cpu"), precision=precision))
        m = make(model)
        coords = argmaxes(trainer, m, ImagesOnly(task.target_val))
        reference = coords if reference is None else reference
        rows[label] = {
            "source_pck": trainer.eval.pck(m, task.source_test, task.spec)["all"],
            "target_pck": trainer.eval.pck(m, task.target_test, task.spec)["all"],
            "argmax_equal_fp32_pct": 100 * (coords == reference).all(-1).float().mean().item(),
        }
        print(cfg.data.task, label, rows[label], flush=True)
    return {"phase1": info, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = record.parser(__name__, __doc__)
    parser.add_argument("--tasks", nargs="+", default=["synth_hand", "synth_body"])
    parser.add_argument("--iters", type=int, default=200, help="phase-1 iterations per epoch")
    parser.add_argument("--out", default=str(RESULTS / "bf16_heads"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # deterministic accuracy numbers
    work = Path(tempfile.mkdtemp(prefix="regda-bf16-"))
    sets = [f"train.output_dir={work}", "train.progress=false", "train.num_threads=1",
            f"pretrain.iters_per_epoch={args.iters}"]  # fmt: skip
    results = {task: measure(domains.config(task, work, sets)) for task in args.tasks}
    meta = record.provenance(__name__, argv)
    meta["machine"] += ", 1 torch thread"
    record.write(args.out, {"meta": meta, **results}, render(meta, results))
    return 0


def render(meta: dict, results: dict) -> str:
    lines = [
        "# Heatmap logits in bf16 vs float32 (CPU, bf16 autocast)",
        "",
        f"- command: `{meta['command']}`; date: {meta['date']}; {meta['machine']}",
        "- the phase-1 model of each task's experiment (small_resnet, 64 px, 32 x 32 heatmaps);",
        "  PCK@0.05 on the test splits; argmax = the target val keypoints whose bf16 argmax (a",
        "  pseudo label in phase 2) is the fp32 one",
        "",
        "| task | forward | source PCK | target PCK | argmax = fp32 (%) |",
        "|---|---|---|---|---|",
    ]
    for task, r in results.items():
        for label, row in r["rows"].items():
            lines.append(
                f"| {task} | {label} | {row['source_pck']:.2f} | {row['target_pck']:.2f} | "
                f"{row['argmax_equal_fp32_pct']:.1f} |"
            )
    return "\n".join(lines) + "\n"
