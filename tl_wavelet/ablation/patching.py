"""Band ablation hooks: remove chosen wavelet bands of a head's output, or chosen RoPE pairs.

Two kinds of "band" are patched here, both as ordinary TransformerLens ``(name, fn)``
hooks that compose with ``model.hooks(...)`` / ``run_with_hooks``:

* **positional bands** of a head's output ``hook_z`` (``[batch, pos, head, d_head]``):
  the signal over positions is split into bands ``[A_J, D_J, ..., D_1]``, the chosen
  bands are replaced (``zero``, ``mean``, ``resample``) and the head output is rebuilt.
  With ``causal=True`` (the default) the split is :func:`~tl_wavelet.transforms.causal_bands`:
  band values at position ``t`` depend only on positions ``<= t``, so a patched
  activation at ``t`` never sees future tokens and next-token losses stay meaningful.
  ``causal=False`` uses the decimated DWT (:func:`~tl_wavelet.transforms.wavedec`), whose
  filters are two-sided: removing a band then moves information from later positions
  into earlier ones (the test suite shows this leak), so do not use it to measure loss.
* **RoPE frequency bands**: rotary pairs of ``hook_rot_q`` and/or ``hook_rot_k``. The
  score is a sum over pairs, ``q.k = sum_i q_i . R_i k_i``, so zeroing a pair of q removes
  exactly that pair's term from that head's scores (p-RoPE style).

Both families share one generic core, :func:`patch_bands` (positional) and a mask over
rotary dims (RoPE); the named factories are thin wrappers, as in TransformerLens's
``patching.py``.

Examples
--------
>>> hook = band_ablation_hook(3, heads=[0, 5], bands=["A5"])          # doctest: +SKIP
>>> loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[hook])  # doctest: +SKIP
>>> with model.hooks(fwd_hooks=rope_ablation_hook(model, 3, heads=0, bands=["R3"])):  # doctest: +SKIP
...     loss = model(tokens, return_type="loss")
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..adapter import hook_name, model_shape, resolve_heads, resolve_layers
from ..rope import describe_positions, rope_frequencies, rotary_hooks
from ..transforms import band_labels, causal_bands, dwt_max_level, wavedec, waverec

__all__ = [
    "METHODS",
    "resolve_bands",
    "band_components",
    "patch_bands",
    "derangement",
    "band_ablation_hook",
    "RopeBand",
    "rope_bands",
    "resolve_rope_bands",
    "rope_pair_dims",
    "rope_keep_mask",
    "rope_ablation_hook",
]

METHODS = ("zero", "mean", "resample")
Method = Literal["zero", "mean", "resample"]


# ------------------------------------------------------------------ positional bands
def _check_level(level) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"level must be an int >= 1 (bands A_level, D_level..D1), got {level!r}.")
    return int(level)


def resolve_bands(bands: str | int | Iterable[str | int] | None, level: int) -> list[int]:
    """Band names (``"A5"``, ``"D3"``) or indices into :func:`band_labels` -> sorted indices.

    ``None`` means every band. Unknown names raise a ``ValueError`` that lists the valid ones.

    Examples
    --------
    >>> resolve_bands(["D1", "A2"], level=2)
    [0, 2]
    """
    labels = band_labels(_check_level(level))
    if bands is None:
        return list(range(len(labels)))
    if isinstance(bands, (str, int, np.integer)):
        bands = [bands]
    out = set()
    for b in bands:
        if isinstance(b, str):
            if b not in labels:
                raise ValueError(
                    f"Unknown band {b!r} at level {level}: valid bands are {labels} "
                    "(A = the coarse approximation, D_j = details at scale 2^j; change level= for others)."
                )
            out.add(labels.index(b))
        elif isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            if not 0 <= b < len(labels):
                raise ValueError(f"Band index {b} is out of range: level {level} has bands 0..{len(labels) - 1} = {labels}.")
            out.add(int(b))
        else:
            raise TypeError(f"A band is a name such as 'A5' or 'D1' (or an index), got {b!r}.")
    return sorted(out)


def _check_length(n: int, *, causal: bool, wavelet: str, level: int) -> None:
    if causal:
        # The coarsest band averages over about 2^level positions; beyond the sequence it
        # only averages in the zeros before t = 0, so such bands do not exist at this length.
        if 2**level > n:
            raise ValueError(
                f"level {level} needs sequences of at least 2^{level} = {2**level} positions for its "
                f"causal bands to exist, got {n}: use level <= {max(int(math.log2(n)), 0)} or longer sequences."
            )
    else:
        best = dwt_max_level(n, wavelet)
        if level > best:
            raise ValueError(
                f"The DWT ({wavelet}) at level {level} needs more than {n} positions: use level <= {best} "
                "or longer sequences."
            )


def band_components(
    x: Float[Tensor, "batch pos *rest"],
    *,
    causal: bool = True,
    wavelet: str = "haar",
    level: int = 5,
    mode: str = "symmetric",
) -> Float[Tensor, "bands batch pos *rest"]:
    """Split ``x`` over positions (dim 1) into band components that sum to ``x``.

    ``causal=True``: the causal a-trous bands ``[A_J, D_J, ..., D_1]``
    (:func:`~tl_wavelet.transforms.causal_bands`). ``causal=False``: the signal-space
    component of each DWT band, ``waverec`` of the coefficients with only that band kept
    (the DWT is linear, so the components add up to ``x`` up to round-off).

    Examples
    --------
    >>> x = torch.randn(2, 32, 3, dtype=torch.float64)
    >>> comps = band_components(x, level=3)
    >>> comps.shape, torch.allclose(comps.sum(0), x)
    (torch.Size([4, 2, 32, 3]), True)
    """
    level = _check_level(level)
    if x.ndim < 2:
        raise ValueError(f"expected [batch, pos, ...], got shape {tuple(x.shape)}.")
    n = x.shape[1]
    _check_length(n, causal=causal, wavelet=wavelet, level=level)
    if causal:
        return causal_bands(x, wavelet, level, dim=1).to(x.dtype)
    coeffs = wavedec(x, wavelet, level=level, mode=mode, dim=1)
    comps = []
    for b in range(len(coeffs)):
        only = [c if i == b else torch.zeros_like(c) for i, c in enumerate(coeffs)]
        comps.append(waverec(only, wavelet, mode=mode, dim=1).narrow(1, 0, n))
    return torch.stack(comps).to(x.dtype)


def derangement(n: int, seed: int = 0) -> Int[Tensor, " n"]:
    """A seeded permutation of ``range(n)`` with no fixed point (each row gets another row's band).

    Examples
    --------
    >>> p = derangement(5, seed=1)
    >>> bool((p != torch.arange(5)).all()), sorted(p.tolist())
    (True, [0, 1, 2, 3, 4])
    """
    if n < 2:
        raise ValueError(
            "resample needs at least 2 sequences in the batch (each takes its band from another one), "
            f"got {n}: pass more sequences or reference=... (activations of other sequences)."
        )
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=g)
    out = torch.empty(n, dtype=torch.long)
    out[order] = order.roll(-1)  # a random cycle: row order[i] takes row order[i+1]
    return out


def _replacement(
    removed: Float[Tensor, "k batch pos *rest"],
    ref_comps: Float[Tensor, "k rbatch pos *rest"],
    method: str,
    source_index: Tensor | None,
) -> Float[Tensor, "k batch pos *rest"]:
    """The components that replace the removed ones (``mean`` or ``resample``)."""
    if method == "mean":
        # the mean over sequences at each position (an activation-patching "mean ablation")
        return ref_comps.mean(1, keepdim=True).expand_as(removed)
    batch, n_ref = removed.shape[1], ref_comps.shape[1]
    source_index = torch.as_tensor(source_index, dtype=torch.long, device=ref_comps.device)
    if source_index.shape != (batch,) or not (0 <= int(source_index.min()) and int(source_index.max()) < n_ref):
        raise ValueError(
            f"source_index must hold {batch} row indices into the {n_ref} reference sequences, "
            f"got {source_index.tolist() if source_index.numel() < 20 else tuple(source_index.shape)}."
        )
    return ref_comps[:, source_index]


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: choose one of {METHODS}.")
    return method


def patch_bands(
    x: Float[Tensor, "batch pos *rest"],
    remove: Sequence[int],
    *,
    method: Method = "zero",
    causal: bool = True,
    wavelet: str = "haar",
    level: int = 5,
    mode: str = "symmetric",
    reference: Float[Tensor, "rbatch pos *rest"] | None = None,
    source_index: Int[Tensor, " batch"] | None = None,
    seed: int = 0,
) -> Float[Tensor, "batch pos *rest"]:
    """The generic core: replace bands ``remove`` (indices into :func:`band_labels`) of ``x``.

    ``x`` is split over positions (dim 1) by :func:`band_components`; the result is
    ``x - sum_b comp_b(x) + sum_b new_b`` over the removed bands ``b``, with ``new_b``:

    - ``zero``: 0;
    - ``mean``: ``comp_b`` averaged over the sequences of ``reference`` (default: over
      ``x``'s own batch), position by position;
    - ``resample``: ``comp_b`` of another sequence: row ``source_index[i]`` of
      ``reference``; without a reference, a seeded derangement of ``x``'s own batch; with
      a reference and no ``source_index``, seeded random rows of it.

    Removing no band returns ``x`` itself; removing every band with ``zero`` gives 0 (up
    to round-off), i.e. zero-ablation.

    Examples
    --------
    >>> x = torch.randn(3, 64, 2, dtype=torch.float64)
    >>> y = patch_bands(x, [0], level=3)            # drop the coarse approximation A3
    >>> torch.allclose(y, x - band_components(x, level=3)[0])
    True
    """
    method = _check_method(method)
    remove = sorted(set(int(b) for b in remove))
    if not remove:
        return x
    comps = band_components(x, causal=causal, wavelet=wavelet, level=level, mode=mode)
    if remove[-1] >= comps.shape[0] or remove[0] < 0:
        raise ValueError(f"band indices must be in 0..{comps.shape[0] - 1} ({band_labels(level)}), got {remove}.")
    idx = torch.tensor(remove, device=x.device)
    removed = comps.index_select(0, idx)
    out = x - removed.sum(0)
    if method == "zero":
        return out
    if reference is None:
        ref_comps = removed
        if method == "resample" and source_index is None:
            source_index = derangement(x.shape[0], seed)
    else:
        if reference.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"reference must match x in every dim but the batch: x is {tuple(x.shape)}, "
                f"reference is {tuple(reference.shape)} (collect it from sequences of the same length)."
            )
        ref_comps = band_components(
            reference.to(x.dtype), causal=causal, wavelet=wavelet, level=level, mode=mode
        ).index_select(0, idx)
        if method == "resample" and source_index is None:
            g = torch.Generator().manual_seed(int(seed))
            source_index = torch.randint(reference.shape[0], (x.shape[0],), generator=g)
    return out + _replacement(removed, ref_comps, method, source_index).sum(0)


def band_ablation_hook(
    layer: int,
    heads: int | Sequence[int] | None,
    bands: str | Sequence[str] | None,
    *,
    method: Method = "zero",
    causal: bool = True,
    wavelet: str = "haar",
    level: int = 5,
    mode: str = "symmetric",
    reference: Float[Tensor, "rbatch pos head d_head"] | None = None,
    source_index: Int[Tensor, " batch"] | None = None,
    seed: int = 0,
):
    """A ``(name, fn)`` hook on ``blocks.{layer}.attn.hook_z`` that removes positional bands.

    Parameters
    ----------
    layer : the layer whose heads are patched
    heads : query-head index or indices (``None``: every head)
    bands : band names from :func:`~tl_wavelet.transforms.band_labels` (``None``: all)
    method : ``"zero"``, ``"mean"`` or ``"resample"`` (see :func:`patch_bands`)
    causal : causal a-trous bands (default; needed whenever a loss is measured) or the
        two-sided DWT (``causal=False``, leaks future positions into past ones)
    wavelet, level, mode : the decomposition (``mode`` only for the DWT)
    reference : ``hook_z`` of this layer on other sequences ``[rbatch, pos, head, d_head]``
        (e.g. from ``run_with_cache``), the source for ``mean``/``resample``; default: the
        patched batch itself
    source_index, seed : which reference row each sequence takes its band from (resample)

    Returns
    -------
    (hook name, hook function), for ``model.hooks(fwd_hooks=[...])`` or ``run_with_hooks``.

    Examples
    --------
    >>> hook = band_ablation_hook(1, heads=3, bands=["A5"])              # doctest: +SKIP
    >>> loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[hook])  # doctest: +SKIP
    """
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or layer < 0:
        raise ValueError(f"layer must be a non-negative int, got {layer!r}.")
    method = _check_method(method)
    remove = resolve_bands(bands, level)
    head_list = None if heads is None else ([int(heads)] if isinstance(heads, (int, np.integer)) else [int(h) for h in heads])
    if head_list is not None and not head_list:
        raise ValueError("heads is empty: pass None for every head, or a list of head indices.")
    if reference is not None and reference.ndim != 4:
        raise ValueError(f"reference must be hook_z activations [batch, pos, head, d_head], got shape {tuple(reference.shape)}.")

    def fn(z: Tensor, hook) -> Tensor:
        n_heads = z.shape[2]
        hs = list(range(n_heads)) if head_list is None else head_list
        bad = [h for h in hs if not -n_heads <= h < n_heads]
        if bad:
            raise IndexError(f"head {bad[0]} is out of range: layer {layer} has {n_heads} heads (0..{n_heads - 1}).")
        hs = sorted({h % n_heads for h in hs})
        idx = torch.tensor(hs, device=z.device)
        sub = z.index_select(2, idx)
        ref = None if reference is None else reference.to(z.device).index_select(2, idx)
        patched = patch_bands(
            sub, remove, method=method, causal=causal, wavelet=wavelet, level=level, mode=mode,
            reference=ref, source_index=source_index, seed=seed,
        )
        return z.index_copy(2, idx, patched.to(z.dtype))  # out of place: autograd-safe

    return hook_name("z", layer), fn


# ------------------------------------------------------------------ RoPE bands
@dataclass(frozen=True)
class RopeBand:
    """A group of rotary pairs, contiguous in wavelength (``R0`` = highest frequencies)."""

    name: str
    pairs: tuple[int, ...]
    wavelength_min: float
    wavelength_max: float

    @property
    def label(self) -> str:
        return f"{self.name} (λ {_fmt_tokens(self.wavelength_min)}-{_fmt_tokens(self.wavelength_max)} tok)"

    def __str__(self) -> str:
        return self.label


def _fmt_tokens(x: float) -> str:
    if x < 100:
        return f"{x:.3g}"
    if x < 1e4:
        return f"{x:.0f}"
    if x < 1e6:
        return f"{x / 1e3:.0f}k"
    return f"{x / 1e6:.3g}M"


def _rope_meta(model, layer: int) -> dict:
    shape = model_shape(model)
    if not shape.rotary:
        raise ValueError(
            "RoPE band patching needs a rotary (RoPE) model; this one uses "
            f"{describe_positions(model)} positions. "
            "Use target='z' (positional bands of hook_z) instead."
        )
    (layer,) = resolve_layers(shape, [layer])
    return rope_frequencies(model, layers=[layer])[layer]


def rope_bands(model, layer: int = 0, n_bands: int = 4) -> list[RopeBand]:
    """Split a layer's rotary pairs into ``n_bands`` contiguous wavelength groups ``R0..``.

    ``R0`` holds the shortest wavelengths (highest frequencies, positional), the last
    band the longest (lowest frequencies, which p-RoPE drops). Wavelengths are read from
    the model's own cos/sin tables (:func:`~tl_wavelet.rope.rope_frequencies`).

    Examples
    --------
    >>> [b.label for b in rope_bands(model, 0, n_bands=2)]              # doctest: +SKIP
    ['R0 (λ 6.28-126 tok)', 'R1 (λ 198-6.28e+04 tok)']
    """
    meta = _rope_meta(model, layer)
    wl = meta["wavelength"].double()
    n_pairs = wl.numel()
    if isinstance(n_bands, bool) or not isinstance(n_bands, (int, np.integer)) or not 1 <= n_bands <= n_pairs:
        raise ValueError(f"n_bands must be an int in 1..{n_pairs} (this layer has {n_pairs} rotary pairs), got {n_bands!r}.")
    order = torch.argsort(wl).tolist()
    out = []
    for i, chunk in enumerate(np.array_split(np.array(order), int(n_bands))):
        pairs = tuple(sorted(int(p) for p in chunk))
        w = wl[list(pairs)]
        out.append(RopeBand(f"R{i}", pairs, float(w.min()), float(w.max())))
    return out


def resolve_rope_bands(
    model, layer: int, bands: str | Sequence[int] | Sequence[str] | None, n_bands: int = 4
) -> list[int]:
    """Band names (``"R0"`` or full labels), or explicit pair indices -> sorted pair indices.

    ``None`` means every pair.
    """
    table = rope_bands(model, layer, n_bands)
    n_pairs = sum(len(b.pairs) for b in table)
    if bands is None:
        return list(range(n_pairs))
    if isinstance(bands, (str, int, np.integer)):
        bands = [bands]
    pairs: set[int] = set()
    by_name = {b.name: b for b in table} | {b.label: b for b in table}
    for b in bands:
        if isinstance(b, str):
            if b not in by_name:
                raise ValueError(
                    f"Unknown RoPE band {b!r}: with n_bands={n_bands} the bands are "
                    f"{[t.label for t in table]}; or pass rotary pair indices 0..{n_pairs - 1}."
                )
            pairs.update(by_name[b].pairs)
        elif isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            if not 0 <= b < n_pairs:
                raise ValueError(f"Rotary pair {b} is out of range: layer {layer} has pairs 0..{n_pairs - 1}.")
            pairs.add(int(b))
        else:
            raise TypeError(f"A RoPE band is a name such as 'R0' or a pair index, got {b!r}.")
    return sorted(pairs)


def rope_pair_dims(pairs: Sequence[int], rotary_dim: int, adjacent_pairs: bool = False) -> list[int]:
    """The ``d_head`` coordinates of rotary pairs: ``(i, i + rotary_dim/2)``, or ``(2i, 2i+1)`` when adjacent.

    Examples
    --------
    >>> rope_pair_dims([0, 3], rotary_dim=8)
    [0, 3, 4, 7]
    """
    half = rotary_dim // 2
    dims = [d for p in pairs for d in ((2 * p, 2 * p + 1) if adjacent_pairs else (p, p + half))]
    return sorted(dims)


def rope_keep_mask(
    n_heads: int, d_head: int, heads: Sequence[int], dims: Sequence[int], dtype=torch.float32, device=None
) -> Float[Tensor, "head d_head"]:
    """1 everywhere except 0 at (head, dim) for the chosen heads and rotary dims."""
    mask = torch.ones(n_heads, d_head, dtype=dtype, device=device)
    if heads and dims:
        mask[torch.tensor(list(heads))[:, None], torch.tensor(list(dims))[None, :]] = 0
    return mask


def rope_ablation_hook(
    model,
    layer: int,
    heads: int | Sequence[int] | None,
    bands: str | Sequence[int] | Sequence[str] | None,
    *,
    on: Literal["q", "k", "qk"] = "q",
    n_bands: int | None = None,
) -> list[tuple[str, object]]:
    """Hooks that zero rotary pairs of chosen heads in ``hook_rot_q`` and/or ``hook_rot_k``.

    On models that rotate without firing those hooks (GPT-NeoX/Pythia, Phi-3 and GPT-J
    bridges) the same pairs are zeroed in ``hook_q``/``hook_k``, before the rotation,
    which is the same patch (:func:`tl_wavelet.rope.rotary_hooks` checks the substitution).

    Parameters
    ----------
    model : the TransformerLens model (the pair layout and wavelengths are read from it)
    layer : the layer
    heads : query heads (``None``: every head)
    bands : band names from :func:`rope_bands` (``"R3"``, or the full label), explicit
        rotary pair indices, or ``None`` for every pair
    on : ``"q"`` (default): exact per head, since a head's score is a sum over pairs of
        ``q_pair . R k_pair``; ``"k"``/``"qk"``: a key head serves a whole group of query
        heads under grouped-query attention, so every query head of each touched group
        must be selected
    n_bands : how many wavelength groups name the bands (``None``: 4, or the number of
        rotary pairs when the layer has fewer)

    Returns
    -------
    A list of ``(name, fn)`` hooks (one per patched activation): pass it as
    ``fwd_hooks=`` (or extend your own list with it).

    Examples
    --------
    >>> hooks = rope_ablation_hook(model, 2, heads=None, bands=["R3"])    # doctest: +SKIP
    >>> model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks)  # doctest: +SKIP
    """
    shape = model_shape(model)
    if on not in ("q", "k", "qk"):
        raise ValueError(f"on must be 'q', 'k' or 'qk', got {on!r}.")
    meta = _rope_meta(model, layer)
    if n_bands is None:  # 4, or fewer where a layer has fewer rotary pairs (small partial-rotary heads)
        n_bands = min(4, meta["inv_freq"].numel())
    pairs = resolve_rope_bands(model, layer, bands, n_bands)
    dims = rope_pair_dims(pairs, meta["rotary_dim"], meta["adjacent_pairs"])
    q_heads = resolve_heads(shape, heads)
    # hook_rot_q/k, or hook_q/k where the model never fires those: a pair zeroed before the
    # rotation is zero after it, so the patch is the same (tl_wavelet.rope.rotary_hooks).
    q_kind, k_kind = rotary_hooks(model)
    hooks = []
    if "q" in on:
        hooks.append((hook_name(q_kind, layer), _mask_hook(q_heads, dims, "query", shape.n_heads)))
    if "k" in on:
        g = shape.group_size
        groups = sorted({h // g for h in q_heads})
        partial = [k for k in groups if not set(range(k * g, (k + 1) * g)) <= set(q_heads)]
        if partial:
            k = partial[0]
            raise ValueError(
                f"Patching keys of layer {layer} changes key head {k}, which serves query heads "
                f"{list(range(k * g, (k + 1) * g))} (grouped-query attention, {g} per key head); "
                f"you selected {[h for h in q_heads if h // g == k]}. Select the whole group, or use "
                "on='q' (removing a pair from q alone is exact per head)."
            )
        hooks.append((hook_name(k_kind, layer), _mask_hook(groups, dims, "key", shape.n_kv_heads)))
    return hooks


def _mask_hook(heads: list[int], dims: list[int], what: str, expect_heads: int):
    def fn(x: Tensor, hook) -> Tensor:
        if x.ndim != 4 or x.shape[2] != expect_heads:
            raise ValueError(
                f"{hook.name}: expected [batch, pos, {expect_heads} {what} heads, d_head], got {tuple(x.shape)}."
            )
        mask = rope_keep_mask(x.shape[2], x.shape[3], heads, dims, dtype=x.dtype, device=x.device)
        return x * mask  # out of place: gradients flow, the cached clean tensor is untouched

    return fn
