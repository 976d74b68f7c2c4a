"""`regda-dist train` end to end on a tiny task; bad input gives one line and exit 2."""

import json

import pytest
import yaml

from regda_dist import cli
from tests.conftest import write_experiment


def _experiment(tmp_path, **extra):
    """extra: section__key=value, e.g. regda__trade_off=-1."""
    sections: dict = {}
    for key, value in extra.items():
        section, name = key.split("__")
        sections.setdefault(section, {})[name] = value
    return write_experiment(tmp_path, **sections)


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("regda-dist: error: ") and "\n" not in err, err
    return err


def test_train_runs_both_phases_and_prints_the_comparison(tmp_path, capsys):
    exp = _experiment(tmp_path)
    assert cli.main(["train", "--no-ray", str(exp)]) == 0
    out = capsys.readouterr().out
    for label in ("source-only", "AdaBN", "RegDA", "MCP", "Fingertip", "all"):
        assert label in out
    run = tmp_path / "runs" / "tiny"
    result = json.loads((run / "result.json").read_text())
    assert {"source_only", "adabn", "adapted", "pretrain"} <= set(result)
    assert 0 <= result["adapted"]["oracle/target_pck"] <= 100
    assert (run / "model.pt").is_file() and (run / "config.yaml").is_file()
    # the resolved config is complete and loadable
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["regda"]["margin"] == 4.0 and saved["data"]["image_size"] == 32

    # a second run with another name reuses the cached phase 1
    assert cli.main(["train", "--no-ray", str(exp), "--name", "again"]) == 0
    again = json.loads((tmp_path / "runs" / "again" / "result.json").read_text())
    assert again["pretrain"]["cached"] is True and result["pretrain"]["cached"] is False
    assert again["source_only"] == result["source_only"]


def test_train_prints_the_candidates_side_by_side_and_which_it_would_export(tmp_path, capsys):
    exp = _experiment(tmp_path, train__select_metric="proxy/source_pck")
    assert cli.main(["train", "--no-ray", str(exp)]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "runs" / "tiny" / "result.json").read_text())
    c = result["candidates"]
    assert c["metric"] == "proxy/source_pck"
    assert c["values"]["source_only"] == result["source_only"]["proxy/source_pck"]
    assert c["values"]["adabn"] == result["adabn"]["proxy/source_pck"]
    assert c["values"]["adapted"] == result["selected"]["value"]
    line = next(line for line in out.splitlines() if line.startswith("proxy/source_pck: "))
    epoch = result["selected"]["epoch"]
    for text in ("source-only ", "AdaBN ", f"RegDA, epoch {epoch} ", "-> would export "):
        assert text in line, line
    names = {"source_only": "source-only", "adabn": "AdaBN", "adapted": f"RegDA, epoch {epoch}"}
    assert line.endswith(f"would export {names[c['best']]}")


def test_finished_run_is_never_overwritten(tmp_path, capsys):
    exp = _experiment(tmp_path)
    assert cli.main(["train", "--no-ray", str(exp)]) == 0
    before = (tmp_path / "runs" / "tiny" / "result.json").read_bytes()
    capsys.readouterr()
    assert cli.main(["train", "--no-ray", str(exp)]) == 2
    assert "finished run" in _one_line_error(capsys)
    assert (tmp_path / "runs" / "tiny" / "result.json").read_bytes() == before


def test_unfinished_run_needs_resume(tmp_path, capsys):
    exp = _experiment(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "metrics.jsonl").write_text("{}\n")
    assert cli.main(["train", "--no-ray", str(exp)]) == 2
    assert "--resume" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"regda__trade_off": -1}, "regda.trade_off"),
        ({"regda__unknown": 1}, "regda.unknown"),
        ({"data__heatmap_size": 8}, "heatmap_size"),
        ({"model__backbone": "nope"}, "nope"),
        ({"model__pretrained": "/nonexistent/weights.pt"}, "/nonexistent/weights.pt"),
    ],
)
def test_bad_experiment_gives_one_line_and_exit_2(tmp_path, capsys, extra, needle):
    assert cli.main(["train", "--no-ray", str(_experiment(tmp_path, **extra))]) == 2
    assert needle in _one_line_error(capsys)
    assert not (tmp_path / "runs" / "tiny" / "result.json").exists()


def test_bad_override_and_missing_file(tmp_path, capsys):
    assert cli.main(["train", "--no-ray", str(_experiment(tmp_path)), "--set", "regda.margin"]) == 2
    assert "KEY=VALUE" in _one_line_error(capsys)
    assert cli.main(["train", "--no-ray", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in _one_line_error(capsys)


def test_bad_device_and_too_small_split_are_one_line_and_leave_no_run_folder(tmp_path, capsys):
    for args, needle in (
        (["--set", "train.device=foo"], "train.device"),
        (["--set", "data.num_train=3"], "data.num_train"),
        (["--set", "model.backbone=nope"], "model.backbone"),
    ):
        assert cli.main(["train", "--no-ray", str(_experiment(tmp_path)), *args]) == 2
        assert needle in _one_line_error(capsys)
        assert not (tmp_path / "runs" / "tiny").exists()


def test_resume_with_an_unreadable_saved_config_is_one_line(tmp_path, capsys):
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("data: [unclosed\n")
    assert cli.main(["train", "--no-ray", str(_experiment(tmp_path)), "--resume"]) == 2
    assert "cannot --resume" in _one_line_error(capsys)


def test_a_run_that_selects_an_epoch_prints_and_keeps_that_epoch(tmp_path, capsys):
    # as `export` names it: model.pt and the printed RegDA row are the selected epoch's
    exp = _experiment(tmp_path, train__select_metric="proxy/source_pck", adapt__epochs=3)
    assert cli.main(["train", "--no-ray", str(exp)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "tiny"
    result = json.loads((run / "result.json").read_text())
    chosen = result["selected"]
    row = next(line for line in out.splitlines() if line.startswith("RegDA "))
    expected = chosen["metrics"]["oracle/target_pck"], chosen["metrics"]["source/pck"]
    assert row.split()[-2:] == [f"{v:.1f}" for v in expected]
    assert f"RegDA: epoch {chosen['epoch']}, selected by proxy/source_pck" in out
    assert "  last epoch" in out and (run / "last.pt").is_file()


def test_a_search_metric_that_cannot_exist_is_refused_before_anything_starts(tmp_path, capsys):
    from tests.test_search_space import _boneless

    values = yaml.safe_load(_experiment(tmp_path).read_text())
    values["data"].update(_boneless(tmp_path), num_train=24)
    values["search"] = {"metric": "pose_prior", "num_samples": 2}
    exp = tmp_path / "boneless.yaml"
    exp.write_text(yaml.safe_dump(values))
    assert cli.main(["tune", str(exp)]) == 2
    assert "judges skeletons" in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("space", "metric", "said"),
    [
        ({"adapt.method": {"choice": ["regda", "mean_teacher"]}}, "head_agreement",
         "means nothing for mean teacher"),
        ({"adapt.method": {"choice": ["mean_teacher", "prior_teacher"]}}, "source_pck",
         "prior_teacher judges skeletons"),
    ],
)  # fmt: skip
def test_a_search_whose_metric_or_method_cannot_serve_a_method_is_refused(
    tmp_path, capsys, space, metric, said
):
    from tests.test_search_space import _boneless

    values = yaml.safe_load(_experiment(tmp_path).read_text())
    if "prior_teacher" in str(space):
        values["data"].update(_boneless(tmp_path), num_train=24)
    values["search"] = {"metric": metric, "num_samples": 2, "space": space}
    exp = tmp_path / "refused.yaml"
    exp.write_text(yaml.safe_dump(values))
    assert cli.main(["tune", str(exp)]) == 2
    assert said in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def test_a_method_that_judges_skeletons_is_refused_on_a_set_without_bones_before_phase_1(
    tmp_path, capsys
):
    from tests.test_search_space import _boneless

    values = yaml.safe_load(_experiment(tmp_path).read_text())
    values["data"].update(_boneless(tmp_path), num_train=24)
    values["adapt"]["method"] = "prior_teacher"
    exp = tmp_path / "boneless.yaml"
    exp.write_text(yaml.safe_dump(values))
    assert cli.main(["train", "--no-ray", str(exp)]) == 2
    assert "prior_teacher judges skeletons" in _one_line_error(capsys)
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # no phase 1 was trained


def test_a_baseline_as_the_method_runs_no_phase_two_and_is_its_own_answer(tmp_path, capsys):
    """What `export` writes when AdaBN wins a search: re-run, it gives AdaBN's numbers and
    weights (from the phase-1 cache)."""
    import torch

    exp = _experiment(tmp_path, adapt__method="adabn", train__select_metric="proxy/source_pck")
    assert cli.main(["train", "--no-ray", str(exp)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "tiny"
    result = json.loads((run / "result.json").read_text())
    assert result["adapted"] == result["adabn"] and result["method"] == "AdaBN"
    assert "selected" not in result and not (run / "adapt.ckpt").exists()
    cached = torch.load(result["baseline_weights"]["adabn"], weights_only=True)
    saved = torch.load(run / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], cached[k]) for k in cached)
    assert out.splitlines()[-3].endswith("-> would export AdaBN")
