"""Malformed dataset folders give one clear error naming the file; `regda-dist data check`."""

import json

import numpy as np
import pytest

from regda_dist.cli import main
from regda_dist.data import registry
from regda_dist.data.check import check
from regda_dist.data.images import ImageSamples
from regda_dist.data.samples import DatasetError
from tests import data_fixtures as fx


def _row(text: str, split: str) -> list[str]:
    """The cells of a split's row in the check report."""
    return next(line.split()[1:] for line in text.splitlines() if line.startswith(split + " "))


def test_missing_folder_names_it_and_the_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: missing folder \(dataset 'h3d': H3D_crop"):
        registry.create_dataset("h3d", tmp_path / "nowhere")


def test_missing_annotation_file_is_named(tmp_path):
    fx.write_surreal(tmp_path)
    (tmp_path / "val" / "run0.json").unlink()
    with pytest.raises(DatasetError, match=r"val/run0.json: missing file"):
        registry.create_dataset("surreal", tmp_path)


def test_truncated_json_is_named_with_its_line(tmp_path):
    fx.write_h3d(tmp_path)
    file = tmp_path / "H3D_crop" / "annotation.json"
    file.write_text(file.read_text()[:200])
    with pytest.raises(DatasetError, match=r"H3D_crop/annotation.json: malformed JSON .* line 1"):
        registry.create_dataset("h3d", tmp_path)


def test_truncated_pickle_is_named(tmp_path):
    fx.write_rhd(tmp_path)
    file = tmp_path / "RHD_published_v2" / "evaluation" / "anno_evaluation.pickle"
    file.write_bytes(file.read_bytes()[:50])
    with pytest.raises(DatasetError, match=r"anno_evaluation.pickle: malformed pickle"):
        registry.create_dataset("rhd", tmp_path)


def test_wrong_keypoint_count_names_file_sample_and_shape(tmp_path):
    fx.write_surreal(tmp_path)
    file = tmp_path / "train" / "run0.json"
    entries = json.loads(file.read_text())
    entries[1]["keypoint2d"] = entries[1]["keypoint2d"][:23]
    file.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=r"train/run0.json: sample 1: keypoint2d must be 24x2"):
        registry.create_dataset("surreal", tmp_path)


def test_wrong_coco_keypoint_count_and_unknown_names(tmp_path):
    fx.write_coco(tmp_path)
    file = tmp_path / "test.json"
    data = json.loads(file.read_text())
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:-3]
    file.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"test.json: annotation 100: 'keypoints' has 48"):
        registry.create_dataset("coco", tmp_path, "body16")
    with pytest.raises(DatasetError, match=r"no keypoint name matches hand21"):
        registry.create_dataset("coco", tmp_path, "hand21")


def test_lsp_joints_of_the_wrong_shape(tmp_path):
    from scipy.io import savemat

    fx.write_lsp(tmp_path)
    savemat(tmp_path / "joints.mat", {"joints": np.zeros((3, 13, 3))})
    with pytest.raises(DatasetError, match=r"joints.mat: 'joints' must be 3x14xN .* got 3x13x3"):
        registry.create_dataset("lsp", tmp_path)
    savemat(tmp_path / "joints.mat", {"other": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"joints.mat: no variable 'joints' \(found: other\)"):
        registry.create_dataset("lsp", tmp_path)


def test_unreadable_image_is_named_when_loaded(tmp_path):
    fx.write_h3d(tmp_path)
    domain = registry.create_dataset("h3d", tmp_path)
    bad = domain.splits["test"][0].image
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=rf"{bad.name}: unreadable image"):
        ImageSamples(domain.splits["test"], 32)[0]


def test_check_counts_visibility_and_lists_missing_and_broken_images(tmp_path):
    fx.write_lsp(tmp_path)
    report = check("lsp", tmp_path)
    assert not report.problems
    assert _row(report.text, "train") == ["3", "3", "85.4%"] and report.text.endswith("OK")
    assert "r_hip 67%" in report.text and "pelvis 0%" in report.text
    assert "target-train set is its test set" in report.text
    (tmp_path / "images" / "im0002.jpg").unlink()
    (tmp_path / "images" / "im0003.jpg").write_bytes(b"\x00" * 10)
    report = check("lsp", tmp_path)
    assert report.problems == [
        f"{tmp_path / 'images' / 'im0002.jpg'}: missing image",
        report.problems[1],
    ]
    assert report.problems[1].startswith(f"{tmp_path / 'images' / 'im0003.jpg'}: unreadable")


def test_cli_data_check_prints_report_and_exits_0(tmp_path, capsys):
    fx.write_human36m(tmp_path)
    assert main(["data", "check", "--dataset", "human36m", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "human36m" in out and _row(out, "test")[:2] == ["4", "4"]
    assert out.rstrip().endswith("OK")


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        (None, ["--dataset", "rhd"], "missing folder"),
        (fx.write_h3d, ["--dataset", "h3d"], "unreadable image"),
        (fx.write_coco, ["--dataset", "coco"], "needs a keypoint set"),
        (fx.write_coco, ["--dataset", "nope"], "unknown dataset 'nope'"),
    ],
)
def test_cli_data_check_errors_are_one_line_exit_2(tmp_path, capsys, setup, args, expected):
    if setup:
        setup(tmp_path)
        for image in tmp_path.rglob("0003.png"):
            image.write_bytes(b"broken")
    assert main(["data", "check", *args, str(tmp_path / "d" if not setup else tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("regda-dist: error: ")
    assert expected in captured.err + captured.out  # problems are listed in the report


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    import os
    import pickle

    from regda_dist.data.io import read_pickle
    from regda_dist.data.samples import DatasetError

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "anno_training.pickle"
    path.write_bytes(pickle.dumps({0: Exploit()}))
    with pytest.raises(DatasetError, match=r"anno_training.pickle: malformed pickle .*refused"):
        read_pickle(path, "RHD annotations")
