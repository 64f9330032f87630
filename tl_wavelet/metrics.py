"""Per-signal metrics of attention signals (pure functions on tensors; no hooks, no model).

Every metric takes signals ``x`` of shape ``[*batch, n]`` whose last axis is position
(or offset from the query) and returns one value per signal, ``[*batch]``, or a small
vector per signal, ``[*batch, k]``. Where a ``lengths`` argument exists it is an integer
tensor broadcastable to ``*batch``: entries at index ``>= length`` are padding and never
count. Computation runs in float64; results come back in the input's dtype when that is
float32/float64, float32 otherwise.

Degenerate signals never produce NaN. The value each metric returns for an all-zero
(zero-energy) signal is documented on the function and in ``docs/metrics.md``.
See ``docs/metrics.md`` for each metric's formula, the paper's definition, the gap
between them, and the choice made here.
"""
from __future__ import annotations

import math

import torch
from einops import einsum, rearrange
from jaxtyping import Float, Int
from torch import Tensor

from . import transforms as _tf
from .transforms import dwt_max_level, wavedec, waverec
from .validate import resolve_level

__all__ = [
    "anchored_bands",
    "anchored_band_energy",
    "dwt_band_energy",
    "band_shares",
    "full_depth",
    "fold_bands",
    "band_scales",
    "characteristic_scale",
    "power_spectrum",
    "spectral_band_shares",
    "spectral_entropy",
    "frequency_selectivity",
    "positional_entropy",
    "wavelet_entropy",
    "uncertainty",
    "pearson",
    "pearson_from_moments",
    "scale_sensitivity",
    "reconstruction_error",
]

_F64 = torch.float64
# Relative energy below which a part of a signal is float64 round-off, not content
# (round-off amplitudes are ~1e-16 of the signal, i.e. ~1e-32 in energy).
_ROUNDOFF = 1e-24


# --------------------------------------------------------------------------- helpers
def _out_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _check_signal(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have at least one axis (positions last); got a scalar")
    if x.is_complex():
        raise TypeError(f"{name} must be real; take .abs() or .real first")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf; clean the signal before measuring it")


def _lengths(x: Tensor, lengths) -> Tensor:
    """Valid length of every signal, expanded to ``x.shape[:-1]``; validated."""
    n = x.shape[-1]
    if lengths is None:
        return torch.full(x.shape[:-1], n, dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths, device=x.device)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got {lengths.dtype}; use .long()")
    try:
        lengths = torch.broadcast_to(lengths.long(), x.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"lengths of shape {tuple(lengths.shape)} does not broadcast to the batch shape "
            f"{tuple(x.shape[:-1])} of x (all axes but the last)"
        ) from err
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > n):
        raise ValueError(f"lengths must lie in [0, {n}] (n = x.shape[-1]); got "
                         f"min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths


def _full_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    """``lengths`` broadcast to ``x.shape[:-1]`` (``None``: every signal full), unchecked:
    the cores' form, for lengths the caller made itself (no host round trip)."""
    if lengths is None:
        return torch.full(x.shape[:-1], x.shape[-1], dtype=torch.long, device=x.device)
    return torch.broadcast_to(lengths.to(device=x.device, dtype=torch.long), x.shape[:-1])


def _mask(x: Tensor, lengths: Tensor) -> Tensor:
    return torch.arange(x.shape[-1], device=x.device) < lengths.unsqueeze(-1)


def _safe_div(num: Tensor, den: Tensor, fill: float = 0.0) -> Tensor:
    """num / den where den > 0, ``fill`` where den == 0 (no 0/0 NaN)."""
    # Python scalars, not filled tensors: the hooks run these per layer, and on a GPU every
    # filled tensor is one more kernel launch
    ok = den > 0
    if fill == 0.0:  # x / inf = 0: one op fewer
        return num / torch.where(ok, den, math.inf)
    return torch.where(ok, num / torch.where(ok, den, 1.0), fill)


def _xlogx(p: Tensor) -> Tensor:
    # 0 log 0 = 0 by continuity (xlogy's rule); entries <= 0 (round-off below a zero
    # probability) count as 0, as the limit does
    q = p.clamp(min=0)
    return torch.special.xlogy(q, q)


def _resolve_level(level, min_len: int, wavelet) -> int:
    """Check that every signal supports ``level`` DWT levels (or pick the deepest, the paper's rule)."""
    return resolve_level(level, int(min_len), min_length=lambda L: _tf.min_length(wavelet, L), wavelet=str(wavelet),
                         minimum=1, signal="shortest signal")


def _per_length_group(x: Tensor, lengths: Tensor, fn, k: int) -> Tensor:
    """Apply ``fn(rows[m, L]) -> [m, k]`` to each group of signals sharing a length.

    A DWT of a padded signal would mix padding into the coefficients, so signals are
    cut to their own length; one batched transform per distinct length keeps it exact.
    """
    flat = rearrange(x.to(_F64), "... n -> (...) n")
    if bool((lengths == x.shape[-1]).all()):  # the common case: no padding anywhere
        return fn(flat).reshape(*x.shape[:-1], k)
    flat_len = rearrange(lengths, "... -> (...)")
    out = torch.zeros(flat.shape[0], k, dtype=_F64, device=x.device)
    for L in torch.unique(flat_len).tolist():
        sel = flat_len == L
        out[sel] = fn(flat[sel, :L])
    return out.reshape(*x.shape[:-1], k)


# ------------------------------------------------------------- anchored decomposition
def anchored_bands(
    offset_signal: Float[Tensor, "*batch n"],
    wavelet: str = "haar",
    level: int = 5,
    lengths: Int[Tensor, "*batch"] | None = None,
) -> Float[Tensor, "*batch bands"]:
    """Signed causal band values at the anchor (the query), ``b = K @ r``.

    ``r(d)`` is attention aligned by distance from the query (``d = 0`` the query
    itself). ``K = causal_anchor_kernels(wavelet, level, n)``, so ``b[j]`` is the value
    band ``j`` of ``tl_wavelet.transforms.causal_bands`` takes at the query position.
    Band order ``[A_J, D_J, ..., D_1]``; ``b.sum(-1) == r[..., 0]``.

    Examples
    --------
    >>> import torch
    >>> r = torch.tensor([0., 1., 0., 0.])        # previous-token head
    >>> anchored_bands(r, "haar", level=2).tolist()
    [0.25, 0.25, -0.5]
    """
    _check_signal(offset_signal, "offset_signal")
    return _anchored_bands(offset_signal, wavelet, level, _lengths(offset_signal, lengths)).to(_out_dtype(offset_signal))


def _anchored_bands(offset_signal: Tensor, wavelet: str, level: int, lengths: Tensor | None) -> Tensor:
    """anchored_bands' core (float64; ``lengths`` None: every signal full)."""
    r = offset_signal.to(_F64)
    if lengths is not None:
        r = r * _mask(offset_signal, lengths)
    K = _tf.causal_anchor_kernels(wavelet, level, r.shape[-1], dtype=_F64, device=r.device)
    return einsum(r, K, "... d, b d -> ... b")


def anchored_band_energy(
    offset_signal: Float[Tensor, "*batch n"],
    wavelet: str = "haar",
    level: int = 5,
    lengths: Int[Tensor, "*batch"] | None = None,
    fold_coarse: bool = True,
) -> Float[Tensor, "*batch bands"]:
    """Energy per causal band at the anchor, ``[..., level+1]`` in order A_J, D_J .. D_1.

    Which scale a head looks back at: a previous-token head (``r = delta_1``) is dominant
    in D1, a spike at offset k in the dyadic band ``D_m``, ``2^(m-1) <= k < 2^m``,
    attention uniform over a long prefix in ``A_J``.

    The kernels of a level-J decomposition only reach ``(F-1)(2^J-1)`` offsets back, so
    attention further back would be invisible. With ``fold_coarse`` (default) the
    decomposition runs to the full depth ``ceil(log2 n)`` and the energy of every level
    deeper than J is added to ``A_J``: attention far back then counts as coarse-scale, as
    it should. ``fold_coarse=False`` gives the plain level-J energies ``anchored_bands**2``.

    Examples
    --------
    >>> import torch
    >>> anchored_band_energy(torch.tensor([0., 1., 0., 0.]), "haar", level=2).tolist()
    [0.0625, 0.0625, 0.25]
    >>> far = torch.zeros(256); far[100] = 1.0      # attention 100 tokens back
    >>> int(anchored_band_energy(far, "haar", level=5).argmax())   # band 0 = A5
    0
    """
    depth = full_depth(offset_signal.shape[-1], level) if fold_coarse else level
    return fold_bands(anchored_bands(offset_signal, wavelet, depth, lengths).pow(2), level)


def full_depth(n: int, level: int) -> int:
    """Depth at which a causal decomposition of n positions reaches every offset: ceil(log2 n)."""
    return max(level, math.ceil(math.log2(max(n, 2))))


def fold_bands(energy: Float[Tensor, "*batch deep"], level: int) -> Float[Tensor, "*batch bands"]:
    """Merge the energies of levels deeper than ``level`` into ``A_level``.

    ``energy`` is ordered [A_L, D_L, ..., D_1] for some L >= level; the result is
    [A_level, D_level, ..., D_1] with ``A_level`` holding A_L + D_L + ... + D_(level+1).

    >>> import torch
    >>> fold_bands(torch.tensor([1., 2., 3., 4.]), 2).tolist()   # A3 D3 D2 D1 -> A2 D2 D1
    [3.0, 3.0, 4.0]
    """
    extra = energy.shape[-1] - 1 - level
    if extra < 0:
        raise ValueError(f"energy has {energy.shape[-1]} bands, fewer than level {level} + 1.")
    if extra == 0:
        return energy
    return torch.cat([energy[..., : extra + 1].sum(-1, keepdim=True), energy[..., extra + 1 :]], dim=-1)


def dwt_band_energy(
    x: Float[Tensor, "*batch n"],
    wavelet: str = "db2",
    level: int | None = 5,
    mode: str = "symmetric",
    lengths: Int[Tensor, "*batch"] | None = None,
) -> Float[Tensor, "*batch bands"]:
    """Sum of squared DWT coefficients per band ``[A_J, D_J, ..., D_1]`` (the paper's view).

    Each signal is transformed over its own valid length (signals are grouped by length,
    one batched DWT per group). ``level=None`` picks the deepest level the shortest
    signal supports (the paper's rule); a ``level`` deeper than some signal supports
    raises ``ValueError``.

    Examples
    --------
    >>> import torch
    >>> e = dwt_band_energy(torch.ones(8), "haar", level=3)
    >>> [round(v, 6) for v in e.tolist()]
    [8.0, 0.0, 0.0, 0.0]
    """
    _check_signal(x)
    lengths = _lengths(x, lengths)
    level = _resolve_level(level, int(lengths.min()) if lengths.numel() else x.shape[-1], wavelet)
    return _per_length_group(x, lengths, lambda rows: _dwt_band_energy(rows, wavelet, level, mode), level + 1
                             ).to(_out_dtype(x))


def _dwt_band_energy(rows: Tensor, wavelet: str, level: int, mode: str, coeffs: list[Tensor] | None = None) -> Tensor:
    """dwt_band_energy's core on full-length signals (float64); ``coeffs``: their wavedec, if at hand."""
    coeffs = wavedec(rows.to(_F64), wavelet, mode, level) if coeffs is None else coeffs
    return torch.stack([c.pow(2).sum(-1) for c in coeffs], -1)


# ------------------------------------------------------------ shares and scale
def band_shares(
    energy: Float[Tensor, "*batch bands"], return_valid: bool = False
) -> Float[Tensor, "*batch bands"] | tuple[Tensor, Tensor]:
    """Fraction of the energy in each band, ``energy / energy.sum(-1)``.

    A signal with zero total energy gets all-zero shares (not uniform, not NaN); pass
    ``return_valid=True`` to also get the boolean mask ``total > 0`` that tells them apart.

    Examples
    --------
    >>> import torch
    >>> band_shares(torch.tensor([[1., 3.], [0., 0.]]), return_valid=True)
    (tensor([[0.2500, 0.7500],
            [0.0000, 0.0000]]), tensor([ True, False]))
    """
    _check_signal(energy, "energy")
    if (energy < 0).any():
        raise ValueError("energy must be non-negative (pass squared coefficients or power)")
    e = energy.to(_F64)
    total = e.sum(-1, keepdim=True)
    shares = _safe_div(e, total).to(_out_dtype(energy))
    return (shares, total.squeeze(-1) > 0) if return_valid else shares


def band_scales(level: int) -> Float[Tensor, " bands"]:
    """Representative scale in tokens of each band ``[A_J, D_J, ..., D_1]``.

    ``D_j`` covers look-back offsets ``[2^(j-1), 2^j)``; its geometric centre is
    ``2^(j-0.5)``. ``A_J`` covers ``>= 2^J``; it is given ``2^(J+0.5)``.

    Examples
    --------
    >>> band_scales(2).tolist()
    [5.656854249492381, 2.8284271247461903, 1.4142135623730951]
    """
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    exps = torch.tensor([level + 0.5] + [j - 0.5 for j in range(level, 0, -1)], dtype=_F64, device="cpu")
    return torch.exp2(exps)


def characteristic_scale(
    shares: Float[Tensor, "*batch bands"], level: int
) -> Float[Tensor, "*batch"]:
    """Energy-weighted geometric mean of the band scales, in tokens.

    ``exp2( sum_b s_b log2 scale_b / sum_b s_b )`` with :func:`band_scales`. Shares need
    not be normalised. A signal with zero energy (all shares 0) gets scale 0, which no
    real signal can have (the smallest possible value is ``2^0.5``).

    Examples
    --------
    >>> import torch
    >>> characteristic_scale(torch.tensor([0., 0., 1.]), level=2).item()   # all in D1
    1.4142135381698608
    """
    _check_signal(shares, "shares")
    if shares.shape[-1] != level + 1:
        raise ValueError(f"shares has {shares.shape[-1]} bands but level={level} implies "
                         f"{level + 1} ([A_J, D_J..D_1]); pass the level used to compute them")
    if (shares < 0).any():
        raise ValueError("shares must be non-negative (use band energies or band_shares)")
    s = shares.to(_F64)
    logs = torch.log2(band_scales(level)).to(s.device)
    total = s.sum(-1)
    mean_log = _safe_div((s * logs).sum(-1), total)
    return torch.where(total > 0, torch.exp2(mean_log), torch.zeros_like(total)).to(
        _out_dtype(shares))


# --------------------------------------------------------------------- spectrum
def power_spectrum(
    x: Float[Tensor, "*batch n"],
    lengths: Int[Tensor, "*batch"] | None = None,
    *,
    nfft: int | None = None,
    remove_dc: bool = True,
    window: str = "hann",
) -> tuple[Float[Tensor, "*batch bins"], Float[Tensor, " bins"]]:
    """Hann-windowed, zero-padded power spectrum of each signal over its valid length.

    Each signal ``x[:L]`` (minus its mean over ``[:L]`` when ``remove_dc``) is multiplied
    by ``torch.hann_window(L, periodic=False)``, zero padded to ``nfft`` (default: the
    next power of two ``>= 2 n``) and ``P = |rfft|^2``. With ``remove_dc`` bin 0 is
    dropped. A signal that is constant up to round-off (centred energy below 1e-24 of its
    energy) has exactly zero power; so do signals of length ``<= 2`` (the symmetric
    Hann window of length 2 is ``[0, 0]``; length 1 minus its mean is 0).
    ``window="none"`` uses no window (a rectangular one over each valid length).

    Returns
    -------
    P : Tensor [..., bins]
    freqs : Tensor [bins]
        Frequency of each bin in cycles/token (Nyquist = 0.5).

    Examples
    --------
    >>> import torch
    >>> t = torch.arange(64.)
    >>> P, f = power_spectrum(torch.cos(2 * torch.pi * t / 4))
    >>> f[P.argmax()].item()
    0.25
    """
    _check_signal(x)
    n = x.shape[-1]
    lengths = _lengths(x, lengths)
    if nfft is None:
        nfft = 1 << (2 * n - 1).bit_length()
    if nfft < n:
        raise ValueError(f"nfft={nfft} is shorter than the signals (n={n}); pass nfft >= n")
    if window not in ("hann", "none"):
        raise ValueError(f"window must be 'hann' or 'none', got {window!r}")
    P, freqs = _power_spectrum(x, lengths, nfft, remove_dc, window)
    dt = _out_dtype(x)
    return P.to(dt), freqs.to(dt)


def _power_spectrum(x: Tensor, lengths: Tensor, nfft: int, remove_dc: bool, window: str) -> tuple[Tensor, Tensor]:
    """power_spectrum's core on checked arguments; float64 out.

    The accumulators call it (and the other ``_``-cores below) on signals made from a
    pattern already checked once at the hook: re-checking every derived signal for NaN
    cost the definition multiverse about a tenth of its time.
    """
    n = x.shape[-1]
    mask = None if lengths is None else _mask(x, lengths)
    xf = x.to(_F64) if mask is None else x.to(_F64) * mask
    if remove_dc:
        mean = xf.mean(-1) if mask is None else _safe_div(xf.sum(-1), lengths.to(_F64))
        energy = xf.pow(2).sum(-1, keepdim=True)
        xf = xf - mean.unsqueeze(-1) if mask is None else (xf - mean.unsqueeze(-1)) * mask
        # a constant leaves ulp-level residue after centring; call it exactly zero so that
        # entropy/selectivity see "no power" instead of the spectrum of round-off
        flat = xf.pow(2).sum(-1, keepdim=True) <= _ROUNDOFF * energy
        xf = torch.where(flat, 0.0, xf)
    if mask is None:  # every signal full: one window for all, made once per device
        taper = _full_taper(n, window, x.device)
    elif window == "hann":
        # per-row symmetric Hann window built arithmetically (no loop over rows)
        t = torch.arange(n, dtype=_F64, device=x.device)
        Lm1 = (lengths - 1).clamp(min=1).to(_F64).unsqueeze(-1)
        taper = 0.5 - 0.5 * torch.cos(2 * math.pi * t / Lm1)
        taper = torch.where(lengths.unsqueeze(-1) == 1, torch.ones_like(taper), taper) * mask
    else:
        taper = mask.to(_F64)
    spec = torch.fft.rfft(xf if taper is None else xf * taper, n=nfft)
    P = torch.view_as_real(spec).square().sum(-1)  # re^2 + im^2, in two ops
    freqs = _freqs(nfft, remove_dc, x.device)
    if remove_dc:
        P = P[..., 1:]
    return P, freqs


_TABLES: dict = {}


def _table(key: tuple, make) -> Tensor:
    """A small constant tensor (a window, frequencies, a band indicator) made once per key and device."""
    if key not in _TABLES:
        _TABLES[key] = make()
    return _TABLES[key]


def _full_taper(n: int, window: str, device: torch.device) -> Tensor | None:
    """The taper of full-length signals (None: no window), the arithmetic of the per-row one."""
    if window != "hann":
        return None

    def make():
        t = torch.arange(n, dtype=_F64)
        w = 0.5 - 0.5 * torch.cos(2 * math.pi * t / torch.tensor(float(max(n - 1, 1)), dtype=_F64))
        return (torch.ones_like(w) if n == 1 else w).to(device)

    return _table(("taper", n, device), make)


def _freqs(nfft: int, remove_dc: bool, device: torch.device) -> Tensor:
    f = _table(("freqs", nfft, device), lambda: torch.fft.rfftfreq(nfft, d=1.0, dtype=_F64).to(device))
    return f[1:] if remove_dc else f


def _check_power(P: Tensor) -> Tensor:
    _check_signal(P, "P")
    if (P < 0).any():
        raise ValueError("P must be a non-negative power spectrum (use power_spectrum)")
    return P.to(_F64)


def spectral_band_shares(
    P: Float[Tensor, "*batch bins"], freqs: Float[Tensor, " bins"]
) -> Float[Tensor, "*batch 3"]:
    """Share of power in the low / mid / high band, as fractions of Nyquist (f / 0.5).

    low ``[0, 0.25)``, mid ``[0.25, 0.75)``, high ``[0.75, 1]``; i.e. periods > 8 tokens,
    (8/3, 8], [2, 8/3]. Zero total power gives ``[0, 0, 0]``.

    Examples
    --------
    >>> import torch
    >>> spectral_band_shares(torch.tensor([1., 1., 2.]), torch.tensor([0.05, 0.2, 0.45])).tolist()
    [0.25, 0.25, 0.5]
    """
    P = _check_power(P)
    freqs = torch.as_tensor(freqs, device=P.device).to(_F64)
    if freqs.ndim != 1 or freqs.shape[0] != P.shape[-1]:
        raise ValueError(f"freqs must be 1-D with {P.shape[-1]} entries (one per bin of P); "
                         f"got shape {tuple(freqs.shape)}. Pass the freqs power_spectrum returns")
    if (freqs < 0).any() or (freqs > 0.5).any():
        raise ValueError("freqs must be in cycles/token, within [0, 0.5]")
    return _spectral_band_shares(P, freqs).to(_out_dtype(P))


def _band_members(freqs: Tensor) -> Tensor:
    r = freqs.to(_F64) / 0.5
    return torch.stack([r < 0.25, (r >= 0.25) & (r < 0.75), r >= 0.75], -1).to(_F64)


def _spectral_band_shares(Pd: Tensor, freqs: Tensor, member: Tensor | None = None) -> Tensor:
    """``member``: ``_band_members(freqs)`` when the caller keeps it (the hooks, once per length)."""
    band_power = Pd @ (_band_members(freqs) if member is None else member)
    return _safe_div(band_power, band_power.sum(-1, keepdim=True))


def spectral_entropy(P: Float[Tensor, "*batch bins"]) -> Float[Tensor, "*batch"]:
    """Shannon entropy (nats) of the normalised spectrum ``P / sum P``; 0 for zero power.

    Examples
    --------
    >>> import torch
    >>> round(spectral_entropy(torch.ones(8)).item(), 6) == round(math.log(8), 6)
    True
    """
    return _spectral_entropy(_check_power(P)).to(_out_dtype(P))


def _spectral_entropy(Pd: Tensor) -> Tensor:
    phat = _safe_div(Pd, Pd.sum(-1, keepdim=True))
    return 0.0 - _xlogx(phat).sum(-1)  # not -x: an entropy of 0 reads 0.0, not -0.0


def frequency_selectivity(P: Float[Tensor, "*batch bins"]) -> Float[Tensor, "*batch"]:
    """Peak-to-rest power ratio ``max P / (sum P - max P)``.

    Zero power gives 0; power in a single bin (nothing besides the peak) gives ``inf``.

    Examples
    --------
    >>> import torch
    >>> frequency_selectivity(torch.tensor([1., 4., 1.])).item()
    2.0
    """
    return _frequency_selectivity(_check_power(P)).to(_out_dtype(P))


def _frequency_selectivity(Pd: Tensor) -> Tensor:
    peak = Pd.max(-1).values
    rest = Pd.sum(-1) - peak  # >= 0 but for round-off, which has_rest treats as no rest
    has_rest = rest > 0
    # no rest: inf when there is a peak, 0 for no power at all
    return torch.where(has_rest, peak / torch.where(has_rest, rest, 1.0), torch.where(peak > 0, math.inf, 0.0))


# --------------------------------------------------------------------- entropies
def positional_entropy(
    x: Float[Tensor, "*batch n"],
    lengths: Int[Tensor, "*batch"] | None = None,
    weights: str = "mass",
) -> Float[Tensor, "*batch"]:
    """Shannon entropy (nats) of the position distribution of each signal.

    ``weights="mass"``: ``p = x / sum x`` (x >= 0 required, e.g. attention);
    ``weights="energy"``: ``p = x^2 / sum x^2`` (any sign). ``H = -sum p log p`` over
    valid entries, ``0 log 0 = 0``. A spike gives 0, uniform over L gives ``log L``; a
    zero signal gives 0.

    Examples
    --------
    >>> import torch
    >>> abs(positional_entropy(torch.tensor([0.25, 0.25, 0.25, 0.25, 0.0]), lengths=torch.tensor(4)).item() - math.log(4)) < 1e-6
    True
    """
    _check_signal(x)
    lengths = _lengths(x, lengths)
    if weights == "mass":
        if (x.masked_select(_mask(x, lengths)) < 0).any():
            raise ValueError("weights='mass' needs x >= 0 on valid entries; pass "
                             "weights='energy' to use x**2 for signed signals")
    elif weights != "energy":
        raise ValueError(f"weights must be 'mass' or 'energy', got {weights!r}")
    return _positional_entropy(x, lengths, weights).to(_out_dtype(x))


def _positional_entropy(x: Tensor, lengths: Tensor | None, weights: str) -> Tensor:
    """positional_entropy's core (float64; ``lengths`` None: every signal full)."""
    w = x.to(_F64) if weights == "mass" else x.to(_F64).pow(2)
    if lengths is not None:
        w = w * _mask(x, lengths)
    p = _safe_div(w, w.sum(-1, keepdim=True))
    return 0.0 - _xlogx(p).sum(-1)


def wavelet_entropy(
    x: Float[Tensor, "*batch n"],
    wavelet: str = "db2",
    level: int | None = 5,
    mode: str = "symmetric",
    normalized: bool = True,
    lengths: Int[Tensor, "*batch"] | None = None,
) -> Float[Tensor, "*batch bands"]:
    """Entropy of each DWT band's coefficients, band order ``[A_J, D_J, ..., D_1]``.

    ``normalized=True`` (default): ``p_tau = |W(s,tau)|^2 / sum_tau |W(s,tau)|^2``,
    ``H(s) = -sum p log p / log(n_coeffs(s))`` in ``[0, 1]`` (0: one coefficient holds all
    energy; 1: spread evenly). A band with zero energy (below 1e-24 of the signal's
    total DWT energy, i.e. round-off), or a single coefficient, gets 0.
    ``normalized=False``: the paper's literal ``-sum |W|^2 log |W|^2`` (unbounded, depends
    on the signal's amplitude).

    Examples
    --------
    >>> import torch
    >>> wavelet_entropy(torch.ones(8), "haar", level=1).tolist()    # A1 flat, D1 empty
    [1.0, 0.0]
    """
    _check_signal(x)
    lengths = _lengths(x, lengths)
    level = _resolve_level(level, int(lengths.min()) if lengths.numel() else x.shape[-1], wavelet)
    return _per_length_group(x, lengths, lambda rows: _wavelet_entropy(rows, wavelet, level, mode, normalized),
                             level + 1).to(_out_dtype(x))


def _wavelet_entropy(rows: Tensor, wavelet: str, level: int, mode: str, normalized: bool,
                     coeffs: list[Tensor] | None = None) -> Tensor:
    """wavelet_entropy's core on full-length signals (float64); ``coeffs``: their wavedec, if at hand."""
    out = []
    coeffs = wavedec(rows.to(_F64), wavelet, mode, level) if coeffs is None else coeffs
    total = sum(c.pow(2).sum(-1) for c in coeffs)
    for c in coeffs:
        e = c.pow(2)
        if normalized:
            band = e.sum(-1, keepdim=True)
            # a band holding only round-off (e.g. details of a constant) is empty;
            # normalising its noise would report maximal entropy
            band = torch.where(band > _ROUNDOFF * total.unsqueeze(-1), band,
                               torch.zeros_like(band))
            p = _safe_div(e, band)
            h = 0.0 - _xlogx(p).sum(-1)
            nc = c.shape[-1]
            out.append(h / math.log(nc) if nc > 1 else torch.zeros_like(h))
        else:
            out.append(0.0 - _xlogx(e).sum(-1))
    return torch.stack(out, -1)


# ------------------------------------------------------------------ uncertainty
def uncertainty(
    x: Float[Tensor, "*batch n"], lengths: Int[Tensor, "*batch"] | None = None
) -> dict[str, Float[Tensor, "*batch"]]:
    """Position-frequency uncertainty of each signal (a sequence on Z, zero outside).

    * ``sigma_t``: standard deviation of t under weights ``|x(t)|^2 / sum |x|^2``.
    * ``mu = sum_t x(t) x(t+1) / sum_t x(t)^2``: lag-1 autocorrelation, the first
      trigonometric moment of ``|X(w)|^2`` on the circle.
    * ``delta_w = sqrt(1 - mu^2) / |mu|``: Breitenberger's circular spread of the spectrum.
    * ``product = sigma_t * delta_w >= 1/2`` for every sequence; ``efficiency =
      1 / (2 product)`` in ``[0, 1]``, near 1 only for Gaussian-like bumps.

    If ``mu == 0`` (a single spike, a zero signal, any signal with no lag-1 correlation)
    the spectral spread is unbounded: ``delta_w = product = inf``, ``efficiency = 0``.
    The same holds when ``sigma_t == 0`` (a spike whose neighbours underflow when
    squared) or ``delta_w`` overflows.

    Returns
    -------
    dict with keys ``"sigma_t"``, ``"mu"``, ``"delta_w"``, ``"product"``, ``"efficiency"``.

    Examples
    --------
    >>> import torch
    >>> t = torch.arange(200.)
    >>> u = uncertainty(torch.exp(-(t - 100) ** 2 / (4 * 6.0 ** 2)))
    >>> round(u["efficiency"].item(), 3)
    0.998
    """
    _check_signal(x)
    dt = _out_dtype(x)
    return {k: v.to(dt) for k, v in _uncertainty(x, _lengths(x, lengths)).items()}


def _uncertainty(x: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
    """uncertainty's core (float64; ``lengths`` None: every signal full)."""
    xf = x.to(_F64)
    if lengths is not None:
        xf = xf * _mask(x, lengths)
    e = xf.pow(2)
    total = e.sum(-1)
    t = _table(("arange", x.shape[-1], x.device), lambda: torch.arange(x.shape[-1], dtype=_F64, device=x.device))
    mean_t = _safe_div((e * t).sum(-1), total)
    var_t = _safe_div((e * (t - mean_t.unsqueeze(-1)).pow(2)).sum(-1), total).clamp(min=0)
    sigma_t = var_t.sqrt()
    mu = _safe_div((xf[..., :-1] * xf[..., 1:]).sum(-1), total)
    mu2 = mu.pow(2).clamp(max=1.0)  # |mu| <= 1 by Cauchy-Schwarz; clamp only rounding
    abs_mu = mu.abs()
    has_mu = abs_mu > 0
    delta_w = torch.where(has_mu, (1 - mu2).sqrt() / torch.where(has_mu, abs_mu, 1.0), math.inf)
    # sigma_t == 0 is a spike whose neighbours underflowed when squared; with a tiny
    # mu, 0 * inf would be NaN: it is the spike case, product inf
    finite = has_mu & (sigma_t > 0) & torch.isfinite(delta_w)
    product = torch.where(finite, sigma_t * delta_w, math.inf)
    # 1 / (2 product), i.e. 0.5 / product (equal: the factor 2 is exact); 0 where undefined
    efficiency = torch.where(finite & (product > 0), 0.5 / product, 0.0)
    return {"sigma_t": sigma_t, "mu": mu, "delta_w": delta_w, "product": product, "efficiency": efficiency}


# --------------------------------------------------------------------- correlation
def pearson_from_moments(n, sx, sy, sxx, syy, sxy) -> Tensor:
    """Pearson correlation from accumulated raw moments (streaming form).

    ``n`` samples with sums ``sx = sum x``, ``sy``, ``sxx = sum x^2``, ``syy``,
    ``sxy = sum x y`` (all tensors broadcastable, e.g. one per head). A variable whose
    sum of squared deviations is below ``1e-12 * sum x^2`` (zero up to cancellation)
    makes the correlation undefined: NaN is returned there, and for ``n < 2`` (0 would
    claim "no correlation", which the data do not say). Result is clamped to ``[-1, 1]``.
    Accumulate in float64: raw moments lose precision by cancellation.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([1., 2., 3.]); y = torch.tensor([2., 4., 7.])
    >>> r = pearson_from_moments(3, x.sum(), y.sum(), (x*x).sum(), (y*y).sum(), (x*y).sum())
    >>> round(r.item(), 6)
    0.993399
    """
    dev = next((v.device for v in (n, sx, sy, sxx, syy, sxy) if isinstance(v, Tensor)), torch.device("cpu"))
    moments = [torch.as_tensor(v, device=dev) for v in (n, sx, sy, sxx, syy, sxy)]
    out_dt = _F64 if any(v.dtype == _F64 for v in moments) else torch.float32
    n, sx, sy, sxx, syy, sxy = (v.to(_F64) for v in moments)
    safe_n = torch.where(n > 0, n, torch.ones_like(n))
    cov = sxy - sx * sy / safe_n
    vx = sxx - sx * sx / safe_n
    vy = syy - sy * sy / safe_n
    # variance that is zero up to cancellation error counts as zero (rho undefined -> NaN)
    ok = (n >= 2) & (vx > 1e-12 * sxx.abs()) & (vy > 1e-12 * syy.abs())
    rho = _safe_div(cov, torch.where(ok, (vx * vy).clamp(min=0).sqrt(), torch.zeros_like(vx)))
    rho = torch.where(ok, rho.clamp(-1.0, 1.0), torch.full_like(rho, math.nan))
    return rho.to(out_dt)


def pearson(
    x: Float[Tensor, "*batch n"],
    y: Float[Tensor, "*batch n"],
    lengths: Int[Tensor, "*batch"] | None = None,
) -> Float[Tensor, "*batch"]:
    """Pearson correlation of x and y along the last axis (over valid entries).

    A constant x or y (zero variance), or fewer than 2 valid samples: undefined, NaN.

    Examples
    --------
    >>> import torch
    >>> round(pearson(torch.tensor([1., 2., 3.]), torch.tensor([2., 4., 7.])).item(), 6)
    0.993399
    """
    _check_signal(x)
    _check_signal(y, "y")
    x, y = torch.broadcast_tensors(x, y)
    lengths = _lengths(x, lengths)
    m = _mask(x, lengths).to(_F64)
    cnt = lengths.to(_F64)
    xd, yd = x.to(_F64), y.to(_F64)
    # centred form (not raw moments) for accuracy when the whole array is at hand
    xc = (xd - _safe_div((xd * m).sum(-1), cnt).unsqueeze(-1)) * m
    yc = (yd - _safe_div((yd * m).sum(-1), cnt).unsqueeze(-1)) * m
    vx, vy = xc.pow(2).sum(-1), yc.pow(2).sum(-1)
    scale_x = (xd.pow(2) * m).sum(-1)
    scale_y = (yd.pow(2) * m).sum(-1)
    ok = (cnt >= 2) & (vx > 1e-20 * scale_x) & (vy > 1e-20 * scale_y)
    den = torch.where(ok, (vx * vy).sqrt(), torch.zeros_like(vx))
    rho = _safe_div((xc * yc).sum(-1), den).clamp(-1, 1)
    return torch.where(ok, rho, torch.full_like(rho, math.nan)).to(_out_dtype(x))


# ------------------------------------------------------------ scale sensitivity
def _one_minus_cos(a: Tensor, b: Tensor) -> Tensor:
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    cos = _safe_div((a * b).sum(-1), na * nb)
    s = 1 - cos.clamp(-1, 1)
    # both empty: identical (0); exactly one empty: no overlap at all (1)
    return torch.where((na == 0) & (nb == 0), torch.zeros_like(s), s)


def scale_sensitivity(
    x_full: Float[Tensor, "*batch n"],
    x_short: Float[Tensor, "*batch m"],
    wavelet: str = "db2",
    level: int = 5,
    mode: str = "symmetric",
    paper: bool = False,
) -> Float[Tensor, "*batch"]:
    """How much a signal's wavelet description changes when the sequence is shortened.

    Both signals are decomposed at ``J' = min(level, dwt_max_level(m))``.
    Default: ``S = 1 - cos(shares_full, shares_short)`` on the band-share vectors (which
    do not depend on length). ``paper=True``: ``S = 1 - cos`` of the concatenated DWT
    coefficient vectors, each band's coefficients truncated to the shorter signal's
    count. Both zero gives 0, exactly one zero gives 1. ``x_short`` is the signal of the
    truncated sequence (for a causal model, the prefix), computed by the caller.

    Examples
    --------
    >>> import torch
    >>> t = torch.arange(256.)
    >>> x = torch.cos(2 * torch.pi * t / 8)
    >>> scale_sensitivity(x, x[:128]).item() < 0.05   # edges alone cost ~0.03
    True
    """
    _check_signal(x_full, "x_full")
    _check_signal(x_short, "x_short")
    m = x_short.shape[-1]
    if min(level, dwt_max_level(m, wavelet)) < 1:
        raise ValueError(f"x_short has {m} samples, too short for one {wavelet!r} DWT level; "
                         "use a larger alpha or a shorter-filter wavelet ('haar')")
    return _scale_sensitivity(x_full, x_short, wavelet, level, mode, paper).to(_out_dtype(x_full))


def _scale_sensitivity(x_full: Tensor, x_short: Tensor, wavelet: str, level: int, mode: str, paper: bool,
                       full_coeffs: tuple[int, list[Tensor]] | None = None) -> Tensor:
    """scale_sensitivity's core (float64); ``full_coeffs``: ``(level, wavedec of x_full)``, reused when
    the decomposition depth ``J'`` equals that level."""
    jp = min(level, dwt_max_level(x_short.shape[-1], wavelet))
    cf = full_coeffs[1] if full_coeffs is not None and full_coeffs[0] == jp else wavedec(x_full.to(_F64), wavelet, mode, jp)
    if not paper:
        ef = _dwt_band_energy(x_full, wavelet, jp, mode, cf)
        es = _dwt_band_energy(x_short, wavelet, jp, mode)
        ef, es = torch.broadcast_tensors(_safe_div(ef, ef.sum(-1, keepdim=True)), _safe_div(es, es.sum(-1, keepdim=True)))
        return _one_minus_cos(ef, es)
    cs = wavedec(x_short.to(_F64), wavelet, mode, jp)
    keep = [min(a.shape[-1], b.shape[-1]) for a, b in zip(cf, cs)]
    vf = torch.cat([c[..., :k] for c, k in zip(cf, keep)], -1)
    vs = torch.cat([c[..., :k] for c, k in zip(cs, keep)], -1)
    vf, vs = torch.broadcast_tensors(vf, vs)
    return _one_minus_cos(vf, vs)


# ------------------------------------------------------------ reconstruction
def reconstruction_error(
    x: Float[Tensor, "*batch n"],
    wavelet: str = "db2",
    level: int | None = 5,
    mode: str = "symmetric",
    lengths: Int[Tensor, "*batch"] | None = None,
) -> Float[Tensor, "*batch"]:
    """Relative DWT round-trip error ``||x - waverec(wavedec(x))[:n]|| / ||x||``.

    An orthogonal DWT reconstructs exactly, so this is round-off (~1e-15 in float64) and
    serves as a sanity check of the transform, not as a property of heads. A zero signal
    gives 0.

    Examples
    --------
    >>> import torch
    >>> reconstruction_error(torch.randn(2, 128, dtype=torch.float64)).max().item() < 1e-12
    True
    """
    _check_signal(x)
    lengths = _lengths(x, lengths)
    level = _resolve_level(level, int(lengths.min()) if lengths.numel() else x.shape[-1], wavelet)

    def err(rows):
        return _reconstruction_error(rows, wavelet, level, mode).unsqueeze(-1)

    return _per_length_group(x, lengths, err, 1).squeeze(-1).to(_out_dtype(x))


def _reconstruction_error(rows: Tensor, wavelet: str, level: int, mode: str, coeffs: list[Tensor] | None = None) -> Tensor:
    """reconstruction_error's core on full-length signals (float64); ``coeffs``: their wavedec, if at hand."""
    rows = rows.to(_F64)
    rec = waverec(wavedec(rows, wavelet, mode, level) if coeffs is None else coeffs, wavelet, mode)[..., : rows.shape[-1]]
    return _safe_div((rows - rec).norm(dim=-1), rows.norm(dim=-1))
