"""PCK on the held-out labelled source split, over the task's "all" group (the keypoints PCK is
reported on, e.g. 12 of Body16's 16): the strong simple baseline proxy."""

from regda_dist.proxies.base import Proxy, SplitOutputs, register_proxy


@register_proxy
class SourcePCK(Proxy):
    name = "source_pck"
    splits = ("source_val",)

    def score(self, source: SplitOutputs) -> float:
        scored = list(source.spec.groups["all"]) if source.spec else slice(None)
        valid = source.valid[:, scored]
        hits = int((source.correct[:, scored] & valid).sum())
        total = int(valid.sum())
        return 100.0 * hits / total if total else float("nan")
