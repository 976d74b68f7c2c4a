"""PCK on the held-out labelled source split: the strong simple baseline proxy."""

from regda_dist.proxies.base import Proxy, SplitOutputs, register_proxy


@register_proxy
class SourcePCK(Proxy):
    name = "source_pck"
    splits = ("source_val",)

    def score(self, source: SplitOutputs) -> float:
        total = int(source.valid.sum())
        hits = int((source.correct & source.valid).sum())
        return 100.0 * hits / total if total else float("nan")
