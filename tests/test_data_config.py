"""Config of real datasets: nested data.source / data.target / data.augment, the checks that
reject inconsistent combinations, task_spec, and the real-task experiment YAMLs."""

from pathlib import Path

import pytest

from regda_dist import config as C
from regda_dist.data.datasets import task_spec
from regda_dist.data.keypoints import BODY16, HAND21
from regda_dist.data.samples import DatasetError

EXPERIMENTS = Path(__file__).parent.parent / "experiments"
REAL = ["data.task=''"]


def _real(source="rhd", target="h3d", *extra):
    return C.load(
        None,
        [*REAL, f"data.source.dataset={source}", "data.source.root=/s",
         f"data.target.dataset={target}", "data.target.root=/t", *extra],
    )  # fmt: skip


def test_defaults_keep_the_synthetic_task_and_its_phase1_cache_key():
    cfg = C.Config()
    assert cfg.data.task == "synth_hand" and cfg.data.source == C.DomainConfig()
    assert cfg.pretrain_key() == "015c4214126d7614"  # as before real datasets existed
    body = C.load(None, ["data.task=synth_body", "data.image_size=64"])
    assert body.pretrain_key() == "7f43bddc2bbea2e2"
    assert C.load(None, ["data.augment.blur=0.5"]).pretrain_key() != cfg.pretrain_key()


def test_nested_keys_load_from_yaml_and_unknown_ones_name_file_and_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "data:\n  task: ''\n  source:\n    dataset: rhd\n    root: /r\n"
        "  target: {dataset: h3d, root: /h}\n  augment:\n    rotation: 180\n"
    )
    cfg = C.load(path)
    assert (cfg.data.source.dataset, cfg.data.target.root) == ("rhd", "/h")
    assert cfg.data.augment.rotation == 180.0
    path.write_text("data:\n  task: ''\n  source:\n    folder: /r\n")
    with pytest.raises(C.ConfigError, match=r"x.yaml:4: unknown key 'data.source.folder'"):
        C.load(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.source.dataset=rhd", "data.source.root=/r"], "data.task .* are both set"),
        ([*REAL, "data.source.dataset=rhd", "data.source.root=/r"], "must both be set"),
        ([*REAL], "must both be set"),
        (["data.keypoints=hand21"], "data.keypoints is for real datasets"),
        ([*REAL, "data.source.dataset=rhd", "data.target.dataset=h3d", "data.target.root=/t"],
         r"data.source.root is empty"),
        (["data.target.root=/t"], "data.target.root is set but data.target.dataset is not"),
        (["data.augment.scale_min=1.3", "data.augment.scale_max=0.6"], "scale_min .* > "),
        (["data.augment.rotation=200"], "data.augment.rotation must be <= 180"),
    ],
)  # fmt: skip
def test_inconsistent_data_configs_are_one_clear_line(overrides, message):
    with pytest.raises(C.ConfigError, match=message):
        C.load(None, overrides)


def test_real_tasks_skip_the_synthetic_num_train_check():
    cfg = _real("rhd", "h3d", "data.num_train=1")
    assert cfg.data.num_train == 1


def test_task_spec_from_config_alone():
    assert task_spec(C.Config().data) is HAND21
    assert task_spec(_real("rhd", "h3d").data) is HAND21
    assert task_spec(_real("surreal", "lsp").data) is BODY16
    assert task_spec(_real("coco", "lsp", "data.keypoints=body16").data) is BODY16
    with pytest.raises(C.ConfigError, match="source 'rhd' has hand21 keypoints but target 'lsp'"):
        task_spec(_real("rhd", "lsp").data)
    with pytest.raises(C.ConfigError, match="needs a keypoint set"):
        task_spec(_real("coco", "h3d").data)
    with pytest.raises(C.ConfigError, match="unknown dataset 'mpii'"):
        task_spec(_real("mpii", "h3d").data)
    with pytest.raises(DatasetError, match=r"/s: missing folder \(data.source.root\)"):
        task_spec(_real("rhd", "h3d").data, check_roots=True)


@pytest.mark.parametrize(
    ("name", "spec", "epochs"),
    [("rhd2h3d", HAND21, 30), ("freihand2rhd", HAND21, 30),
     ("surreal2human36m", BODY16, 10), ("surreal2lsp", BODY16, 30)],
)  # fmt: skip
def test_real_experiment_yamls_are_valid_reference_configs(name, spec, epochs):
    cfg = C.load(EXPERIMENTS / f"{name}.yaml")
    assert task_spec(cfg.data) is spec
    assert (cfg.model.backbone, cfg.data.image_size, cfg.data.heatmap_size) == (
        "resnet101", 256, 64
    )  # fmt: skip
    assert (cfg.pretrain.epochs, cfg.adapt.epochs, cfg.pretrain.batch_size) == (70, epochs, 32)
    assert cfg.scaling.use_gpu and cfg.model.pretrained
    assert cfg.data.augment.scale_min == 0.6 and cfg.data.augment.color_jitter == 0.25
    assert cfg.data.augment.rotation == (180 if spec is HAND21 else 30)
    assert cfg.data.target.augment == (name != "surreal2lsp")  # LSP: never augmented


ARM = "  task: ''\n  source: {dataset: coco, root: /s}\n  target: {dataset: coco, root: /t}\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("  keypoints: face68\n", 5, "data.keypoints must be a registered keypoint set "
         r"\(body16, hand21\), from_data or custom, got 'face68'"),
        ("  keypoint_set:\n    names: [a, b]\n", 5, "data.keypoint_set is used with "
         "data.keypoints: custom, not ''"),
        ("  keypoints: custom\n", 5, "data.keypoint_set.names: a keypoint set needs at least"),
        ("  keypoints: custom\n  keypoint_set:\n    names: [a, b, A]\n", 7,
         "data.keypoint_set.names: 'A' and 'a' are the same name"),
        ("  keypoints: custom\n  keypoint_set:\n    names: [a, b]\n    groups:\n"
         "      tips: [a]\n      ends: [a, c]\n", 10, r"data.keypoint_set.groups.ends: 'c' is not"),
        ("  keypoints: custom\n  keypoint_set:\n    names: [a, b]\n    skeleton: [[a, 2]]\n",
         8, r"data.keypoint_set.skeleton: index 2 is out of range \(0..1\)"),
        ("  keypoints: custom\n  keypoint_set:\n    names: [a, b]\n    flip_pairs: [a, b]\n",
         8, r"data.keypoint_set.flip_pairs: each entry must be a pair"),
        ("  keypoints: custom\n  keypoint_set:\n    names: a\n", 7, "must be list"),
    ],
)  # fmt: skip
def test_a_keypoint_set_in_yaml_is_checked_with_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "x.yaml"
    path.write_text("data:\n" + ARM + text)
    with pytest.raises(C.ConfigError, match=rf"^{path}:{line}: .*{message}") as info:
        C.load(path)
    assert "\n" not in str(info.value)


def test_a_keypoint_set_set_by_override_names_the_file_without_a_stale_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("data:\n" + ARM + "  keypoints: hand21\n")
    with pytest.raises(C.ConfigError, match=rf"^{path}: data.keypoints must be .* got 'x'"):
        C.load(path, ["data.keypoints=x"])


def test_a_keypoint_set_round_trips_and_changes_the_phase1_key(tmp_path):
    base = ["data.task=''", "data.source.dataset=coco", "data.source.root=/s",
            "data.target.dataset=coco", "data.target.root=/t"]  # fmt: skip
    arm = "{name: arm, names: [a, b, c], groups: {ends: [a, 2]}, skeleton: [[0, 1], [b, c]]}"
    custom = C.load(None, [*base, "data.keypoints=custom", f"data.keypoint_set={arm}"])
    C.save(custom, tmp_path / "config.yaml")
    assert C.load(tmp_path / "config.yaml") == custom
    keys = {
        C.load(None, [*base, "data.keypoints=body16"]).pretrain_key(),
        C.load(None, [*base, "data.keypoints=from_data"]).pretrain_key(),
        custom.pretrain_key(),
        C.load(None, [*base, "data.keypoints=custom", f"data.keypoint_set={arm}",
                      "data.keypoint_set.groups={ends: [a]}"]).pretrain_key(),
    }  # fmt: skip
    assert len(keys) == 4


def test_new_data_fields_keep_the_phase1_key_of_configs_that_do_not_set_them():
    base = ["data.task=''", "data.source.dataset=coco", "data.source.root=/s",
            "data.target.dataset=coco", "data.target.root=/t"]  # fmt: skip
    body16 = C.load(None, [*base, "data.keypoints=body16"])
    assert body16.pretrain_key() == "0b57fd7206ab575a"  # as before categories existed
    own = C.load(None, [*base, "data.keypoints=from_data"])
    assert own.pretrain_key() == "a65d2cd9db5abac0"
    # the threshold only gates what is read: phase 1 is the same model
    gate = C.load(None, [*base, "data.keypoints=body16", "data.min_keypoint_match=0"])
    assert gate.pretrain_key() == body16.pretrain_key()
    chosen = C.load(None, [*base, "data.keypoints=from_data", "data.source.categories=[dog]"])
    assert chosen.pretrain_key() != own.pretrain_key()
    for bad, message in (("1.5", "must be <= 1.0"), ("-0.1", "must be >= 0.0")):
        with pytest.raises(C.ConfigError, match=f"data.min_keypoint_match {message}"):
            C.load(None, [*base, "data.keypoints=body16", f"data.min_keypoint_match={bad}"])
