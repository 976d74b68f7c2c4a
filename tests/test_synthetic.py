import pytest
import torch

from regda_dist.config import DataConfig
from regda_dist.data import datasets, synthetic

CASES = [(name, domain) for name in synthetic.TASKS for domain in synthetic.DOMAINS]
SIZE = 64


def _gen(name, domain, n=8, seed=0, split="train"):
    return synthetic.generate(synthetic.TASKS[name], domain, split, n=n, size=SIZE, seed=seed)


def _mean_abs_gradient(images_uint8):
    """Mean absolute horizontal + vertical pixel difference: high-frequency energy."""
    x = images_uint8.float() / 255
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return (dx + dy).item() / 2


@pytest.mark.parametrize("name, domain", CASES)
def test_generate_shapes_and_dtypes(name, domain):
    d = _gen(name, domain)
    k = synthetic.TASKS[name].spec.num_keypoints
    assert d["images"].dtype == torch.uint8 and d["images"].shape == (8, 3, SIZE, SIZE)
    assert d["keypoints"].dtype.is_floating_point and d["keypoints"].shape == (8, k, 2)
    assert d["visible"].dtype == torch.bool and d["visible"].shape == (8, k)
    assert torch.isfinite(d["keypoints"]).all()


@pytest.mark.parametrize("name, domain", CASES)
def test_generate_is_seeded(name, domain):
    a, b, c = _gen(name, domain), _gen(name, domain), _gen(name, domain, seed=1)
    for key in ("images", "keypoints", "visible"):
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["images"], c["images"])
    assert not torch.equal(a["keypoints"], c["keypoints"])


@pytest.mark.parametrize("name", synthetic.TASKS)
@pytest.mark.parametrize("split", synthetic.SPLITS)
def test_source_and_target_of_a_split_differ(name, split):
    s, t = _gen(name, "source", split=split), _gen(name, "target", split=split)
    assert not torch.equal(s["images"], t["images"])
    assert not torch.equal(s["keypoints"], t["keypoints"])


@pytest.mark.parametrize("name", synthetic.TASKS)
def test_splits_of_a_domain_differ(name):
    train, test = _gen(name, "target", split="train"), _gen(name, "target", split="test")
    assert not torch.equal(train["keypoints"], test["keypoints"])


@pytest.mark.parametrize("name, domain", CASES)
def test_keypoints_mostly_inside_and_visible_marks_inside(name, domain):
    d = _gen(name, domain, n=32)
    kp, visible = d["keypoints"], d["visible"]
    inside = ((kp >= 0) & (kp < SIZE)).all(dim=-1)
    assert inside.float().mean().item() > 0.9
    assert torch.equal(visible, inside)


def test_visible_is_false_for_keypoints_outside_the_image():
    # Bodies fill most of the image, so some limbs leave it: the check above is not vacuous.
    d = _gen("synth_body", "target", n=64)
    outside = ~d["visible"]
    assert outside.any()
    kp = d["keypoints"][outside]  # (M, 2)
    assert ((kp < 0) | (kp >= SIZE)).any(dim=-1).all()


@pytest.mark.parametrize("name", synthetic.TASKS)
def test_target_domain_differs_in_low_level_statistics(name):
    s, t = _gen(name, "source", n=64), _gen(name, "target", n=64)
    # Texture, distractors and noise: clearly more high-frequency energy in the target.
    assert _mean_abs_gradient(t["images"]) > 1.3 * _mean_abs_gradient(s["images"])
    std_s = (s["images"].float() / 255).std(dim=(1, 2, 3)).mean().item()
    std_t = (t["images"].float() / 255).std(dim=(1, 2, 3)).mean().item()
    assert std_t > 1.05 * std_s


def test_load_split_caches_on_disk(tmp_path, monkeypatch):
    first = synthetic.load_split("synth_hand", "source", "val", 4, 32, 0, tmp_path)
    files = list(tmp_path.rglob("*"))
    pt = [f for f in files if f.is_file()]
    assert len(pt) == 1 and pt[0].suffix == ".pt", files

    def no_generate(*args, **kwargs):
        raise AssertionError("generate called although the split is cached")

    monkeypatch.setattr(synthetic, "generate", no_generate)
    second = synthetic.load_split("synth_hand", "source", "val", 4, 32, 0, tmp_path)
    assert second.keys() == first.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # The cache key includes the split size: another n is generated, not read.
    with pytest.raises(AssertionError, match="generate called"):
        synthetic.load_split("synth_hand", "source", "val", 5, 32, 0, tmp_path)


def test_load_split_matches_generate(tmp_path):
    cached = synthetic.load_split("synth_body", "target", "test", 3, 32, 7, tmp_path)
    fresh = synthetic.generate(synthetic.TASKS["synth_body"], "target", "test", 3, 32, 7)
    for key in fresh:
        assert torch.equal(cached[key], fresh[key]), key


def test_load_split_unknown_task_lists_known(tmp_path):
    with pytest.raises(ValueError, match="synth_face") as info:
        synthetic.load_split("synth_face", "source", "train", 4, 32, 0, tmp_path)
    assert "synth_hand" in str(info.value) and "synth_body" in str(info.value)
    assert not any(tmp_path.iterdir())


def _tiny_data_cfg(tmp_path):
    return DataConfig(
        task="synth_hand",
        root=str(tmp_path),
        image_size=64,
        heatmap_size=32,
        num_train=16,
        num_val=8,
        num_test=8,
    )


def test_build_task_splits(tmp_path):
    task = datasets.build_task(_tiny_data_cfg(tmp_path))
    sizes = {
        "source_train": 16,
        "source_val": 8,
        "source_test": 8,
        "target_train": 16,
        "target_val": 8,
        "target_test": 8,
        "target_train_labelled": 16,
    }
    assert {name: len(getattr(task, name)) for name in sizes} == sizes
    assert task.spec is synthetic.TASKS["synth_hand"].spec


def test_build_task_target_train_has_no_labels(tmp_path):
    task = datasets.build_task(_tiny_data_cfg(tmp_path))
    item = task.target_train[0]
    assert isinstance(item, torch.Tensor)
    assert item.shape == (3, 64, 64) and item.dtype == torch.uint8  # the model normalises
    raw = synthetic.load_split("synth_hand", "target", "train", 16, 64, 0, tmp_path / "synthetic")
    assert torch.equal(item, raw["images"][0])
    assert torch.equal(item, task.target_train_labelled[0][0])


def test_build_task_labelled_splits_yield_image_keypoints_visible(tmp_path):
    task = datasets.build_task(_tiny_data_cfg(tmp_path))
    for split in (task.target_test, task.target_val, task.source_train):
        image, keypoints, visible = split[0]
        assert image.shape == (3, 64, 64) and image.dtype == torch.uint8
        assert keypoints.shape == (21, 2)
        assert visible.shape == (21,) and visible.dtype == torch.bool
    # Source and target are different domains, not the same images.
    assert not torch.equal(task.source_train[0][0], task.target_train[0])


def test_build_task_unknown_task_raises(tmp_path):
    cfg = _tiny_data_cfg(tmp_path)
    cfg.task = "synth_face"
    with pytest.raises(ValueError, match="synth_hand"):
        datasets.build_task(cfg)


def test_cache_root_uses_env_when_root_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("REGDA_DIST_CACHE", str(tmp_path / "env"))
    assert datasets.cache_root("") == tmp_path / "env"
    assert datasets.cache_root(str(tmp_path / "given")) == tmp_path / "given"
