"""Coverage of the clustered intervals, checked by simulation against a known truth.

Synthetic corpora with per-document random effects: document g holds ``m_g`` windows
(``m_g`` drawn between ``windows[0]`` and ``windows[1]``), and a window's value is

    x = mu + u_g + e,    u_g ~ N(0, icc),  e ~ N(0, 1 - icc)

(``statistic="mean"``, truth ``mu``), or a pair (x, y) whose document effects correlate
with ``rho_between`` and whose window effects with ``rho_within``, so that the correlation
over windows is ``icc * rho_between + (1 - icc) * rho_within`` (``statistic="correlation"``,
the shape of the paper's rho). Each replicate is measured exactly as a real corpus is
(:class:`~tl_wavelet.inference.resample.ClusterSums` and
:func:`~tl_wavelet.inference.resample.resample`); the result says how often the nominal
interval holds the truth, beside the interval that treats windows as independent.
"""
from __future__ import annotations

import math

import torch

from ..metrics import pearson_from_moments
from ..validate import check_choice, check_int
from .resample import METHODS, ClusterSums, resample, t_quantile

__all__ = ["coverage"]


def _corpus(gen: torch.Generator, n_documents: int, windows: tuple[int, int], icc: float, statistic: str,
            rho_between: float, rho_within: float):
    sizes = torch.randint(windows[0], windows[1] + 1, (n_documents,), generator=gen, device="cpu")
    docs = torch.repeat_interleave(torch.arange(n_documents, device="cpu"), sizes)
    n = int(sizes.sum())

    def pair(rho: float, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.randn(count, generator=gen, dtype=torch.float64, device="cpu")
        b = torch.randn(count, generator=gen, dtype=torch.float64, device="cpu")
        return a, rho * a + math.sqrt(1 - rho * rho) * b

    ux, uy = pair(rho_between, n_documents)
    ex, ey = pair(rho_within, n)
    x = math.sqrt(icc) * ux[docs] + math.sqrt(1 - icc) * ex
    y = math.sqrt(icc) * uy[docs] + math.sqrt(1 - icc) * ey
    return docs, x, (y if statistic == "correlation" else None)


def _mean(t):
    s, c = t["x"]
    return s / c


def _pearson(t):
    n = t["x"][1]
    return pearson_from_moments(n, t["x"][0], t["y"][0], t["xx"][0], t["yy"][0], t["xy"][0])


def coverage(
    *,
    statistic: str = "mean",
    n_replicates: int = 200,
    n_documents: int = 10,
    windows: tuple[int, int] = (4, 20),
    icc: float = 0.5,
    rho_between: float = -0.6,
    rho_within: float = -0.2,
    method: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 400,
    seed: int = 0,
) -> dict[str, float]:
    """How often the clustered interval (and the naive per-window one) holds the truth.

    Parameters
    ----------
    statistic : "mean" (truth 0) or "correlation" (truth ``icc*rho_between + (1-icc)*rho_within``)
    n_replicates : synthetic corpora
    n_documents, windows : clusters per corpus and the range of windows per cluster
    icc : share of the variance that is between documents (0: windows independent)
    method, level, n_boot : the interval, as in :func:`~tl_wavelet.inference.resample.resample`
    seed : the corpora's seed

    Returns
    -------
    dict: ``coverage`` (share of replicates whose interval holds the truth), ``naive_coverage``
    (the interval that treats windows as independent: SD / sqrt(windows), or
    sqrt((1 - r^2) / (n - 2)) for a correlation, with a normal quantile), ``mean_width``,
    ``naive_mean_width``, ``truth``, ``n_replicates``.

    Examples
    --------
    >>> out = coverage(n_replicates=50, seed=1)
    >>> 0.85 <= out["coverage"] <= 1.0 and out["naive_coverage"] < out["coverage"]
    True
    """
    check_choice(statistic, "statistic", ("mean", "correlation"))
    check_choice(method, "method", METHODS)
    n_replicates = check_int(n_replicates, "n_replicates", minimum=1)
    n_documents = check_int(n_documents, "n_documents", minimum=2)
    if not (isinstance(windows, tuple) and len(windows) == 2 and 1 <= windows[0] <= windows[1]):
        raise ValueError(f"windows must be (fewest, most) windows per document with 1 <= fewest <= most, got {windows!r}.")
    if not 0.0 <= icc < 1.0:
        raise ValueError(f"icc must lie in [0, 1), got {icc!r}.")
    truth = 0.0 if statistic == "mean" else icc * rho_between + (1 - icc) * rho_within
    z = t_quantile(0.5 + level / 2, 1e6)
    gen = torch.Generator().manual_seed(int(seed))
    hits = naive_hits = 0
    widths, naive_widths = [], []
    for _ in range(n_replicates):
        docs, x, y = _corpus(gen, n_documents, windows, icc, statistic, rho_between, rho_within)
        cs = ClusterSums(n_documents)
        cs.add("x", x, docs)
        if statistic == "mean":
            est = resample(cs, _mean, method=method, level=level, n_boot=n_boot, seed=int(torch.randint(0, 2**31, (1,), generator=gen, device="cpu")))
            n = x.numel()
            naive_se = float(x.std() / math.sqrt(n))
            naive = (float(x.mean()) - z * naive_se, float(x.mean()) + z * naive_se)
        else:
            for key, v in (("y", y), ("xx", x * x), ("yy", y * y), ("xy", x * y)):
                cs.add(key, v, docs)
            est = resample(cs, _pearson, method=method, level=level, n_boot=n_boot, seed=int(torch.randint(0, 2**31, (1,), generator=gen, device="cpu")))
            n = x.numel()
            r = float(est.value)
            naive_se = math.sqrt(max(1 - r * r, 0.0) / (n - 2))
            naive = (r - z * naive_se, r + z * naive_se)
        lo, hi = float(est.low), float(est.high)
        hits += lo <= truth <= hi
        naive_hits += naive[0] <= truth <= naive[1]
        widths.append(hi - lo)
        naive_widths.append(naive[1] - naive[0])
    return {
        "coverage": hits / n_replicates,
        "naive_coverage": naive_hits / n_replicates,
        "mean_width": sum(widths) / n_replicates,
        "naive_mean_width": sum(naive_widths) / n_replicates,
        "truth": truth,
        "n_replicates": n_replicates,
    }
