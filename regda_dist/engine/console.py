"""Progress on the console, one line at a time: an epoch line per evaluation, a heartbeat
within long epochs. Lines go straight to stdout: under Ray Train, `print` is patched into
a logger that also tees to stdout, so each printed line would show twice."""

from __future__ import annotations

import sys
import time

HEARTBEAT_S = 25.0  # the longest silence within an epoch, when no progress bar shows


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class ConsoleLogger:
    """Engine callback: one line per evaluation event (progress under Ray, where bars do not
    render), with the epoch's selection metric when the run selects epochs."""

    KEYS = (
        "pretrain/loss",
        "pretrain/val_pck",
        "oracle/loss",
        "oracle/val_pck",
        "train/loss_a",
        "train/lambda",
        "source/pck",
    )

    def __init__(self, total: dict[str, int], select_metric: str = "", label: str = ""):
        self.total, self.label = total, f"[{label}] " if label else ""
        self.keys = (*self.KEYS, *([select_metric] if select_metric else ()), "oracle/target_pck")

    def __call__(self, phase: str, epoch: int, metrics: dict) -> None:
        shown = "  ".join(f"{k} {metrics[k]:.3f}" for k in self.keys if k in metrics)
        say(f"{self.label}{phase} {epoch}/{self.total.get(phase, '?')}  {shown}")


class Heartbeat:
    """A line every HEARTBEAT_S seconds of an epoch, for consoles without a progress bar."""

    def __init__(self, desc: str, total: int, enabled: bool):
        self.desc, self.total, self.enabled = desc, total, enabled
        self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        if self.enabled and time.monotonic() - self.last >= HEARTBEAT_S:
            say(f"{self.desc}: {done}/{self.total} iterations")
            self.last = time.monotonic()
