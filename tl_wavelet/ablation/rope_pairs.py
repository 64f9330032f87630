"""RoPE band ablation: zero groups of rotary pairs of chosen heads in ``hook_rot_q`` / ``hook_rot_k``.

A head's attention score is a sum over rotary pairs, ``q.k = sum_i q_i . R_i k_i``, so
zeroing a pair of q removes exactly that pair's term from that head's scores (p-RoPE
style). Bands are groups of pairs contiguous in wavelength (:func:`rope_bands`, ``R0`` =
highest frequencies), read from the model's own cos/sin tables
(:func:`~tl_wavelet.rope.rope_frequencies`). :func:`rope_ablation_hook` is the hook
wrapper over a mask (:func:`rope_keep_mask`); :class:`RopePairs` is the sweep target.

Examples
--------
>>> with model.hooks(fwd_hooks=rope_ablation_hook(model, 3, heads=0, bands=["R3"])):  # doctest: +SKIP
...     loss = model(tokens, return_type="loss")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from ..adapter import ModelShape, hook_name, model_shape, resolve_heads
from ..rope import describe_positions, rope_frequencies, rotary_hooks
from ..validate import as_list, check_bool, check_choice, check_index, check_indices, check_int, is_int
from .spec import Ablation, Target

__all__ = [
    "RopeBand",
    "rope_bands",
    "resolve_rope_bands",
    "rope_pair_dims",
    "rope_keep_mask",
    "rope_ablation_hook",
    "RopePairs",
]


@dataclass(frozen=True)
class RopeBand:
    """A group of rotary pairs, contiguous in wavelength (``R0`` = highest frequencies)."""

    name: str
    pairs: tuple[int, ...]
    wavelength_min: float
    wavelength_max: float

    def __post_init__(self):
        if not isinstance(self.pairs, tuple) or not self.pairs or not all(is_int(p) and p >= 0 for p in self.pairs):
            raise ValueError(f"pairs must be a non-empty tuple of rotary pair indices >= 0, got {self.pairs!r}.")
        if not self.wavelength_min <= self.wavelength_max:
            raise ValueError(
                f"wavelength_min ({self.wavelength_min}) must not exceed wavelength_max ({self.wavelength_max})."
            )

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
    layer = check_index(layer, "layer", shape.n_layers)
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
    if not isinstance(n_bands, (bool, np.bool_)) and isinstance(n_bands, (int, np.integer)) and not 1 <= n_bands <= n_pairs:
        raise ValueError(f"n_bands must be an int in 1..{n_pairs} (this layer has {n_pairs} rotary pairs), got {n_bands!r}.")
    n_bands = check_int(n_bands, "n_bands", minimum=1, maximum=n_pairs)
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
    bands = [bands] if isinstance(bands, str) else as_list(bands, "bands")
    if not bands:
        raise ValueError(f"bands is empty: pass None for every pair, or names from {[t.name for t in table]}.")
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
        elif is_int(b):
            if not -n_pairs <= b < n_pairs:
                raise ValueError(f"bands: rotary pair {b} is out of range: layer {layer} has pairs 0..{n_pairs - 1}.")
            pairs.add(int(b) % n_pairs)
        else:
            raise TypeError(f"bands: a RoPE band is a name such as 'R0' or a pair index, got {b!r}.")
    return sorted(pairs)


def rope_pair_dims(pairs: Sequence[int], rotary_dim: int, adjacent_pairs: bool = False) -> list[int]:
    """The ``d_head`` coordinates of rotary pairs: ``(i, i + rotary_dim/2)``, or ``(2i, 2i+1)`` when adjacent.

    Examples
    --------
    >>> rope_pair_dims([0, 3], rotary_dim=8)
    [0, 3, 4, 7]
    """
    rotary_dim = check_int(rotary_dim, "rotary_dim", minimum=2)
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even (dims come in rotary pairs), got {rotary_dim}.")
    adjacent_pairs = check_bool(adjacent_pairs, "adjacent_pairs")
    half = rotary_dim // 2
    pairs = check_indices(pairs, "pairs", half, what="rotary pair", allow_none=False)
    dims = [d for p in pairs for d in ((2 * p, 2 * p + 1) if adjacent_pairs else (p, p + half))]
    return sorted(dims)


def rope_keep_mask(
    n_heads: int, d_head: int, heads: Sequence[int], dims: Sequence[int], dtype=torch.float32, device=None
) -> Float[Tensor, "head d_head"]:
    """1 everywhere except 0 at (head, dim) for the chosen heads and rotary dims."""
    n_heads = check_int(n_heads, "n_heads", minimum=1)
    d_head = check_int(d_head, "d_head", minimum=1)
    heads, dims = as_list(heads, "heads"), as_list(dims, "dims")  # empty: nothing zeroed
    heads = check_indices(heads, "heads", n_heads) if heads else []
    dims = check_indices(dims, "dims", d_head, what="dim") if dims else []
    mask = torch.ones(n_heads, d_head, dtype=dtype, device=device)
    if heads and dims:
        mask[torch.tensor(heads, device=device)[:, None], torch.tensor(dims, device=device)[None, :]] = 0
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
    model : TransformerBridge or HookedTransformer
        The pair layout and wavelengths are read from it.
    layer : int
        The layer.
    heads : int or sequence of int or None
        Query heads (``None``: every head).
    bands : str or sequence of str or int, or None
        Band names from :func:`rope_bands` (``"R3"``, or the full label), explicit rotary
        pair indices, or ``None`` for every pair.
    on : {"q", "k", "qk"}
        ``"q"`` (default): exact per head, since a head's score is a sum over pairs of
        ``q_pair . R k_pair``; ``"k"``/``"qk"``: a key head serves a whole group of query
        heads under grouped-query attention, so every query head of each touched group
        must be selected.
    n_bands : int, optional
        How many wavelength groups name the bands (``None``: 4, or the number of rotary
        pairs when the layer has fewer).

    Returns
    -------
    list of (str, callable)
        One ``(name, fn)`` hook per patched activation: pass it as ``fwd_hooks=`` (or
        extend your own list with it).

    Examples
    --------
    >>> hooks = rope_ablation_hook(model, 2, heads=None, bands=["R3"])    # doctest: +SKIP
    >>> model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks)  # doctest: +SKIP
    """
    shape = model_shape(model)
    check_choice(on, "on", ("q", "k", "qk"))
    layer = check_index(layer, "layer", shape.n_layers)
    meta = _rope_meta(model, layer)
    n_bands = _default_n_bands(meta) if n_bands is None else n_bands
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


def _default_n_bands(meta: dict) -> int:
    """4 RoPE bands, or one per pair where a layer has fewer (small partial-rotary heads)."""
    return min(4, meta["inv_freq"].numel())


def _mask_hook(heads: list[int], dims: list[int], what: str, expect_heads: int):
    def fn(x: Tensor, hook) -> Tensor:
        if x.ndim != 4 or x.shape[2] != expect_heads:
            raise ValueError(
                f"{hook.name}: expected [batch, pos, {expect_heads} {what} heads, d_head], got {tuple(x.shape)}."
            )
        mask = rope_keep_mask(x.shape[2], x.shape[3], heads, dims, dtype=x.dtype, device=x.device)
        return x * mask  # out of place: gradients flow, the cached clean tensor is untouched

    return fn


class RopePairs(Target):
    """Sweep target: groups of rotary pairs zeroed in one head's rotated queries ``hook_rot_q``.

    Exact per head (a key head may serve several query heads); ``method`` is ``zero`` only.
    """

    act = "rot_q"
    method = "zero"

    def __init__(self, model, shape: ModelShape, n_bands: int | None = None):
        self.model, self.shape, self.n_bands = model, shape, n_bands
        if shape.rotary:
            # hook_q where the model never fires hook_rot_q (tl_wavelet.rope.rotary_hooks)
            self.act = rotary_hooks(model)[0]

    def ablations(self, layers, heads, bands, n):
        model, n_bands = self.model, self.n_bands
        if not self.shape.rotary:
            raise ValueError(
                "target='rope' needs a rotary (RoPE) model; this one uses "
                f"{describe_positions(model)} positions. Use target='z'."
            )
        meta = rope_frequencies(model, layers=layers)
        out = []
        for L in layers:
            n_bands = _default_n_bands(meta[L]) if self.n_bands is None else self.n_bands
            table = rope_bands(model, L, n_bands)
            if bands is None:
                chosen = [(t.name, list(t.pairs)) for t in table]
            else:
                items = [bands] if isinstance(bands, str) else as_list(bands, "bands")
                if all(is_int(b) for b in items):
                    # one explicit group of pair indices
                    label = "pairs " + ",".join(str(int(p)) for p in items)
                    chosen = [(label, resolve_rope_bands(model, L, items, n_bands))]
                else:
                    chosen = [(b, resolve_rope_bands(model, L, [b], n_bands)) for b in items]
            for h in heads:
                for name, pairs in chosen:
                    dims = rope_pair_dims(pairs, meta[L]["rotary_dim"], meta[L]["adjacent_pairs"])
                    out.append(Ablation(L, h, name.split(" (")[0], tuple(dims)))
        return out

    def hook_fn(self, ab, rows):
        return _mask_hook([ab.head], list(ab.index), "query", self.shape.n_heads)

    def stacked_hook_fn(self, abls, rows):
        """All cells in one product: block ``g`` times cell ``g``'s keep mask (as the one-cell patch)."""
        b, h = len(rows), self.shape.n_heads
        masks: dict = {}  # per (device, dtype, d_head): built once on the host, copied once

        def fn(x: Tensor, hook) -> Tensor:
            if x.ndim != 4 or x.shape[2] != h:
                raise ValueError(f"{hook.name}: expected [batch, pos, {h} query heads, d_head], got {tuple(x.shape)}.")
            key = (x.device, x.dtype, x.shape[3])
            if key not in masks:
                keep = torch.stack([rope_keep_mask(h, x.shape[3], [a.head], list(a.index), dtype=x.dtype, device="cpu")
                                    for a in abls])
                masks[key] = keep.to(x.device)[:, None, None]  # [g, 1, 1, heads, d]
            g = x.shape[0] // b
            return (x.reshape(g, b, *x.shape[1:]) * masks[key]).reshape(x.shape)

        return fn

    def directions(self, layer, act, rows, head_idx):
        # removing pairs moves the activation by minus its value on those dims: keep the value
        return act

    def along(self, grad, direction, ab, heads):
        dims = list(ab.index)
        x = direction[:, :, ab.head][..., dims]
        return -(grad[:, :, ab.head].double()[..., dims] * x.double()).sum((1, 2))

    def groups(self, ablations):
        return sorted({(a.band, a.index) for a in ablations})

    def shift(self, x, direction, key, head_idx):
        keep = rope_keep_mask(x.shape[2], x.shape[3], head_idx.tolist(), list(key), dtype=x.dtype, device=x.device)
        return -direction * (1 - keep)
