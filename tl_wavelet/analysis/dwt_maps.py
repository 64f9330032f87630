"""Every DWT metric of one layer as a few products with cached sparse matrices.

A DWT in a fixed extension mode is linear: the analysis of ``n`` positions at level ``J``
is one sparse matrix (about ``F n`` nonzeros, :func:`tl_wavelet.transforms.analysis_operator`,
built by the transform itself), the reconstruction another. So a layer's DWT metrics —
band energies, wavelet entropy, the round-trip error and scale sensitivity at every cut —
are three sparse products (the full signal, the cut signals, the round trip) and a few run
sums over the coefficients: about 40 ops for every layer of a pass together (the hooks stack
the layers), where a transform per metric and a loop over levels per transform took hundreds
per layer.

The numbers are the metrics' definitions (:mod:`tl_wavelet.metrics`) computed in another
order (a sparse product, then sums over a band's coefficients in order), so they agree with
the public functions to float64 rounding (tests/test_dwt_maps.py), not bit for bit. On the
CPU a sequence's numbers do not depend on the batch it came in, bit for bit; on a GPU the
band sums add with atomics, whose order (and so the last bit) varies from run to run, as
most GPU reductions do.

Layout: signals are columns (``[positions, R]``, R = every (sequence, head, row)), so the
sparse matrix is on the left of each product and every result is ``[what, R]``.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from ..transforms import analysis_operator, dwt_max_level, synthesis_operator, to_csr

__all__: list[str] = []

_F64 = torch.float64
_ROUNDOFF = 1e-24  # as tl_wavelet.metrics: a band whose energy is round-off of the total is empty


def _join(mats: list[Tensor], diagonal: bool) -> Tensor:
    """Sparse CSR matrices stacked on top of each other (one width), or on the diagonal (each
    block reading its own columns)."""
    rows, cols, vals, r0, c0 = [], [], [], 0, 0
    for m in mats:
        coo = m.to_sparse_coo().coalesce()
        i, j = coo.indices()
        rows.append(i + r0)
        cols.append(j + c0)
        vals.append(coo.values())
        r0, c0 = r0 + m.shape[0], c0 + m.shape[1] if diagonal else 0
    width = c0 if diagonal else mats[0].shape[1]
    out = torch.sparse_coo_tensor(torch.stack([torch.cat(rows), torch.cat(cols)]), torch.cat(vals), (r0, width),
                                  check_invariants=True)
    return to_csr(out.coalesce())


def _rows(m: Tensor, keep: Tensor) -> Tensor:
    """Rows ``keep`` (ascending) of a sparse CSR matrix, without making it dense (an n x n
    float64 matrix of a 32k-token signal would be 8 GiB)."""
    coo = m.to_sparse_coo().coalesce()
    i, j = coo.indices()
    new = torch.full((m.shape[0],), -1, dtype=torch.long)
    new[keep] = torch.arange(len(keep))
    sel = new[i] >= 0
    out = torch.sparse_coo_tensor(torch.stack([new[i[sel]], j[sel]]), coo.values()[sel], (len(keep), m.shape[1]),
                                  check_invariants=True)
    return to_csr(out.coalesce())


@dataclass(frozen=True)
class _Runs:
    """Consecutive runs of rows, for :func:`_sums`: ``idx`` [sum(sizes)] is the run of each row, ``k`` the runs' count."""

    idx: Tensor
    k: int

    @classmethod
    def of(cls, sizes) -> "_Runs":
        sizes = [int(v) for v in sizes]
        return cls(torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long)), len(sizes))

    def to(self, device: torch.device) -> "_Runs":
        return _Runs(self.idx.to(device), self.k)


def _sums(x: Tensor, runs: _Runs) -> Tensor:
    """Sums of consecutive runs of ``x``'s rows (first axis): ``[runs.k, ...]``.

    Rows are added in order into their run's row, each column on its own: a product with a
    0/1 matrix rounds a column differently by where it falls in a BLAS block, and a
    reduction over the first axis by how many columns there are, so a sequence's numbers
    would depend on its batch; ``segment_reduce`` checks its lengths on the host (a wait on
    a GPU). Two ops, no wait.
    """
    return x.new_zeros((runs.k, *x.shape[1:])).index_add_(0, runs.idx, x)


@dataclass(frozen=True)
class DWTMaps:
    """The matrices of one (n, wavelet, mode, level, paper, alphas) on one device.

    ``main`` [N, n]: the level-``level`` DWT; ``bands``: its bands (``A_J, D_J, ..., D_1``) as
    runs of coefficients; ``whole``: all ``n`` positions as one run; ``inv_log`` [J+1]:
    1 / log(coefficients per band) (0 for one coefficient); ``rec`` [n, N]: the
    reconstruction cut to ``n``.
    Scale sensitivity, per cut: ``full`` [U, n] what it reads of the full signal (its band
    coefficients at the cut's depth ``J'``; paper: those coefficients cut to the short
    signal's counts), ``short`` [U', sum m] the same of the cut signals (block diagonal);
    ``runs_full``, ``runs_short``: the band sizes that turn those coefficients into band
    energies (default; None for the paper's coefficient vectors); ``per_cut``: how many
    compared entries each cut has.
    """

    n: int
    key: tuple
    main: Tensor
    bands: _Runs
    whole: _Runs
    inv_log: Tensor
    rec: Tensor
    full: Tensor | None
    short: Tensor | None
    runs_full: _Runs | None
    runs_short: _Runs | None
    per_cut: _Runs | None
    cuts: tuple[int, ...]
    paper: bool


#: The most recently used maps kept (a study over many sequence lengths would otherwise keep
#: every length's matrices: 74 MiB of them at 32k tokens)
_CACHE_SIZE = 16
_CACHE: OrderedDict = OrderedDict()


def dwt_maps(n: int, wavelet: str, mode: str, level: int, paper: bool, alphas: tuple[float, ...],
             device: torch.device) -> DWTMaps:
    """The cached :class:`DWTMaps` (built once per key on the CPU, copied once per device)."""
    key = (n, wavelet, mode, level, paper, tuple(alphas), device)
    if key not in _CACHE:
        host_key = key[:-1] + (torch.device("cpu"),)
        host = _CACHE.get(host_key) or _build(n, wavelet, mode, level, paper, tuple(alphas))
        _CACHE[host_key] = host
        _CACHE[key] = host if device.type == "cpu" else DWTMaps(
            **{k: (v.to(device) if isinstance(v, (Tensor, _Runs)) else v) for k, v in host.__dict__.items()})
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _CACHE[key]


def _build(n: int, wavelet: str, mode: str, level: int, paper: bool, alphas: tuple[float, ...]) -> DWTMaps:
    A, sizes = analysis_operator(wavelet, mode, n, level)
    full_parts, short_parts, seg_f, seg_s, per_cut, cuts = [], [], [], [], [], []
    for a in alphas:
        m = math.floor(a * n)
        jp = min(level, dwt_max_level(m, wavelet))
        Af, sf = analysis_operator(wavelet, mode, n, jp)
        As, ss = analysis_operator(wavelet, mode, m, jp)
        if paper:
            # each band's coefficients cut to the short signal's count (S on coefficient vectors)
            starts = [0, *torch.tensor(sf).cumsum(0)[:-1].tolist()]
            keep = torch.cat([torch.arange(s0, s0 + min(a_, b_)) for s0, a_, b_ in zip(starts, sf, ss)])
            Af = _rows(Af, keep)
            per_cut.append(len(keep))
        else:
            seg_f += list(sf)
            seg_s += list(ss)
            per_cut.append(jp + 1)
        full_parts.append(Af)
        short_parts.append(As)
        cuts.append(m)
    inv_log = torch.tensor([1.0 / math.log(s) if s > 1 else 0.0 for s in sizes], dtype=_F64)
    return DWTMaps(
        n=n, key=(n, wavelet, mode, level), main=A, bands=_Runs.of(sizes), whole=_Runs.of([n]), inv_log=inv_log,
        rec=synthesis_operator(wavelet, mode, tuple(sizes), n),
        full=_join(full_parts, diagonal=False) if full_parts else None,
        short=_join(short_parts, diagonal=True) if short_parts else None,
        runs_full=_Runs.of(seg_f) if seg_f else None, runs_short=_Runs.of(seg_s) if seg_s else None,
        per_cut=_Runs.of(per_cut) if per_cut else None, cuts=tuple(cuts), paper=paper)


def dwt_metrics(full: Tensor, shorts: dict[float, Tensor], maps: DWTMaps, normalized: bool,
                memo: dict | None = None) -> dict[str, Tensor]:
    """The DWT metrics of signals ``full`` [*batch, n] and their cuts ``shorts[alpha]`` [*batch, m],
    each [*batch] (``band_energy`` and ``wavelet_entropy`` [*batch, J+1]), float64.

    ``band_energy``: sum of squared coefficients per band ``[A_J, D_J, ..., D_1]``;
    ``wavelet_entropy``: per band, Shannon entropy of the coefficients' energy
    (``normalized``: of the band's distribution over its coefficients, divided by
    log(count), a round-off band empty; else the paper's unnormalised ``-sum e log e``);
    ``reconstruction_error``: ``||x - waverec(wavedec(x))|| / ||x||``;
    ``scale_sensitivity_<alpha>``: ``1 - cos`` of the full and cut signals' band energies
    (default) or coefficient vectors (paper) at depth ``min(level, dwt_max_level(m))``.
    ``memo``: shared by callers that read the same ``full`` (the DWT, its band energies and
    round trip do not depend on ``normalized`` or the cuts).
    """
    batch = full.shape[:-1]
    memo = {} if memo is None else memo
    key = ("dwt", id(full), maps.key)
    if key not in memo:  # keyed by the signal's identity: held in the memo beside it, so the id is not reused
        x = full.reshape(-1, maps.n).to(_F64).T  # [n, R]
        c = maps.main @ x  # [N, R]
        e = c * c
        band = _sums(e, maps.bands)  # [J+1, R]
        d = x - maps.rec @ c
        norms = _sums(torch.stack([d, x], 1).square(), maps.whole)[0].sqrt()  # [2, R]
        err = norms[0] / torch.where(norms[1] > 0, norms[1], math.inf)  # a zero signal: 0
        memo[key] = (full, x, e, band, err)
    _, x, e, band, err = memo[key]
    out = {"band_energy": band.T, "reconstruction_error": err}
    if normalized:
        total = band.sum(0)
        band_ok = torch.where(band > _ROUNDOFF * total, band, 0.0)
        # each coefficient's band energy (a copy of the band's: no arithmetic)
        per_coef = band_ok.index_select(0, maps.bands.idx)
        p = e / torch.where(per_coef > 0, per_coef, math.inf)
        h = (0.0 - _sums(torch.special.xlogy(p, p), maps.bands)) * maps.inv_log[:, None]  # 0.0 - x: no -0.0
    else:
        h = 0.0 - _sums(torch.special.xlogy(e, e), maps.bands)
    out["wavelet_entropy"] = h.T
    if shorts:
        s = torch.cat([shorts[a].reshape(-1, m).to(_F64) for a, m in zip(shorts, maps.cuts)], -1).T
        uf, us = maps.full @ x, maps.short @ s
        if not maps.paper:  # band energies at each cut's depth
            uf, us = _sums(uf.square(), maps.runs_full), _sums(us.square(), maps.runs_short)
        u = torch.stack([uf, us], 1)  # [B, 2, R]
        # the dot product and both squared norms per cut, in one op: [A, 2, 2, R]
        g = _sums(u[:, :, None] * u[:, None], maps.per_cut)
        den = (g[:, 0, 0] * g[:, 1, 1]).sqrt()
        ok = den > 0
        sens = 1 - (g[:, 0, 1] / torch.where(ok, den, math.inf)).clamp(-1, 1)
        # both empty: identical (0); exactly one empty: nothing in common (1)
        sens = torch.where(ok, sens, g[:, 0, 0] + g[:, 1, 1] > 0)
        for i, a in enumerate(shorts):
            out[f"scale_sensitivity_{a:g}"] = sens[i]
    return {k: v.reshape(*batch, *v.shape[1:]) for k, v in out.items()}
