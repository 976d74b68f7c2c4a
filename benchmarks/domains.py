"""The transfer tasks the benchmarks run: the embedded synthetic tasks and two held-out domain
pairs written as COCO folders (benchmarks/heldout_domain.py: a 13-keypoint quadruped with a shape
and pose shift; benchmarks/texture_domain.py: a 10-keypoint lizard with a colour and texture
shift), each read back with `data.keypoints: from_data` on the recipe of
experiments/synth_hand.yaml, as a user with their own folders would.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import ROOT, heldout_domain, texture_domain
from regda_dist import config as C

HELDOUT = {"quadruped": heldout_domain, "lizard": texture_domain}
TASKS = ("synth_hand", "synth_body", *HELDOUT)


def config(task: str, work: str | Path, overrides: list[str] = ()) -> C.Config:
    """The run config of `task` (a synthetic task's experiment, or a held-out pair's COCO
    folders under `work`, written once) with `overrides`."""
    if task not in HELDOUT:
        return C.load(ROOT / "experiments" / f"{task}.yaml", overrides)
    data = [f"{key}={value}" if value else f"{key}=''" for key, value in data_fields(task, work)]
    return C.load(ROOT / "experiments" / "synth_hand.yaml", [*data, *overrides])


def data_fields(task: str, work: str | Path) -> list[tuple[str, str]]:
    """The data fields that read a held-out pair's COCO folders (written once under `work`)."""
    version = HELDOUT[task].VERSION  # data written by an older rendering is not reused
    folders = HELDOUT[task].write(
        Path(work) / (f"{task}-data" + (f"-v{version}" if version > 1 else ""))
    )
    return [
        ("data.task", ""),
        ("data.keypoints", "from_data"),
        ("data.source.dataset", "coco"),
        ("data.source.root", str(folders["source"])),
        ("data.target.dataset", "coco"),
        ("data.target.root", str(folders["target"])),
    ]
