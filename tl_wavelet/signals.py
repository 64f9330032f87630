"""Signal extraction from causal attention patterns (no hooks, no model code).

An attention pattern ``pattern[..., q, k]`` of a causal head is re-indexed by the
distance ``d = q - k`` between query and key ("offset"), which is the coordinate a
relative (RoPE) position code sees. Two views are provided:

* :func:`offset_aligned_rows` - every query row, aligned by offset (row ``q`` holds
  ``pattern[q, q - d]`` for ``d = 0..q``), plus its valid length.
* :func:`offset_profile` - the mean of those rows over queries, ``r(d)``.
* :func:`received_attention` - the attention each key receives, in key order.

All functions are vectorised with ``gather``; there is no Python loop over queries.
"""
from __future__ import annotations

import functools
import math

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

from .validate import check_bool, check_tensor

__all__ = ["offset_aligned_rows", "offset_profile", "received_attention", "without_first_key", "row_plan"]


def _check_pattern(pattern: Tensor) -> int:
    if pattern.ndim < 2:
        raise ValueError(
            f"pattern must have shape [..., q, k] (got {tuple(pattern.shape)}); "
            "pass a full attention pattern, e.g. cache['pattern', layer]"
        )
    n_q, n_k = pattern.shape[-2:]
    if n_q != n_k:
        raise ValueError(
            f"pattern must be square [..., n, n] (causal self-attention over the same "
            f"tokens); got q={n_q}, k={n_k}. Slice it to pattern[..., -n_k:, :] or "
            "pass the full pattern."
        )
    if not pattern.is_floating_point():
        raise TypeError(f"pattern must be a floating tensor, got {pattern.dtype}")
    return n_q


def without_first_key(pattern: Float[Tensor, "*batch q k"]) -> Float[Tensor, "*batch q k"]:
    """Zero key 0 (the attention sink / BOS) and renormalise each row over keys 1..q.

    Rows whose non-sink mass is exactly zero (including query 0, which only sees key 0)
    stay all-zero instead of becoming NaN.
    """
    p = pattern.clone()
    p[..., 0] = 0
    mass = p.sum(-1, keepdim=True)
    return torch.where(mass > 0, p / torch.where(mass > 0, mass, torch.ones_like(mass)), p)


_drop_first_key = without_first_key


def offset_aligned_rows(
    pattern: Float[Tensor, "*batch n n"], drop_first_key: bool = False
) -> tuple[Float[Tensor, "*batch n n"], Int[Tensor, " n"]]:
    """Re-index each query row of a causal pattern by offset ``d = q - k``.

    Parameters
    ----------
    pattern : Tensor [..., n, n]
        Causal attention probabilities, ``pattern[..., q, k]`` (entries with k > q are
        ignored whatever they hold).
    drop_first_key : bool
        If True, key 0 (the attention sink / BOS token) is removed and each row is
        renormalised over keys ``1..q``; row ``q`` then has valid length ``q`` (row 0 has
        length 0 and is all zeros). Rows with no non-sink mass stay all zero.

    Returns
    -------
    rows : Tensor [..., n, n]
        ``rows[..., q, d] = pattern[..., q, q - d]`` for ``d < lengths[q]``, 0 beyond.
    lengths : LongTensor [n]
        Valid length of each row: ``q + 1`` (or ``q`` with ``drop_first_key``);
        broadcastable against ``rows.shape[:-1]`` as the metrics' ``lengths`` argument.

    Examples
    --------
    >>> import torch
    >>> p = torch.tril(torch.ones(3, 3)); p = p / p.sum(-1, keepdim=True)
    >>> rows, lengths = offset_aligned_rows(p)
    >>> rows[2].tolist(), lengths.tolist()
    ([0.3333333432674408, 0.3333333432674408, 0.3333333432674408], [1, 2, 3])
    """
    n = _check_pattern(pattern)
    if drop_first_key:
        pattern = _drop_first_key(pattern)
    q = torch.arange(n, device=pattern.device)
    d = torch.arange(n, device=pattern.device)
    key = rearrange(q, "q -> q 1") - rearrange(d, "d -> 1 d")  # [q, d] key index q - d
    valid = key >= (1 if drop_first_key else 0)
    idx = key.clamp(min=0).expand(*pattern.shape[:-2], n, n)
    rows = pattern.gather(-1, idx) * valid.to(pattern.dtype)
    lengths = q + 1 - int(drop_first_key)
    return rows, lengths


def offset_profile(
    pattern: Float[Tensor, "*batch n n"], drop_first_key: bool = False
) -> Float[Tensor, "*batch n"]:
    """Mean attention paid at each offset: ``r(d) = mean_{q >= d} pattern[q, q - d]``.

    Parameters
    ----------
    pattern : Tensor [..., n, n]
        Causal attention probabilities ``pattern[..., q, k]``.
    drop_first_key : bool
        If True, key 0 is removed and rows renormalised (see
        :func:`offset_aligned_rows`); the mean at offset ``d`` then runs over the
        ``n - 1 - d`` queries ``q > d`` whose key ``q - d`` is not 0, and ``r(n-1)`` = 0
        (no data).

    Returns
    -------
    r : Tensor [..., n]
        ``r[..., 0]`` is attention to the query token itself, ``r[..., 1]`` to the
        previous token, and so on. For a row-stochastic pattern without
        ``drop_first_key``, ``sum_d (n - d) r(d) = n``.

    Examples
    --------
    >>> import torch
    >>> p = torch.zeros(4, 4); p[0, 0] = 1; p[1:, :3] = torch.eye(3)   # previous-token head
    >>> offset_profile(p).tolist()
    [0.25, 1.0, 0.0, 0.0]
    """
    n = _check_pattern(pattern)
    return prefix_offset_profiles(pattern, check_bool(drop_first_key, "drop_first_key"), [n])[n].to(pattern.dtype)


_CPU_CHUNK_BYTES = 2**21


@functools.lru_cache(maxsize=2)
def _offset_keys(n: int, device: torch.device) -> Tensor:
    """``[q, d] -> max(q - d, 0)``: the key each (query, offset) reads, made once per length and device."""
    q = torch.arange(n, device=device)
    return (rearrange(q, "q -> q 1") - rearrange(q, "d -> 1 d")).clamp(min=0)


def prefix_offset_profiles(
    pattern: Float[Tensor, "*batch n n"], drop_first_key: bool, lengths, aligned: Tensor | None = None
) -> dict[int, Float[Tensor, "*batch m"]]:
    """The offset profile of each causal prefix of ``m`` queries, ``m`` in ``lengths``, in one pass.

    ``r_m(d) = mean_{d <= q < m} pattern[q, q - d]`` (without the first key: renormalised,
    over ``q > d``), float64 ``[..., m]``. The prefix of ``m`` queries is the sequence cut
    to ``m`` tokens (a causal pattern's prefix is the cut sequence's pattern), so the
    scale-sensitivity cuts and the full profile share one gather and one float64 pass:
    rows are summed block by block between the cut points and the blocks accumulated.
    ``aligned``: :func:`offset_aligned_rows`'s rows when the caller has them.

    Without ``aligned`` the gather is not masked: entry ``(q, d > q)`` reads key 0, and
    what those entries add to the column sums (``sum_{q < d} pattern[q, 0]``, a cumulative
    sum of the first key's column) is taken off in float64, which loses nothing that
    matters (1e-13 relative on a 256-token random pattern) and saves a pass over n x n.
    """
    n = _check_pattern(pattern)  # shapes and dtype only: nothing waits on the device
    cuts = sorted(set(int(m) for m in lengths))
    if aligned is None:
        p = without_first_key(pattern) if drop_first_key else pattern
        aligned = p.gather(-1, _offset_keys(n, p.device).expand(*p.shape[:-2], n, n))
        first = p[..., 0].to(torch.float64).cumsum(-1)
        # sum_{q < d} p[q, 0] for d = 0..n-1
        spill = torch.cat([torch.zeros_like(first[..., :1]), first[..., :-1]], -1)
    else:
        spill = None
    # On the CPU the float64 sums run a few rows at a time: each cast copy then stays in the
    # cache (block-sized copies of a 256-token batch took twice as long); a GPU sums a block at once.
    lead = math.prod(aligned.shape[:-2]) * n * 8
    step = max(1, _CPU_CHUNK_BYTES // max(lead, 1)) if aligned.device.type == "cpu" else n
    out, total, lo = {}, None, 0
    for m in cuts:
        for r0 in range(lo, m, step):
            block = aligned[..., r0 : min(m, r0 + step), :].sum(-2, dtype=torch.float64)
            total = block if total is None else total + block
        lo = m
        s = total[..., :m] if spill is None else total[..., :m] - spill[..., :m]
        # queries q >= d contribute at offset d (q > d without the first key)
        out[m] = s / _offset_counts(m, bool(drop_first_key), pattern.device)
    return out


@functools.lru_cache(maxsize=16)
def _offset_counts(m: int, drop_first_key: bool, device: torch.device) -> Tensor:
    """How many queries of an ``m``-query prefix see offset d (``m - d``; one fewer without the first key, at least 1)."""
    return (torch.arange(m, 0, -1, device=device, dtype=torch.float64) - int(drop_first_key)).clamp(min=1)


def received_attention(
    pattern: Float[Tensor, "*batch q k"],
    drop_first_key: bool = False,
    dtype: torch.dtype | None = None,
    causal: bool | None = None,
) -> Float[Tensor, "*batch k"]:
    """Mean attention each key receives from the queries that can attend to it.

    Causality is read off the pattern itself (nothing above the diagonal = causal): key
    ``k`` of a causal pattern is seen by the ``n - k`` queries ``q >= k``, every key of a
    bidirectional one by all ``n``. With ``drop_first_key`` rows are first renormalised
    without key 0 (:func:`without_first_key`), which then receives 0. Sums run in float64;
    the result has ``dtype`` (default: the pattern's). ``causal`` skips the check when the
    caller knows.

    >>> p = torch.tril(torch.ones(3, 3)); p = p / p.sum(-1, keepdim=True)
    >>> [round(v, 4) for v in received_attention(p).tolist()]   # key 0 seen by 3 queries, key 2 by 1
    [0.6111, 0.4167, 0.3333]
    """
    check_tensor(pattern, "pattern", min_ndim=2, shape="[*batch, q, k]")
    if pattern.shape[-1] != pattern.shape[-2]:
        raise ValueError(f"pattern must be square [..., n, n] (queries and keys over one sequence), got {tuple(pattern.shape)}.")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype (e.g. torch.float64) or None, got {dtype!r}.")
    if causal is not None:
        causal = check_bool(causal, "causal")
    if check_bool(drop_first_key, "drop_first_key"):
        pattern = without_first_key(pattern)
    n = pattern.shape[-1]
    if causal is None:
        causal = bool((pattern.triu(1) == 0).all())
    total = pattern.sum(-2, dtype=torch.float64)
    if causal:
        seen_by = torch.arange(n, 0, -1, device=pattern.device, dtype=torch.float64)  # n - k
        out = total / seen_by
    else:
        out = total / n
    return out.to(pattern.dtype if dtype is None else dtype)


@functools.lru_cache(maxsize=64)
def row_plan(n: int, drop_first_key: bool, min_len: int, max_rows: int, paper: bool) -> tuple[Tensor, Tensor]:
    """(query rows, their valid lengths) of ``pattern_rows``, on the CPU.

    A function of the length alone, so it is computed on the host once per length: the
    hooks never ask the device which rows are long enough. Rows: evenly spaced query rows
    long enough for the wavelet, the last one included (``paper``: the last row only).
    """
    lengths = torch.arange(n, device="cpu") + 1 - int(drop_first_key)
    if paper:
        idx = torch.tensor([n - 1], device="cpu")
    else:
        long_enough = (lengths >= min_len).nonzero()
        first = int(long_enough[0]) if len(long_enough) else n - 1
        count = min(max_rows, n - first)
        idx = torch.linspace(first, n - 1, count, device="cpu").round().long().unique()
    return idx, lengths[idx]
