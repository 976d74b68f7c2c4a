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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regda_dist import config as C
from regda_dist.config.migrate import migrate_keys
from regda_dist.fields import apply
from regda_dist.methods import blind_proxy_problems, bones_problem, default_space, get_method
from regda_dist.search.rungs import rung_fields, scheduler_notes
from regda_dist.search.settings import AUTO, SearchConfig
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
    apply(settings, raw_search, str(path), lines, "search.")
    for text in overrides:
        key, value = C.parse_override(text)
        if key.startswith("search."):
            apply(settings, C.nest(key.removeprefix("search."), value), f"--set {key}", {})
    return resolve(cfg, settings, str(path), lines, pick_metric)


def resolve(
    cfg: C.Config, settings: SearchConfig, source: str, lines: dict, pick_metric: bool = True
) -> Search:
    space = migrate_keys(settings.space, f"{source}: search.space") or default_space()
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
    check_fixed_fields(space, settings, cfg, source, lines)
    tasks = _tasks(cfg, settings, source)
    if settings.metric == AUTO and pick_metric:
        settings.metric = auto_metric(list(tasks.values()), methods(space))
    for merged in tasks.values():
        merged.train.select_metric = settings.select_metric  # every trial selects its epoch
        if settings.mode == "per_task" and merged.train.eval_every != 1:
            raise C.ConfigError(
                f"{source}: train.eval_every must be 1 in a per_task search (every report "
                "carries the proxy that Tune and ASHA compare)"
            )
    notes = [*scheduler_notes(settings, tasks, space), *_start_notes(settings, tasks, space)]
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
        for key, value in migrate_keys(sets, f"{source}: search.tasks[{i}].set").items():
            apply(merged, C.nest(key, value), f"{source}: search.tasks[{i}].set.{key}", {})
        if name in tasks:
            raise C.ConfigError(f"{source}: search.tasks names {name!r} twice")
        tasks[name] = C.validate(merged, f"{source}: search.tasks[{i}]")
    return tasks


# Fields the search reads from the base config once, so no trial may vary them: the last epoch
# (a trial that reaches it completes; one stopped before it is PRUNED), what every trial selects
# its epoch by, and, under ASHA, what its rungs in epochs come from (search/rungs.py: phase 2's
# epoch length and what each method waits on). regda.warm_lo and warm_hi set the warm-start's
# height, not when it rises: they do not move a rung and stay searchable.
FIXED_FIELDS = {
    "adapt.epochs": "every trial's last epoch is the base config's",
    "train.select_metric": "the search sets it (search.metric, search.selection)",
    "train.eval_every": "every trial evaluates each epoch (the search's reports)",
}


def check_fixed_fields(
    space: dict, settings: SearchConfig, cfg: C.Config, source: str, lines: dict
) -> None:
    """Refuse a searched field that the search computes from the base config (FIXED_FIELDS;
    the rung fields under ASHA)."""
    rungs = rung_fields(space, cfg)
    for key in space:
        where = _where(source, lines, key)
        if key in FIXED_FIELDS:
            raise C.ConfigError(
                f"{where}: search.space.{key} cannot be searched: {FIXED_FIELDS[key]}; set it "
                "in the experiment"
            )
        if key in rungs and settings.scheduler_name == "asha":
            raise C.ConfigError(
                f"{where}: search.space.{key} cannot be searched under ASHA: its rungs (in "
                "epochs, after the warm-up) come from the base config; use search.scheduler "
                "fifo to search it"
            )


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
        for name in methods(search.space) or [cfg.adapt.method]:
            if s.selection == "proxy" and (blind := blind_proxy_problems(name, s.metric)):
                raise C.ConfigError(
                    f"search.metric: {blind[0]}; choose another proxy or leave {name} out "
                    "of search.space's adapt.method"
                )
            if problem := bones_problem(name, specs[task]):
                raise C.ConfigError(
                    f"search.space, task {task}: {problem}, or leave it out of adapt.method"
                )
        if s.selection == "proxy" and proxy.needs_skeleton and not specs[task].skeleton:
            raise C.ConfigError(
                f"search.metric {s.metric!r} judges skeletons, and task {task}'s keypoint set "
                f"({specs[task].name}) has no bones: it would be NaN for every trial; use "
                "source_pck (or search.metric auto)"
            )


def auto_metric(tasks: list[C.Config], searched: list[str] = ()) -> str:
    """search.metric auto: pose_prior when every task's keypoint set has bones (it needs a
    skeleton) and computes it and no method searched (`searched`, else each task's own) is
    blind to it, else source_pck (it needs only source labels)."""
    from regda_dist.data.datasets import task_spec
    from regda_dist.proxies import auto_proxy

    def blind(t: C.Config) -> set[str]:
        return {p for m in searched or [t.adapt.method] for p in get_method(m).blind_proxies}

    names = {auto_proxy(bool(task_spec(t.data).skeleton), t.train.proxies, blind(t))
             for t in tasks}  # fmt: skip
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
