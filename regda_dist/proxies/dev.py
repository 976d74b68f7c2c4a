"""Deep Embedded Validation (You et al., ICML 2019): the source-val loss importance-weighted by
the density ratio target/source of a domain classifier on features, with the control variate.
Returned negated, so higher is better like every proxy. The loss is the supervised KL with the
label sigma of phase 1 (data.sigma) for every trial, also when a search varies regda.sigma.

The domain classifier is an L2-regularised logistic regression on the first principal
components of the standardised pooled features (a few hundred samples cannot fit hundreds of
dimensions), cross-fitted over two folds so no source sample is weighted by a classifier that
saw it. The weights are self-normalised (mean 1) and clipped at MAX_WEIGHT x the mean, so a few
samples cannot carry the estimate; their effective sample size is logged (diag/dev/ess).
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


COMPONENTS = 16  # principal components the domain classifier sees (fewer for few samples)
MAX_WEIGHT = 10.0  # clip of the self-normalised weights, x their mean


def reduce(features_s: torch.Tensor, features_t: torch.Tensor):
    """Both domains' standardised features projected on their first principal components."""
    x_all = torch.cat((features_s, features_t)).double()
    mean, std = x_all.mean(0), x_all.std(0).clamp_min(1e-6)
    z = (x_all - mean) / std
    k = max(1, min(COMPONENTS, len(z) // 20, z.shape[1]))
    _, _, v = torch.linalg.svd(z, full_matrices=False)
    z = z @ v[:k].T
    return z[: len(features_s)], z[len(features_s) :]


def density_ratio(features_s: torch.Tensor, features_t: torch.Tensor) -> torch.Tensor:
    """w(x) = p_t(x) / p_s(x) for each source sample, from a cross-fitted domain classifier."""
    xs, xt = reduce(features_s, features_t)
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


def normalised_weights(ratio: torch.Tensor) -> torch.Tensor:
    """Self-normalised (mean 1) weights, clipped at MAX_WEIGHT and normalised again."""
    w = (ratio / ratio.mean()).clamp_max(MAX_WEIGHT)
    return w / w.mean()


def effective_sample_size(w: torch.Tensor) -> float:
    """(sum w)^2 / (n sum w^2): 1 when all weights are equal, 1/n when one carries all."""
    return float(w.sum() ** 2 / (len(w) * w.square().sum()))


def dev_risk(loss: torch.Tensor, ratio: torch.Tensor) -> float:
    """DEV's control-variate estimate of the target risk from source losses and weights."""
    if len(loss) < 2:
        return float("nan")  # no spread to estimate from
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
        w = normalised_weights(density_ratio(source.features, target.features))
        self.diagnostics["ess"] = effective_sample_size(w)
        return -dev_risk(source.loss, w)
