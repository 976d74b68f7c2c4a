"""The search on real Ray: a 3-trial Optuna + ASHA search of Ray Train trials (its console
output, Optuna study, epoch selection, TensorBoard files, export runnable by `train`, report);
a joint search over a hand and a user's own keypoint set (COCO files, a set defined in YAML);
the whole pipeline on a published-style COCO file: two categories, 0-based skeleton."""

from __future__ import annotations

import json
import time

import optuna
import pytest
import torch
import yaml

from regda_dist import config as C
from regda_dist.cli import main
from regda_dist.data.datasets import task_spec
from regda_dist.search.folder import load_trials
from tests.conftest import write_experiment
from tests.keypoint_domains import ARM_BONES, ARM_SET, write_arm_pair, write_categories
from tests.numbers import assert_search_as_before
from tests.test_tensorboard import columns_of, hparams_of, read_events

SEARCH = {
    "num_samples": 3,
    "metric": "aug_consistency",  # not the default: the tests below know its column
    "max_concurrent": 1,
    "seed": 0,
    "scheduler": "asha",
    "grace_period": 1,  # rungs at epochs 1 and 2 of 3: ASHA can stop trials early
    "space": {
        "regda.trade_off": {"loguniform": [0.1, 10.0]},
        "regda.margin": {"uniform": [1.0, 8.0]},
        "adapt.sigma": {"choice": [1.5, 2.0, 3.0]},
    },
}


def _experiment(tmp_path, **search):
    path = write_experiment(
        tmp_path, scaling={"cpus_per_worker": 1}, train={"num_threads": 1}, adapt={"epochs": 3}
    )
    values = yaml.safe_load(path.read_text())
    values["search"] = {**SEARCH, **search}
    path.write_text(yaml.safe_dump(values))
    return path


def _study(search_dir, group="synth_hand"):
    storage = f"sqlite:///{search_dir / 'optuna.db'}"
    return optuna.load_study(study_name=f"{search_dir.name}/{group}", storage=storage)


def test_search_export_and_report(local_ray, tmp_path, capfd):
    exp = _experiment(tmp_path)
    assert main(["tune", str(exp), "--name", "s"]) == 0
    console = capfd.readouterr().out
    assert "note: trials and epochs are selected by proxy/aug_consistency\n" in console
    search_dir = tmp_path / "runs" / "s"
    trials = sorted((search_dir / "synth_hand" / "trials").iterdir())
    assert len(trials) == 3
    for trial in trials:  # every trial ran through Ray Train
        assert json.loads((trial / "synth_hand" / "workers" / "rank0.json").read_text())["pid"]
        assert (trial / "synth_hand" / "ray-train").is_dir()
    # the console: one line per epoch and trial, and a trial table with the selection metric
    lines = [
        f"[trial {t.name}] adapt {e}/3 " for t in trials for e in range(1, len(_epochs(t)) + 1)
    ]
    console = _forwarded(capfd, console, lines)
    for line in lines:
        assert console.count(line) == 1, (line, console[-3000:])
    assert "...y/aug_consistency" in console and "oracle/target_pck" in console
    assert "Reporting training result" not in console and "train/loss_b" not in console
    # Optuna: a trial ASHA stopped is PRUNED, never COMPLETE with an early value
    study = _study(search_dir)
    states = [t.state for t in study.trials]
    # completed in the folder (export, report) as in Optuna: a trial ASHA stopped may still
    # have written result.json before Tune killed its workers; stopped.json marks it
    complete = {t.trial_id for t in load_trials(search_dir)["synth_hand"] if t.complete}
    finished = [t for t in trials if t.name in complete]
    stopped = [t for t in trials if (t / "stopped.json").is_file()]
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(finished) >= 1
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped) == 3 - len(finished)
    assert all((t / "synth_hand" / "result.json").is_file() for t in finished)
    assert study.trials[0].params == {"regda.trade_off": 1.0, "regda.margin": 4.0,
                                      "adapt.sigma": 2.0}  # fmt: skip
    # every finished trial chose an epoch by the selection proxy and kept its weights
    result = json.loads((finished[0] / "synth_hand" / "result.json").read_text())
    chosen = result["selected"]
    assert chosen["metric"] == "proxy/aug_consistency" and 1 <= chosen["epoch"] <= 3
    by_proxy = [e["proxy/aug_consistency"] for e in _epochs(finished[0])]
    assert chosen["value"] == max(by_proxy) and (finished[0] / "synth_hand/last.pt").is_file()
    acc = read_events(finished[0] / "synth_hand" / "tb")
    assert {"proxy/source_pck", "oracle/target_pck", "train/loss_c"} <= set(acc.Tags()["scalars"])
    assert acc.Tags()["images"]
    params = json.loads((finished[0] / "params.json").read_text())
    assert hparams_of(acc)["regda.margin"] == pytest.approx(params["regda.margin"])

    assert main(["export", str(search_dir), "--top-k", "2"]) == 0
    # rank 1 may be source-only or AdaBN (candidates of every search); the best trial is then
    # rank 2 and scores below it
    ranks = [search_dir / "best" / "synth_hand", search_dir / "best" / "synth_hand" / "top2"]
    metas = [json.loads((r / "meta.json").read_text()) for r in ranks]
    first = next(i for i, m in enumerate(metas) if m["trial_id"] is not None)
    best, meta = ranks[first], metas[first]
    if first == 1:
        assert metas[0]["candidate"] in ("source-only", "AdaBN"), metas[0]
        assert metas[0]["selection_value"] >= meta["selection_value"], metas
    assert meta["selected_by"] == "proxy/aug_consistency" and meta["versions"]["optuna"]
    assert search_dir / "synth_hand" / "trials" / meta["trial_id"] in finished
    exported = torch.load(best / "model.pt", weights_only=True)
    kept = search_dir / "synth_hand" / "trials" / meta["trial_id"] / "synth_hand" / "model.pt"
    assert _same_weights(exported, torch.load(kept, weights_only=True))
    assert "oracle/target_pck" in meta["oracle_eval_only"] and meta["epoch"] >= 1
    assert (search_dir / "best" / "summary.md").is_file()
    assert main(["export", str(search_dir)]) == 2  # never overwritten
    assert "exists; nothing overwritten" in capfd.readouterr().err
    capfd.readouterr()
    retrain = ["train", str(best / "config.yaml"), "--no-ray", "--name", "again"]
    assert main(retrain) == 0  # the exported config re-runs to its numbers and weights
    _assert_prints(capfd.readouterr().out, meta)
    again = torch.load(tmp_path / "runs" / "again" / "model.pt", weights_only=True)
    assert _same_weights(exported, again)

    assert main(["report", str(search_dir)]) == 0
    report = (search_dir / "report" / "report.md").read_text()
    assert "WARNING: " in report and "completed trial(s) compared; below 5" in report
    assert "Epoch selection by proxy/aug_consistency" in report


def _forwarded(capfd, out: str, lines: list[str], wait_s: float = 30.0) -> str:
    """`out` and what reaches the console after it, until every line shows or `wait_s` passes:
    the workers print their epoch lines, which Ray's log monitor forwards to the driver
    asynchronously, so the last ones may arrive after `tune` has returned."""
    deadline = time.monotonic() + wait_s
    while not all(line in out for line in lines) and time.monotonic() < deadline:
        time.sleep(0.5)
        out += capfd.readouterr().out
    return out


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def _assert_prints(out: str, meta: dict) -> None:
    """`train`'s RegDA row is the exported epoch's target PCK per group and source PCK."""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("method")).split()[1:]
    row = next(line for line in lines if line.startswith("RegDA ")).split()[1:]
    oracle = meta["oracle_eval_only"]
    keys = [f"oracle/target_pck/{g}" if g != "all" else "oracle/target_pck" for g in header[:-1]]
    assert row == [f"{v:.1f}" for v in [*(oracle[k] for k in keys), meta["source_pck"]]], out
    assert f"RegDA: epoch {meta['epoch']}, selected by proxy/aug_consistency" in out


def _epochs(trial):
    lines = (trial / "synth_hand" / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["phase"] == "adapt"]


def test_a_trial_without_a_value_fails_alone_and_the_search_goes_on(local_ray, tmp_path, capfd):
    # dev needs 2 source-val samples: with data.num_val 1 it is NaN at every epoch. Tune raised
    # for the whole search on the first report without best/proxy/dev.
    grid = {"data.num_val": {"grid": [1, 8]}}
    exp = _experiment(tmp_path, metric="dev", scheduler="fifo", space=grid)
    assert main(["tune", str(exp), "--name", "nan"]) == 0
    out = capfd.readouterr().out
    assert out.count("failed: best/proxy/dev has no value (NaN at every evaluated epoch)") == 1
    assert "synth_hand: 1/2 trials completed, 0 stopped early, 1 failed" in out
    states = sorted(t.state.name for t in _study(tmp_path / "runs" / "nan").trials)
    assert states == ["COMPLETE", "FAIL"]
    assert main(["export", str(tmp_path / "runs" / "nan")]) == 0


def test_bad_search_inputs_are_one_line(local_ray, tmp_path, capsys):
    exp = _experiment(tmp_path, metric="nope")
    assert main(["tune", str(exp)]) == 2
    assert "unknown proxy 'nope'" in capsys.readouterr().err
    exp = _experiment(tmp_path, max_concurrent=3)
    assert main(["tune", str(exp), "--set", "scaling.cpus_per_worker=1"]) == 2
    assert "concurrent trial(s)" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "not a search folder" in capsys.readouterr().err


def test_joint_search_runs_one_configuration_on_every_task(local_ray, tmp_path):
    # the second task brings its own keypoints: a 7-keypoint robot arm from COCO files, its set
    # defined in YAML (tests/keypoint_domains.py); neither a hand nor a body
    arm = write_arm_pair(tmp_path / "arm")
    arm_task = {"name": "arm7", "set": {
        "data.task": "", "data.keypoints": "custom", "data.keypoint_set": ARM_SET,
        "data.source": {"dataset": "coco", "root": str(arm["source"])},
        "data.target": {"dataset": "coco", "root": str(arm["target"])}}}  # fmt: skip
    exp = _experiment(tmp_path, mode="joint", scheduler="auto", num_samples=1,
                      tasks=["synth_hand", arm_task])  # fmt: skip
    assert main(["tune", str(exp), "--name", "j"]) == 0
    search_dir = tmp_path / "runs" / "j"
    trials = sorted((search_dir / "joint" / "trials").iterdir())
    assert len(trials) == 1  # the joint objective over several trials: tests/test_search_joint.py
    for trial in trials:
        joint = json.loads((trial / "joint.json").read_text())
        parts = [joint[f"{t}/normalised"] for t in ("synth_hand", "arm7")]
        assert joint["joint/objective"] == pytest.approx(sum(parts) / 2)
        assert {p.name for p in trial.iterdir() if p.is_dir()} == {"synth_hand", "arm7"}
        result = json.loads((trial / "arm7" / "result.json").read_text())
        assert {"oracle/target_pck/joints", "oracle/target_pck/claws"} <= set(result["adapted"])
        assert len(read_events(trial / "arm7" / "tb").Tags()["images"]) == 1  # arm keypoints
    assert main(["export", str(search_dir), "--onnx"]) == 0  # checked against torch (1e-4)
    assert {p.parent.name for p in (search_dir / "best").glob("*/model.onnx")} == {
        "synth_hand",
        "arm7",
    }
    hand = json.loads((search_dir / "best" / "synth_hand" / "meta.json").read_text())
    body = json.loads((search_dir / "best" / "arm7" / "meta.json").read_text())
    assert hand["trial_id"] == body["trial_id"] and hand["selected_by"] == "joint/objective"
    exported = search_dir / "best" / "arm7" / "config.yaml"
    spec = task_spec(C.load(exported).data)
    assert spec.num_keypoints == 7 and set(spec.groups) == {"joints", "claws", "all"}
    assert main(["train", str(exported), "--no-ray", "--name", "again"]) == 0


def test_pipeline_across_two_categories_of_one_file_with_a_zero_based_skeleton(
    local_ray, tmp_path, capfd
):
    # published files hold several categories sharing one keypoint set (species) and some write
    # their skeleton 0-based: train on one category, adapt to the other (issue 20)
    arms = write_categories(tmp_path / "arms")
    assert main(["data", "check", "--dataset", "coco", "--keypoints", "from_data", str(arms)]) == 0
    out = capfd.readouterr().out
    assert "used: factory_arm, field_arm" in out and "skeleton is read as 0-based" in out
    data = {"task": "", "keypoints": "from_data",
            "source": {"dataset": "coco", "root": str(arms), "categories": ["factory_arm"]},
            "target": {"dataset": "coco", "root": str(arms), "categories": [2]}}  # fmt: skip
    path = write_experiment(tmp_path, data=data, scaling={"cpus_per_worker": 1},
                            train={"num_threads": 1}, adapt={"epochs": 2})  # fmt: skip
    assert main(["train", "--no-ray", str(path), "--name", "plain"]) == 0
    out = capfd.readouterr().out
    assert "used: factory_arm;" in out and "used: field_arm;" in out  # said at the start
    assert json.loads((tmp_path / "runs" / "plain" / "result.json").read_text())["adapted"]
    values = yaml.safe_load(path.read_text())
    values["search"] = {"num_samples": 1, "seed": 0, "scheduler": "fifo"}
    path.write_text(yaml.safe_dump(values))
    assert main(["tune", str(path), "--name", "s"]) == 0
    assert "selected by proxy/pose_prior" in capfd.readouterr().out  # the 0-based bones count
    search_dir = tmp_path / "runs" / "s"
    assert main(["export", str(search_dir)]) == 0
    exported = C.load(search_dir / "best" / "coco2coco" / "config.yaml")
    assert exported.data.source.categories == ["factory_arm"]
    assert exported.data.target.categories == [2]
    assert task_spec(exported.data).skeleton == tuple(map(tuple, ARM_BONES))


def test_a_search_over_methods_runs_each_with_its_own_knobs(local_ray, tmp_path):
    """adapt.method a dimension: the first trials are each method at the experiment's own values,
    every trial (and its Optuna trial) holds only its method's knobs, and each run says which
    model it evaluated (a mean teacher's teacher)."""
    space = {
        "adapt.method": {"choice": ["regda", "mean_teacher"]},
        "regda.trade_off": {"loguniform": [0.1, 10.0]},
        "mean_teacher.keep": {"uniform": [0.2, 0.8]},
        "optim.lr": {"loguniform": [0.01, 0.3]},
    }
    exp = _experiment(tmp_path, space=space, num_samples=3, scheduler="fifo", metric="source_pck")
    assert main(["tune", str(exp), "--name", "m"]) == 0
    search_dir = tmp_path / "runs" / "m"
    study = _study(search_dir)
    assert [t.params["adapt.method"] for t in study.trials[:2]] == ["regda", "mean_teacher"]
    assert study.trials[1].params == {"adapt.method": "mean_teacher", "mean_teacher.keep": 0.5,
                                      "optim.lr": 0.1}  # fmt: skip
    for trial in (search_dir / "synth_hand" / "trials").iterdir():
        params = json.loads((trial / "params.json").read_text())
        method = params["adapt.method"]
        assert ("regda.trade_off" in params) == (method == "regda"), params
        assert ("mean_teacher.keep" in params) == (method == "mean_teacher"), params
        acc = read_events(trial / "synth_hand" / "tb")  # TensorBoard's table: every knob
        assert columns_of(acc) == set(space) and hparams_of(acc).keys() == params.keys()
        result = json.loads((trial / "synth_hand" / "result.json").read_text())
        assert (
            result["method"] == {"regda": "RegDA", "mean_teacher": "mean teacher (teacher)"}[method]
        )
    # and every number of every trial is the one this search computed before the method
    # registry (tests/numbers.py)
    assert_search_as_before(search_dir)
