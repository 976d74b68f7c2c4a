"""PCK of a trained model under fp32 and bf16 autocast, with the heads' last 1x1 convolution in
bf16 (as before: the logits argmaxed into PCK and pseudo labels were bf16) and in float32 (now:
models/regda.py Float32Conv2d). On the CPU (bf16 autocast exists there too), one torch thread.

    python benchmarks/bf16_heads.py [--tasks synth_hand synth_body] [--iters 200]

Each task: phase 1 of its experiment (experiments/<task>.yaml, --iters per epoch), then PCK on
the source and target test splits, and how often the bf16 argmax (pseudo label) of a target val
keypoint equals the fp32 one. Writes benchmarks/results/bf16_heads.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.record import write_markdown  # noqa: E402
from regda_dist import config as C  # noqa: E402
from regda_dist.data import heatmap  # noqa: E402
from regda_dist.data.datasets import ImagesOnly, build_task  # noqa: E402
from regda_dist.engine.run import pretrained_source  # noqa: E402
from regda_dist.engine.runtime import Runtime  # noqa: E402
from regda_dist.engine.trainer import Trainer, seed_everything  # noqa: E402
from regda_dist.models.regda import Float32Conv2d  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["synth_hand", "synth_body"])
    parser.add_argument("--iters", type=int, default=200, help="phase-1 iterations per epoch")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bf16_heads"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # deterministic accuracy numbers
    work = Path(tempfile.mkdtemp(prefix="regda-bf16-"))
    results = {}
    for task in args.tasks:
        cfg = C.load(
            ROOT / "experiments" / f"{task}.yaml",
            [
                f"train.output_dir={work}",
                "train.progress=false",
                "train.num_threads=1",
                f"pretrain.iters_per_epoch={args.iters}",
            ],  # fmt: skip
        )
        results[task] = measure(cfg)
    meta = {
        "command": "python benchmarks/bf16_heads.py " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread",
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **results}, indent=1))
    write_markdown(out.with_suffix(".md"), render(meta, results))
    print(render(meta, results))
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


if __name__ == "__main__":
    sys.exit(main())
