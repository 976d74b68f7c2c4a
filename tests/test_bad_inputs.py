"""Bad input ends with one line and exit 2, and nothing is written: damaged or hostile weight
files (model.pretrained, a run's checkpoint on --resume, the phase-1 cache), YAML and JSON
nested thousands deep, and non-finite numbers."""

import json
import os
import pickle

import pytest
import torch
import yaml

from regda_dist import config as C
from regda_dist.cli import main
from regda_dist.engine.phase1 import phase1_cache
from tests import data_fixtures as fx
from tests.conftest import write_experiment

DEEP = "[" * 5000 + "]" * 5000


class _RunsCode:
    """Unpickling this runs a shell command that leaves `marker` behind."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_file(tmp_path, kind: str):
    """A file that is not a usable weights file, of one kind; its path."""
    path = tmp_path / f"{kind}.pt"
    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.ones(4)}, whole)
    marker = tmp_path / "code-ran"
    if kind == "random":
        path.write_bytes(os.urandom(512))
    elif kind == "truncated":
        path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "code_pickle":
        path.write_bytes(pickle.dumps({"w": _RunsCode(marker)}))
    elif kind == "code_torch":
        torch.save({"w": _RunsCode(marker)}, path)
    elif kind == "not_a_mapping":
        torch.save([torch.ones(2)], path)
    return path


KINDS = ["random", "truncated", "empty", "code_pickle", "code_torch", "not_a_mapping"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("regda-dist: error: ") and "\n" not in err, err
    assert "weights_only" not in err  # never advise loading it unsafely
    return err


def _files(folder):
    return sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_pretrained_weights_file_is_one_line_and_writes_nothing(tmp_path, capsys, kind):
    bad = _bad_file(tmp_path, kind)
    exp = write_experiment(tmp_path, model={"pretrained": str(bad)})
    assert main(["train", "--no-ray", str(exp)]) == 2
    err = _one_line(capsys)
    assert "model.pretrained" in err and str(bad) in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "code-ran").exists()


def _unfinished_run(tmp_path):
    """An experiment and its unfinished run folder (resolved config saved, nothing else)."""
    exp = write_experiment(tmp_path)
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    C.save(C.load(exp), run / "config.yaml")
    return exp, run


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_checkpoint_on_resume_is_one_line_and_writes_nothing(tmp_path, capsys, kind):
    exp, run = _unfinished_run(tmp_path)
    (run / "adapt.ckpt").write_bytes(_bad_file(tmp_path, kind).read_bytes())
    before = _files(tmp_path / "runs")
    assert main(["train", "--no-ray", str(exp), "--resume"]) == 2
    assert str(run / "adapt.ckpt") in _one_line(capsys)
    assert _files(tmp_path / "runs") == before  # no phase 1, no TensorBoard file, nothing
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("name", ["model.pt", "checkpoint.pt"])
def test_a_bad_phase1_cache_file_is_one_line_before_any_run_folder(tmp_path, capsys, name):
    exp = write_experiment(tmp_path)
    cache = phase1_cache(C.load(exp)).path
    cache.mkdir(parents=True)
    (cache / name).write_bytes(_bad_file(tmp_path, "truncated").read_bytes())
    if name == "model.pt":
        (cache / "info.json").write_text("{}")  # a cache hit: model.pt is what is read
    assert main(["train", "--no-ray", str(exp)]) == 2
    assert str(cache / name) in _one_line(capsys)
    assert not (tmp_path / "runs" / "tiny").exists()


def test_an_experiment_nested_thousands_deep_is_one_line(tmp_path, capsys):
    exp = tmp_path / "deep.yaml"
    exp.write_text(f"regda:\n  trade_off: {DEEP}\n")
    assert main(["train", "--no-ray", str(exp)]) == 2
    assert str(exp) in _one_line(capsys)
    assert main(["train", "--no-ray", str(write_experiment(tmp_path)), "--set", f"x={DEEP}"]) == 2
    assert "--set" in _one_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_a_yaml_nested_a_few_hundred_deep_is_refused_too(tmp_path):
    # shallow enough to parse, deep enough to break whatever walks it recursively later
    deep = "[" * 400 + "]" * 400
    (tmp_path / "x.yaml").write_text(f"regda:\n  trade_off: {deep}\n")
    with pytest.raises(C.ConfigError, match=r"x.yaml: .*nested more than"):
        C.load(tmp_path / "x.yaml")
    (tmp_path / "x.yaml").write_text("regda:\n  trade_off: &loop [*loop]\n")  # a cycle
    with pytest.raises(C.ConfigError, match=r"x.yaml: .*nested more than"):
        C.load(tmp_path / "x.yaml")


def test_a_search_block_nested_thousands_deep_is_one_line(tmp_path):
    from regda_dist.search.spec import load_search

    exp = write_experiment(tmp_path)
    values = yaml.safe_load(exp.read_text())
    exp.write_text(yaml.safe_dump(values) + f"search:\n  space: {DEEP}\n")
    with pytest.raises(C.ConfigError, match=rf"^{exp}: invalid YAML \(nested too deeply\)$"):
        load_search(exp)  # what `tune` and `submit` read first


def test_a_coco_file_nested_thousands_deep_is_one_line(tmp_path, capsys):
    fx.write_coco(tmp_path)
    data = json.loads((tmp_path / "train.json").read_text())
    text = json.dumps(data)[:-1] + f', "extra": {DEEP}}}'
    (tmp_path / "train.json").write_text(text)
    assert main(["data", "check", "--dataset", "coco", "--keypoints", "body16", str(tmp_path)]) == 2
    assert str(tmp_path / "train.json") in _one_line(capsys)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_non_finite_trade_off_stops_before_training(tmp_path, capsys, value):
    exp = write_experiment(tmp_path)
    exp.write_text(exp.read_text().replace("regda:\n", f"regda:\n  trade_off: {value}\n", 1))
    assert main(["train", "--no-ray", str(exp)]) == 2
    err = _one_line(capsys)
    assert f"{exp}:" in err and "regda.trade_off" in err and "finite" in err
    assert not (tmp_path / "runs").exists()
