"""`regda-dist data check`: read a dataset folder through its reader, count samples per split,
summarise keypoint visibility, and name every missing or unreadable image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regda_dist.data.io import open_image
from regda_dist.data.keypoints import FROM_DATA, KeypointSpec
from regda_dist.data.registry import (
    Categories,
    create_dataset,
    dataset_spec,
    layout,
    own_set_notes,
    weak_match,
)
from regda_dist.data.samples import SPLITS, DatasetError, Domain

MAX_LISTED = 20
# how to go on when a file's names label too little of a registered set
WEAK_MATCH_FIX = (
    "read it in its own set (--keypoints from_data), define the set in an experiment "
    "(--keypoints EXPERIMENT.yaml), or pass --min-keypoint-match 0 to proceed"
)


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        shown = [f"  {p}" for p in self.problems[:MAX_LISTED]]
        more = len(self.problems) - MAX_LISTED
        tail = [f"  ... and {more} more"] if more > 0 else []
        status = [f"{len(self.problems)} problem(s):", *shown, *tail] if self.problems else ["OK"]
        return "\n".join(self.lines + status)


def _images(domain: Domain, split: str) -> list[Path]:
    return list(dict.fromkeys(s.image for s in domain.splits[split]))  # unique, in order


def check_images(paths: list[Path], decode: int) -> list[str]:
    """Every file must exist; the first `decode` (all if < 0) must decode as images."""
    problems = [f"{p}: missing image" for p in paths if not p.is_file()]
    present = [p for p in paths if p.is_file()]
    for p in present if decode < 0 else present[:decode]:
        try:
            open_image(p)  # decodes fully
        except DatasetError as err:
            problems.append(str(err))
    return problems


def _visibility(domain: Domain) -> list[str]:
    weights = [np.stack([s.weight for s in domain.splits[n]]) for n in SPLITS if domain.splits[n]]
    if not weights:
        return []
    per_kp = np.concatenate(weights).__gt__(0).mean(axis=0) * 100
    names = domain.spec.names
    cells = [f"{n} {v:.0f}%" for n, v in zip(names, per_kp, strict=True)]
    return ["labelled (weight > 0) per keypoint, all splits:"] + [
        "  " + ", ".join(cells[i : i + 6]) for i in range(0, len(cells), 6)
    ]


def check(
    name: str,
    root: str | Path,
    keypoints: str | KeypointSpec = "",
    decode: int = 20,
    categories: Categories = (),
    min_match: float = 0.5,
) -> Report:
    """A report on the folder (its `categories`, all by default), read in the keypoint set
    `keypoints` chooses (see registry.dataset_spec), which it shows; structural errors (missing
    annotation files, malformed JSON, wrong keypoint counts) and files whose names label less
    than `min_match` of a registered set's keypoints raise DatasetError naming the file."""
    if isinstance(keypoints, str) and keypoints not in ("", FROM_DATA):  # a registered set
        spec = dataset_spec(name, keypoints, root, categories)
        weak = weak_match(name, root, spec, min_match, categories)
        if weak:
            raise DatasetError(f"{root}: {weak}; {WEAK_MATCH_FIX}")
    domain = create_dataset(name, root, keypoints, categories)
    own = own_set_notes(name, root, categories) if keypoints == FROM_DATA else []
    report = Report()
    report.lines += [
        f"dataset {name} at {root}: {domain.spec.name} ({domain.spec.num_keypoints} keypoints)",
        *domain.spec.describe(),
        f"layout: {layout(name)}",
        f"{'split':<6}{'samples':>9}{'images':>9}{'labelled kp':>13}",
    ]
    for split in SPLITS:
        samples = domain.splits[split]
        paths = _images(domain, split)
        labelled = np.mean([float((s.weight > 0).mean()) for s in samples]) if samples else 0.0
        report.lines.append(f"{split:<6}{len(samples):>9}{len(paths):>9}{labelled:>12.1%}")
        if not samples:
            report.problems.append(f"{root}: the {split} split is empty")
        report.problems += check_images(paths, decode)
    report.lines += _visibility(domain)
    report.lines += [f"note: {n}" for n in own + domain.notes]
    report.problems = list(dict.fromkeys(report.problems))  # splits may share images (LSP)
    return report
