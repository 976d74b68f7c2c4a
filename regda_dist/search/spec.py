"""The `search:` block of an experiment YAML: what to search, on which tasks, selected how.

    search:
      space:                               # dotted config path -> one distribution
        regda.trade_off: {loguniform: [0.1, 10]}
        regda.sigma: {choice: [1.5, 2, 3]}
      tasks: [synth_hand, synth_body]      # data.task names, or {name: N, set: {path: value}}
      mode: per_task                       # or joint: one configuration for all tasks
      metric: auto                         # the proxy trials and epochs are selected by
      num_samples: 8

Distributions (search/space.py): loguniform [lo, hi], uniform [lo, hi] (float fields), randint
[lo, hi] (hi exclusive, int fields), choice [values], grid [values] (every dimension a grid:
each combination once, in Optuna's GridSampler order; num_samples is then the number of
combinations). Endpoints and values are checked against the field's type and range like any
config value.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regda_dist import config as C
from regda_dist.config import DEFAULT_SPACE
from regda_dist.search.space import (
    METHOD,
    apply_params,
    check_dimension,
    check_methods,
    default_points,
    methods,
    outside_space,
    startup_trials,
)

AUTO = "auto"  # search.metric: chosen per keypoint set (auto_metric)


@dataclass
class SearchConfig:
    space: dict = field(default_factory=dict)  # {} = DEFAULT_SPACE
    tasks: list = field(default_factory=list)  # [] = the experiment's data.task
    mode: str = field(default="per_task", metadata=C._range(choices=("per_task", "joint")))
    # a registered proxy (regda_dist.proxies), or auto: pose_prior where every task's keypoint
    # set has bones, else source_pck (benchmarks/results/proxy_study.md, 3 seeds x 16 trials +
    # a held-out domain: pose_prior's pick was as good as or better than source_pck's in every
    # search; source_pck needs only source labels and ranks epochs better)
    metric: str = AUTO
    # 'oracle' selects by target-test PCK (target LABELS): research on proxies only.
    selection: str = field(default="proxy", metadata=C._range(choices=("proxy", "oracle")))
    num_samples: int = field(default=8, metadata=C._range(1))
    max_concurrent: int = field(default=1, metadata=C._range(1))
    seed: int = field(default=0, metadata=C._range(0))
    # auto: ASHA for per_task (per-epoch proxy values), FIFO for joint (one value at the end)
    scheduler: str = field(default="auto", metadata=C._range(choices=("auto", "asha", "fifo")))
    # ASHA's first rung: the first epoch by whose end the warm-start lambda has risen by this
    # share of its way to regda.warm_hi (a trial is not judged before adaptation has begun);
    # grace_period > 0 sets that epoch instead. Later rungs: x reduction_factor.
    warmup_share: float = field(default=0.9, metadata=C._range(0.0, 0.999))
    grace_period: int = field(default=0, metadata=C._range(0))
    reduction_factor: int = field(default=2, metadata=C._range(2))
    storage: str = ""  # Optuna storage (SQLAlchemy URL); "" = sqlite in the experiment folder
    driver_cpus: float = field(
        default=0.05, metadata=C._range(0.0, 1.0)
    )  # each trial's Tune driver
    # the first trial runs the experiment's own values (where they lie inside the space)
    start_from_defaults: bool = True
    # tpe: Optuna's TPE (model-based after startup_trials); random: Optuna's RandomSampler (the
    # baseline TPE is measured against: benchmarks/results/tpe_study.md). A grid space always
    # uses Optuna's GridSampler.
    sampler: str = field(default="tpe", metadata=C._range(choices=("tpe", "random")))
    # TPE's random start-up trials (the defaults trial counts as one); 0 = auto (tpe_startup)
    startup_trials: int = field(default=0, metadata=C._range(0))

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


@dataclass
class Search:
    """A search: its base run config, the settings of its search block, the resolved run config
    of every task and the space."""

    cfg: C.Config
    settings: SearchConfig
    tasks: dict[str, C.Config]
    space: dict
    notes: list[str] = field(default_factory=list)  # one line each, said before anything runs


def load_search(path: str | Path, overrides: list[str] = (), pick_metric: bool = True) -> Search:
    """Read an experiment YAML with a `search:` block; `--set search.x=...` overrides it.
    pick_metric=False leaves search.metric auto unresolved (it reads the keypoint set, which
    for from_data is in the data: `submit` checks an experiment whose data is on the cluster)."""
    values, lines = C.read_yaml(path)
    raw_search = values.pop("search", None)
    if raw_search is None:
        raise C.ConfigError(f"{path}: no 'search:' block; `regda-dist train` runs it as one run")
    run_sets = [o for o in overrides if not o.strip().startswith("search.")]
    cfg = C.build(values, lines, str(path), run_sets)
    settings = SearchConfig()
    if not isinstance(raw_search, dict):
        raise C.ConfigError(f"{path}:{lines.get('search', '?')}: search must be a mapping")
    C.apply(settings, raw_search, str(path), lines, "search.")
    for text in overrides:
        key, value = C.parse_override(text)
        if key.startswith("search."):
            C.apply(settings, C.nest(key.removeprefix("search."), value), f"--set {key}", {})
    return resolve(cfg, settings, str(path), lines, pick_metric)


def resolve(
    cfg: C.Config, settings: SearchConfig, source: str, lines: dict, pick_metric: bool = True
) -> Search:
    space = settings.space or copy.deepcopy(DEFAULT_SPACE)
    for key, spec in space.items():
        check_dimension(key, spec, _where(source, lines, key))
    kinds = {next(iter(spec)) for spec in space.values()}
    if "grid" in kinds and kinds != {"grid"}:
        raise C.ConfigError(
            f"{source}: search.space mixes grid with other distributions; use choice"
        )
    if all("grid" in spec for spec in space.values()):
        if METHOD in space:
            raise C.ConfigError(
                f"{source}: search.space.{METHOD} cannot be a grid (a grid samples every "
                "dimension for every trial; methods read different ones): use choice"
            )
        settings.num_samples = math.prod(len(spec["grid"]) for spec in space.values())
    check_methods(space, cfg.adapt.method, _where(source, lines, METHOD))
    # a method the experiment cannot run is refused now, not in every trial of it: with each
    # value of the other adapt.* choices (BatchNorm mode, head)
    choices = [(k, v) for k, spec in space.items() if k.startswith("adapt.") and k != METHOD
               for v in spec.get("choice", [])]  # fmt: skip
    for method in methods(space):
        for params in [{METHOD: method}] + [{METHOD: method, k: v} for k, v in choices]:
            try:
                apply_params(cfg, params)
            except C.ConfigError as e:
                where = _where(source, lines, METHOD)
                raise C.ConfigError(f"{where}: a trial of {method}: {e}") from None
    if settings.selection == "oracle" and settings.mode == "joint":
        raise C.ConfigError(f"{source}: search.selection oracle is for per_task searches")
    if settings.scheduler_name == "asha" and settings.mode == "joint":
        raise C.ConfigError(
            f"{source}: search.scheduler asha needs mode per_task (joint reports once)"
        )
    check_fixed_fields(space, settings, source, lines)
    tasks = _tasks(cfg, settings, source)
    if settings.metric == AUTO and pick_metric:
        settings.metric = auto_metric(list(tasks.values()))
    for merged in tasks.values():
        merged.train.select_metric = settings.select_metric  # every trial selects its epoch
        if settings.mode == "per_task" and merged.train.eval_every != 1:
            raise C.ConfigError(
                f"{source}: train.eval_every must be 1 in a per_task search (every report "
                "carries the proxy that Tune and ASHA compare)"
            )
    notes = [*_scheduler_notes(settings, tasks), *_start_notes(settings, tasks, space)]
    return Search(cfg, settings, tasks, space, notes)


def _where(source: str, lines: dict, key: str) -> str:
    line = lines.get(f"search.space.{key}")
    return f"{source}:{line}" if line else source


def _tasks(cfg: C.Config, settings: SearchConfig, source: str) -> dict[str, C.Config]:
    """{name: the task's resolved run config}: search.tasks, or the experiment's own task."""
    tasks = {}
    d = cfg.data
    own = {"name": d.task or f"{d.source.dataset}2{d.target.dataset}", "set": {}}
    for i, entry in enumerate(settings.tasks or [own]):
        name, sets = _task_entry(entry, f"{source}: search.tasks[{i}]")
        merged = C.from_dict(copy.deepcopy(cfg.to_dict()))
        for key, value in sets.items():
            C.apply(merged, C.nest(key, value), f"{source}: search.tasks[{i}].set.{key}", {})
        if name in tasks:
            raise C.ConfigError(f"{source}: search.tasks names {name!r} twice")
        tasks[name] = C.validate(merged, f"{source}: search.tasks[{i}]")
    return tasks


# Fields the search reads from the base config once, so no trial may vary them: the last epoch
# (a trial that reaches it completes; one stopped before it is PRUNED), what every trial selects
# its epoch by, and, under ASHA, what its rungs in epochs come from (grace_epochs: the warm-up's
# length in epochs). regda.warm_lo and warm_hi set the warm-start's height, not when it rises:
# they do not move a rung and stay searchable (warm_hi is in the default space).
FIXED_FIELDS = {
    "regda.epochs": "every trial's last epoch is the base config's",
    "train.select_metric": "the search sets it (search.metric, search.selection)",
    "train.eval_every": "every trial evaluates each epoch (the search's reports)",
}
RUNG_FIELDS = ("regda.iters_per_epoch", "regda.warm_alpha", "regda.warm_max_iters")


def check_fixed_fields(space: dict, settings: SearchConfig, source: str, lines: dict) -> None:
    """Refuse a searched field that the search computes from the base config (FIXED_FIELDS;
    RUNG_FIELDS under ASHA)."""
    for key in space:
        where = _where(source, lines, key)
        if key in FIXED_FIELDS:
            raise C.ConfigError(
                f"{where}: search.space.{key} cannot be searched: {FIXED_FIELDS[key]}; set it "
                "in the experiment"
            )
        if key in RUNG_FIELDS and settings.scheduler_name == "asha":
            raise C.ConfigError(
                f"{where}: search.space.{key} cannot be searched under ASHA: its rungs (in "
                "epochs, after the warm-up) come from the base config; use search.scheduler "
                "fifo to search it"
            )


def _scheduler_notes(settings: SearchConfig, tasks: dict[str, C.Config]) -> list[str]:
    """ASHA with no rung before the last epoch (a warm-up or grace_period as long as the run)
    could stop nothing, and Ray refuses a grace period beyond max_t (an AssertionError after
    phase 1 ran): the search runs FIFO instead and says so."""
    if settings.scheduler_name != "asha":
        return []
    grace, max_t, rungs = asha_rungs(settings, tasks)
    last = max_t - 1
    if any(rung < last for rung in rungs):
        return []
    why = (
        "search.grace_period"
        if settings.grace_period
        else f"the warm-start lambda at {settings.warmup_share:.0%} of its rise"
    )
    settings.scheduler = "fifo"
    return [
        f"search.scheduler asha: its first rung, epoch {grace} ({why}), is not before the "
        f"last epoch ({last}), so no trial could be stopped early; running FIFO"
    ]


def _start_notes(settings: SearchConfig, tasks: dict[str, C.Config], space: dict) -> list[str]:
    """What the first trials are: the experiment's own values (or why not), TPE's random
    start-up."""
    notes = []
    grid = all("grid" in spec for spec in space.values())
    cfg = next(iter(tasks.values()))
    if settings.start_from_defaults and not grid:
        if methods(space):
            notes.append(
                f"the first trials run each method at the experiment's own values "
                f"({', '.join(p[METHOD] for p in default_points(cfg, space))})"
            )
        outside = outside_space(cfg, space)
        if outside:
            notes.append(
                f"the experiment's own values are outside search.space ({'; '.join(outside)}): "
                "no trial runs them, and the report has no reference-defaults row"
            )
    if settings.sampler == "tpe" and not grid:
        start = startup_trials(cfg, space, settings.tpe_startup, settings.start_from_defaults)
        n = min(start, settings.num_samples)
        notes.append(
            f"TPE: the first {n} of {settings.num_samples} trials sample at random "
            "(search.startup_trials), the rest from its model"
        )
    return notes


def check_metric(search: Search, specs: dict) -> None:
    """search.metric can select on every task: a registered proxy that each task computes
    (train.proxies), with a source-only baseline in a joint search, and one that can exist on
    the task's keypoint set (pose_prior needs bones). specs: {task: its KeypointSpec}."""
    from regda_dist.proxies import create_proxy, list_proxies

    s = search.settings
    if s.metric not in list_proxies():
        raise C.ConfigError(
            f"search.metric: unknown proxy {s.metric!r}; registered: {', '.join(list_proxies())}"
        )
    proxy = create_proxy(s.metric)
    if s.mode == "joint" and not proxy.has_baseline:
        raise C.ConfigError(f"search.metric {s.metric!r} has no source-only baseline for joint")
    for task, cfg in search.tasks.items():
        if s.metric not in cfg.train.proxies:
            raise C.ConfigError(f"search.metric {s.metric!r} is not in train.proxies")
        if s.selection == "proxy" and proxy.needs_skeleton and not specs[task].skeleton:
            raise C.ConfigError(
                f"search.metric {s.metric!r} judges skeletons, and task {task}'s keypoint set "
                f"({specs[task].name}) has no bones: it would be NaN for every trial; use "
                "source_pck (or search.metric auto)"
            )


def auto_metric(tasks: list[C.Config]) -> str:
    """search.metric auto: pose_prior when every task's keypoint set has bones (it needs a
    skeleton) and computes it, else source_pck (it needs only source labels)."""
    from regda_dist.data.datasets import task_spec
    from regda_dist.proxies import auto_proxy

    names = {auto_proxy(bool(task_spec(t.data).skeleton), t.train.proxies) for t in tasks}
    return names.pop() if len(names) == 1 else "source_pck"


def _task_entry(entry: Any, where: str) -> tuple[str, dict]:
    if isinstance(entry, str):
        return entry, {"data.task": entry}
    if (
        isinstance(entry, dict)
        and set(entry) <= {"name", "set"}
        and isinstance(entry.get("name"), str)
    ):
        sets = entry.get("set") or {}
        if isinstance(sets, dict):
            return entry["name"], sets
    raise C.ConfigError(f"{where}: expected a task name or {{name: NAME, set: {{path: value}}}}")


def grace_epochs(cfg: C.Config, share: float) -> int:
    """The first epoch by whose end the warm-start lambda has risen by `share` of its way from
    regda.warm_lo to regda.warm_hi: lambda(i) = lo + (hi - lo) (2 / (1 + e^(-alpha i / N)) - 1)
    reaches it at i = N / alpha ln((1 + share) / (1 - share)) iterations."""
    r = cfg.regda
    if r.warm_hi <= r.warm_lo or r.warm_alpha <= 0:  # lambda never rises: nothing to wait for
        return 1
    iters = r.warm_max_iters / r.warm_alpha * math.log((1 + share) / (1 - share))
    return max(1, math.ceil(iters / r.iters_per_epoch - 1e-9))


def asha_rungs(settings: SearchConfig, tasks: dict[str, C.Config]) -> tuple[int, int, list[int]]:
    """(grace period, max_t, rungs) of ASHA in epochs. max_t is one past the last epoch, where
    ASHA would stop every trial."""
    share = settings.warmup_share
    grace = settings.grace_period or max(grace_epochs(c, share) for c in tasks.values())
    max_t = max(c.regda.epochs for c in tasks.values()) + 1
    rungs, rung = [], grace
    while rung < max_t:
        rungs.append(rung)
        rung *= settings.reduction_factor
    return grace, max_t, rungs


def storage_url(settings: SearchConfig, search_dir: Path) -> str:
    """The Optuna storage of a search: search.storage, or SQLite in the search folder."""
    return settings.storage or f"sqlite:///{search_dir.resolve() / 'optuna.db'}"


def study_name(search_dir: Path, group: str) -> str:
    return f"{search_dir.name}/{group}"


def to_yaml_dict(search: Search) -> dict:
    """The resolved search as a YAML-able mapping: runnable again by `regda-dist tune`."""
    settings = {**dataclasses.asdict(search.settings), "space": search.space}
    return {**search.cfg.to_dict(), "search": settings}


def prepare_search_dir(search_dir: Path, search: Search, resume: bool) -> None:
    """check_search_dir, then create the folder with search.yaml (a new search)."""
    check_search_dir(search_dir, search, resume)
    saved = search_dir / "search.yaml"
    if saved.exists():
        return
    search_dir.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(to_yaml_dict(search), sort_keys=False))
    tmp.replace(saved)


def check_search_dir(search_dir: Path, search: Search, resume: bool) -> None:
    """Refuse to overwrite a search; --resume only the same search."""
    saved = search_dir / "search.yaml"
    if saved.exists():
        if not resume:
            raise C.ConfigError(
                f"{search_dir} holds a search; pass --resume to continue it or choose another "
                "--name"
            )
        try:
            again = load_search(saved)
        except C.ConfigError as err:
            raise C.ConfigError(f"cannot --resume: {err}") from None
        if to_yaml_dict(again) != to_yaml_dict(search):
            raise C.ConfigError(f"{saved} differs from this search; cannot --resume")
        return
    if resume:
        raise C.ConfigError(f"{search_dir}: no search to resume (no search.yaml)")
    if search_dir.exists() and any(search_dir.iterdir()):
        raise C.ConfigError(
            f"{search_dir} exists and is not a search folder; choose another --name"
        )
