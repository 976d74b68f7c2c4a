"""Deep Embedded Validation (You et al., ICML 2019): the source-val loss importance-weighted by
the density ratio target/source of a domain classifier on features, with the control variate.
Returned negated, so higher is better like every proxy. The loss is the supervised KL with the
label sigma of phase 1 (data.sigma) for every trial, also when a search varies regda.sigma.

The domain classifier is an L2-regularised logistic regression on standardised pooled features,
cross-fitted over two folds so no source sample is weighted by a classifier that saw it.
"""

from __future__ import annotations

import torch

from regda_dist.proxies.base import Proxy, SplitOutputs, register_proxy


def _logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 100):
    """(w, b) of a logistic regression fitted with L-BFGS."""
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = x @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        loss = loss + l2 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def density_ratio(features_s: torch.Tensor, features_t: torch.Tensor) -> torch.Tensor:
    """w(x) = p_t(x) / p_s(x) for each source sample, from a cross-fitted domain classifier."""
    x_all = torch.cat((features_s, features_t)).double()
    mean, std = x_all.mean(0), x_all.std(0).clamp_min(1e-6)
    xs, xt = (features_s.double() - mean) / std, (features_t.double() - mean) / std
    g = torch.Generator().manual_seed(0)
    fold_s = torch.randperm(len(xs), generator=g) % 2
    fold_t = torch.randperm(len(xt), generator=g) % 2
    ratio = torch.empty(len(xs), dtype=torch.float64)
    for k in (0, 1):
        x = torch.cat((xs[fold_s != k], xt[fold_t != k]))
        y = torch.cat((torch.zeros(int((fold_s != k).sum())), torch.ones(int((fold_t != k).sum()))))
        w, b = _logistic(x, y.double())
        logit = xs[fold_s == k] @ w + b  # log p(t|x) / p(s|x)
        prior = (fold_s != k).sum() / (fold_t != k).sum()  # n_s / n_t of the training fold
        ratio[fold_s == k] = torch.exp(logit.clamp(-20, 20)) * prior
    return ratio


def dev_risk(loss: torch.Tensor, ratio: torch.Tensor) -> float:
    """DEV's control-variate estimate of the target risk from source losses and weights."""
    weighted = loss.double() * ratio
    var = ratio.var()
    eta = -torch.cov(torch.stack((weighted, ratio)))[0, 1] / var if var > 0 else 0.0
    return float(weighted.mean() + eta * ratio.mean() - eta)


@register_proxy
class DEV(Proxy):
    name = "dev"
    splits = ("source_val", "target_val")
    unit = 0.01

    def score(self, source: SplitOutputs, target: SplitOutputs) -> float:
        return -dev_risk(source.loss, density_ratio(source.features, target.features))
