"""What every claim shares: the verdict rules and the model-level statistics.

Used by :mod:`.claims` (a model on a corpus, documents as the unit) and :mod:`.trained`
(the emergence experiment's models, seeds as the unit), so that a claim is judged by the
same rule whichever unit its interval resamples.
"""
from __future__ import annotations

import math

import torch

__all__ = ["verdict_range", "verdict_sign", "verdict_both", "complementarity", "layer_slope"]


def verdict_range(low: float, high: float, lo: float, hi: float) -> str:
    """supported: the interval inside [lo, hi]; contradicted: disjoint from it; else inconclusive.

    >>> verdict_range(0.62, 0.7, 0.6, 0.8), verdict_range(0.9, 0.95, 0.6, 0.8), verdict_range(0.7, 0.9, 0.6, 0.8)
    ('supported', 'contradicted', 'inconclusive')
    """
    if any(math.isnan(v) for v in (low, high)):
        return "inconclusive"
    if lo <= low and high <= hi:
        return "supported"
    if high < lo or low > hi:
        return "contradicted"
    return "inconclusive"


def verdict_sign(low: float, high: float, sign: int) -> str:
    """supported: the interval entirely on the side ``sign`` of 0 (+1 above, -1 below);
    contradicted: entirely on the other side; else inconclusive.

    >>> verdict_sign(-0.3, -0.1, -1), verdict_sign(0.1, 0.2, -1), verdict_sign(-0.1, 0.2, -1)
    ('supported', 'contradicted', 'inconclusive')
    """
    if any(math.isnan(v) for v in (low, high)):
        return "inconclusive"
    if sign * low > 0 and sign * high > 0:
        return "supported"
    if sign * high < 0 and sign * low < 0:
        return "contradicted"
    return "inconclusive"


def verdict_both(first: str, second: str) -> str:
    """Intersection-union: supported only if both are; contradicted if either is."""
    if "contradicted" in (first, second):
        return "contradicted"
    return "supported" if first == second == "supported" else "inconclusive"


def complementarity(shares: torch.Tensor) -> torch.Tensor:
    """[R, L, H, B] band shares -> [R]: H(mean over heads) - mean over heads of H, mean over layers."""
    def entropy(p):
        return -(torch.where(p > 0, p * torch.log(p.clamp(min=1e-300)), 0)).sum(-1)

    ok = ~torch.isnan(shares).any(-1)
    s = torch.where(ok[..., None], shares, 0)
    mix = s.sum(-2) / ok.sum(-1, keepdim=True).clamp(min=1)
    within = torch.where(ok, entropy(s), 0).sum(-1) / ok.sum(-1).clamp(min=1)
    return (entropy(mix) - within).mean(-1)


def layer_slope(per_layer: torch.Tensor) -> torch.Tensor:
    """[R, L] -> [R]: least-squares slope on the layer index (NaN with fewer than 3 layers)."""
    n = per_layer.shape[-1]
    if n < 3:
        return torch.full(per_layer.shape[:-1], math.nan, dtype=torch.float64, device="cpu")
    x = torch.arange(n, dtype=torch.float64, device="cpu")
    x = x - x.mean()
    y = per_layer - per_layer.mean(-1, keepdim=True)
    return (x * y).sum(-1) / (x * x).sum()
