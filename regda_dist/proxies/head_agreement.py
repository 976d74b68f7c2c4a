"""Agreement of the main and adversarial heads on target: minus their mean keypoint distance
(heatmap px). RegDA's step C pulls the feature generator towards agreement."""

from regda_dist.proxies.base import Proxy, SplitOutputs, mean_distance, register_proxy


@register_proxy
class HeadAgreement(Proxy):
    name = "head_agreement"
    splits = ("target_val",)
    has_baseline = False  # phase 1 never trains the adversarial head

    def score(self, target: SplitOutputs) -> float:
        return -mean_distance(target.coords, target.coords_adv)
