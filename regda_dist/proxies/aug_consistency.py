"""Augmentation consistency on target: predict on rotated, scaled and shifted copies of each
image (engine/collect.py VIEWS), map the keypoints back, and count how many agree with the
prediction on the original within the PCK radius. Keypoints the view cannot see are left out;
a count is robust where a mean distance lets one far-off keypoint dominate; and shifted views
make a constant prediction disagree with itself. Needs no left/right pairs (hands, anything)."""

from regda_dist.proxies.base import Proxy, SplitOutputs, agreement, register_proxy


@register_proxy
class AugConsistency(Proxy):
    name = "aug_consistency"
    splits = ("target_val",)

    def score(self, target: SplitOutputs) -> float:
        original = target.coords.unsqueeze(0).expand_as(target.coords_aug)
        return agreement(target.coords_aug, original, target.radius, target.aug_valid)
