"""The benchmarks' own logic: `--reuse` (benchmarks/grid.py: the commands that made the reused
runs are listed once each, and a `--no-run` table (it ran nothing) is never listed as one of
them), the adaptation and method-search tables, the notes a results file keeps."""

from __future__ import annotations

import json

import pytest

from benchmarks import ROOT
from benchmarks.grid import sources


def _write(path, command, date, **meta):
    path.write_text(json.dumps({"meta": {"command": command, "date": date, **meta}, "runs": []}))
    return str(path)


def test_reused_runs_name_each_command_that_ran_them_once(tmp_path):
    a = {"command": "adaptation.py --seeds 0", "date": "d1", "machine": "m", "seeds": [0]}
    b = {"command": "adaptation.py --seeds 1", "date": "d1", "machine": "m", "seeds": [1]}
    ran_nothing = {"command": "adaptation.py --no-run --reuse x", "date": "d0", "seeds": [0]}
    merged = _write(tmp_path / "merged.json", "adaptation.py --no-run", "d2",
                    sources=[a, ran_nothing, b], not_run=[])  # fmt: skip
    new = _write(tmp_path / "new.json", "adaptation.py --seeds 2", "d3", machine="m", seeds=[2])
    again = _write(tmp_path / "again.json", "adaptation.py --no-run", "d4", sources=[a],
                   not_run=["x"])  # fmt: skip
    listed = [s["command"] for s in sources([merged, new, again])]
    assert listed == [f"adaptation.py --seeds {seed}" for seed in (0, 1, 2)]


def _runs(seed: int, proxy: dict[str, float], pck: dict[str, float]) -> list[dict]:
    """One (task, seed) of adaptation.json: phase 1 and every method, each with its proxy value
    and target PCK at the epoch it kept (and its last)."""
    from benchmarks.adaptation import METHODS

    def m(name):
        return {"proxy/pose_prior": proxy[name], "proxy/confidence": -proxy[name],
                "oracle/target_pck": pck[name]}  # fmt: skip

    runs = [{"task": "t", "seed": seed, "kind": "pretrain",
             "source_only": m("source_only"), "adabn": m("adabn")}]  # fmt: skip
    for method in (name for name in METHODS if name in proxy):  # the methods run on the task
        chosen = {"metrics": m(method), "value": proxy[method]}
        candidates = {"metric": "proxy/pose_prior"}
        runs.append({"task": "t", "seed": seed, "kind": method, "selected": chosen,
                     "last": m(method), "candidates": candidates})  # fmt: skip
    return runs


def test_one_answer_over_every_method_is_the_proxys_pick_beside_the_oracles():
    from benchmarks.adaptation import across_methods, proxy_choice

    proxy = {"source_only": 0.0, "adabn": 1.0, "regda": 3.0, "mean_teacher": 2.0,
             "regda+mean_teacher": 2.5}  # fmt: skip
    pck = {"source_only": 40.0, "adabn": 50.0, "regda": 56.0, "mean_teacher": 60.0,
           "regda+mean_teacher": 58.0}  # fmt: skip
    runs = _runs(0, proxy, pck) + [r for r in _runs(1, proxy, pck) if r["kind"] != "regda"]
    text = "\n".join(across_methods(runs, "t"))
    # seed 1 lacks a method: left out; seed 0's answer is RegDA (best proxy), the oracle's MT
    assert "| 0 | 40.0 | 50.0 | 56.0 | 60.0 | 58.0 | 56.0 (RegDA) | 60.0 (mean teacher) |" in text
    assert "| 1 |" not in text
    assert "answer over max(source-only, AdaBN): +6.0 PCK" in text
    table = "\n".join(proxy_choice(runs, ["t"]))
    assert "| pose_prior | 4.0 | 4.0 | +6.0 | +6.0 | 0/1 |" in table
    assert "| confidence | 20.0 | 20.0 | -10.0 | -10.0 | 0/1 |" in table  # it picks source-only


@pytest.mark.parametrize("task", ["synth_body", "quadruped"])
def test_a_method_search_on_another_task_runs_that_tasks_own_config(tmp_path, task):
    """method_search.py --tasks: the search's one task resolves to the config the adaptation
    benchmark runs for that task (the same phase 1 and data), only the runtime's share differs."""
    from benchmarks import domains, method_search
    from regda_dist.search.spec import load_search

    version = domains.HELDOUT["quadruped"].VERSION
    for d in ("source", "target"):  # a written pair: data_fields reads it, does not render it
        folder = tmp_path / ("quadruped-data" + (f"-v{version}" if version > 1 else "")) / d
        folder.mkdir(parents=True)
        (folder / "test.json").write_text("{}")
    sets = ["train.seed=1", f"train.output_dir={tmp_path}"]
    search = load_search(
        ROOT / "experiments" / "synth_hand_search_methods.yaml",
        [*sets, "search.seed=1", method_search.task_entry(task, tmp_path)],
        pick_metric=False,
    )
    assert list(search.tasks) == [task]
    got = search.tasks[task].to_dict()
    want = domains.config(task, tmp_path, sets).to_dict()
    assert got["data"] == want["data"]
    if task == "quadruped":
        assert got["data"]["target"]["root"] == str(folder)
    differ = {k for k in got if got[k] != want[k]}
    assert differ == {"scaling", "train"}
    for key in ("seed", "output_dir", "proxies", "eval_every"):
        assert got["train"][key] == want["train"][key]


def test_the_method_search_summary_counts_the_searches_that_meet_both_goals():
    from benchmarks.method_search import overall

    def search(task, seed, answer, source_only, adabn, oracle):
        summary = {"answer": {"target_pck": answer}, "source_only": source_only,
                   "adabn": adabn, "oracle_pick": {"target_pck": oracle}}  # fmt: skip
        return {"seed": seed, "tasks": {task: summary}}

    lines = overall([
        search("hand", 0, 57.5, 40.7, 47.3, 59.9),  # +10.2 over AdaBN, 2.4 below the oracle's
        search("body", 0, 76.0, 52.2, 67.4, 76.0),  # +8.6, the oracle's pick
        search("body", 1, 60.0, 56.0, 58.0, 60.5),  # +2.0: below the +5 goal
    ])  # fmt: skip
    assert "- 3 searches; 1 meet both goals" in lines[2]
    assert "worst +2.0 (body seed 1)" in lines[3]
    assert "worst +2.4 (hand seed 0)" in lines[4]
    assert overall([search("hand", 0, 57.5, 40.7, 47.3, 59.9)]) == []  # one search: its table


def test_a_method_search_render_carries_searches_whose_folders_are_gone(tmp_path):
    """--no-run on a machine without a search's folder: that search is carried from the
    earlier record at --out (marked so), one never recorded is listed as not run, and the
    .md's hand-written notes are kept."""
    from benchmarks import method_search

    summary = {
        "objective": "best/proxy/pose_prior",
        "answer": {"candidate": "trial abc", "method": "mean_teacher", "target_pck": 60.0},
        "source_only": 40.0,
        "adabn": 47.0,
        "methods": {"mean_teacher": {"trial": "abc", "value": -1.9, "target_pck": 60.0}},
        "oracle_pick": {"trial": "abc", "method": "mean_teacher", "target_pck": 60.0},
        "proxies": {},
        "proxy_gap": None,
        "search_minutes": 40.0,
    }
    out = tmp_path / "results" / "ms"
    out.parent.mkdir()
    folder = tmp_path / "gone" / "exp-synth_hand-seed0"  # another machine's folder
    result = {"seed": 0, "folder": str(folder), "tasks": {"synth_hand": summary}}
    record = {"meta": {"date": "2026-12-01"}, "results": [result]}
    out.with_suffix(".json").write_text(json.dumps(record))
    out.with_suffix(".md").write_text("# old\n\n## Notes (by hand)\n\n- seed 0 ran beside a test\n")
    argv = ["--experiment", "exp.yaml", "--tasks", "synth_hand", "--seeds", "0", "1",
            "--work", str(tmp_path / "work"), "--out", str(out), "--no-run"]  # fmt: skip
    assert method_search.main(argv) == 0
    text = out.with_suffix(".md").read_text()
    assert "- command: `python -m benchmarks method_search --experiment exp.yaml" in text
    assert "| 0* | 40.0 | 47.0 | 60.0 | 60.0 (trial abc, mean_teacher) |" in text
    assert "seed marked *): recorded 2026-12-01: synth_hand seed 0" in text
    assert "- not run (no finished search): synth_hand seed 1" in text
    assert text.endswith("## Notes (by hand)\n\n- seed 0 ran beside a test\n")
    assert text.count("## Notes (by hand)") == 1
    again = json.loads(out.with_suffix(".json").read_text())["results"]
    assert [(r["seed"], r["carried"], r["recorded"]) for r in again] == [(0, True, "2026-12-01")]


def test_a_benchmark_rewriting_its_results_keeps_the_hand_written_notes(tmp_path, capsys):
    """Re-running a benchmark rewrites its tables; the notes a person added under them stay,
    and the run says so (they were written about the earlier numbers)."""
    from benchmarks.record import write_markdown

    path = tmp_path / "results" / "study.md"
    assert write_markdown(path, "# study\n\n| a |\n| 1 |\n") == ""  # a first run: no notes
    notes = "## Notes (written by hand after the run)\n\n- ran beside a test\n"
    path.write_text(path.read_text() + "\n" + notes)
    assert write_markdown(path, "# study\n\n| a |\n| 2 |\n") == notes
    assert path.read_text() == "# study\n\n| a |\n| 2 |\n\n" + notes
    assert "kept its hand-written notes" in capsys.readouterr().out
    own = "# study\n\n| a |\n| 3 |\n\n## Notes\n\n- new\n"  # a render with notes of its own
    assert write_markdown(path, own) == ""
    assert path.read_text() == own


def test_a_proxy_study_of_another_experiment_writes_its_own_files():
    """--experiment without --out: the RegDA study's results (and their notes) stay; another
    experiment's study writes proxy_study_NAME.{md,json} and searches in runs/proxy_study_NAME."""
    from benchmarks.proxy_study import DEFAULT_EXPERIMENT, study_name

    assert study_name(DEFAULT_EXPERIMENT) == "proxy_study"
    methods = ROOT / "experiments" / "synth_search_methods.yaml"
    assert study_name(methods) == "proxy_study_methods"
    other = ROOT / "experiments" / "synth_hand_search_methods.yaml"
    assert study_name(other) == "proxy_study_synth_hand_search_methods"
