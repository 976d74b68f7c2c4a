import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from regda_dist import config as C

EXPERIMENTS = sorted((Path(__file__).parents[1] / "experiments").glob("*.yaml"))


def _write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(path=None, overrides=()):
    """The ConfigError message of load(path, overrides); it must be exactly one line."""
    with pytest.raises(C.ConfigError) as info:
        C.load(path, list(overrides))
    msg = str(info.value)
    assert msg and "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


def test_defaults_are_the_reference_values():
    cfg = C.Config()
    assert (cfg.data.image_size, cfg.data.heatmap_size, cfg.data.sigma) == (256, 64, 2.0)
    r, a = cfg.regda, cfg.adapt
    assert (r.margin, r.trade_off, a.epochs, a.iters_per_epoch, a.batch_size) == (4, 1, 30, 500, 32)
    assert (r.warm_hi, r.warm_max_iters) == (0.1, 1000)
    o = cfg.optim
    assert (o.lr, o.backbone_lr, o.momentum, o.weight_decay) == (0.1, 0.01, 0.9, 1e-4)
    assert o.nesterov is True
    assert (o.lr_gamma, o.lr_decay) == (1e-4, 0.75)
    assert cfg.pretrain.epochs == 70
    assert cfg.pretrain.milestones == [45, 60]


def test_defaults_pass_validation_and_load_none_gives_defaults():
    assert C.validate(C.Config()) == C.Config()
    assert C.load(None) == C.Config()


def test_default_milestones_are_not_shared_between_instances():
    a = C.Config()
    a.pretrain.milestones.append(65)
    assert C.Config().pretrain.milestones == [45, 60]


def test_load_applies_file_values_and_keeps_other_defaults(tmp_path):
    path = _write(tmp_path, "data:\n  image_size: 64\n  heatmap_size: 32\nregda:\n  margin: 2.5\n")
    cfg = C.load(path)
    assert (cfg.data.image_size, cfg.data.heatmap_size, cfg.regda.margin) == (64, 32, 2.5)
    assert cfg.regda.trade_off == 1.0
    assert cfg.pretrain == C.PretrainConfig()


@pytest.mark.parametrize(
    "text, key, line",
    [
        ("data:\n  image_size: 64\n  heatmap_size: 32\nsearchh:\n  x: 1\n", "searchh", 4),
        ("# header\nregda:\n  trade_off: 0.5\n  tradeoff: 2\n", "regda.tradeoff", 4),
        ("regda:\n  epochs: ten\n", "adapt.epochs", 2),
        ("\n\npretrain:\n  epochs: true\n", "pretrain.epochs", 4),
        ("regda:\n  iters_per_epoch: 2.5\n", "adapt.iters_per_epoch", 2),
        ("regda:\n  margin: yes\n", "regda.margin", 2),
        ("model:\n  backbone: 18\n", "model.backbone", 2),
        ("train:\n  progress: 1\n", "train.progress", 2),
        ("optim:\n  lr: 0.1\n  momentum: 1.5\n", "optim.momentum", 3),
        ("data:\n  sigma: 0.0\n", "data.sigma", 2),
        ("regda:\n  batch_size: 0\n", "adapt.batch_size", 2),
        ("data:\n  task: synth_face\n", "data.task", 2),
        ("pretrain:\n  milestones: 45\n", "pretrain.milestones", 2),
        ("pretrain:\n  milestones: [45, sixty]\n", "pretrain.milestones", 2),
        ("pretrain:\n  milestones: [45, true]\n", "pretrain.milestones", 2),
        ("data:\n  image_size: 64\nregda: 3\n", "regda", 3),
    ],
)
def test_bad_key_in_file_names_key_file_and_line(tmp_path, text, key, line):
    path = _write(tmp_path, text)
    msg = _error(path)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert key in msg


def test_unknown_key_message_lists_known_keys(tmp_path):
    msg = _error(_write(tmp_path, "regda:\n  tradeoff: 2\n"))
    assert "trade_off" in msg and "warm_max_iters" in msg


def test_int_for_float_is_accepted_and_becomes_float(tmp_path):
    cfg = C.load(_write(tmp_path, "regda:\n  trade_off: 2\noptim:\n  lr: 1\n"))
    assert cfg.regda.trade_off == 2.0 and type(cfg.regda.trade_off) is float
    assert cfg.optim.lr == 1.0 and type(cfg.optim.lr) is float


def test_exponent_notation_without_dot_is_a_float(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-4` as the string '1e-4'; the schema's own default is written
    # so, and a float field must accept it from a file and from --set.
    cfg = C.load(_write(tmp_path, "optim:\n  lr_gamma: 1e-4\n  weight_decay: 5e-4\n"))
    assert (cfg.optim.lr_gamma, cfg.optim.weight_decay) == (1e-4, 5e-4)
    assert C.load(None, ["optim.lr=1e-3"]).optim.lr == 1e-3


@pytest.mark.parametrize(
    "text, key",
    [
        ("pretrain:\n  milestones: [60, 45]\n", "pretrain.milestones"),
        ("data:\n  image_size: 100\n  heatmap_size: 64\n", "data.image_size"),
        ("regda:\n  warm_lo: 0.5\n  warm_hi: 0.1\n", "regda.warm_hi"),
    ],
)
def test_cross_field_error_names_key_and_file(tmp_path, text, key):
    path = _write(tmp_path, text)
    msg = _error(path)
    assert str(path) in msg and key in msg


def test_repeated_milestone_is_rejected(tmp_path):
    # MultiStepLR counts a repeated milestone twice (gamma**2 at once): not increasing.
    msg = _error(_write(tmp_path, "pretrain:\n  milestones: [45, 45]\n"))
    assert "pretrain.milestones" in msg


@pytest.mark.parametrize(
    "text, line",
    [
        ("data:\n  image_size: 64\n   heatmap_size: 32\n", 3),
        ("data:\n  image_size: [64\nregda:\n  margin: 1\n", 3),
    ],
)
def test_invalid_yaml_names_file_and_line(tmp_path, text, line):
    path = _write(tmp_path, text)
    msg = _error(path)
    assert msg.startswith(f"{path}:{line}:") and "YAML" in msg


def test_top_level_list_is_rejected(tmp_path):
    path = _write(tmp_path, "- data\n- regda\n")
    msg = _error(path)
    assert str(path) in msg and "mapping" in msg


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_defaults(tmp_path, text):
    assert C.load(_write(tmp_path, text)) == C.Config()


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.yaml"
    assert str(path) in _error(path)


def test_overrides_apply_after_the_file(tmp_path):
    path = _write(
        tmp_path,
        "data:\n  image_size: 64\n  heatmap_size: 32\n"
        "regda:\n  trade_off: 2\npretrain:\n  milestones: [10, 20]\n",
    )
    cfg = C.load(path, ["regda.trade_off=0.5", "pretrain.milestones=[2, 3]"])
    assert cfg.regda.trade_off == 0.5
    assert cfg.pretrain.milestones == [2, 3]
    assert (cfg.data.image_size, cfg.data.heatmap_size) == (64, 32)


def test_later_override_wins_and_strings_and_bools_parse():
    cfg = C.load(None, ["regda.margin=1", "regda.margin=3", "train.progress=false", "data.root=/x"])
    assert cfg.regda.margin == 3.0 and type(cfg.regda.margin) is float
    assert cfg.train.progress is False
    assert cfg.data.root == "/x"


@pytest.mark.parametrize(
    "override, named",
    [
        ("regda.trade_off", "regda.trade_off"),
        ("regda.nope=1", "regda.nope"),
        ("nope=1", "nope"),
        ("adapt.epochs=abc", "adapt.epochs"),
        ("adapt.epochs=true", "adapt.epochs"),
        ("regda.trade_off=[1,", "regda.trade_off"),
        ("regda=3", "regda"),
        ("data.task=synth_face", "data.task"),
    ],
)
def test_bad_override_names_it(override, named):
    msg = _error(None, [override])
    assert named in msg and "--set" in msg


def test_override_can_break_a_cross_field_check():
    assert "pretrain.milestones" in _error(None, ["pretrain.milestones=[3, 2]"])


def test_error_in_override_after_file_still_raises(tmp_path):
    path = _write(tmp_path, "regda:\n  margin: 2\n")
    assert "adapt.epochs" in _error(path, ["adapt.epochs=-1"])


@pytest.mark.parametrize(
    "override",
    [
        "regda.margin=2",
        "regda.trade_off=0.5",
        "adapt.epochs=3",
        "regda.warm_max_iters=10",
        "optim.lr=0.5",
        "optim.backbone_lr=0.5",
        "optim.lr_gamma=0.001",
        "optim.lr_decay=0.5",
        "train.output_dir=elsewhere",
        "train.progress=false",
    ],
)
def test_pretrain_key_ignores_adaptation_fields(override):
    assert C.load(None, [override]).pretrain_key() == C.Config().pretrain_key()


@pytest.mark.parametrize(
    "override",
    [
        "data.sigma=3.0",
        "data.task=synth_body",
        "model.backbone=small_resnet",
        "pretrain.lr=0.05",
        "pretrain.epochs=5",
        "train.seed=1",
        "optim.momentum=0.5",
    ],
)
def test_pretrain_key_changes_with_phase1_fields(override):
    assert C.load(None, [override]).pretrain_key() != C.Config().pretrain_key()


def test_pretrain_key_is_deterministic_and_short():
    key = C.Config().pretrain_key()
    assert key == C.Config().pretrain_key()
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)


def test_save_then_load_round_trips(tmp_path):
    cfg = C.load(
        None,
        [
            "data.image_size=64",
            "data.heatmap_size=32",
            "optim.lr_gamma=0.00001",
            "optim.nesterov=false",
            "pretrain.milestones=[4, 5]",
            "regda.trade_off=0.25",
            "train.output_dir=runs/x y",
        ],
    )
    path = tmp_path / "config.yaml"
    C.save(cfg, path)
    loaded = C.load(path)
    assert loaded.to_dict() == cfg.to_dict()
    assert loaded == cfg


def test_save_then_load_round_trips_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    C.save(C.Config(), path)
    assert C.load(path).to_dict() == C.Config().to_dict()


def test_from_dict_round_trips_and_rejects_unknown_keys():
    d = C.Config().to_dict()
    assert C.from_dict(d) == C.Config()
    d["regda"]["extra"] = 1
    with pytest.raises(C.ConfigError, match="regda.extra"):
        C.from_dict(d)
    with pytest.raises(C.ConfigError, match="search"):
        C.from_dict({"search": {}})


def test_from_dict_checks_types():
    with pytest.raises(C.ConfigError, match="adapt.epochs"):
        C.from_dict({"regda": {"epochs": "3"}})


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_files_load(path):
    cfg = C.load(path)
    assert cfg.data.image_size % cfg.data.heatmap_size == 0


def test_the_task_search_over_methods_runs_the_tasks_own_schedule():
    # its results are read beside adaptation.md's runs of synth_hand.yaml: same data, model,
    # phase 1 (the same cache) and phase-2 schedule
    root = Path(__file__).parents[1] / "experiments"
    task, search = C.load(root / "synth_hand.yaml"), C.load(root / "synth_hand_search_methods.yaml")
    assert search.pretrain_key() == task.pretrain_key()
    for part in ("data", "model", "regda", "mean_teacher", "adapt"):
        assert getattr(search, part) == getattr(task, part), part


def _float_fields(obj=None, prefix=""):
    """Dotted paths of every float field of the run config."""
    obj = C.Config() if obj is None else obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _float_fields(value, f"{prefix}{f.name}.")
        elif C.field_type(f) is float:
            yield prefix + f.name


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", sorted(_float_fields()))
def test_every_float_field_rejects_non_finite_values(tmp_path, key, value):
    path = _write(tmp_path, yaml.safe_dump(C.nest(key, value)))
    msg = _error(path)
    assert msg.startswith(f"{path}:{len(key.split('.'))}:") and key in msg and "finite" in msg
    assert key in _error(None, [f"{key}={yaml.safe_dump(value).split()[0]}"])


@pytest.mark.parametrize(
    "dimension", [{"loguniform": [0.1, math.inf]}, {"uniform": [-math.inf, 1.0]},
                  {"choice": [1.0, math.nan]}],
)  # fmt: skip
def test_search_space_endpoints_reject_non_finite_values(tmp_path, dimension):
    from regda_dist.search.spec import load_search

    path = _write(tmp_path, yaml.safe_dump({"search": {"space": {"regda.trade_off": dimension}}}))
    with pytest.raises(C.ConfigError, match=rf"{path}:3: .*regda.trade_off.*finite"):
        load_search(path)


def test_batch_size_is_the_global_batch_and_must_split_evenly_across_workers():
    message = _error(None, ["scaling.num_workers=3"])  # 32 does not split over 3
    assert "pretrain.batch_size (32) is the global batch" in message
    assert "scaling.num_workers (3)" in message and "use 30 or 33" in message
    assert C.load(None, ["scaling.num_workers=4"]).adapt.batch_size == 32  # 4 x 8


def test_the_pretrain_key_follows_the_global_batch_not_the_worker_count():
    one = C.Config().pretrain_key()
    assert one == "015c4214126d7614"  # a one-worker cache written before stays valid
    two = C.load(None, ["scaling.num_workers=2"]).pretrain_key()
    # batch 32 on 2 workers: BatchNorm (train) over 16 per worker, another phase 1; and not the
    # key that 2 workers had when batch_size was per worker (global 64): that cache is another
    # experiment
    assert two not in (one, "4188f10d1490ed04")
    frozen = ["model.batchnorm=frozen"]
    assert (
        C.load(None, [*frozen, "scaling.num_workers=4"]).pretrain_key()
        == C.load(None, frozen).pretrain_key()
    )
