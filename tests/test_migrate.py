"""Files written before phase 2's schedule moved under adapt: (and results keyed "regda") are
read the new way with one note, never silently misread; a file that sets a value both ways is
refused in one line."""

import json
import warnings

import pytest
import yaml

from regda_dist import config as C
from regda_dist.cli import main
from regda_dist.config.migrate import adapted, migrate_keys
from regda_dist.search.spec import load_search
from tests.conftest import write_experiment


def _notes(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, C.OldFormat)]


def test_an_old_experiment_reads_the_new_way_with_one_note(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("regda:\n  epochs: 7\n  sigma: 3.0\n  trade_off: 2.0\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cfg = C.load(path)
    assert (cfg.adapt.epochs, cfg.adapt.sigma, cfg.regda.trade_off) == (7, 3.0, 2.0)
    (note,) = _notes(record)
    assert str(path) in note and "regda.epochs -> adapt.epochs" in note
    assert "regda.sigma -> adapt.sigma" in note and "\n" not in note


def test_a_value_set_both_ways_is_refused_with_its_line(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("adapt:\n  epochs: 3\nregda:\n  epochs: 7\n")
    with pytest.raises(C.ConfigError, match=r"both.yaml:4: regda.epochs and adapt.epochs are both"):
        C.load(path)


def test_an_old_override_and_an_old_search_space_read_the_new_way(tmp_path):
    assert C.load(None, ["regda.batch_size=8"]).adapt.batch_size == 8
    path = write_experiment(tmp_path)
    values = yaml.safe_load(path.read_text())
    values["search"] = {"space": {"regda.sigma": {"choice": [1.5, 3.0]}}, "num_samples": 2}
    path.write_text(yaml.safe_dump(values))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        search = load_search(path)
    assert search.space == {"adapt.sigma": {"choice": [1.5, 3.0]}}
    assert any("search.space" in n and "regda.sigma -> adapt.sigma" in n for n in _notes(record))
    with pytest.raises(C.ConfigError, match="regda.sigma and adapt.sigma are both set"):
        migrate_keys({"regda.sigma": 2.0, "adapt.sigma": 3.0}, "params.json")


def test_an_old_result_reads_its_adapted_model_with_a_note():
    with pytest.warns(C.OldFormat, match="key the adapted model 'regda'"):
        assert adapted({"regda": {"oracle/target_pck": 5.0}}) == {"oracle/target_pck": 5.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # today's files: no note
        assert adapted({"adapted": {"a": 1.0}}) == {"a": 1.0}


def test_the_command_line_says_the_note_once_as_a_note_line(tmp_path, capsys):
    path = write_experiment(tmp_path)
    values = yaml.safe_load(path.read_text())
    values["regda"] = {"epochs": values["adapt"].pop("epochs"), "warm_max_iters": 2}
    path.write_text(yaml.safe_dump(values))
    assert main(["train", "--no-ray", str(path)]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "moved under adapt:" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "regda.epochs" in notes[0]
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "config.yaml").read_text())
    assert "epochs" not in saved["regda"] and saved["adapt"]["epochs"] == 2  # saved the new way
    result = json.loads((tmp_path / "runs" / "tiny" / "result.json").read_text())
    assert "adapted" in result and "regda" not in result
