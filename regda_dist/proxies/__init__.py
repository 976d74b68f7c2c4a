"""Unsupervised target validation proxies (registry); importing this package registers them."""

from regda_dist.proxies import (  # noqa: F401 - imported for registration
    aug_consistency,
    confidence,
    dev,
    head_agreement,
    pose_prior,
    source_pck,
)
from regda_dist.proxies.base import (
    Proxy,
    SplitOutputs,
    auto_proxy,
    create_proxy,
    list_proxies,
    register_proxy,
)

__all__ = [
    "Proxy",
    "SplitOutputs",
    "auto_proxy",
    "create_proxy",
    "list_proxies",
    "register_proxy",
]
