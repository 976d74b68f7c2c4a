"""The search block: loading, validation with file:line, defaults, tasks and the search folder."""

import pytest
import yaml

from regda_dist import config as C
from regda_dist.methods import default_space
from regda_dist.search.setup import prepare_search_dir
from regda_dist.search.space import apply_params, default_point, default_points
from regda_dist.search.spec import load_search


def _write(tmp_path, search, **sections):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**sections, "search": search}, sort_keys=False))
    return path


def test_defaults_space_tasks_and_overrides(tmp_path):
    search = load_search(_write(tmp_path, {}), ["search.num_samples=3", "adapt.epochs=8"])
    assert search.space == default_space() and list(search.tasks) == ["synth_hand"]
    assert search.settings.num_samples == 3 and search.cfg.adapt.epochs == 8
    assert search.settings.objective == "best/proxy/pose_prior"  # auto: hands have bones
    assert search.settings.scheduler_name == "asha"
    # a train run of the same file ignores the search block
    assert C.load(tmp_path / "exp.yaml").adapt.epochs == 30


def test_auto_metric_is_pose_prior_with_bones_else_source_pck(tmp_path):
    """pose_prior needs a skeleton (NaN without one): a keypoint set without bones is selected
    by source_pck; an explicit metric is kept; search.yaml holds the resolved name."""
    import numpy as np

    from tests.keypoint_domains import write_coco

    poses = {s: np.full((2, 3, 2), 8.0) + np.arange(3)[:, None] for s in ("train", "test")}
    folders = {
        side: write_coco(tmp_path / side, ["a", "b", "c"], [], poses, name="dots")
        for side in ("source", "target")
    }
    data = {"task": "", "keypoints": "from_data"}
    data.update({side: {"dataset": "coco", "root": str(f)} for side, f in folders.items()})
    boneless = load_search(_write(tmp_path, {}, data=data))
    assert boneless.settings.metric == "source_pck"
    assert boneless.tasks["coco2coco"].train.select_metric == "proxy/source_pck"
    both = load_search(_write(tmp_path, {"tasks": ["synth_hand", "synth_body"]}))
    assert both.settings.metric == "pose_prior"
    assert {t.train.select_metric for t in both.tasks.values()} == {"proxy/pose_prior"}
    without = load_search(
        _write(tmp_path, {}, train={"proxies": ["source_pck", "dev"]})  # pose_prior not computed
    )
    assert without.settings.metric == "source_pck"
    chosen = load_search(_write(tmp_path, {"metric": "dev"}))
    assert chosen.settings.select_metric == "proxy/dev"
    prepare_search_dir(tmp_path / "s", both, resume=False)
    saved = yaml.safe_load((tmp_path / "s" / "search.yaml").read_text())
    assert saved["search"]["metric"] == "pose_prior"
    prepare_search_dir(tmp_path / "s", load_search(tmp_path / "s" / "search.yaml"), resume=True)


def test_tasks_by_name_or_with_overrides(tmp_path):
    tasks = [
        "synth_hand",
        {"name": "body_small", "set": {"data.task": "synth_body", "data.num_train": 100}},
    ]
    search = load_search(_write(tmp_path, {"tasks": tasks, "mode": "joint"}))
    assert search.tasks["synth_hand"].data.task == "synth_hand"
    assert search.tasks["body_small"].data.num_train == 100
    assert (
        search.settings.objective == "joint/objective" and search.settings.scheduler_name == "fifo"
    )


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            {"space": {"regda.tradeoff": {"uniform": [0, 1]}}},
            "'regda.tradeoff' is not a config field",
        ),
        ({"space": {"regda": {"uniform": [0, 1]}}}, "'regda' is not a single value"),
        ({"space": {"regda.trade_off": {"loguniform": [0, 1]}}}, "needs low > 0"),
        ({"space": {"regda.trade_off": {"uniform": [2, 1]}}}, "low < high"),
        ({"space": {"regda.margin": {"uniform": [-1, 1]}}}, "must be >= 0.0, got -1"),
        ({"space": {"adapt.epochs": {"uniform": [1, 3]}}}, "adapt.epochs is int: use randint"),
        ({"space": {"train.device": {"uniform": ["a", "b"]}}}, "train.device is not numeric"),
        ({"space": {"train.progress": {"uniform": [False, True]}}}, "not numeric"),
        ({"space": {"regda.margin": {"normal": [1, 3]}}}, "DISTRIBUTION one of loguniform"),
        ({"space": {"data.task": {"choice": ["synth_cat"]}}}, "must be one of"),
        (
            {"space": {"regda.margin": {"grid": [1, 2]}, "adapt.sigma": {"choice": [1, 2]}}},
            "mixes grid",
        ),
        ({"tasks": [{"nme": "x"}]}, r"search.tasks\[0\]: expected a task name"),
        ({"tasks": ["synth_hand", "synth_hand"]}, "names 'synth_hand' twice"),
        ({"mode": "joint", "scheduler": "asha"}, "asha needs mode per_task"),
        ({"mode": "joint", "selection": "oracle"}, "oracle is for per_task"),
        ({"num_samples": 0}, "search.num_samples must be >= 1"),
        ({"shots": 3}, "unknown key 'search.shots'"),
    ],
)
def test_bad_search_blocks_name_the_problem(tmp_path, search, message):
    with pytest.raises(C.ConfigError, match=message):
        load_search(_write(tmp_path, search))


def test_per_task_search_needs_an_evaluation_every_epoch(tmp_path):
    with pytest.raises(C.ConfigError, match="train.eval_every must be 1"):
        load_search(_write(tmp_path, {}, train={"eval_every": 2}))


def test_a_grid_runs_each_combination_once(tmp_path):
    grid = {"regda.margin": {"grid": [2.0, 4.0]}, "adapt.sigma": {"grid": [1.5, 2.0, 3.0]}}
    assert load_search(_write(tmp_path, {"space": grid})).settings.num_samples == 6


def test_errors_carry_the_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("search:\n  num_samples: 2\n  space:\n    regda.margin: {uniform: [5, 1]}\n")
    with pytest.raises(C.ConfigError, match=r"exp.yaml:4: "):
        load_search(path)


def test_no_search_block_is_refused(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("regda: {epochs: 2}\n")
    with pytest.raises(C.ConfigError, match="no 'search:' block"):
        load_search(path)


def test_default_point_is_the_configs_own_values_when_inside_the_space(tmp_path):
    search = load_search(_write(tmp_path, {}))
    point = default_point(search.tasks["synth_hand"], search.space)
    assert point == {"adapt.method": "regda", "regda.trade_off": 1.0, "regda.margin": 4.0,
                     "adapt.sigma": 2.0, "regda.warm_hi": 0.1, "optim.lr": 0.1,
                     "optim.backbone_lr": 0.01}  # fmt: skip
    # the default space searches the method: the first trials are each method at its defaults
    points = default_points(search.tasks["synth_hand"], search.space)
    assert [p["adapt.method"] for p in points] == ["regda", "mean_teacher", "regda+mean_teacher"]
    assert points[1] == {"adapt.method": "mean_teacher", "adapt.sigma": 2.0, "optim.lr": 0.1,
                         "optim.backbone_lr": 0.01, "mean_teacher.ema_decay": 0.999,
                         "mean_teacher.keep": 0.5, "mean_teacher.weight": 1.0}  # fmt: skip
    assert set(points[2]) == set(point) | set(points[1])
    narrow = {"regda.margin": {"uniform": [5.0, 8.0]}}
    assert default_point(search.tasks["synth_hand"], narrow) is None
    cfg = apply_params(search.tasks["synth_hand"], {"regda.margin": 6.5, "adapt.epochs": 3})
    assert cfg.regda.margin == 6.5 and cfg.adapt.epochs == 3


def test_search_folder_is_never_overwritten_and_resume_needs_the_same_search(tmp_path):
    search = load_search(_write(tmp_path, {"num_samples": 2}))
    folder = tmp_path / "runs" / "s"
    with pytest.raises(C.ConfigError, match="no search to resume"):
        prepare_search_dir(folder, search, resume=True)
    prepare_search_dir(folder, search, resume=False)
    with pytest.raises(C.ConfigError, match="holds a search; pass --resume"):
        prepare_search_dir(folder, search, resume=False)
    prepare_search_dir(folder, search, resume=True)
    other = load_search(_write(tmp_path, {"num_samples": 3}))
    with pytest.raises(C.ConfigError, match="differs from this search"):
        prepare_search_dir(folder, other, resume=True)
    again = load_search(folder / "search.yaml")  # the saved experiment runs as is
    assert again.settings.num_samples == 2


@pytest.mark.parametrize(
    ("sets", "why"),
    [
        (["regda.warm_max_iters=100000"], "RegDA's warm-start lambda at 90% of its rise"),
        (["search.grace_period=12", "adapt.epochs=10"], "search.grace_period"),
        # RegDA is judged from epoch 3 (lambda at iteration 88), the mean teacher from epoch 29
        (
            ["adapt.epochs=3", "adapt.iters_per_epoch=30", "regda.warm_max_iters=30"],
            "mean teacher's consistency ramp-up at 90%",
        ),
    ],
)
def test_a_warm_up_as_long_as_the_run_falls_back_to_fifo_with_a_note_at_load(tmp_path, sets, why):
    # Ray's ASHA asserted grace_period <= max_t after phase 1 had run and the folder existed
    from regda_dist.distributed.scheduler import make_scheduler

    search = load_search(_write(tmp_path, {"scheduler": "asha"}), sets)
    assert search.settings.scheduler_name == "fifo"
    (note,) = [n for n in search.notes if n.startswith("search.scheduler asha")]
    assert why in note and "running FIFO" in note and "\n" not in note
    assert (
        type(make_scheduler(search.settings, search.tasks, search.space, tmp_path)).__name__
        == "FIFOScheduler"
    )
    kept = load_search(_write(tmp_path, {"scheduler": "asha"}), ["adapt.epochs=8"])
    assert kept.settings.scheduler_name == "asha" and not any("FIFO" in n for n in kept.notes)


def test_each_task_of_a_per_task_search_gets_its_own_rungs_or_fifo(tmp_path):
    # each task's group builds its own ASHA: a task shorter than the grace period raised Ray's
    # "grace_period must be <= max_t" after phase 1, while the search as a whole looked fine
    from regda_dist.distributed.scheduler import make_scheduler

    tasks = [
        {"name": "short", "set": {"data.task": "synth_hand", "adapt.epochs": 3}},
        {"name": "long", "set": {"data.task": "synth_hand", "adapt.epochs": 20}},
    ]
    search = load_search(_write(tmp_path, {"scheduler": "asha", "grace_period": 5, "tasks": tasks}))
    built = {
        name: type(make_scheduler(search.settings, {name: cfg}, search.space, tmp_path)).__name__
        for name, cfg in search.tasks.items()
    }
    assert built == {"short": "FIFOScheduler", "long": "ResumableASHA"}
    assert search.settings.scheduler_name == "asha"
    (note,) = [n for n in search.notes if n.startswith("search.scheduler asha")]
    assert "task short:" in note and "short runs FIFO" in note and "long" not in note


def test_the_start_says_when_the_experiments_own_values_are_outside_the_space(tmp_path):
    search = load_search(_write(tmp_path, {"num_samples": 8}, regda={"margin": 12.0}))
    (note,) = [n for n in search.notes if "own values are outside" in n]
    assert "regda.margin = 12.0, outside uniform [1.0, 8.0]" in note
    assert "no reference-defaults row" in note
    inside = load_search(_write(tmp_path, {"num_samples": 8}))
    assert not any("own values are outside" in n for n in inside.notes)
    assert (
        "each method at the experiment's own values (regda, mean_teacher, regda+mean_teacher)"
        in " ".join(inside.notes)
    )
    assert "TPE: the first 4 of 8 trials sample at random" in " ".join(inside.notes)


@pytest.mark.parametrize(
    ("key", "spec", "scheduler", "message"),
    [
        ("adapt.epochs", {"randint": [2, 5]}, "fifo", "every trial's last epoch"),
        ("train.eval_every", {"choice": [1, 2]}, "fifo", "each epoch"),
        ("train.select_metric", {"choice": ["proxy/dev"]}, "fifo", "the search sets it"),
        ("regda.warm_max_iters", {"randint": [10, 2000]}, "asha", "under ASHA: its rungs"),
        ("adapt.iters_per_epoch", {"randint": [10, 500]}, "auto", "under ASHA"),
        ("regda.warm_alpha", {"uniform": [0.5, 2.0]}, "asha", "use search.scheduler fifo"),
    ],
)
def test_fields_the_rungs_or_the_last_epoch_come_from_are_not_searched(
    tmp_path, key, spec, scheduler, message
):
    exp = _write(tmp_path, {"space": {key: spec}, "scheduler": scheduler})
    with pytest.raises(C.ConfigError, match=message) as err:
        load_search(exp)
    assert f"exp.yaml:3: search.space.{key} cannot be searched" in str(err.value)
    if key == "regda.warm_max_iters":  # FIFO has no rungs: searchable there
        fifo = load_search(_write(tmp_path, {"space": {key: spec}, "scheduler": "fifo"}))
        assert key in fifo.space


def test_a_metric_that_cannot_exist_on_a_task_is_refused_at_load(tmp_path):
    from regda_dist.data.datasets import task_spec
    from regda_dist.search.spec import check_metric

    search = load_search(_write(tmp_path, {"metric": "pose_prior"}, data=_boneless(tmp_path)))
    specs = {t: task_spec(c.data) for t, c in search.tasks.items()}
    with pytest.raises(C.ConfigError, match="task coco2coco's keypoint set .* has no bones"):
        check_metric(search, specs)
    search = load_search(_write(tmp_path, {"metric": "pose_prior"}))  # hands have bones
    check_metric(search, {t: task_spec(c.data) for t, c in search.tasks.items()})


def _boneless(tmp_path) -> dict:
    """data: a COCO pair whose keypoint set (from the files) has no skeleton."""
    import numpy as np

    from tests.keypoint_domains import write_coco

    poses = {s: np.full((2, 3, 2), 8.0) + np.arange(3)[:, None] for s in ("train", "test")}
    data = {"task": "", "keypoints": "from_data"}
    for side in ("source", "target"):
        folder = write_coco(tmp_path / side, ["a", "b", "c"], [], poses, name="dots")
        data[side] = {"dataset": "coco", "root": str(folder)}
    return data


CONDITIONAL = {
    "adapt.method": {"choice": ["regda", "mean_teacher", "regda+mean_teacher"]},
    "regda.trade_off": {"loguniform": [0.1, 10.0]},
    "adapt.sigma": {"choice": [1.5, 2.0, 3.0]},
    "mean_teacher.keep": {"uniform": [0.2, 0.8]},
    "optim.lr": {"loguniform": [0.01, 0.3]},
}


def test_a_conditional_space_gives_each_method_only_the_knobs_it_reads():
    from regda_dist.search.space import dimensions

    assert set(dimensions(CONDITIONAL, "regda")) == {
        "adapt.method", "regda.trade_off", "adapt.sigma", "optim.lr"}  # fmt: skip
    assert set(dimensions(CONDITIONAL, "mean_teacher")) == {
        "adapt.method", "adapt.sigma", "mean_teacher.keep", "optim.lr"}  # fmt: skip
    assert set(dimensions(CONDITIONAL, "regda+mean_teacher")) == set(CONDITIONAL)
    # phase 2's schedule lives in regda: but every method trains by it
    schedule = {"adapt.batch_size": {"choice": [16, 32]}, "adapt.iters_per_epoch": {"choice": [50]}}
    assert set(schedule) <= set(dimensions({**CONDITIONAL, **schedule}, "mean_teacher"))


def test_optuna_never_samples_another_methods_knobs():
    import optuna

    from regda_dist.distributed.searcher import define_by_run

    suggest = define_by_run(CONDITIONAL)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        suggest(trial)
        method, params = trial.params["adapt.method"], set(trial.params)
        seen.add(method)
        assert ("regda.trade_off" in params) == ("regda" in method.split("+")), trial.params
        assert ("mean_teacher.keep" in params) == ("mean_teacher" in method), trial.params
        assert {"adapt.sigma", "optim.lr"} <= params
        study.tell(trial, 0.0)
    assert seen == {"regda", "mean_teacher", "regda+mean_teacher"}


def test_the_first_trials_are_each_method_at_the_experiments_own_values():
    from regda_dist.search.space import default_point, default_points

    cfg = C.load(None, ["adapt.method=mean_teacher", "mean_teacher.keep=0.5"])
    points = default_points(cfg, CONDITIONAL)
    assert [p["adapt.method"] for p in points] == ["mean_teacher", "regda", "regda+mean_teacher"]
    assert points[0] == {"adapt.method": "mean_teacher", "adapt.sigma": 2.0,
                         "mean_teacher.keep": 0.5, "optim.lr": 0.1}  # fmt: skip
    assert default_point(cfg, CONDITIONAL) == points[0]


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({"adapt.method": {"choice": ["regda", "adabn"]}}, "must be a choice among"),
        ({"adapt.method": {"uniform": [0, 1]}}, "adapt.method must be str"),
        ({"adapt.method": {"choice": ["regda"]}, "mean_teacher.keep": {"uniform": [0.2, 0.8]}},
         "mean_teacher.keep is read by no method the search runs"),
        ({"mean_teacher.keep": {"uniform": [0.2, 0.8]}}, "runs \\(regda\\)"),
        ({"adapt.method": {"grid": ["regda", "mean_teacher"]}, "optim.lr": {"grid": [0.1]}},
         "cannot be a grid"),
        ({"adapt.method": {"choice": ["regda", "mean_teacher"]}, "adapt.batchnorm":
          {"choice": ["domain"]}}, "a trial of mean_teacher: .*adapt.batchnorm 'domain'"),
    ],
)  # fmt: skip
def test_a_method_dimension_that_cannot_work_is_one_line(tmp_path, space, needle):
    exp = tmp_path / "x.yaml"
    exp.write_text(yaml.safe_dump({"search": {"space": space}}))
    with pytest.raises(C.ConfigError, match=needle):
        load_search(exp)


def test_a_method_the_experiment_cannot_run_is_refused_before_any_trial(tmp_path):
    """Phase 1's 1x1 head cannot seed a mean teacher's two-layer teacher: refused at start, not
    in every mean-teacher trial after phase 1 has run."""
    path = _write(tmp_path, {"space": {"adapt.method": {"choice": ["regda", "mean_teacher"]}}},
                  pretrain={"head_layers": 1})  # fmt: skip
    with pytest.raises(C.ConfigError, match="a trial of mean_teacher: .*adapt.head_init 'auto'"):
        load_search(path)


def test_tpe_starts_modelling_after_each_methods_defaults_and_the_random_start():
    from regda_dist.search.space import startup_trials

    cfg = C.load(None, [])
    assert startup_trials(cfg, default_space(), 2, True) == 4  # 3 methods' defaults + 1 random
    assert startup_trials(cfg, default_space(), 2, False) == 2
    assert startup_trials(cfg, {"regda.margin": {"uniform": [1.0, 8.0]}}, 2, True) == 2
