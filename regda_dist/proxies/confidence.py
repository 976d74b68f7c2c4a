"""Mean peak probability of the main head's spatial softmax on target images."""

from regda_dist.proxies.base import Proxy, SplitOutputs, register_proxy


@register_proxy
class Confidence(Proxy):
    name = "confidence"
    splits = ("target_val",)
    unit = 0.01

    def score(self, target: SplitOutputs) -> float:
        return float(target.scores.mean())
