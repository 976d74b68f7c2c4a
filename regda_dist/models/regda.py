"""The RegDA model: feature generator psi (backbone + upsampling), main head f, adversarial head f'.

Shapes follow the reference at 256/64 (ResNet-101, 8x8 features, three x2 deconvolutions); any
image size, backbone stride and number of deconvolutions with heatmap = S / stride * 2^num_deconv.
Input images are uint8 (or float 0-255) pixels: the model's first step is the ImageNet
normalisation, on whatever device the model lives (loaders ship uint8, a quarter of float32).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from regda_dist.models.backbones import create_backbone


class Upsampling(nn.Sequential):
    """Simple Baselines upsampling: num_deconv x [ConvTranspose(k4, s2, p1) -> BN -> ReLU]."""

    def __init__(self, in_channels: int, channels: int = 256, num_deconv: int = 3):
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            deconv = nn.ConvTranspose2d(
                in_channels if i == 0 else channels, channels, 4, 2, 1, bias=False
            )
            nn.init.normal_(deconv.weight, std=0.001)
            layers += [deconv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class Float32Conv2d(nn.Conv2d):
    """A convolution computed in float32 under any autocast (input cast to float). The heads'
    last layer: their logits are argmaxed into pseudo labels and PCK, and in bf16 (8 bits of
    mantissa) neighbouring heatmap pixels tie. A 1x1 convolution to K channels costs little."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kind = x.device.type
        if not torch.amp.is_autocast_available(kind):  # e.g. the meta device
            return super().forward(x.float())
        with torch.autocast(kind, enabled=False):
            return super().forward(x.float())


class Head(nn.Sequential):
    """(num_layers - 1) x [Conv3x3 -> BN -> ReLU] then Conv1x1 -> K heatmap logits (the 1x1 in
    float32: Float32Conv2d)."""

    def __init__(self, channels: int, num_keypoints: int, num_layers: int = 2):
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [
                nn.Conv2d(channels, channels, 3, 1, 1),
                nn.BatchNorm2d(channels),
                nn.ReLU(True),
            ]
        layers.append(Float32Conv2d(channels, num_keypoints, 1))
        for m in layers:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)
        super().__init__(*layers)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.coeff, None


def warm_start_lambda(i: int, lo: float, hi: float, alpha: float, max_iters: int) -> float:
    """lambda(i) = 2 (hi - lo) / (1 + exp(-alpha i / max_iters)) - (hi - lo) + lo."""
    span = hi - lo
    return 2 * span / (1 + math.exp(-alpha * i / max_iters)) - span + lo


class WarmStartGradientLayer(nn.Module):
    """Identity forward; backward multiplies the gradient by +lambda(i) (not reversed), where
    lambda (warm_start_lambda) rises from lo to hi. The counter `iters` is a buffer, so it is
    saved with the model's state dict; a Python int mirrors it, so reading lambda never waits on
    the device."""

    def __init__(self, lo: float = 0.0, hi: float = 0.1, alpha: float = 1.0, max_iters: int = 1000):
        super().__init__()
        if max_iters <= 0:
            raise ValueError(f"max_iters must be > 0, got {max_iters!r}")
        self.lo, self.hi, self.alpha, self.max_iters = lo, hi, alpha, max_iters
        self.register_buffer("iters", torch.zeros((), dtype=torch.long))
        self.count = 0  # == int(self.iters), kept on the host
        self.register_load_state_dict_post_hook(_mirror_counter)

    @property
    def coeff(self) -> float:
        return warm_start_lambda(self.count, self.lo, self.hi, self.alpha, self.max_iters)

    def step(self) -> None:
        self.iters += 1
        self.count += 1

    def forward(self, x):
        return _ScaleGradient.apply(x, self.coeff)


def _mirror_counter(module: WarmStartGradientLayer, incompatible) -> None:
    """After load_state_dict: the host mirror takes the loaded counter (one read, at load)."""
    del incompatible
    module.count = int(module.iters)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalise(nn.Module):
    """uint8 (or 0-255 float) images -> ImageNet-normalised float, on the model's device."""

    def __init__(self):
        super().__init__()
        for name, values in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
            self.register_buffer(name, torch.tensor(values).view(3, 1, 1), persistent=False)

    def forward(self, x):  # (B, 3, S, S) pixels -> (B, 3, S, S) normalised
        return (x.float() / 255.0 - self.mean) / self.std


class RegDAModel(nn.Module):
    """Train mode returns (y, y_adv) logits (B, K, H, H); eval mode returns y."""

    def __init__(
        self,
        backbone: nn.Module,
        num_keypoints: int,
        channels: int = 256,
        num_deconv: int = 3,
        num_head_layers: int = 2,
        warm_start: dict | None = None,
    ):
        super().__init__()
        self.normalise = Normalise()
        self.backbone = backbone
        self.upsampling = Upsampling(backbone.out_channels, channels, num_deconv)
        self.head = Head(channels, num_keypoints, num_head_layers)
        self.head_adv = Head(channels, num_keypoints, num_head_layers)
        self.grl = WarmStartGradientLayer(**(warm_start or {}))

    def feature_parameters(self):
        """Parameters of the feature generator psi (backbone + upsampling)."""
        return [*self.backbone.parameters(), *self.upsampling.parameters()]

    def features(self, x):
        """psi(x): (B, 3, S, S) pixels -> (B, C, H, H)."""
        return self.upsampling(self.backbone(self.normalise(x)))

    def forward(self, x):
        feature = self.features(x)  # (B, C, H, H)
        y = self.head(feature)
        if not self.training:
            return y
        return y, self.head_adv(self.grl(feature))


def build_model(
    model_cfg, num_keypoints: int, warm_start: dict | None = None, head_layers: int | None = None
) -> RegDAModel:
    """The model of `model_cfg`; `head_layers` overrides model_cfg.num_head_layers."""
    backbone = create_backbone(model_cfg.backbone, model_cfg.pretrained)
    return RegDAModel(
        backbone,
        num_keypoints,
        model_cfg.upsample_channels,
        model_cfg.num_deconv,
        head_layers or model_cfg.num_head_layers,
        warm_start,
    )
