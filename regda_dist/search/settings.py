"""The settings of an experiment's `search:` block (search/spec.py reads and resolves it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from regda_dist.fields import bounded

AUTO = "auto"  # search.metric: chosen per keypoint set (spec.auto_metric)


@dataclass
class SearchConfig:
    space: dict = field(default_factory=dict)  # {} = methods.default_space()
    tasks: list = field(default_factory=list)  # [] = the experiment's data.task
    mode: str = field(default="per_task", metadata=bounded(choices=("per_task", "joint")))
    # a registered proxy (regda_dist.proxies), or auto: pose_prior where every task's keypoint
    # set has bones, else source_pck (benchmarks/results/proxy_study.md, 3 seeds x 16 trials +
    # a held-out domain: pose_prior's pick was as good as or better than source_pck's in every
    # search; source_pck needs only source labels and ranks epochs better)
    metric: str = AUTO
    # 'oracle' selects by target-test PCK (target LABELS): research on proxies only.
    selection: str = field(default="proxy", metadata=bounded(choices=("proxy", "oracle")))
    num_samples: int = field(default=8, metadata=bounded(1))
    max_concurrent: int = field(default=1, metadata=bounded(1))
    seed: int = field(default=0, metadata=bounded(0))
    # auto: ASHA for per_task (per-epoch proxy values), FIFO for joint (one value at the end)
    scheduler: str = field(default="auto", metadata=bounded(choices=("auto", "asha", "fifo")))
    # ASHA's first rung: the first epoch by whose end every method the search runs has begun
    # to adapt, each by its own measure (Method.judge_from: RegDA's warm-start lambda, a mean
    # teacher's consistency ramp-up, at this share of its rise); grace_period > 0 sets that
    # epoch instead. Later rungs: x reduction_factor.
    warmup_share: float = field(default=0.9, metadata=bounded(0.0, 0.999))
    grace_period: int = field(default=0, metadata=bounded(0))
    reduction_factor: int = field(default=2, metadata=bounded(2))
    storage: str = ""  # Optuna storage (SQLAlchemy URL); "" = sqlite in the experiment folder
    driver_cpus: float = field(default=0.05, metadata=bounded(0.0, 1.0))  # each trial's Tune driver
    # the first trial runs the experiment's own values (where they lie inside the space)
    start_from_defaults: bool = True
    # tpe: Optuna's TPE (model-based after startup_trials); random: Optuna's RandomSampler (the
    # baseline TPE is measured against: benchmarks/results/tpe_study.md). A grid space always
    # uses Optuna's GridSampler.
    sampler: str = field(default="tpe", metadata=bounded(choices=("tpe", "random")))
    # TPE's random start-up trials (the defaults trial counts as one); 0 = auto (tpe_startup)
    startup_trials: int = field(default=0, metadata=bounded(0))

    @property
    def select_metric(self) -> str:
        """What each trial selects its epoch by (train.select_metric of every trial)."""
        return "oracle/target_pck" if self.selection == "oracle" else f"proxy/{self.metric}"

    @property
    def objective(self) -> str:
        """The metric Tune and Optuna maximise: the selected epoch's value (best so far)."""
        return "joint/objective" if self.mode == "joint" else f"best/{self.select_metric}"

    @property
    def tpe_startup(self) -> int:
        """TPE's random start-up trials: search.startup_trials, or a quarter of the budget, at
        least 2 and at most Optuna's own default of 10. Optuna's 10 assumes budgets of ~100
        trials: with the default 8 (the demo's 5, the README's 16) TPE would be random search
        throughout. TPE needs a good and a bad observation to model anything (its "good" set is
        the best ceil(10%) of the trials: one trial below 11), so 2 is the floor; a quarter
        keeps the random share of a larger budget as Optuna's default does for ~40 trials."""
        return self.startup_trials or min(10, max(2, self.num_samples // 4))

    @property
    def scheduler_name(self) -> str:
        if self.scheduler == "auto":
            return "fifo" if self.mode == "joint" else "asha"
        return self.scheduler
