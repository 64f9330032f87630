"""Uncertainty that respects where the data came from: resampling by cluster.

Windows cut from one document share its topic, style and vocabulary, so they are not
independent samples of text; heads of one model are not independent samples of models.
An uncertainty must resample the independent units (documents, seeds, models), not the
windows. Everything here works on **per-cluster sums** of per-sequence values
(:class:`ClusterSums`), so any statistic that is a smooth function of sums (a mean, a
ratio of means, band shares of a mean energy, a Pearson correlation from its five sums,
a mean over heads of any of these) is resampled by re-weighting clusters:

* ``"jackknife"`` (default): delete one cluster at a time; the interval is
  ``value +- t_{G-1} * se`` with Student's t on ``G - 1`` degrees of freedom, which keeps
  its coverage with as few as 10 clusters (checked by simulation,
  :func:`tl_wavelet.inference.simulate.coverage`).
* ``"bootstrap"``: draw G clusters with replacement (``n_boot`` times); the percentile
  interval and the replicates' standard deviation. It needs more clusters than the
  jackknife-t to reach its nominal coverage (docs/metrics.md §13).

Every estimate names its unit and its number of clusters.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from jaxtyping import Float
from torch import Tensor

from ..validate import check_choice, check_int, check_tensor, check_type

__all__ = ["ClusterSums", "Estimate", "resample", "t_quantile"]

METHODS = ("jackknife", "bootstrap")


# ---------------------------------------------------------------------- Student's t quantile
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (no SciPy needed).

    Bisection on the CDF (the regularized incomplete beta function); exact to about 1e-10.

    >>> round(t_quantile(0.975, 9), 4)      # the 95 % interval of 10 documents
    2.2622
    >>> round(t_quantile(0.975, 1), 4)      # Cauchy: tan(0.475 pi)
    12.7062
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p < 1.0:
        raise ValueError(f"p must be a probability strictly between 0 and 1, got {p!r}.")
    if isinstance(df, bool) or not isinstance(df, (int, float)) or not df > 0:
        raise ValueError(f"df must be a positive number of degrees of freedom, got {df!r}.")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------- clusters
class ClusterSums:
    """Sums and counts of per-sequence values, kept per cluster, for resampling by cluster.

    ``add(key, values, clusters)``: ``values`` ``[batch, *shape]``, ``clusters`` ``[batch]``
    (codes ``0..n_clusters-1``). Non-finite entries (a metric undefined for a sequence)
    are left out of that entry's count. Memory does not grow with the number of sequences.

    >>> cs = ClusterSums(2)
    >>> cs.add("x", torch.tensor([1.0, 2.0, 6.0]), torch.tensor([0, 0, 1]))
    >>> s, c = cs.totals(torch.ones(1, 2))["x"]
    >>> (s / c).item()
    3.0
    """

    def __init__(self, n_clusters: int) -> None:
        self.n_clusters = check_int(n_clusters, "n_clusters", minimum=1)
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, Tensor] = {}

    def add(self, key: str, values: Tensor, clusters: Tensor) -> None:
        """Add one value per sequence, ``values [batch, *shape]``, to the sums of their ``clusters [batch]``."""
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}.")
        check_tensor(values, "values", min_ndim=1, shape="[batch, *shape]")
        check_tensor(clusters, "clusters", ndim=1, shape="[batch]")
        if clusters.is_floating_point() or clusters.numel() != values.shape[0]:
            raise ValueError(f"clusters must be one integer code per sequence ({values.shape[0]}), got {clusters.dtype} "
                             f"of shape {tuple(clusters.shape)}.")
        if clusters.numel() and (int(clusters.min()) < 0 or int(clusters.max()) >= self.n_clusters):
            raise ValueError(f"clusters must be codes 0..{self.n_clusters - 1}, got {int(clusters.min())}..{int(clusters.max())}.")
        clusters = clusters.to("cpu")
        v = values.detach().to(device="cpu", dtype=torch.float64)
        ok = torch.isfinite(v)
        v = torch.where(ok, v, torch.zeros((), dtype=v.dtype, device="cpu"))
        if key not in self.sums:
            self.sums[key] = torch.zeros(self.n_clusters, *v.shape[1:], dtype=torch.float64, device="cpu")
            self.counts[key] = torch.zeros_like(self.sums[key])
        elif self.sums[key].shape[1:] != v.shape[1:]:
            raise ValueError(f"{key}: values of shape {tuple(v.shape[1:])} after {tuple(self.sums[key].shape[1:])}.")
        # one sum per cluster present (a batch holds few): index_add_ is slow under thread contention
        ok = ok.to(torch.float64)
        for g in clusters.unique().tolist():
            sel = clusters == g
            self.sums[key][g] += v[sel].sum(0)
            self.counts[key][g] += ok[sel].sum(0)

    def totals(self, weights: Float[Tensor, "r g"], keys=None) -> "Totals":
        """Totals of every key under cluster ``weights`` ``[R, G]`` (R replicates), computed on access."""
        check_tensor(weights, "weights", ndim=2, shape="[replicates, clusters]")
        if weights.shape[1] != self.n_clusters:
            raise ValueError(f"weights must be [replicates, {self.n_clusters}], got {tuple(weights.shape)}.")
        return Totals(self, weights, keys)

    def cluster_sizes(self, key: str) -> Tensor:
        """Sequences per cluster behind ``key`` (the largest count of any entry)."""
        if key not in self.counts:
            raise ValueError(f"key {key!r} holds no sums; keys: {', '.join(self.counts) or 'none yet'}.")
        return self.counts[key].flatten(1).amax(1)


class Totals(Mapping):
    """``key -> (sum [R, *shape], count [R, *shape])`` under one set of cluster weights, made lazily."""

    def __init__(self, sums: ClusterSums, weights: Tensor, keys=None) -> None:
        self._cs, self._w, self._cache = sums, weights.to(torch.float64), {}
        self._keys = list(sums.sums) if keys is None else list(keys)

    def __getitem__(self, key):
        if key not in self._cache:
            cs, w = self._cs, self._w
            if key not in cs.sums:
                raise KeyError(key)
            self._cache[key] = tuple(torch.tensordot(w, t, dims=([1], [0])) for t in (cs.sums[key], cs.counts[key]))
        return self._cache[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)

    @property
    def replicates(self) -> int:
        return self._w.shape[0]


@dataclass
class Estimate:
    """A statistic with its uncertainty over clusters.

    ``value``, ``se``, ``low``, ``high``: tensors of the statistic's shape; ``n_clusters``
    and ``unit`` (e.g. "document") say what was resampled; ``level`` the interval's coverage.
    """

    value: Tensor
    se: Tensor
    low: Tensor
    high: Tensor
    n_clusters: int
    unit: str
    method: str
    level: float

    def __sub__(self, other):  # a readable error rather than a wrong interval
        raise TypeError("Estimates are not subtracted: resample the difference itself (one statistic of both sums).")


def _weights_jackknife(g: int) -> Tensor:
    return torch.ones(g, g, dtype=torch.float64, device="cpu") - torch.eye(g, dtype=torch.float64, device="cpu")


def resample(
    sums: ClusterSums,
    stat: Callable[[Totals], Tensor],
    *,
    method: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str = "document",
    keys=None,
) -> Estimate:
    """A statistic of per-cluster sums, with its standard error and interval by cluster.

    Parameters
    ----------
    sums : ClusterSums holding what ``stat`` reads
    stat : ``stat(totals) -> Tensor [R, *shape]``: the statistic of the totals under R sets of
        cluster weights (``totals[key] = (sum, count)``, each ``[R, *shape]``)
    method : "jackknife" (delete-one-cluster, Student-t interval on G-1 df; default) or
        "bootstrap" (clusters drawn with replacement, percentile interval)
    level : the interval's nominal coverage
    n_boot, seed : bootstrap replicates and their seed
    unit : the name of a cluster, reported with the estimate
    keys : the keys ``stat`` reads (None: all; only used to document the dependency)

    Returns
    -------
    Estimate. With one cluster the standard error and interval are NaN.

    Examples
    --------
    >>> cs = ClusterSums(3)
    >>> cs.add("x", torch.tensor([1.0, 2.0, 3.0, 5.0]), torch.tensor([0, 1, 2, 2]))
    >>> est = resample(cs, lambda t: t["x"][0] / t["x"][1])
    >>> round(float(est.value), 3), est.n_clusters
    (2.75, 3)
    """
    check_type(sums, "sums", ClusterSums, "a ClusterSums")
    if not callable(stat):
        raise TypeError(f"stat must be a function of the totals (stat(t) -> Tensor [R, ...]), got {type(stat).__name__}.")
    check_choice(method, "method", METHODS)
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ValueError(f"level must be a float strictly between 0 and 1 (e.g. 0.95), got {level!r}.")
    g = sums.n_clusters
    value = stat(sums.totals(torch.ones(1, g, dtype=torch.float64, device="cpu"), keys))[0]
    if g < 2:
        nan = torch.full_like(value, math.nan)
        return Estimate(value, nan, nan, nan, g, unit, method, level)
    if method == "jackknife":
        loo = stat(sums.totals(_weights_jackknife(g), keys))
        ok = torch.isfinite(loo)
        n_ok = ok.sum(0).to(torch.float64)
        mean = torch.where(ok, loo, 0).sum(0) / n_ok.clamp(min=1)
        dev = torch.where(ok, loo - mean, 0)
        se = ((n_ok - 1).clamp(min=0) / n_ok.clamp(min=1) * dev.pow(2).sum(0)).sqrt()
        se = torch.where(n_ok >= 2, se, math.nan)
        q = t_quantile(0.5 + level / 2, g - 1)
        return Estimate(value, se, value - q * se, value + q * se, g, unit, method, level)
    n_boot = check_int(n_boot, "n_boot", minimum=10)
    gen = torch.Generator().manual_seed(int(seed))
    reps = []
    for start in range(0, n_boot, 250):  # replicates in chunks: totals of big keys stay small
        r = min(250, n_boot - start)
        draws = torch.randint(0, g, (r, g), generator=gen, device="cpu")
        w = torch.zeros(r, g, dtype=torch.float64, device="cpu").scatter_add_(1, draws, torch.ones(r, g, dtype=torch.float64, device="cpu"))
        reps.append(stat(sums.totals(w, keys)))
    reps = torch.cat(reps)
    a = (1 - level) / 2
    low = torch.nanquantile(reps, a, dim=0)
    high = torch.nanquantile(reps, 1 - a, dim=0)
    ok = torch.isfinite(reps)
    n_ok = ok.sum(0).to(torch.float64)
    mean = torch.where(ok, reps, 0).sum(0) / n_ok.clamp(min=1)
    se = (torch.where(ok, reps - mean, 0).pow(2).sum(0) / (n_ok - 1).clamp(min=1)).sqrt()
    return Estimate(value, se, low, high, g, unit, method, level)
