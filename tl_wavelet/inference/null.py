"""A null model of attention: a per-head decay law with distance, plus content noise.

The question it answers: is a head's measured structure (its bands, scale, spectra, rho)
more than what attention that simply *decays with distance* would give? For every
(sequence, head) the attention scores are fitted with a few parameters,

    score(q, k) = b_sink [k = 0] + b_self [d = 0] + b_prev [d = 1] - alpha log(1 + d) - lam d
                  + sigma eps_k,                  d = q - k,  eps_k ~ N(0, 1)

(an attention sink on the first key, spikes on the current and the previous token, a
power-law times exponential decay with distance, and key-content noise of size sigma),
and attention is ``softmax`` over the causal prefix. The fit is ordinary least squares of
``log attention`` on those features within each query row (the row's log normaliser is a
free intercept): the log of a softmax *is* the score up to that intercept, so this is the
maximum-likelihood fit of the scores under Gaussian noise, in closed form, batched over
sequences and heads. ``sigma`` is the residual standard deviation: what the law does not
explain (its degrees of freedom counted for noise shared by every row that sees a key),
returned to the surrogate as noise on each key (the content of the key token),
so a surrogate is as jagged as the real head but carries no structure at particular
distances beyond sink, self and previous token.

A **surrogate** pattern is drawn from a sequence's fitted law (:func:`surrogate_patterns`);
the same metric code then measures it (:func:`tl_wavelet.analysis.layer_metrics`), so every
metric has a null value. Fit quality: ``r2`` (the share of the within-row variance of log
attention that the law explains). docs/metrics.md §14 states the choices.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from ..validate import check_int, check_tensor, check_type

__all__ = ["FEATURES", "DecayFit", "decay_features", "fit_decay_law", "shrink_fits", "surrogate_patterns"]

#: the law's parameters, in order (the last two are the decay: exponent and rate per token)
FEATURES = ("sink", "self", "previous", "alpha", "lam")
_FLOOR = 1e-30  # attention below this (an underflowed or masked key) counts as this: log = -69


@functools.lru_cache(maxsize=16)
def _design(n: int) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """(features [n, n, 5] zero above the diagonal, within-row centred features, their Gram
    matrix, the sampling covariance of the fitted theta per unit of key-noise variance, the
    residual degrees of freedom under key noise)."""
    q = torch.arange(n, dtype=torch.float64, device="cpu")[:, None]
    k = torch.arange(n, dtype=torch.float64, device="cpu")[None, :]
    d = q - k
    causal = (d >= 0).to(torch.float64)
    dd = d.clamp(min=0)
    x = torch.stack([(k == 0).double().expand(n, n), (d == 0).double(), (d == 1).double(),
                     -torch.log1p(dd), -dd], -1) * causal[..., None]
    m = causal.sum(1)  # keys per row: q + 1
    centred = (x - (x.sum(1) / m[:, None])[:, None, :]) * causal[..., None]
    gram = einsum(centred, centred, "q k f, q k g -> f g")
    # Noise eps_k on key k adds sigma eps_k to every row that sees k; the normal equations read
    # it through w[k] = sum_q centred[q, k], so theta's error is G^-1 W' eps sigma, of covariance
    # sigma^2 G^-1 W'W G^-1.
    w = centred.sum(0)  # [n, 5]
    g_inv = torch.linalg.pinv(gram)
    cov = g_inv @ (w.T @ w) @ g_inv
    # E[SS_res] = sigma^2 tr(A - W G^-1 W'), tr(A) = sum_q (m_q - 1): the residual degrees of
    # freedom when the noise is shared by every row that sees a key (N - n - 5 for iid noise)
    dof = float(m.sum() - n - torch.trace(g_inv @ (w.T @ w)))
    return x, centred, gram, cov, dof


def decay_features(n: int) -> Float[Tensor, "n n 5"]:
    """The law's features on a causal ``n x n`` grid (query, key), zero above the diagonal.

    Order :data:`FEATURES`: ``[k == 0]``, ``[d == 0]``, ``[d == 1]``, ``-log(1 + d)``, ``-d``.

    >>> decay_features(4)[3, 1].tolist()       # query 3, key 1: distance 2
    [0.0, 0.0, 0.0, -1.0986122886681098, -2.0]
    """
    return _design(check_int(n, "n", minimum=2))[0].clone()


@dataclass
class DecayFit:
    """The fitted law of each (sequence, head): ``theta [..., 5]`` (:data:`FEATURES`: sink,
    self and previous-token logits, power-law exponent ``alpha``, exponential rate ``lam``
    per token), ``sigma [...]`` (residual SD of the scores, in logits) and ``r2 [...]``
    (share of the within-row variance of log attention the law explains; 1 for a row
    the law fits exactly, e.g. uniform attention)."""

    theta: Tensor
    sigma: Tensor
    r2: Tensor


def fit_decay_law(pattern: Float[Tensor, "*batch n n"], ridge: float = 1e-12) -> DecayFit:
    """Fit the decay law to causal attention patterns, one fit per ``[n, n]`` pattern.

    Parameters
    ----------
    pattern : causal attention probabilities ``[..., q, k]`` (rows sum to 1; entries above
        the diagonal are ignored)
    ridge : a tiny ridge on the normal equations (relative to their trace), for rows whose
        features do not all vary

    Returns
    -------
    DecayFit with ``theta [..., 5]``, ``sigma [...]``, ``r2 [...]`` (float64).

    Examples
    --------
    >>> law = torch.tensor([0.0, 1.0, 2.0, 0.5, 0.02], dtype=torch.float64)   # sink, self, prev, alpha, lam
    >>> p = surrogate_patterns(DecayFit(law, torch.tensor(0.0), torch.tensor(1.0)), 64)
    >>> fit = fit_decay_law(p)
    >>> [round(v, 6) + 0.0 for v in fit.theta.tolist()], round(float(fit.r2), 6)
    ([0.0, 1.0, 2.0, 0.5, 0.02], 1.0)
    """
    check_tensor(pattern, "pattern", min_ndim=2, floating=True, shape="[..., n, n]")
    n = pattern.shape[-1]
    if pattern.shape[-2] != n or n < 8:
        raise ValueError(f"pattern must be square [..., n, n] with n >= 8 (the law's 5 parameters need 8 positions to "
                         f"be told apart), got {tuple(pattern.shape)}.")
    x, centred, gram, _, dof = _design(n)
    x, centred, gram = (t.to(pattern.device) for t in (x, centred, gram))
    causal = x.new_ones(n, n).tril()
    y = torch.log(pattern.to(torch.float64).clamp(min=_FLOOR)) * causal
    xty = einsum(y, centred, "... q k, q k f -> ... f")
    m = causal.sum(1)
    within = (y - (y.sum(-1) / m)[..., None]) * causal  # log attention less its row mean (the log normaliser)
    ss_tot = within.pow(2).sum((-1, -2))
    reg = gram + ridge * torch.trace(gram) / 5 * torch.eye(5, dtype=torch.float64, device=gram.device)
    theta = torch.linalg.solve(reg, xty.unsqueeze(-1)).squeeze(-1)
    # the residuals themselves (SS_tot - theta . X'y loses digits to cancellation)
    ss_res = (within - einsum(centred, theta, "q k f, ... f -> ... q k")).pow(2).sum((-1, -2))
    sigma = (ss_res / dof).sqrt()
    r2 = torch.where(ss_tot > 1e-24 * y.pow(2).sum((-1, -2)).clamp(min=1e-300), 1 - ss_res / ss_tot.clamp(min=1e-300),
                     torch.ones_like(ss_tot))
    return DecayFit(theta, sigma, r2)


def surrogate_patterns(
    fit: DecayFit, n: int, noise: Float[Tensor, "*batch n"] | None = None
) -> Float[Tensor, "*batch n n"]:
    """Attention patterns drawn from fitted laws: ``softmax`` over the causal prefix of
    ``theta . features + sigma * noise[k]``.

    ``noise`` ``[..., n]``: standard normal draws per key (the content of the key token,
    shared by every query). None: the law itself, without noise. Draw from laws that carry
    no estimation noise of their own (:func:`shrink_fits`): a law fitted to one sequence
    holds part of that sequence's noise, and fresh noise on top of it would count it twice.

    >>> fit = DecayFit(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64), torch.tensor(0.0), torch.tensor(1.0))
    >>> surrogate_patterns(fit, 4)[3].tolist()                  # no decay: uniform over the prefix
    [0.25, 0.25, 0.25, 0.25]
    """
    check_type(fit, "fit", DecayFit, "a DecayFit (from fit_decay_law)")
    n = check_int(n, "n", minimum=2)
    theta = fit.theta.to(torch.float64)
    if theta.shape[-1:] != (len(FEATURES),):
        raise ValueError(f"fit.theta must end with the {len(FEATURES)} parameters {FEATURES}, got shape {tuple(theta.shape)}.")
    x = _design(n)[0].to(theta.device)
    logits = einsum(x, theta, "q k f, ... f -> ... q k")
    if noise is not None:
        check_tensor(noise, "noise", min_ndim=1, floating=True, shape="[..., n]")
        if noise.shape[-1] != n:
            raise ValueError(f"noise must hold one draw per key, [..., n={n}], got shape {tuple(noise.shape)}.")
        eps = noise.to(device=theta.device, dtype=torch.float64)
        logits = logits + fit.sigma.to(torch.float64)[..., None, None] * eps[..., None, :]
    causal = torch.ones(n, n, dtype=torch.bool, device=theta.device).tril()
    logits = logits.masked_fill(~causal, -math.inf)
    return torch.softmax(logits, -1)


def shrink_fits(fit: DecayFit, n: int) -> DecayFit:
    """Per-sequence laws with their estimation noise taken out (empirical Bayes, per head).

    ``fit``: the laws of S sequences, ``theta [S, ..., 5]``, ``sigma [S, ...]`` (sequences
    first). A law fitted to one sequence is its true law plus an estimation error of known
    covariance (``sigma^2 G^-1 W'W G^-1`` under key noise, from the design); drawing fresh
    noise around the fitted law would count that error twice (the surrogates would vary more
    between sequences, and be smoother, than the head: a bias of rho by +-0.1 to 0.25 on the
    planted checks). Each parameter is pulled toward its mean over the sequences by the
    share of its spread that is estimation error,
    ``theta* = mean + max(0, 1 - V_err / V_total) (theta - mean)``, and ``sigma^2`` the same
    way (its error variance ``2 sigma^4 / n``). Sequences whose laws truly differ keep that
    difference; sequences that share one law get it.

    >>> fit = DecayFit(torch.tensor([[0., 0, 0, 0, 0.01], [0., 0, 0, 0, 0.03]], dtype=torch.float64),
    ...                torch.tensor([0.0, 0.0], dtype=torch.float64), torch.ones(2))
    >>> shrink_fits(fit, 32).theta[:, 4].tolist()        # no noise: the laws stay apart
    [0.01, 0.03]
    """
    check_type(fit, "fit", DecayFit, "a DecayFit (from fit_decay_law)")
    n = check_int(n, "n", minimum=2)
    theta = fit.theta.to(torch.float64)
    sigma2 = fit.sigma.to(torch.float64).pow(2)
    if theta.ndim < 2 or sigma2.shape != theta.shape[:-1]:
        raise ValueError(f"fit must hold several sequences' laws, theta [S, ..., 5] and sigma [S, ...]; got "
                         f"{tuple(theta.shape)} and {tuple(sigma2.shape)}.")
    s = theta.shape[0]
    if s < 2:
        return DecayFit(theta, sigma2.sqrt(), fit.r2)
    cov = _design(n)[3].to(theta.device)
    mean = theta.mean(0, keepdim=True)
    v_tot = theta.var(0, keepdim=True)
    v_err = sigma2.mean(0, keepdim=True)[..., None] * torch.diagonal(cov)
    keep = torch.where(v_tot > 0, (1 - v_err / v_tot.clamp(min=1e-300)).clamp(0, 1), torch.zeros_like(v_tot))
    s2_mean = sigma2.mean(0, keepdim=True)
    s2_tot = sigma2.var(0, keepdim=True)
    s2_err = 2 * s2_mean.pow(2) / n
    s2_keep = torch.where(s2_tot > 0, (1 - s2_err / s2_tot.clamp(min=1e-300)).clamp(0, 1), torch.zeros_like(s2_tot))
    sigma2 = (s2_mean + s2_keep * (sigma2 - s2_mean)).clamp(min=0)
    return DecayFit(mean + keep * (theta - mean), sigma2.sqrt(), fit.r2)
