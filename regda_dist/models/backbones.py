"""Backbone registry: a string picks an implementation (timm-style register/create/list).

Every backbone maps (B, 3, S, S) images to (B, C, S / stride, S / stride) features and exposes
`out_channels` and `stride`. The default `small_resnet` is our own CPU-sized network; the ResNets
come from torchvision (optional extra `regda-dist[torchvision]`) with ImageNet weights read from a
local file: nothing is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from regda_dist.registry import Registry
from regda_dist.weights import load_weights

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register_backbone(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a backbone factory `fn(pretrained: str) -> nn.Module` by its name."""
    return BACKBONES.register(fn.__name__, fn)


def list_backbones() -> list[str]:
    return BACKBONES.list()


def create_backbone(name: str, pretrained: str = "") -> nn.Module:
    """Build a registered backbone; `pretrained` is a local weights file ('' = random init)."""
    return BACKBONES.create(name, pretrained=pretrained)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


class SmallResNet(nn.Module):
    """A residual network sized for CPUs: a stride-2 stem and three stride-2 stages (stride 16)."""

    def __init__(self, width: int = 32):
        super().__init__()
        widths = (width, 2 * width, 4 * width, 8 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(True)
        )
        self.stages = nn.Sequential(
            *(_BasicBlock(a, b, 2) for a, b in zip(widths, widths[1:], strict=False))
        )
        self.out_channels, self.stride = widths[-1], 16

    def forward(self, x):  # (B, 3, S, S) -> (B, 8w, S/16, S/16)
        return self.stages(self.stem(x))


def _load_state(module: nn.Module, path: str) -> None:
    """Local weights into `module`; ValueError (one line naming the file) if the file is
    damaged, not weights only, or its tensors do not fit the backbone."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {file}")
    state = load_weights(file)
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:  # e.g. "size mismatch for ...", one per tensor
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise ValueError(f"{file}: {(lines or [str(err)])[0]}") from None
    if missing:
        raise ValueError(
            f"{file}: weights miss {len(missing)} backbone tensors, e.g. {missing[0]!r}"
        )
    del unexpected  # classifier weights (fc.*) of ImageNet checkpoints are not used


@register_backbone
def small_resnet(pretrained: str = "") -> nn.Module:
    model = SmallResNet(width=32)
    if pretrained:
        _load_state(model, pretrained)
    return model


class _TorchvisionResNet(nn.Module):
    """torchvision ResNet without its pooling and classifier: stride 32."""

    def __init__(self, depth: int, pretrained: str):
        super().__init__()
        try:
            from torchvision.models import resnet
        except ImportError as err:
            raise ImportError(
                f"backbone resnet{depth} needs torchvision: pip install 'regda-dist[torchvision]' "
                f"(with the torch build it matches), or use backbone 'small_resnet' ({err})"
            ) from err
        net = getattr(resnet, f"resnet{depth}")(weights=None)
        if pretrained:
            _load_state(net, pretrained)
        self.body = nn.Sequential(*list(net.children())[:-2])
        self.out_channels, self.stride = net.fc.in_features, 32

    def forward(self, x):
        return self.body(x)


def _register_resnet(depth: int) -> None:
    def build(pretrained: str = "") -> nn.Module:
        return _TorchvisionResNet(depth, pretrained)

    build.__name__ = f"resnet{depth}"
    register_backbone(build)


for _depth in (18, 34, 50, 101):
    _register_resnet(_depth)
