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
    with pytest.raises(C.ConfigError, match="needs a keypoint definition"):
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
    assert (cfg.pretrain.epochs, cfg.regda.epochs, cfg.pretrain.batch_size) == (70, epochs, 32)
    assert cfg.scaling.use_gpu and cfg.model.pretrained
    assert cfg.data.augment.scale_min == 0.6 and cfg.data.augment.color_jitter == 0.25
    assert cfg.data.augment.rotation == (180 if spec is HAND21 else 30)
    assert cfg.data.target.augment == (name != "surreal2lsp")  # LSP: never augmented
