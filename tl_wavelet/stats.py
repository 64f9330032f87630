"""Streaming statistics: means, standard errors and correlations over sequences.

Memory is constant in the number of sequences: each statistic keeps running sums in
float64 (float32 sums of thousands of sequences lose digits the SE depends on).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .metrics import pearson_from_moments

__all__ = ["RunningMoments", "RunningCorrelation", "MIN_CORRELATION_N"]

#: fewest points for which a correlation and its standard error are reported (else NaN)
MIN_CORRELATION_N = 4


class RunningMoments:
    """Mean and standard error of a per-sequence quantity, one value per sequence.

    ``update(values)`` takes ``[batch, *shape]``; sequences whose value is NaN (a metric
    undefined for that sequence, e.g. a head with zero energy) are left out of that
    entry's count rather than poisoning the mean.

    >>> m = RunningMoments()
    >>> m.update(torch.tensor([[1.0], [3.0]]))
    >>> m.mean, m.se
    (tensor([2.], dtype=torch.float64), tensor([1.], dtype=torch.float64))
    """

    def __init__(self) -> None:
        self.n: Tensor | None = None
        self.s1: Tensor | None = None
        self.s2: Tensor | None = None

    def update(self, values: Tensor) -> None:
        if self.n is not None and tuple(values.shape[1:]) != tuple(self.n.shape):
            raise ValueError(
                f"values must be [batch, {', '.join(map(str, self.n.shape))}] like the earlier updates, got "
                f"{tuple(values.shape)}."
            )
        v = values.detach().to(device="cpu", dtype=torch.float64)
        ok = ~torch.isnan(v)
        v = torch.where(ok, v, torch.zeros((), dtype=v.dtype))
        if self.n is None:
            self.n = torch.zeros(v.shape[1:], dtype=torch.float64)
            self.s1 = torch.zeros_like(self.n)
            self.s2 = torch.zeros_like(self.n)
        self.n += ok.sum(0)
        self.s1 += v.sum(0)
        self.s2 += (v * v).sum(0)

    @property
    def count(self) -> Tensor:
        return self.n

    @property
    def mean(self) -> Tensor:
        return self.s1 / self.n.clamp(min=1)

    @property
    def se(self) -> Tensor:
        """Standard error of the mean (sample SD / sqrt(n)); NaN with fewer than 2 sequences."""
        n = self.n
        var = (self.s2 - self.s1 * self.s1 / n.clamp(min=1)) / (n - 1).clamp(min=1)
        se = var.clamp(min=0).sqrt() / n.clamp(min=1).sqrt()
        se = torch.where(torch.isinf(self.s1), torch.full_like(se, math.inf), se)
        return torch.where(n >= 2, se, torch.full_like(se, math.nan))


class RunningCorrelation:
    """Pearson correlation of two per-sequence quantities, streamed as moments.

    Used for the paper's uncertainty measure rho = corr(H_p, H_s): one (H_p, H_s) point per
    sequence and head. ``se`` is the large-sample standard error sqrt((1 - r^2) / (n - 2)).
    Both are NaN with fewer than :data:`MIN_CORRELATION_N` = 4 points: with 2 points r is
    always +-1, with 3 it has one degree of freedom and no usable standard error.
    """

    def __init__(self) -> None:
        self._m = {k: RunningMoments() for k in ("x", "y", "xy", "xx", "yy")}

    def update(self, x: Tensor, y: Tensor) -> None:
        if x.shape != y.shape:
            raise ValueError(f"x and y must have one shape (one point per entry), got {tuple(x.shape)} and {tuple(y.shape)}.")
        x = x.detach().double()
        y = y.detach().double()
        for key, val in (("x", x), ("y", y), ("xy", x * y), ("xx", x * x), ("yy", y * y)):
            self._m[key].update(val)

    @property
    def count(self) -> Tensor:
        return self._m["x"].n

    @property
    def r(self) -> Tensor:
        """Pearson r per entry; NaN where it is undefined (a constant variable, n < 2)."""
        m = self._m
        r = pearson_from_moments(
            self.count, m["x"].s1, m["y"].s1, m["xx"].s1, m["yy"].s1, m["xy"].s1
        )
        return torch.where(self.count >= MIN_CORRELATION_N, r, torch.full_like(r, math.nan))

    @property
    def se(self) -> Tensor:
        r = self.r
        n = self.count
        return ((1 - r * r).clamp(min=0) / (n - 2).clamp(min=1)).sqrt()  # NaN where r is
