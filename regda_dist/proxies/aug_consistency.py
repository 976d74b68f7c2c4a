"""Augmentation consistency on target: predict on rotated copies of each image, map the
keypoints back, minus the mean distance to the prediction on the original (heatmap px). Needs no
left/right keypoint pairs, so it serves hands and bodies alike."""

from regda_dist.proxies.base import Proxy, SplitOutputs, mean_distance, register_proxy


@register_proxy
class AugConsistency(Proxy):
    name = "aug_consistency"
    splits = ("target_val",)

    def score(self, target: SplitOutputs) -> float:
        return -mean_distance(target.coords_aug, target.coords.unsqueeze(0))
