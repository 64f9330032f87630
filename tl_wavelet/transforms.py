"""Wavelet transforms over the position axis, in torch, equal to PyWavelets.

Two families live here:

* the decimated DWT (:func:`dwt`, :func:`idwt`, :func:`wavedec`, :func:`waverec`,
  :func:`band_energy`): coefficient for coefficient what ``pywt`` returns, for every
  discrete wavelet and every extension mode, batched over all other dims, differentiable,
  device-agnostic;
* the causal (a-trous) decomposition (:func:`causal_bands`,
  :func:`causal_anchor_kernels`): undecimated, one-sided, bands summing exactly to the
  signal, band values at ``t`` depending only on ``x[:t+1]`` -- what a decoder head
  can "see" from the query's point of view.

Implementation notes
--------------------
One DWT level is "extend, then strided correlation". PyWavelets' C kernel computes
``out[o] = sum_j f[j] * ext(i - j)`` at centres ``i = 2o + 1`` (``i = F/2 + 2o`` for
periodization) where ``ext`` is the mode's infinite extension of the signal. Every mode
is linear, so each extended sample is a short linear combination (at most three terms)
of real samples; :func:`_ext_point` writes those combinations down by index
arithmetic, including signals shorter than the filter (the extension then wraps
several times, as the C loops do). The pads are gathered with ``index_select`` and the
filtering is one ``conv1d`` with stride 2 and both analysis filters as two output
channels. The inverse is PyWavelets' "upsample + convolve, keep the valid middle",
written polyphase: a ``conv1d`` of the stacked ``[cA, cD]`` with the even and odd taps
of the synthesis filters, interleaved afterwards.

Signals of at most :data:`SMALL_N` positions (in small calls) skip all that: one product with
the transform's cached matrix, computed in float64 and rounded once to the result dtype.

Dtypes: float32 and float64 are computed in their own precision; float16 and bfloat16
are computed in float32 and returned as float32 (half precision loses the 1e-5
agreement with pywt at once); integer, bool and complex inputs raise.
"""
from __future__ import annotations

import difflib
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from .validate import check_int, resolve_level

__all__ = [
    "wavedec",
    "waverec",
    "dwt",
    "idwt",
    "band_energy",
    "band_labels",
    "causal_bands",
    "causal_anchor_kernels",
    "dwt_max_level",
    "min_length",
    "MODES",
    "DISCRETE_WAVELETS",
]

#: Extension modes, in PyWavelets' spelling.
MODES: tuple[str, ...] = tuple(pywt.Modes.modes)
#: Every discrete wavelet name PyWavelets knows.
DISCRETE_WAVELETS: tuple[str, ...] = tuple(pywt.wavelist(kind="discrete"))


# ------------------------------------------------------------------ validation
@dataclass(frozen=True)
class _Bank:
    """A filter bank as exact float64 tuples (hashable, so it can key caches)."""

    name: str
    dec_lo: tuple[float, ...]
    dec_hi: tuple[float, ...]
    rec_lo: tuple[float, ...]
    rec_hi: tuple[float, ...]

    @property
    def flen(self) -> int:
        return len(self.dec_lo)

    def __hash__(self) -> int:
        # computed once: banks key the per-call caches, and hashing ~100 floats each
        # lookup costs more than a small transform
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.name, self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi))
            object.__setattr__(self, "_hash", h)
        return h


@functools.lru_cache(maxsize=None)
def _bank_from_name(name: str) -> _Bank:
    if name not in DISCRETE_WAVELETS:
        close = difflib.get_close_matches(name, DISCRETE_WAVELETS, n=6, cutoff=0.5)
        hint = f" Did you mean one of {close}?" if close else ""
        kind = " is a continuous wavelet;" if name in pywt.wavelist(kind="continuous") else " is not"
        raise ValueError(
            f"Wavelet {name!r}{kind} a discrete PyWavelets wavelet.{hint} "
            "Valid names: pywt.wavelist(kind='discrete') (haar, dbN, symN, coifN, biorN.M, rbioN.M, dmey)."
        )
    return _bank_from_wavelet(pywt.Wavelet(name))


def _bank_from_wavelet(w: pywt.Wavelet) -> _Bank:
    lens = {len(w.dec_lo), len(w.dec_hi), len(w.rec_lo), len(w.rec_hi)}
    if len(lens) != 1 or (flen := lens.pop()) < 2 or flen % 2:
        raise ValueError(
            f"Wavelet {w.name!r} needs four filters of one even length >= 2 (as pywt pads them); "
            f"got lengths {[len(w.dec_lo), len(w.dec_hi), len(w.rec_lo), len(w.rec_hi)]}."
        )
    return _Bank(w.name, *(tuple(float(v) for v in f) for f in (w.dec_lo, w.dec_hi, w.rec_lo, w.rec_hi)))


def _bank(wavelet) -> _Bank:
    if isinstance(wavelet, str):
        return _bank_from_name(wavelet)
    if isinstance(wavelet, pywt.Wavelet):
        return _bank_from_wavelet(wavelet)
    if isinstance(wavelet, pywt.ContinuousWavelet):  # a wavelet, of the wrong kind: pywt's ValueError
        raise ValueError(
            f"{wavelet.name!r} is a continuous wavelet: it has no filter bank, so no DWT. "
            "Pick a discrete one: pywt.wavelist(kind='discrete')."
        )
    raise TypeError(
        f"wavelet must be a name such as 'db2' or a pywt.Wavelet, got {type(wavelet).__name__}. "
        "Continuous wavelets (pywt.ContinuousWavelet) have no filter bank: pick a discrete one."
    )


def _check_mode(mode) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string, one of {', '.join(MODES)}; got {type(mode).__name__}.")
    if mode not in MODES:
        raise ValueError(f"Unknown extension mode {mode!r}: choose one of {', '.join(MODES)}.")
    return mode


def _min_length(bank: _Bank, level: int) -> int:
    # pywt.dwt_max_level(n, F) = floor(log2(n / (F - 1))) >= level  <=>  n >= (F - 1) 2^level
    return (bank.flen - 1) * 2**level if level > 0 else 1


def dwt_max_level(n: int, wavelet="db2") -> int:
    """Deepest useful DWT level for ``n`` positions, exactly ``pywt.dwt_max_level``.

    The largest ``L`` with ``(F - 1) * 2**L <= n`` (``F`` the filter length), 0 if none.
    ``wavelet`` is a name, a ``pywt.Wavelet`` or (as in pywt) a filter length.

    Examples
    --------
    >>> dwt_max_level(256, "db2"), dwt_max_level(2, "db2")
    (6, 0)
    """
    n = check_int(n, "n", minimum=0)
    if isinstance(wavelet, (int, np.integer)) and not isinstance(wavelet, bool):
        if wavelet < 2:
            raise ValueError(f"wavelet: a filter length must be >= 2, got {wavelet}.")
        return _max_level_for(int(n), int(wavelet))
    return _max_level(int(n), _bank(wavelet))


def _max_level_for(n: int, flen: int) -> int:
    level = 0
    while (flen - 1) * 2 ** (level + 1) <= n:
        level += 1
    return level


def _max_level(n: int, bank: _Bank) -> int:
    return _max_level_for(n, bank.flen)


def _resolve_level(level, n: int, bank: _Bank, signal: str = "data") -> int:
    return resolve_level(level, n, min_length=lambda L: _min_length(bank, L), wavelet=bank.name or "wavelet",
                         signal=signal)


def _as_wavelet(bank: _Bank) -> pywt.Wavelet:
    if bank.name in DISCRETE_WAVELETS:
        return pywt.Wavelet(bank.name)
    return pywt.Wavelet(bank.name, filter_bank=[bank.dec_lo, bank.dec_hi, bank.rec_lo, bank.rec_hi])


def _work_dtype(*tensors: Tensor, names: tuple[str, ...] = ()) -> torch.dtype:
    for i, t in enumerate(tensors):
        name = names[i] if i < len(names) else (names[-1] if names else "the input")
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}: wrap it with torch.as_tensor(...).")
        if not t.dtype.is_floating_point:
            raise TypeError(
                f"{name} must be a real floating tensor, got {t.dtype}: convert with x.double() or x.float() "
                "(complex: transform x.real and x.imag separately)."
            )
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
    # half precision cannot hold the pywt agreement; compute (and return) float32
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _check_dim(x: Tensor, dim: int, name: str = "axis") -> int:
    dim = check_int(dim, name)
    if not -x.ndim <= dim < x.ndim or x.ndim == 0:
        raise ValueError(f"{name}={dim} is out of range for a tensor of shape {tuple(x.shape)}.")
    return int(dim) % x.ndim


def _axis(axis: int | None, dim: int | None) -> int:
    """PyWavelets' ``axis`` or its torch-style alias ``dim`` (default -1); both given must agree."""
    if dim is None:
        return -1 if axis is None else axis
    if axis is not None and axis != dim:
        raise ValueError(f"axis={axis} and dim={dim} disagree: dim is an alias of axis, pass only one.")
    return dim


# ------------------------------------------------------------------ extension
def _ext_point(m: int, n: int, mode: str) -> tuple[tuple[int, float], ...]:
    """Sample ``m`` (any integer) of the mode's extension of a length-``n`` signal.

    Returned as ``((index, coef), ...)`` so that ``ext(m) = sum coef * x[index]``; these
    reproduce pywt's C loops, which wrap as many times as the filter overhangs.
    """
    if 0 <= m < n:
        return ((m, 1.0),)
    if mode == "smooth" and n < 2:
        mode = "constant"  # pywt falls back the same way
    if mode == "zero":
        return ()
    if mode == "constant":
        return ((0 if m < 0 else n - 1, 1.0),)
    if mode == "periodic":
        return ((m % n, 1.0),)
    if mode == "periodization":
        # odd lengths are first padded with one copy of the last sample, then wrapped
        return ((min(m % (n + n % 2), n - 1), 1.0),)
    if mode == "symmetric":  # half-sample mirror, period 2n
        r = m % (2 * n)
        return ((r if r < n else 2 * n - 1 - r, 1.0),)
    if mode == "antisymmetric":  # half-sample anti-mirror, period 2n
        r = m % (2 * n)
        return ((r, 1.0),) if r < n else ((2 * n - 1 - r, -1.0),)
    if mode == "reflect":  # whole-sample mirror, period 2n - 2
        r = m % (2 * n - 2)
        return ((r if r < n else 2 * n - 2 - r, 1.0),)
    if mode == "smooth":  # linear continuation of the edge slope
        if m < 0:
            return ((0, 1.0 - m), (1, float(m)))
        k = m - n + 1
        return ((n - 1, 1.0 + k), (n - 2, -float(k)))
    if mode == "antireflect":
        # whole-sample point symmetry about both edges = reflect plus a drift of
        # 2 (x[n-1] - x[0]) per period 2n - 2
        period = 2 * n - 2
        q, r = divmod(m, period)
        terms = {0: -2.0 * q, n - 1: 2.0 * q}
        if r < n:
            terms[r] = terms.get(r, 0.0) + 1.0
        else:
            terms[n - 1] += 2.0
            terms[period - r] = terms.get(period - r, 0.0) - 1.0
        return tuple((i, c) for i, c in terms.items() if c != 0.0)
    raise AssertionError(mode)  # unreachable: modes are validated first


@functools.lru_cache(maxsize=512)
def _pad_terms(n: int, mode: str, positions: tuple[int, ...]) -> tuple[tuple[Tensor, Tensor | None], ...]:
    """Extension of ``positions`` as a few (index, coef) columns for ``index_select``.

    A coef of ``None`` means all ones (pure index modes skip the multiply).
    """
    pts = [_ext_point(m, n, mode) for m in positions]
    width = max((len(p) for p in pts), default=0)
    cols = []
    for r in range(width):
        idx = [p[r][0] if r < len(p) else 0 for p in pts]
        coef = [p[r][1] if r < len(p) else 0.0 for p in pts]
        c = None if all(v == 1.0 for v in coef) else torch.tensor(coef, dtype=torch.float64, device="cpu")
        cols.append((torch.tensor(idx, dtype=torch.long, device="cpu"), c))
    return tuple(cols)


_ON_DEVICE: dict = {}


def _on_device(t: Tensor, device: torch.device) -> Tensor:
    """A cached host table on ``device``: copied once per device (a copy per call would make an
    accelerator wait for the host)."""
    if device.type == "cpu":
        return t
    key = (id(t), device)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = t.to(device)
    return _ON_DEVICE[key]


def _pad(x: Float[Tensor, "rows n"], n: int, mode: str, positions: tuple[int, ...]) -> Float[Tensor, "rows p"]:
    """Extension samples at ``positions`` (all outside ``0..n-1``)."""
    out = None
    for idx, coef in _pad_terms(n, mode, positions) if positions else ():
        v = x.index_select(-1, _on_device(idx, x.device))
        v = v if coef is None else v * _on_device(coef, x.device).to(x.dtype)
        out = v if out is None else out + v
    return x.new_zeros(x.shape[0], len(positions)) if out is None else out


def _extend_polyphase(x: Float[Tensor, "rows n"], mode: str, lo: int, hi: int) -> tuple[Tensor, Tensor]:
    """Extended samples ``lo..hi`` split by parity: ``E[k] = ext(lo + 2k)``, ``O[k] = ext(lo + 2k + 1)``.

    De-interleaving while concatenating costs one pass and leaves every filter tap a
    unit-stride slice (stride-2 slices of the last dim are ~30x slower to combine).
    """
    n = x.shape[-1]
    left, right = _pad(x, n, mode, tuple(range(lo, 0))), _pad(x, n, mode, tuple(range(n, hi + 1)))
    phases = []
    for r in (0, 1):
        parts = [left[:, r::2], x[:, (lo + r) % 2 :: 2], right[:, (lo + r - n) % 2 :: 2]]
        phases.append(torch.cat([q for q in parts if q.shape[-1]], dim=-1))
    return phases[0], phases[1]


# ------------------------------------------------------------------ filtering
# Layout: rows of the position axis (contiguous, like pywt's axis=-1). Each filter tap
# is one fused multiply-add over a unit-stride slab; on the benchmark this beat a
# 1-channel stride-2 conv1d by ~40x and a polyphase conv1d by ~20x (mkldnn handles
# these shapes badly), and a positions-first layout needs two transposes.
def _fir(
    p: Float[Tensor, "rows m"], taps: tuple[float, ...], start: int, count: int, dilation: int = 1
) -> Float[Tensor, "rows count"]:
    """``out[k] = sum_j taps[j] * p[start + k - j*dilation]``, ``k < count``."""
    out = None
    for j, c in enumerate(taps):
        if c == 0.0:  # bior/rbio filters carry zero padding
            continue
        first = start - j * dilation
        s = p[:, first : first + count]
        out = s * c if out is None else out.add_(s, alpha=c)
    return p.new_zeros(p.shape[0], count) if out is None else out


def _fir2(even: Tensor, odd: Tensor, taps: tuple[float, ...], s0: int, count: int) -> Tensor:
    """``out[o] = sum_j taps[j] * ext(s0 + 2o - j)`` with ``ext`` given by its two phases."""
    out = None
    for j, c in enumerate(taps):
        if c == 0.0:
            continue
        q = s0 - j
        src = even[:, q // 2 : q // 2 + count] if q % 2 == 0 else odd[:, (q - 1) // 2 : (q - 1) // 2 + count]
        out = src * c if out is None else out.add_(src, alpha=c)
    return even.new_zeros(even.shape[0], count) if out is None else out


def _dwt_rows(x: Float[Tensor, "rows n"], bank: _Bank, mode: str) -> tuple[Tensor, Tensor]:
    n, flen = x.shape[-1], bank.flen
    if mode in ("reflect", "antireflect") and n < 2:
        raise ValueError(f"mode={mode!r} needs at least 2 positions per level (as pywt), got {n}: use another mode.")
    if mode == "periodization":
        n_out = (n + 1) // 2
        lo, first = 1 - flen // 2, flen // 2  # centres i = F/2 + 2o
    else:
        n_out = (n + flen - 1) // 2
        lo, first = 2 - flen, 1  # centres i = 2o + 1
    hi = first + 2 * (n_out - 1)
    even, odd = _extend_polyphase(x, mode, lo, hi)
    s0 = first - lo  # centre 0, counted from lo
    return _fir2(even, odd, bank.dec_lo, s0, n_out), _fir2(even, odd, bank.dec_hi, s0, n_out)


def _idwt_rows(a: Float[Tensor, "rows m"], d: Float[Tensor, "rows m"], bank: _Bank, mode: str) -> Tensor:
    # pywt upsamples, convolves with the synthesis filters and keeps the valid middle;
    # written polyphase: sample 2k+p = sum_j g[2j+p] c[k + F/2 - 1 - j]
    m, half = a.shape[-1], bank.flen // 2
    if mode == "periodization":
        # circular: centres i = 0..m-1 read c[(i - j) mod m]; pywt then rotates the
        # interleaved output so that it starts at centre F/4 (one more for F/2 even)
        idx = torch.arange(-(half - 1), m, device=a.device) % m
        a, d = a.index_select(-1, idx), d.index_select(-1, idx)
        count, shift = m, (1 if half % 2 == 0 else 0) - 2 * (bank.flen // 4)
    elif m < half:
        raise ValueError(
            f"{bank.name or 'wavelet'} reconstruction needs at least {half} coefficients per band, got {m}: "
            "pass coefficients as returned by wavedec."
        )
    else:
        count, shift = m - half + 1, 0
    phases = [
        _fir(a, bank.rec_lo[p::2], half - 1, count).add_(_fir(d, bank.rec_hi[p::2], half - 1, count)) for p in (0, 1)
    ]
    out = rearrange(torch.stack(phases, dim=-1), "r k p -> r (k p)")
    return torch.roll(out, shifts=shift, dims=-1) if shift else out


# ------------------------------------------------------------------ layout plumbing
#: Rows per block, in elements: all levels of one block run while it is cache-resident.
#: 2**20 float32 (4 MiB) measured ~25% faster than whole-tensor passes on the benchmark.
CHUNK_ELEMENTS = 2**20


def _row_chunks(rows: Float[Tensor, "rows n"], width: int | None = None) -> list[Tensor]:
    per = max(1, CHUNK_ELEMENTS // max(width or rows.shape[-1], 1))
    return list(rows.split(per, dim=0)) if rows.shape[0] > per else [rows]


def _to_rows(x: Tensor, dim: int, dtype: torch.dtype) -> tuple[Tensor, tuple[int, ...]]:
    if x.ndim == 1 and x.dtype == dtype and x.is_contiguous():
        return x.unsqueeze(0), ()  # one signal: a view, no copies (per-call cost of short signals)
    xt = x if dim == x.ndim - 1 else x.movedim(dim, -1)
    batch = tuple(xt.shape[:-1])
    return xt.reshape(-1, xt.shape[-1]).to(dtype).contiguous(), batch


def _from_rows(r: Tensor, batch: tuple[int, ...], dim: int) -> Tensor:
    # contiguous like pywt's arrays (free for dim=-1), so callers may .view() them
    out = r.reshape(*batch, r.shape[-1])
    return (out if dim == out.ndim - 1 else out.movedim(-1, dim)).contiguous()


# ------------------------------------------------------------------ small signals
#: Signals of at most SMALL_N positions, in calls of at most SMALL_MACS multiply-adds,
#: run as one gather-multiply-sum over the nonzeros of the transform's cached matrix instead
#: of one torch op per filter tap and level: for a short signal, op dispatch (microseconds
#: each) and not arithmetic is the cost. Every mode is linear, so the matrix is exact; it is
#: built once, in float64, by the row code itself applied to the identity. Larger calls keep
#: the tap-by-tap path, whose work grows with F rather than with n.
#: (Measured at 256 samples, db4, one signal: the dense broadcast product in pieces took
#: 49 us, one dense matmul 11 us (median; it may wake a second BLAS thread, milliseconds on an
#: oversubscribed machine), the banded gather ~8 us.)
SMALL_N = 256
SMALL_MACS = 2**17
#: Gather plans up to this many elements (K nonzeros x outputs); a denser matrix is applied
#: as a broadcast product up to GRAIN elements (torch keeps those on the calling thread),
#: else as one matmul.
GATHER_ELEMENTS = 4096
GRAIN = 2**15 - 1


def _small(n_rows: int, n_in: int, n_out: int) -> bool:
    return max(n_in, n_out) <= 2 * SMALL_N and n_rows * n_in * n_out <= SMALL_MACS


def _plan(m: Float[Tensor, "k j"]) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """``m`` and, when its columns have few nonzeros, ``(idx, w)`` with
    ``x @ m == (x[:, idx] * w).sum(-1)``.

    A single-level DWT matrix is banded (an output reads about F inputs), so gathering the
    nonzeros is three small ops over ~F n elements. Deep levels fill the matrix (a coarse
    coefficient reads ~F 2^J inputs): there one dense product wins.
    """
    nz = m != 0
    k = max(int(nz.sum(0).max()), 1)
    if k * m.shape[1] > GATHER_ELEMENTS:
        return m, None
    # a stable sort puts each column's nonzero rows first, in row order
    idx = torch.sort((~nz).to(torch.int8), dim=0, stable=True).indices[:k].T.contiguous()
    return m, (idx, m.gather(0, idx.T).T.contiguous())


def _product(x: Float[Tensor, "rows k"], plan: tuple[Tensor, tuple[Tensor, Tensor] | None]) -> Float[Tensor, "rows j"]:
    # in float64, rounded once: a matrix entry can be a large sum with cancellation (smooth
    # extension of a 2-sample signal by a 64-tap filter), which float32 entries would not hold
    m, gather = plan
    x64 = x if x.dtype == torch.float64 else x.to(torch.float64)
    if x.shape[0] * m.shape[0] * m.shape[1] <= GRAIN:
        out = (x64[:, :, None] * m).sum(1)  # tiny: one broadcast op beats an index plan
    elif gather is not None:
        idx, w = gather
        out = (x64[:, idx] * w).sum(-1)
    else:
        out = x64 @ m
    return out if x.dtype == torch.float64 else out.to(x.dtype)


@functools.lru_cache(maxsize=64)
def _analysis_matrix(bank: _Bank, mode: str, n: int, level: int, device: torch.device) -> tuple[tuple[Tensor, tuple[Tensor, Tensor] | None], tuple[int, ...]]:
    """Plan (:func:`_plan`) of ``M`` with ``wavedec(x) == split(x @ M)`` for length-``n`` rows, and the split sizes."""
    op, sizes = _analysis_op(bank, mode, n, level)
    return _plan(op.to_dense().T.contiguous().to(device=device)), sizes


@functools.lru_cache(maxsize=64)
def _synthesis_matrix(bank: _Bank, mode: str, lengths: tuple[int, ...], device: torch.device) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Plan (:func:`_plan`) of ``M`` with ``waverec(coeffs) == cat(coeffs) @ M`` for coefficient lengths ``lengths``."""
    return _plan(_synthesis_op(bank, mode, lengths, None).to_dense().T.contiguous().to(device=device))


#: Identity rows transformed at a time when a sparse operator is built (the dense identity of a
#: 32k-token signal would be 8 GiB; chunks of it are a few MiB).
_OPERATOR_CHUNK_BYTES = 2**25


def _sparse_rows(fn, n_in: int) -> Tensor:
    """``M`` with ``fn(x) == x @ M`` for rows ``x`` of ``n_in`` entries, as a sparse CSR
    ``M.T`` (float64, CPU): ``fn`` applied to the identity a chunk of rows at a time, its
    exact zeros dropped. Every extension mode is linear, so the matrix is the transform."""
    step = max(1, _OPERATOR_CHUNK_BYTES // (8 * max(n_in, 1)))
    rows, cols, vals, n_out = [], [], [], 0
    for i0 in range(0, n_in, step):
        k = min(step, n_in - i0)
        eye = torch.zeros(k, n_in, dtype=torch.float64)
        eye[torch.arange(k), torch.arange(i0, i0 + k)] = 1.0
        out = fn(eye)
        n_out = out.shape[-1]
        i, j = out.nonzero(as_tuple=True)
        rows.append(j)
        cols.append(i + i0)
        vals.append(out[i, j])
    idx = torch.stack([torch.cat(rows), torch.cat(cols)])
    return to_csr(torch.sparse_coo_tensor(idx, torch.cat(vals), (n_out, n_in), check_invariants=True).coalesce())


def to_csr(coo: Tensor) -> Tensor:
    """A sparse COO tensor as CSR, without torch's "sparse CSR support is in beta" warning
    (the products used here, CSR @ dense, are long stable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


@functools.lru_cache(maxsize=16)
def _analysis_op(bank: _Bank, mode: str, n: int, level: int) -> tuple[Tensor, tuple[int, ...]]:
    sizes = tuple(c.shape[-1] for c in _wavedec_rows(torch.zeros(1, n, dtype=torch.float64), bank, level, mode))
    return _sparse_rows(lambda x: torch.cat(_wavedec_rows(x, bank, level, mode), -1), n), sizes


@functools.lru_cache(maxsize=16)
def _synthesis_op(bank: _Bank, mode: str, sizes: tuple[int, ...], n: int | None) -> Tensor:
    def rec(x):
        return _waverec_rows(list(x.split(sizes, dim=-1)), bank, mode)[:, :n]

    return _sparse_rows(rec, sum(sizes))


def analysis_operator(wavelet: str, mode: str, n: int, level: int) -> tuple[Tensor, tuple[int, ...]]:
    """``(A, sizes)``: the sparse CSR matrix ``A`` [sum(sizes), n] (float64, CPU) with
    ``cat(wavedec(x, wavelet, mode, level)) == (A @ x.T).T`` for rows of ``n`` positions,
    and the band sizes ``[cA_J, cD_J, ..., cD_1]``. About ``F n`` nonzeros: a DWT of many
    signals is then one sparse product (one kernel on a GPU) instead of a loop over levels.
    The small-signal matrices of :func:`wavedec` are this operator, dense."""
    return _analysis_op(_bank(wavelet), _check_mode(mode), n, level)


def synthesis_operator(wavelet: str, mode: str, sizes: tuple[int, ...], n: int) -> Tensor:
    """The sparse CSR matrix ``R`` [n, sum(sizes)] (float64, CPU) with
    ``waverec(coeffs)[..., :n] == (R @ cat(coeffs).T).T`` for bands of ``sizes``."""
    return _synthesis_op(_bank(wavelet), _check_mode(mode), tuple(sizes), n)


def _analyse(rows: Float[Tensor, "rows n"], bank: _Bank, level: int, mode: str) -> list[Tensor]:
    """``[cA_J, cD_J, ..., cD_1]`` of every row: one matrix product for small inputs."""
    n = rows.shape[-1]
    if n <= SMALL_N and _small(rows.shape[0], n, n + level * bank.flen):
        m, sizes = _analysis_matrix(bank, mode, rows.shape[-1], level, rows.device)
        return list(_product(rows, m).split_with_sizes(sizes, dim=-1))
    if rows.device.type in CONV_DEVICES:
        return _conv_wavedec(rows, bank, level, mode)
    parts = [_wavedec_rows(chunk, bank, level, mode) for chunk in _row_chunks(rows)]
    return [torch.cat(c, dim=0) if len(c) > 1 else c[0] for c in zip(*parts)]


def _synthesise(rows: list[Float[Tensor, "rows _"]], bank: _Bank, mode: str) -> Float[Tensor, "rows n"]:
    """The inverse of :func:`_analyse`: one matrix product for small inputs."""
    lengths = tuple(r.shape[-1] for r in rows)
    if _small(rows[0].shape[0], sum(lengths), sum(lengths)):
        m = _synthesis_matrix(bank, mode, lengths, rows[0].device)
        return _product(torch.cat(rows, dim=-1), m)
    if rows[0].device.type in CONV_DEVICES:
        return _waverec_rows(rows, bank, mode, _conv_idwt_rows)
    chunks = zip(*(_row_chunks(r, width=rows[-1].shape[-1] * 2) for r in rows))
    out = [_waverec_rows(list(c), bank, mode) for c in chunks]
    return torch.cat(out, dim=0) if len(out) > 1 else out[0]


# ------------------------------------------------------------------ public DWT
def dwt(
    data: Float[Tensor, "*batch n"],
    wavelet="db2",
    mode: str = "symmetric",
    axis: int | None = None,
    *,
    dim: int | None = None,
) -> tuple[Float[Tensor, "*batch m"], Float[Tensor, "*batch m"]]:
    """Single-level DWT along ``axis``: ``(cA, cD)``, equal to ``pywt.dwt``.

    Parameters
    ----------
    data : Tensor
        Real floating tensor; every dim but ``axis`` is a batch dim.
    wavelet : str or pywt.Wavelet
        Any name in ``pywt.wavelist(kind="discrete")`` or a discrete ``pywt.Wavelet``.
    mode : str
        Signal extension mode, one of :data:`MODES`.
    axis : int, optional
        The position axis (default -1).
    dim : int, optional
        Torch-style alias of ``axis``.

    Returns
    -------
    (cA, cD) : tuple of Tensor
        ``m = (n + F - 1) // 2`` samples each along ``axis`` (``ceil(n / 2)`` for
        ``mode="periodization"``).

    Examples
    --------
    >>> import torch
    >>> cA, cD = dwt(torch.tensor([1.0, 2.0, 3.0, 4.0]), "haar")
    >>> [round(v, 4) for v in cA.tolist()], [round(v, 4) for v in cD.tolist()]
    ([2.1213, 4.9497], [-0.7071, -0.7071])
    """
    bank, mode = _bank(wavelet), _check_mode(mode)
    dtype, dim = _work_dtype(data, names=("data",)), _check_dim(data, _axis(axis, dim))
    if data.shape[dim] < 1:
        raise ValueError("data: the transformed dim is empty: a DWT needs at least 1 position.")
    rows, batch = _to_rows(data, dim, dtype)
    if mode in ("reflect", "antireflect", "smooth") and rows.shape[-1] < 2 or rows.shape[0] == 0:
        parts = _dwt_rows(rows, bank, mode)  # the row code's errors and edge cases, uncached
    else:
        parts = _analyse(rows, bank, 1, mode)
    return tuple(_from_rows(c, batch, dim) for c in parts)


def idwt(
    cA: Float[Tensor, "*batch m"],
    cD: Float[Tensor, "*batch m"],
    wavelet="db2",
    mode: str = "symmetric",
    axis: int | None = None,
    *,
    dim: int | None = None,
) -> Float[Tensor, "*batch n"]:
    """Single-level inverse DWT along ``axis``, equal to ``pywt.idwt(cA, cD)``.

    Parameters
    ----------
    cA, cD : Tensor
        Approximation and detail coefficients of one shape.
    wavelet : str or pywt.Wavelet
        The wavelet of the forward transform.
    mode : str
        Signal extension mode, one of :data:`MODES`.
    axis : int, optional
        The position axis (default -1).
    dim : int, optional
        Torch-style alias of ``axis``.

    Returns
    -------
    Tensor
        ``2m - F + 2`` samples along ``axis`` (``2m`` for ``mode="periodization"``); away
        from periodization the mode does not enter the inverse, exactly as in pywt.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    >>> torch.allclose(idwt(*dwt(x, "db2"), "db2"), x)
    True
    """
    bank, mode = _bank(wavelet), _check_mode(mode)
    dtype, dim = _work_dtype(cA, cD, names=("cA", "cD")), _check_dim(cA, _axis(axis, dim))
    if cA.shape != cD.shape:
        raise ValueError(f"cA and cD must have the same shape, got {tuple(cA.shape)} and {tuple(cD.shape)}.")
    a, batch = _to_rows(cA, dim, dtype)
    d, _ = _to_rows(cD, dim, dtype)
    if mode != "periodization" and a.shape[-1] < bank.flen // 2 or a.shape[0] == 0:
        return _from_rows(_idwt_rows(a, d, bank, mode), batch, dim)  # the row code's error, uncached
    return _from_rows(_synthesise([a, d], bank, mode), batch, dim)


def wavedec(
    data: Float[Tensor, "*batch n"],
    wavelet="db2",
    mode: str = "symmetric",
    level: int | None = None,
    axis: int | None = None,
    *,
    dim: int | None = None,
) -> list[Float[Tensor, "*batch _"]]:
    """Multilevel DWT along ``axis``, equal to ``pywt.wavedec`` coefficient for coefficient.

    The arguments are PyWavelets': ``wavedec(data, wavelet, mode='symmetric',
    level=None, axis=-1)``, with ``dim`` accepted as the torch-style name of ``axis``.

    Parameters
    ----------
    data : Tensor
        Real floating tensor; every dim but ``axis`` is a batch dim. float16/bfloat16
        are computed and returned in float32.
    wavelet : str or pywt.Wavelet
        Any name in ``pywt.wavelist(kind="discrete")`` or a discrete ``pywt.Wavelet``.
    mode : str
        Signal extension mode, one of :data:`MODES`.
    level : int or None
        Number of levels; ``None`` means :func:`dwt_max_level`. Unlike pywt (which
        warns), a level deeper than ``dwt_max_level`` raises.
    axis : int, optional
        The position axis (default -1).
    dim : int, optional
        Torch-style alias of ``axis``.

    Returns
    -------
    list of Tensor
        ``[cA_J, cD_J, ..., cD_1]``, each shaped like ``x`` with ``dim`` resized.

    Examples
    --------
    >>> import numpy as np, pywt, torch
    >>> x = torch.randn(3, 40, dtype=torch.float64)
    >>> ours = wavedec(x, "sym4", "periodic", 2)           # pywt's positional order
    >>> ref = pywt.wavedec(x.numpy(), "sym4", level=2, mode="periodic")
    >>> all(np.allclose(a.numpy(), b, rtol=0, atol=1e-12) for a, b in zip(ours, ref))
    True
    """
    bank, mode = _bank(wavelet), _check_mode(mode)
    dtype, dim = _work_dtype(data, names=("data",)), _check_dim(data, _axis(axis, dim))
    level = _resolve_level(level, data.shape[dim], bank)
    rows, batch = _to_rows(data, dim, dtype)
    if level == 0:  # pywt returns the data itself; a copy lets callers mutate it
        return [_from_rows(rows.clone(), batch, dim)]
    if rows.shape[0] == 0:
        return [_from_rows(c, batch, dim) for c in _wavedec_rows(rows, bank, level, mode)]
    return [_from_rows(c, batch, dim) for c in _analyse(rows, bank, level, mode)]


def _wavedec_rows(rows: Float[Tensor, "rows n"], bank: _Bank, level: int, mode: str) -> list[Tensor]:
    details = []
    for _ in range(level):
        rows, d = _dwt_rows(rows, bank, mode)
        details.append(d)
    return [rows, *details[::-1]]


def waverec(
    coeffs: list[Float[Tensor, "*batch _"]],
    wavelet="db2",
    mode: str = "symmetric",
    axis: int | None = None,
    *,
    dim: int | None = None,
) -> Float[Tensor, "*batch n"]:
    """Multilevel inverse DWT, equal to ``pywt.waverec``.

    Parameters
    ----------
    coeffs : list of Tensor
        ``[cA_J, cD_J, ..., cD_1]`` as from :func:`wavedec`.
    wavelet : str or pywt.Wavelet
        The wavelet of the forward transform.
    mode : str
        Signal extension mode, one of :data:`MODES`.
    axis : int, optional
        The position axis (default -1).
    dim : int, optional
        Torch-style alias of ``axis``.

    Returns
    -------
    Tensor
        The signal. As in pywt, an approximation one sample longer than the next detail
        band is trimmed, so an odd-length signal comes back with one extra sample (take
        ``[..., :n]``).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 33, dtype=torch.float64)
    >>> y = waverec(wavedec(x, "db3"), "db3")
    >>> y.shape[-1], torch.allclose(y[..., :33], x)
    (34, True)
    """
    bank, mode = _bank(wavelet), _check_mode(mode)
    if not isinstance(coeffs, (list, tuple)):
        raise TypeError(f"coeffs must be a list [cA_J, cD_J, ..., cD_1] as returned by wavedec, got {type(coeffs).__name__}.")
    if len(coeffs) < 1:
        raise ValueError("coeffs is empty: pass the list [cA_J, cD_J, ..., cD_1] as returned by wavedec.")
    names = tuple(f"coeffs[{i}]" for i in range(len(coeffs)))
    dtype, dim = _work_dtype(*coeffs, names=names), _check_dim(coeffs[0], _axis(axis, dim))
    shapes = [tuple(c.movedim(dim, -1).shape[:-1]) for c in coeffs]
    if len(set(shapes)) != 1:
        raise ValueError(f"coeffs: all coefficient arrays need the same batch shape; got {[tuple(c.shape) for c in coeffs]}.")
    rows = [_to_rows(c, dim, dtype)[0] for c in coeffs]
    if len(rows) == 1:
        return _from_rows(rows[0].clone(), shapes[0], dim)
    if rows[0].shape[0] == 0:
        return _from_rows(_waverec_rows(rows, bank, mode), shapes[0], dim)
    return _from_rows(_synthesise(rows, bank, mode), shapes[0], dim)


def _waverec_rows(rows: list[Float[Tensor, "rows _"]], bank: _Bank, mode: str, idwt_rows=None) -> Float[Tensor, "rows n"]:
    idwt_rows = _idwt_rows if idwt_rows is None else idwt_rows
    a = rows[0]
    for j, d in enumerate(rows[1:]):
        if a.shape[-1] == d.shape[-1] + 1:
            a = a[:, :-1]
        elif a.shape[-1] != d.shape[-1]:
            raise ValueError(
                f"coeffs: coefficient length mismatch at entry {j + 1}: approximation has {a.shape[-1]}, detail has "
                f"{d.shape[-1]}. Pass the list exactly as wavedec returned it (zero bands with torch.zeros_like)."
            )
        a = idwt_rows(a, d, bank, mode)
    return a


# ------------------------------------------------------------------ accelerators: one convolution per level
#: Devices whose large transforms run as one strided convolution per level (ptwt's way) instead
#: of one fused multiply-add per filter tap: on a GPU each op is a kernel launch, and the tap
#: loop (about 40 ops a level) is launch-bound. On the CPU the tap loop is faster (mkldnn
#: handles these 1-channel convolutions badly; see the filtering note above).
CONV_DEVICES = ("cuda", "xpu", "mps")


@functools.lru_cache(maxsize=64)
def _conv_weights(bank: _Bank, kind: str) -> Tensor:
    """Float64 host weights: ``"dec"`` [2, 1, F] (flipped analysis filters, lo and hi), ``"rec"``
    [2, 2, F/2] (output phase p reads a and d through flipped taps ``rec[p::2]``)."""
    if kind == "dec":
        return torch.tensor([bank.dec_lo[::-1], bank.dec_hi[::-1]], dtype=torch.float64, device="cpu")[:, None, :]
    w = [[bank.rec_lo[p::2][::-1], bank.rec_hi[p::2][::-1]] for p in (0, 1)]
    return torch.tensor(w, dtype=torch.float64, device="cpu")


def _conv(x: Tensor, w: Tensor, stride: int) -> Tensor:
    """``conv1d`` in x's dtype with TF32 off: float32 convolutions on NVIDIA GPUs default to
    10-bit mantissas, which would lose PyWavelets' agreement (1e-7 -> 1e-3)."""
    w = _on_device(w, x.device).to(x.dtype)
    if x.device.type != "cuda":
        return torch.nn.functional.conv1d(x, w, stride=stride)
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False):
        return torch.nn.functional.conv1d(x, w, stride=stride)


def _conv_dwt_rows(x: Float[Tensor, "rows n"], bank: _Bank, mode: str) -> tuple[Tensor, Tensor]:
    """:func:`_dwt_rows` as one stride-2 convolution of the extended signal with both filters."""
    n, flen = x.shape[-1], bank.flen
    if mode in ("reflect", "antireflect") and n < 2:
        raise ValueError(f"mode={mode!r} needs at least 2 positions per level (as pywt), got {n}: use another mode.")
    if mode == "periodization":
        n_out, lo, first = (n + 1) // 2, 1 - flen // 2, flen // 2
    else:
        n_out, lo, first = (n + flen - 1) // 2, 2 - flen, 1
    hi = first + 2 * (n_out - 1)
    # ext covers positions lo..hi; out[o] = sum_j taps[j] ext(first + 2o - j), and first - lo = F - 1
    ext = torch.cat([_pad(x, n, mode, tuple(range(lo, 0))), x[:, : hi + 1], _pad(x, n, mode, tuple(range(n, hi + 1)))], -1)
    out = _conv(ext[:, None, :], _conv_weights(bank, "dec"), 2)
    return out[:, 0], out[:, 1]


def _conv_wavedec(rows: Float[Tensor, "rows n"], bank: _Bank, level: int, mode: str) -> list[Tensor]:
    details = []
    for _ in range(level):
        rows, d = _conv_dwt_rows(rows, bank, mode)
        details.append(d)
    return [rows, *details[::-1]]


def _conv_idwt_rows(a: Float[Tensor, "rows m"], d: Float[Tensor, "rows m"], bank: _Bank, mode: str) -> Tensor:
    """:func:`_idwt_rows` as one convolution: sample 2k+p = sum_j g_p[j] c[k + F/2 - 1 - j]."""
    m, half = a.shape[-1], bank.flen // 2
    if mode == "periodization":
        idx = _on_device(_wrap_index(m, half), a.device)
        a, d = a.index_select(-1, idx), d.index_select(-1, idx)
        shift = (1 if half % 2 == 0 else 0) - 2 * (bank.flen // 4)
    elif m < half:
        raise ValueError(
            f"{bank.name or 'wavelet'} reconstruction needs at least {half} coefficients per band, got {m}: "
            "pass coefficients as returned by wavedec."
        )
    else:
        shift = 0
    phases = _conv(torch.stack([a, d], 1), _conv_weights(bank, "rec"), 1)  # [rows, 2, count]
    out = rearrange(phases, "r p k -> r (k p)")
    return torch.roll(out, shifts=shift, dims=-1) if shift else out


@functools.lru_cache(maxsize=256)
def _wrap_index(m: int, half: int) -> Tensor:
    return torch.arange(-(half - 1), m, device="cpu") % m


def band_labels(level: int) -> list[str]:
    """Names of the bands in coefficient order: ``["A5", "D5", ..., "D1"]``.

    Examples
    --------
    >>> band_labels(2)
    ['A2', 'D2', 'D1']
    """
    level = check_int(level, "level", minimum=0)
    return [f"A{level}"] + [f"D{j}" for j in range(level, 0, -1)]


def band_energy(
    data: Float[Tensor, "*batch n"],
    wavelet="db2",
    mode: str = "symmetric",
    level: int | None = None,
    axis: int | None = None,
    *,
    dim: int | None = None,
) -> Float[Tensor, "*batch bands"]:
    """Sum of squared DWT coefficients per band, band axis last (``axis`` removed).

    Arguments as :func:`wavedec`. Bands in :func:`band_labels` order. With an orthogonal
    wavelet and ``mode="periodization"`` (and ``n`` divisible by ``2**level``) the bands
    add up to ``(x**2).sum(axis)`` (Parseval).

    Parameters
    ----------
    data, wavelet, mode, level, axis, dim
        As :func:`wavedec`.

    Returns
    -------
    Tensor
        ``[*batch, level + 1]``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(4, 64, dtype=torch.float64)
    >>> e = band_energy(x, "db4", "periodization", 3)
    >>> e.shape, torch.allclose(e.sum(-1), x.pow(2).sum(-1))
    (torch.Size([4, 4]), True)
    """
    axis = _axis(axis, dim)
    axis = _check_dim(data, axis) if isinstance(data, Tensor) else axis
    coeffs = wavedec(data, wavelet, mode, level, axis)
    return torch.stack([c.pow(2).sum(axis) for c in coeffs], dim=-1)


# ------------------------------------------------------------------ causal bands
@functools.lru_cache(maxsize=None)
def _causal_filter(bank: _Bank) -> tuple[float, ...]:
    h = np.asarray(bank.rec_lo, dtype=np.float64)
    nz = np.flatnonzero(h)
    # pywt zero-pads biorthogonal filters to a common length; the padding is not part
    # of the filter, and leading zeros would only delay every band
    h = h[nz[0] : nz[-1] + 1]
    if abs(h.sum()) < 1e-12:
        raise ValueError(f"{bank.name}: low-pass filter has zero DC gain; cannot normalise it to sum 1.")
    return tuple(h / h.sum())


def causal_bands(
    x: Float[Tensor, "*batch n"], wavelet="haar", level: int = 5, dim: int = -1
) -> Float[Tensor, "bands *batch n"]:
    """Causal a-trous decomposition: ``[A_J, D_J, ..., D_1]`` on a new first dim.

    ``S_0 = x``; ``S_j(t) = sum_i h_i S_{j-1}(t - i 2^(j-1))`` with ``h`` the wavelet's
    ``rec_lo`` (the reversed ``dec_lo``: for db wavelets the minimum-phase side, so the
    smoothing sits at small lags; pywt's zero padding of bior/rbio filters is stripped)
    normalised to sum 1, and zeros before ``t = 0``; ``D_j = S_{j-1} - S_j``,
    ``A_J = S_J``. The bands sum exactly to ``x`` and band values at ``t`` depend only
    on ``x[..., :t+1]``. Any ``level >= 0`` works for any length (deep levels just see
    zeros). float16/bfloat16 are computed and returned in float32.

    Parameters
    ----------
    x : Tensor
        Real floating tensor; every dim but ``dim`` is a batch dim.
    wavelet : str or pywt.Wavelet
        The wavelet whose low-pass filter smooths (normalised to sum 1).
    level : int
        ``J >= 0``, the number of detail bands.
    dim : int
        The position axis.

    Returns
    -------
    Tensor
        ``[J + 1, *x.shape]``: ``A_J, D_J, ..., D_1`` on a new first dim.

    Examples
    --------
    >>> import torch
    >>> b = causal_bands(torch.tensor([4.0, 0.0, 0.0, 0.0]), "haar", level=1)
    >>> b.tolist()   # A1 is the running 2-sample mean, D1 the remainder
    [[2.0, 2.0, 0.0, 0.0], [2.0, -2.0, 0.0, 0.0]]
    """
    bank = _bank(wavelet)
    level = check_int(level, "level", minimum=0)
    dtype, dim = _work_dtype(x, names=("x",)), _check_dim(x, dim, "dim")
    rows, batch = _to_rows(x, dim, dtype)
    n, h = rows.shape[-1], _causal_filter(bank)
    s_prev, details = rows, []
    for j in range(1, int(level) + 1):
        step = 2 ** (j - 1)
        taps = tuple(hi for i, hi in enumerate(h) if i * step < n)  # lags >= n only meet zeros
        pad = max(len(taps) - 1, 0) * step
        s = _fir(F.pad(s_prev, (pad, 0)), taps, pad, n, dilation=step)  # zeros before t = 0
        details.append(s_prev - s)
        s_prev = s
    bands = torch.stack([s_prev, *details[::-1]], dim=0)  # [bands, rows, n]
    return bands.reshape(bands.shape[0], *batch, n).movedim(-1, dim + 1).contiguous()


@functools.lru_cache(maxsize=64)
def _anchor_kernels(bank: _Bank, level: int, n: int) -> Tensor:
    # the bands of a unit impulse at t = 0 are the kernels (linear, shift-invariant)
    delta = torch.zeros(n, dtype=torch.float64, device="cpu")
    delta[0] = 1.0
    return causal_bands(delta, _as_wavelet(bank), level)


def causal_anchor_kernels(
    wavelet="haar", level: int = 5, n: int = 256, *, dtype: torch.dtype = torch.float64, device=None
) -> Float[Tensor, "bands n"]:
    """``K[b, d]`` with ``causal_bands(x)[b, t] == sum_d K[b, d] * x[t - d]``.

    ``d`` counts positions back from the anchor (the query): row ``b`` turns an
    offset-aligned signal ``r(d) = x[t - d]`` into band ``b``'s value at ``t``. Exact for
    every ``t`` when ``x`` is zero before 0 (``r(d) = 0`` for ``d > t``). Cached; a fresh
    copy is returned.

    Examples
    --------
    >>> K = causal_anchor_kernels("haar", level=2, n=4)
    >>> K.tolist()
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, -0.25, -0.25], [0.5, -0.5, 0.0, 0.0]]
    """
    bank = _bank(wavelet)
    n = check_int(n, "n", minimum=1)
    level = check_int(level, "level", minimum=0)
    return _anchor_kernels(bank, int(level), int(n)).to(dtype=dtype, device=device, copy=True)


def min_length(wavelet="db2", level: int = 5) -> int:
    """Fewest positions a DWT of ``level`` levels accepts: ``(F - 1) * 2**level``.

    The inverse of :func:`dwt_max_level`; used to tell users how long a sequence must be.

    >>> min_length("db2", 5)
    96
    """
    return _min_length(_bank(wavelet), check_int(level, "level", minimum=0))
