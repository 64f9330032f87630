"""Wavelet transforms over the position axis (PROVISIONAL implementation).

The public API (names, arguments, coefficient order) is final; the implementation
here is a correct-but-simple reference: the DWT is linear, so its matrix is read off
PyWavelets by transforming the identity, cached per (n, wavelet, level, mode).
"""
from __future__ import annotations

import functools

import numpy as np
import pywt
import torch
from torch import Tensor

__all__ = ["wavedec", "waverec", "band_energy", "band_labels", "causal_bands", "dwt_max_level"]


def _wavelet(name):
    return pywt.Wavelet(name) if isinstance(name, str) else name


def dwt_max_level(n: int, wavelet="db2") -> int:
    return pywt.dwt_max_level(n, _wavelet(wavelet).dec_len)


@functools.lru_cache(maxsize=64)
def _analysis_matrix(n, wavelet, level, mode):
    coeffs = pywt.wavedec(np.eye(n), wavelet, level=level, mode=mode, axis=-1)
    sizes = tuple(c.shape[-1] for c in coeffs)
    return torch.from_numpy(np.concatenate(coeffs, axis=-1)), sizes  # [n, total]


def wavedec(x: Tensor, wavelet="db2", level=None, mode="symmetric", dim=-1) -> list[Tensor]:
    w = _wavelet(wavelet)
    n = x.shape[dim]
    if level is None:
        level = dwt_max_level(n, w)
    mat, sizes = _analysis_matrix(n, w.name, level, mode)
    xt = x.movedim(dim, -1)
    dtype = xt.dtype if xt.dtype in (torch.float32, torch.float64) else torch.float32
    out = xt.to(dtype) @ mat.to(dtype=dtype, device=x.device)
    return [c.movedim(-1, dim) for c in out.split(sizes, dim=-1)]


@functools.lru_cache(maxsize=64)
def _synthesis_matrix(sizes, wavelet, mode):
    total = sum(sizes)
    eye = np.eye(total)
    parts = np.split(eye, np.cumsum(sizes)[:-1], axis=-1)
    rec = pywt.waverec(parts, wavelet, mode=mode, axis=-1)
    return torch.from_numpy(rec)  # [total, n_out]


def waverec(coeffs, wavelet="db2", mode="symmetric", dim=-1) -> Tensor:
    w = _wavelet(wavelet)
    cs = [c.movedim(dim, -1) for c in coeffs]
    sizes = tuple(c.shape[-1] for c in cs)
    mat = _synthesis_matrix(sizes, w.name, mode)
    flat = torch.cat(cs, dim=-1)
    dtype = flat.dtype if flat.dtype in (torch.float32, torch.float64) else torch.float32
    return (flat.to(dtype) @ mat.to(dtype=dtype, device=flat.device)).movedim(-1, dim)


def band_labels(level: int) -> list[str]:
    return [f"A{level}"] + [f"D{j}" for j in range(level, 0, -1)]


def band_energy(x: Tensor, wavelet="db2", level=None, mode="symmetric", dim=-1) -> Tensor:
    coeffs = wavedec(x, wavelet, level, mode, dim)
    return torch.stack([c.pow(2).sum(dim) for c in coeffs], dim=-1)


def causal_bands(x: Tensor, wavelet="haar", level=5, dim=-1) -> Tensor:
    """Causal a-trous decomposition: [A_J, D_J, ..., D_1] stacked on a new first dim.

    S_0 = x; S_j(t) = sum_i h_i S_{j-1}(t - i 2^(j-1)) with h the wavelet's low-pass
    decomposition filter, reversed to be one-sided and normalised to unit DC gain;
    D_j = S_{j-1} - S_j. Bands sum exactly to x and band values at t depend on x[<= t].
    """
    w = _wavelet(wavelet)
    h = torch.tensor(w.dec_lo[::-1], dtype=torch.float64)  # h[0] multiplies x(t)
    h = h / h.sum()
    xt = x.movedim(dim, -1)
    s_prev = xt
    details = []
    for j in range(1, level + 1):
        step = 2 ** (j - 1)
        s = torch.zeros_like(s_prev)
        for i, hi in enumerate(h.tolist()):
            lag = i * step
            if lag == 0:
                s = s + hi * s_prev
            elif lag < s_prev.shape[-1]:
                s = s + hi * torch.nn.functional.pad(s_prev[..., :-lag], (lag, 0))
        details.append(s_prev - s)
        s_prev = s
    bands = torch.stack([s_prev] + details[::-1], dim=0)
    return bands.movedim(-1, dim if dim < 0 else dim + 1)
