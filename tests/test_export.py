"""export / report on a search folder written by hand (no Ray): ranking, labels, no overwrite."""

import json

import pytest
import torch
import yaml

from regda_dist.search.export import export, ranking, resolve_metric
from regda_dist.search.folder import SearchFolderError, load_trials
from regda_dist.search.report import proxy_table
from regda_dist.search.spec import SearchConfig, load_search


def _trial(group_dir, trial_id, task, proxy, oracle, complete=True, select="proxy/source_pck"):
    """Epoch 1 is the chosen one (its weights in model.pt, the last epoch's in last.pt); epoch 2
    is worse everywhere."""
    folder = group_dir / "trials" / trial_id
    run = folder / task
    run.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps({"regda.trade_off": proxy / 10}))
    (run / "config.yaml").write_text("regda: {epochs: 2}\n")
    torch.save({"w": torch.ones(1)}, run / "model.pt")
    torch.save({"w": torch.zeros(1)}, run / "last.pt")
    # target val predictions: trial b strays 10 px from where a and the source-only model agree
    agreed = torch.arange(12, dtype=torch.int16).view(3, 2, 2)
    mine = agreed + 10 if trial_id == "b" else agreed
    predictions = {"source_only": agreed, "last": mine, "selected": mine}
    torch.save(predictions, run / "target_val_coords.pt")
    chosen = {"proxy/source_pck": proxy, "proxy/dev": -oracle, "oracle/target_pck": oracle}
    last = {k: v - 5 for k, v in chosen.items()}
    lines = [{"phase": "adapt", "epoch": e, **m} for e, m in ((1, chosen), (2, last))]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    selected = {"epoch": 1, "metric": select, "value": chosen[select], "metrics": chosen}
    result = {"regda": last, "source_only": last, "selected": selected}
    if complete:
        (run / "result.json").write_text(json.dumps(result))


def _search(tmp_path, selection="proxy"):
    exp = tmp_path / "s"
    exp.mkdir()
    search = {"mode": "per_task", "selection": selection, "metric": "source_pck", "storage": ""}
    (exp / "search.yaml").write_text(yaml.safe_dump({"search": search}))
    select = SearchConfig(selection=selection, metric="source_pck").select_metric
    _trial(exp / "hand", "a", "hand", proxy=90.0, oracle=50.0, select=select)
    _trial(exp / "hand", "b", "hand", proxy=80.0, oracle=60.0, select=select)
    _trial(exp / "hand", "c", "hand", proxy=99.0, oracle=70.0, complete=False)  # stopped early
    return exp


def test_ranking_uses_completed_trials_and_the_searchs_metric(tmp_path):
    exp = _search(tmp_path)
    trials = load_trials(exp)["hand"]
    metric = resolve_metric(None, load_search(exp / "search.yaml").settings)
    assert metric == "best/proxy/source_pck"  # the value of the epoch each trial chose
    assert [(v, t.trial_id) for v, t in ranking(trials, metric)] == [(90.0, "a"), (80.0, "b")]
    assert [t.trial_id for _, t in ranking(trials, resolve_metric("dev", SearchConfig()))] == [
        "a",
        "b",
    ]


def test_export_writes_best_and_never_overwrites(tmp_path):
    exp = _search(tmp_path)
    out = export(exp, top_k=2)
    meta = json.loads((out / "hand" / "meta.json").read_text())
    assert meta["trial_id"] == "a" and meta["selected_by"] == "proxy/source_pck"
    assert (meta["epoch"], meta["last_epoch"], meta["epoch_selected_by"]) == (
        1,
        2,
        "proxy/source_pck",
    )
    assert meta["oracle_eval_only"] == {"oracle/target_pck": 50.0}  # of the chosen epoch
    assert torch.equal(torch.load(out / "hand" / "model.pt")["w"], torch.ones(1))  # its weights
    assert (out / "hand" / "top2" / "config.yaml").is_file()
    assert meta["reproduce"].startswith(f"regda-dist train {out / 'hand' / 'config.yaml'} ")
    assert "Selected by **proxy/source_pck**." in (out / "summary.md").read_text()
    with pytest.raises(SearchFolderError, match="exists; nothing overwritten"):
        export(exp)


def test_export_reads_the_selected_weights_of_folders_made_before_model_pt_held_them(tmp_path):
    exp = _search(tmp_path)
    for run in exp.glob("hand/trials/*/hand"):  # the former layout: model.pt last, selected.pt
        (run / "selected.pt").write_bytes((run / "model.pt").read_bytes())
        torch.save({"w": torch.zeros(1)}, run / "model.pt")
    out = export(exp)
    assert torch.equal(torch.load(out / "hand" / "model.pt")["w"], torch.ones(1))


def test_oracle_selection_is_labelled_as_such(tmp_path):
    exp = _search(tmp_path, selection="oracle")
    out = export(exp)
    meta = json.loads((out / "hand" / "meta.json").read_text())
    assert meta["trial_id"] == "b" and "ORACLE" in meta["selected_by"]
    assert (
        "Selected by **oracle/target_pck (ORACLE: selected with target labels)**"
        in (out / "summary.md").read_text()
    )


def test_consensus_scores_agreement_with_the_median_of_every_trial_and_source_only(tmp_path):
    from regda_dist.search.consensus import consensus_scores

    search_dir = _search(tmp_path)
    trials = load_trials(search_dir)["hand"]
    assert consensus_scores(trials, "hand") == {"a": 100.0, "b": 0.0}  # c did not complete
    out = export(search_dir, metric="consensus")
    meta = json.loads((out / "hand" / "meta.json").read_text())
    assert meta["selected_by"] == "proxy/consensus" and meta["selection_value"] == 100.0


def test_report_compares_last_chosen_and_oracle_epochs(tmp_path):
    from regda_dist.search.report import epoch_table

    table = epoch_table(load_trials(_search(tmp_path))["hand"], "hand")
    assert table["n"] == 2 and table["metric"] == "proxy/source_pck"
    assert (table["last"], table["selected"], table["oracle_epoch"]) == (50.0, 55.0, 55.0)
    assert table["same_epoch"] == 2


def test_proxy_table_spearman_and_regret(tmp_path):
    exp = _search(tmp_path)
    table = proxy_table(load_trials(exp)["hand"], "hand")  # c was stopped early: not compared
    assert table["proxy/dev"]["spearman"] == pytest.approx(-1.0)
    assert table["proxy/dev"]["regret"] == pytest.approx(10.0) and table["proxy/dev"]["n"] == 2
    assert table["proxy/source_pck"]["regret"] == pytest.approx(10.0)  # c (99, 70) left out


def test_not_a_search_folder(tmp_path):
    with pytest.raises(SearchFolderError, match="not a search folder"):
        export(tmp_path)


def test_the_report_says_what_the_search_found(tmp_path):
    from regda_dist.search.report import report

    text = report(_search(tmp_path)).path.read_text()
    assert "What the search found (selected by proxy/source_pck;" in text
    # a: chosen by the proxy at epoch 1; b is the oracle's pick; source-only = the last epoch
    assert "- hand: trial a (epoch 1, proxy/source_pck 90) reaches 50.0 target PCK vs " in text
    assert "45.0 source-only, 60.0 the oracle's pick" in text


def test_the_proxies_figure_is_a_grid_a_laptop_screen_shows(tmp_path):
    # it was one row of seven 320 x 300 px panels (2240 x 300 px)
    from PIL import Image

    from regda_dist.search import report as R

    exp = _search(tmp_path)
    trials = R.load_trials(exp)["hand"]
    table = {f"proxy/p{i}": {"spearman": 0.5, "regret": 1.0, "picked": 50.0, "n": 2}
             for i in range(7)}  # fmt: skip
    for t in trials:
        t.metrics("hand").update({k: float(i) for i, k in enumerate(table)})
    R._scatter(trials, "hand", table, [], tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as image:
        width, height = image.size
    assert width <= 1280 and height <= 1100, (width, height)
    assert width / R.COLUMNS >= 380  # each panel as wide as the old one was tall, and more


def _with_baselines(tmp_path, adabn_proxy: float):
    """_search, where every run also holds its baselines (AdaBN's source_pck = adabn_proxy)
    and their weights, as engine/run.py writes them."""
    exp = _search(tmp_path)
    weights = {"source_only": tmp_path / "p1.pt", "adabn": tmp_path / "adabn.pt"}
    torch.save({"w": torch.full((1,), 3.0)}, weights["source_only"])
    torch.save({"w": torch.full((1,), 7.0)}, weights["adabn"])
    for result_file in exp.glob("hand/trials/*/hand/result.json"):
        result = json.loads(result_file.read_text())
        result["adabn"] = {"proxy/source_pck": adabn_proxy, "oracle/target_pck": 66.0}
        result["baseline_weights"] = {k: str(v) for k, v in weights.items()}
        result_file.write_text(json.dumps(result))
        (result_file.parent / "config.yaml").write_text("adapt: {method: regda}\n")
    return exp


def test_a_baseline_that_scores_better_than_every_trial_is_what_export_writes(tmp_path):
    from regda_dist.search.report import report

    exp = _with_baselines(tmp_path, adabn_proxy=95.0)  # trial a, the best trial: 90
    out = export(exp)
    meta = json.loads((out / "hand" / "meta.json").read_text())
    assert (meta["candidate"], meta["trial_id"], meta["selection_value"]) == ("AdaBN", None, 95.0)
    assert meta["oracle_eval_only"] == {"oracle/target_pck": 66.0}
    assert yaml.safe_load((out / "hand" / "config.yaml").read_text())["adapt"]["method"] == "adabn"
    assert torch.equal(torch.load(out / "hand" / "model.pt")["w"], torch.full((1,), 7.0))
    summary = (out / "summary.md").read_text()
    assert "**AdaBN scored better than every trial on hand: it is what is exported.**" in summary
    first = report(exp).path.read_text().split("\n\n")[1]
    assert first.startswith("**A baseline is the search's answer: hand: AdaBN")


def test_a_trial_that_scores_better_than_the_baselines_is_exported(tmp_path):
    exp = _with_baselines(tmp_path, adabn_proxy=89.0)
    meta = json.loads((export(exp, top_k=3) / "hand" / "meta.json").read_text())
    assert (meta["candidate"], meta["trial_id"]) == ("trial a", "a")
    ranks = [
        json.loads(p.read_text())["candidate"] for p in sorted(exp.glob("best/hand/top*/meta.json"))
    ]
    assert ranks == ["AdaBN", "source-only"]  # 89, then source-only's 85 (trial a's last epoch)


def test_the_report_lists_each_methods_pick_and_the_baselines(tmp_path):
    from regda_dist.search.report import report

    exp = _with_baselines(tmp_path, adabn_proxy=95.0)
    params = exp / "hand" / "trials" / "b" / "params.json"
    params.write_text(json.dumps({"adapt.method": "mean_teacher"}))
    text = report(exp).path.read_text()
    assert "| regda | 2 | a | 90 | 50.0 |" in text  # trial c did not complete
    assert "| mean_teacher | 1 | b | 80 | 60.0 |" in text
    # a method none of whose trials completed is a row without a pick (not a crash)
    incomplete = exp / "hand" / "trials" / "c" / "params.json"
    incomplete.write_text(json.dumps({"adapt.method": "regda+mean_teacher"}))
    text = report(exp).path.read_text()
    assert "| regda | 1 | a | 90 | 50.0 |" in text
    assert "| regda+mean_teacher | 1 | - | - | - |" in text
    assert "| AdaBN | - | - | 95 | 66.0 |" in text
