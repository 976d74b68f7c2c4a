import importlib.util
import math
import re

import pytest
import torch

from regda_dist.models.backbones import create_backbone, list_backbones
from regda_dist.models.regda import RegDAModel, WarmStartGradientLayer

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def _lambda(i, lo=0.0, hi=0.1, alpha=1.0, n=1000):
    return 2 * (hi - lo) / (1 + math.exp(-alpha * i / n)) - (hi - lo) + lo


def _small_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return RegDAModel(create_backbone("small_resnet"), 3, channels=16, num_deconv=3, **kwargs)


def test_registry_lists_expected_backbones():
    names = list_backbones()
    assert names == sorted(names)
    assert {"small_resnet", "resnet18", "resnet50", "resnet101"} <= set(names)


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name):
    if name.startswith("resnet"):
        try:
            import torchvision  # noqa: F401
        except ImportError:
            pytest.skip(f"{name} needs torchvision, which is not installed")
    torch.manual_seed(0)
    backbone = create_backbone(name)
    backbone.eval()
    size = 64
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, size, size))
    assert isinstance(backbone.stride, int) and backbone.stride > 0
    assert out.shape == (2, backbone.out_channels, size // backbone.stride, size // backbone.stride)


def test_resnet_without_torchvision_raises_import_error():
    if HAS_TORCHVISION:
        pytest.skip("torchvision is installed")
    with pytest.raises(ImportError, match="torchvision"):
        create_backbone("resnet18")


def test_unknown_backbone_lists_registered_names():
    with pytest.raises(ValueError, match="no_such_net") as info:
        create_backbone("no_such_net")
    for name in list_backbones():
        assert name in str(info.value)


def test_missing_pretrained_file_raises_file_not_found(tmp_path):
    path = tmp_path / "missing" / "weights.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        create_backbone("small_resnet", str(path))


def test_pretrained_file_round_trip(tmp_path):
    torch.manual_seed(0)
    source = create_backbone("small_resnet")
    with torch.no_grad():  # move the BN running statistics away from their defaults
        for _ in range(2):
            source(torch.randn(2, 3, 32, 32) * 3 + 1)
    source.eval()
    path = tmp_path / "small_resnet.pt"
    torch.save(source.state_dict(), path)

    torch.manual_seed(1)
    fresh = create_backbone("small_resnet").eval()
    loaded = create_backbone("small_resnet", str(path)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = source(x)
        assert not torch.allclose(fresh(x), expected)  # a different init gives different outputs
        assert torch.equal(loaded(x), expected)


def test_pretrained_file_missing_tensors_raises(tmp_path):
    path = tmp_path / "empty.pt"
    torch.save({}, path)
    with pytest.raises(ValueError):
        create_backbone("small_resnet", str(path))


def test_regda_model_shapes_train_and_eval():
    model = _small_model()
    x = torch.randn(2, 3, 64, 64)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 2
    y, y_adv = out
    assert y.shape == (2, 3, 32, 32)
    assert y_adv.shape == (2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        y_eval = model(x)
    assert isinstance(y_eval, torch.Tensor)
    assert y_eval.shape == (2, 3, 32, 32)


def test_heads_share_no_parameters():
    model = _small_model()
    head = {id(p) for p in model.head.parameters()}
    head_adv = {id(p) for p in model.head_adv.parameters()}
    feature = {id(p) for p in model.feature_parameters()}
    assert head and head_adv
    assert not head & head_adv
    assert not (head | head_adv) & feature
    ptrs = {p.data_ptr() for p in model.head.parameters()}
    assert not ptrs & {p.data_ptr() for p in model.head_adv.parameters()}
    # changing one head leaves the other untouched
    before = [p.clone() for p in model.head_adv.parameters()]
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.head_adv.parameters(), strict=True))


def test_warm_start_forward_is_identity():
    layer = WarmStartGradientLayer()
    layer.load_state_dict({"iters": torch.tensor(500)})
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("iters", [1000, 8000])
def test_warm_start_backward_scales_by_positive_coeff(iters):
    layer = WarmStartGradientLayer(lo=0.0, hi=0.1, alpha=1.0, max_iters=1000)
    layer.load_state_dict({"iters": torch.tensor(iters)})
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    g = torch.randn(2, 3, 4, 4)
    (layer(x) * g).sum().backward()
    coeff = _lambda(iters)
    assert coeff > 0
    torch.testing.assert_close(x.grad, g * coeff)
    assert (torch.sign(x.grad) == torch.sign(g)).all()  # not reversed


@pytest.mark.parametrize("lo, hi", [(0.0, 0.1), (0.02, 0.5)])
def test_warm_start_coeff_at_zero_is_lo(lo, hi):
    layer = WarmStartGradientLayer(lo=lo, hi=hi)
    assert int(layer.iters) == 0
    assert layer.coeff == pytest.approx(lo, abs=1e-12)


def test_warm_start_coeff_schedule():
    layer = WarmStartGradientLayer(lo=0.0, hi=0.1, alpha=1.0, max_iters=1000)
    layer.load_state_dict({"iters": torch.tensor(1000)})
    assert layer.coeff == pytest.approx(0.2 / (1 + math.exp(-1)) - 0.1, rel=1e-9)
    assert layer.coeff == pytest.approx(0.0462117, rel=1e-5)
    layer.load_state_dict({"iters": torch.tensor(8000)})
    assert layer.coeff == pytest.approx(0.2 / (1 + math.exp(-8)) - 0.1, rel=1e-9)
    assert layer.coeff == pytest.approx(0.0999329, rel=1e-5)


def test_warm_start_step_increments_counter():
    layer = WarmStartGradientLayer()
    coeffs = [layer.coeff]
    for i in range(1, 4):
        layer.step()
        assert int(layer.iters) == i
        coeffs.append(layer.coeff)
    assert coeffs == sorted(coeffs) and coeffs[-1] > coeffs[0]
    assert coeffs[-1] == pytest.approx(_lambda(3))


def test_warm_start_counter_round_trips_through_state_dict():
    model = _small_model(seed=0)
    for _ in range(5):
        model.grl.step()
    state = model.state_dict()
    assert int(state["grl.iters"]) == 5
    fresh = _small_model(seed=1)
    assert int(fresh.grl.iters) == 0
    fresh.load_state_dict(state)
    assert int(fresh.grl.iters) == 5
    assert fresh.grl.coeff == pytest.approx(_lambda(5))


def test_feature_gradient_from_adv_head_is_scaled_by_coeff():
    model = _small_model()
    model.train()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)

    def feature_grads(iters):
        model.zero_grad(set_to_none=True)
        model.grl.load_state_dict({"iters": torch.tensor(iters)})
        _, y_adv = model(x)
        y_adv.sum().backward()
        return [p.grad.clone() for p in model.upsampling.parameters()]

    zero = feature_grads(0)  # lambda(0) = lo = 0: psi gets nothing from head_adv
    assert all(torch.equal(g, torch.zeros_like(g)) for g in zero)
    g1, g8 = feature_grads(1000), feature_grads(8000)
    assert any(g.abs().sum() > 0 for g in g1)
    ratio = _lambda(8000) / _lambda(1000)
    for a, b in zip(g1, g8, strict=True):
        expected = a * ratio
        assert (b - expected).norm() <= 1e-4 * expected.norm() + 1e-12


def test_the_heads_last_layer_computes_float32_logits_under_bf16_autocast():
    """Pseudo labels and PCK are argmaxes of these logits: in bf16 neighbouring pixels tie."""
    from regda_dist.models.regda import Head

    torch.manual_seed(0)
    head = Head(8, 3)
    for m in head.modules():  # weights that make the logits differ in their low bits
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.3)
    x = torch.randn(2, 8, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = head(x)
        hidden = torch.nn.Sequential(*list(head)[:-1])(x)  # the layers before: still bf16
    assert y.dtype == torch.float32 and hidden.dtype == torch.bfloat16
    last = head[-1]
    expected = torch.nn.functional.conv2d(hidden.float(), last.weight, last.bias)
    assert torch.equal(y, expected)
