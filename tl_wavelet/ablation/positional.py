"""Positional band ablation: remove wavelet bands of a head's output ``hook_z`` over positions.

The signal of each head over positions (``hook_z``, ``[batch, pos, head, d_head]``) is
split into bands ``[A_J, D_J, ..., D_1]`` by a :class:`~tl_wavelet.ablation.spec.BandSpec`;
the chosen bands are replaced (``zero``, ``mean``, ``resample``) and the head output is
rebuilt. With ``causal=True`` (the default) the split is
:func:`~tl_wavelet.transforms.causal_bands`: band values at position ``t`` depend only on
positions ``<= t``, so a patched activation at ``t`` never sees future tokens and
next-token losses stay meaningful. ``causal=False`` uses the decimated DWT
(:func:`~tl_wavelet.transforms.wavedec`), whose filters are two-sided: removing a band then
moves information from later positions into earlier ones (the test suite shows this leak),
so do not use it to measure loss.

One generic core, :func:`patch_bands`; :func:`band_ablation_hook` is the thin hook
wrapper and :class:`ZBands` the sweep target, both over the same core and the same
:func:`~tl_wavelet.ablation.spec.replacement`.

Examples
--------
>>> hook = band_ablation_hook(3, heads=[0, 5], bands=["A5"])          # doctest: +SKIP
>>> loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[hook])  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..adapter import hook_name, model_shape, resolve_heads
from ..transforms import causal_bands, wavedec, waverec
from ..validate import as_list, check_index, check_int, check_tensor
from .spec import Ablation, BandSpec, Method, Target, check_method, derangement, replacement

__all__ = ["resolve_bands", "band_components", "patch_bands", "band_ablation_hook", "ZBands"]


def resolve_bands(bands: str | int | Iterable[str | int] | None, level: int) -> list[int]:
    """Band names (``"A5"``, ``"D3"``) or indices into :func:`band_labels` -> sorted indices.

    ``None`` means every band. Unknown names raise a ``ValueError`` that lists the valid ones.

    Examples
    --------
    >>> resolve_bands(["D1", "A2"], level=2)
    [0, 2]
    """
    return BandSpec(level=level).resolve(bands)


def _components(x: Float[Tensor, "batch pos *rest"], spec: BandSpec) -> Float[Tensor, "bands batch pos *rest"]:
    check_tensor(x, "x")
    if x.ndim < 2:
        raise ValueError(f"expected [batch, pos, ...], got shape {tuple(x.shape)}.")
    n = x.shape[1]
    spec.check_length(n)
    # bf16/fp16 activations are split in float32 (returned so): in 8 bits the bands would
    # not sum back to x, and a zero ablation would also remove rounding noise
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    if spec.causal:
        return causal_bands(x, spec.wavelet, spec.level, dim=1).to(x.dtype)
    coeffs = wavedec(x, spec.wavelet, mode=spec.mode, level=spec.level, axis=1)
    comps = []
    for b in range(len(coeffs)):
        only = [c if i == b else torch.zeros_like(c) for i, c in enumerate(coeffs)]
        comps.append(waverec(only, spec.wavelet, mode=spec.mode, axis=1).narrow(1, 0, n))
    return torch.stack(comps).to(x.dtype)


def band_components(
    x: Float[Tensor, "batch pos *rest"],
    *,
    causal: bool = True,
    band_wavelet: str = "haar",
    level: int = 5,
    mode: str = "symmetric",
) -> Float[Tensor, "bands batch pos *rest"]:
    """Split ``x`` over positions (dim 1) into band components that sum to ``x``.

    Parameters
    ----------
    x : Tensor
        ``[batch, pos, ...]``.
    causal, band_wavelet, level, mode
        The decomposition, see :class:`~tl_wavelet.ablation.spec.BandSpec`:
        ``causal=True``, the causal a-trous bands ``[A_J, D_J, ..., D_1]``
        (:func:`~tl_wavelet.transforms.causal_bands`); ``causal=False``, the signal-space
        component of each DWT band, ``waverec`` of the coefficients with only that band
        kept (the DWT is linear, so the components add up to ``x`` up to round-off).

    Returns
    -------
    Tensor
        ``[bands, batch, pos, ...]`` in ``x``'s dtype.

    Examples
    --------
    >>> x = torch.randn(2, 32, 3, dtype=torch.float64)
    >>> comps = band_components(x, level=3)
    >>> comps.shape, torch.allclose(comps.sum(0), x)
    (torch.Size([4, 2, 32, 3]), True)
    """
    return _components(x, BandSpec(causal, band_wavelet, level, mode)).to(x.dtype)


def _patch(
    x: Float[Tensor, "batch pos *rest"],
    remove: list[int],
    spec: BandSpec,
    method: Method,
    reference: Float[Tensor, "rbatch pos *rest"] | None,
    source_index: Int[Tensor, " batch"] | None,
    seed: int,
) -> Float[Tensor, "batch pos *rest"]:
    """:func:`patch_bands` with a validated spec and method."""
    if not remove:
        return x
    comps = _components(x, spec)
    if remove[-1] >= comps.shape[0] or remove[0] < 0:
        raise ValueError(f"band indices must be in 0..{comps.shape[0] - 1} ({spec.labels}), got {remove}.")
    idx = torch.tensor(remove, device=x.device)
    removed = comps.index_select(0, idx)
    out = x - removed.sum(0)  # float32 for a half-precision x: one rounding, at the end
    if method == "zero":
        return out.to(x.dtype)
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
        ref_comps = _components(reference.to(x.device, x.dtype), spec).index_select(0, idx)
        if method == "resample" and source_index is None:
            g = torch.Generator().manual_seed(int(seed))
            source_index = torch.randint(reference.shape[0], (x.shape[0],), generator=g, device="cpu")
    return (out + replacement(removed, ref_comps, method, source_index).sum(0)).to(x.dtype)


def patch_bands(
    x: Float[Tensor, "batch pos *rest"],
    remove: Sequence[int],
    *,
    method: Method = "zero",
    causal: bool = True,
    band_wavelet: str = "haar",
    level: int = 5,
    mode: str = "symmetric",
    reference: Float[Tensor, "rbatch pos *rest"] | None = None,
    source_index: Int[Tensor, " batch"] | None = None,
    seed: int = 0,
) -> Float[Tensor, "batch pos *rest"]:
    """The generic core: replace bands ``remove`` (indices into :func:`band_labels`) of ``x``.

    ``x`` is split over positions (dim 1) by :func:`band_components`; the result is
    ``x - sum_b comp_b(x) + sum_b new_b`` over the removed bands ``b``, with ``new_b``
    from :func:`~tl_wavelet.ablation.spec.replacement`:

    - ``zero``: 0;
    - ``mean``: ``comp_b`` averaged over the sequences of ``reference`` (default: over
      ``x``'s own batch), position by position;
    - ``resample``: ``comp_b`` of another sequence: row ``source_index[i]`` of
      ``reference``; without a reference, a seeded derangement of ``x``'s own batch; with
      a reference and no ``source_index``, seeded random rows of it.

    Removing no band returns ``x`` itself; removing every band with ``zero`` gives 0 (up
    to round-off), i.e. zero-ablation.

    Parameters
    ----------
    x : Tensor
        ``[batch, pos, ...]``.
    remove : sequence of int
        Band indices into ``band_labels(level)``.
    method : str
        ``"zero"``, ``"mean"`` or ``"resample"``.
    causal, band_wavelet, level, mode
        The decomposition (:class:`~tl_wavelet.ablation.spec.BandSpec`).
    reference : Tensor, optional
        ``[rbatch, pos, ...]``, the source for ``mean`` / ``resample``.
    source_index : Tensor, optional
        ``[batch]`` reference rows (``resample``).
    seed : int
        Seed of the resample rows when ``source_index`` is not given.

    Returns
    -------
    Tensor
        The patched ``x``.

    Examples
    --------
    >>> x = torch.randn(3, 64, 2, dtype=torch.float64)
    >>> y = patch_bands(x, [0], level=3)            # drop the coarse approximation A3
    >>> torch.allclose(y, x - band_components(x, level=3)[0])
    True
    """
    method = check_method(method)
    spec = BandSpec(causal, band_wavelet, level, mode)
    seed = check_int(seed, "seed")
    check_tensor(x, "x", min_ndim=2, shape="[batch, pos, ...]")
    if isinstance(remove, (list, tuple)) and not remove:
        return x  # removing no band is the identity
    try:  # band indices (negative from the end) or names, by BandSpec's one rule
        remove = spec.resolve(remove)
    except (TypeError, ValueError) as e:
        raise type(e)(f"remove: {e}") from None
    _refuse_unused_source(method, reference, source_index)
    if reference is not None:
        check_tensor(reference, "reference", ndim=x.ndim)
    return _patch(x, remove, spec, method, reference, source_index, seed)


def _refuse_unused_source(method: str, reference, source_index) -> None:
    """``zero`` replaces with 0: a reference or source rows would be silently ignored."""
    for name, value in (("reference", reference), ("source_index", source_index)):
        if method == "zero" and value is not None:
            raise ValueError(f"{name} applies to method='mean' or 'resample'; method='zero' ignores it. "
                             f"Pass method='mean'/'resample', or drop {name}.")


def _z_hook_fn(
    layer: int,
    head_list: list[int] | None,
    remove: list[int],
    spec: BandSpec,
    method: Method,
    reference: Tensor | None,
    source_index: Tensor | None,
    seed: int,
) -> Callable[[Tensor, object], Tensor]:
    def fn(z: Tensor, hook) -> Tensor:
        n_heads = z.shape[2]
        hs = list(range(n_heads)) if head_list is None else head_list
        bad = [h for h in hs if not -n_heads <= h < n_heads]
        if bad:  # without model= the head count is known only now
            raise ValueError(
                f"heads: head {bad[0]} is out of range: layer {layer} has {n_heads} heads (0..{n_heads - 1}); "
                "pass model=... to band_ablation_hook to check heads when the hook is made."
            )
        hs = sorted({h % n_heads for h in hs})
        idx = torch.tensor(hs, device=z.device)
        sub = z.index_select(2, idx)
        ref = None if reference is None else reference.to(z.device).index_select(2, idx)
        patched = _patch(sub, remove, spec, method, ref, source_index, seed)
        return z.index_copy(2, idx, patched.to(z.dtype))  # out of place: autograd-safe

    return fn


def band_ablation_hook(
    layer: int,
    heads: int | Sequence[int] | None,
    bands: str | Sequence[str] | None,
    *,
    method: Method = "zero",
    causal: bool = True,
    band_wavelet: str = "haar",
    level: int = 5,
    mode: str = "symmetric",
    reference: Float[Tensor, "rbatch pos head d_head"] | None = None,
    source_index: Int[Tensor, " batch"] | None = None,
    seed: int = 0,
    model=None,
):
    """A ``(name, fn)`` hook on ``blocks.{layer}.attn.hook_z`` that removes positional bands.

    Parameters
    ----------
    layer : int
        The layer whose heads are patched.
    heads : int or sequence of int or None
        Query-head index or indices (``None``: every head).
    bands : str or sequence of str or None
        Band names from :func:`~tl_wavelet.transforms.band_labels` (``None``: all).
    method : str
        ``"zero"``, ``"mean"`` or ``"resample"`` (see :func:`patch_bands`).
    causal : bool
        Causal a-trous bands (default; needed whenever a loss is measured) or the
        two-sided DWT (``causal=False``, leaks future positions into past ones).
    band_wavelet, level, mode
        The decomposition (``mode`` only for the DWT); ``band_wavelet`` as in
        :class:`~tl_wavelet.analysis.MetricConfig` (the DWT metrics' filter is ``wavelet``).
    reference : Tensor, optional
        ``hook_z`` of this layer on other sequences ``[rbatch, pos, head, d_head]`` (e.g.
        from ``run_with_cache``), the source for ``mean``/``resample``; default: the
        patched batch itself.
    source_index, seed
        Which reference row each sequence takes its band from (resample).
    model : optional
        The model the hook is for: ``layer`` and ``heads`` are then checked against it
        when the hook is made (negative indices count from the end). Without it a
        negative ``layer`` is refused (the layer count is unknown) and heads are checked
        when the hook runs. A ``layer`` past the model's last one cannot be caught
        without ``model=``, since the hook never runs: TransformerLens 4 refuses the hook
        name (``KeyError: Hook name 'blocks.99.attn.hook_z' does not exist``) and TL 3.9's
        TransformerBridge silently skips it; pass ``model=`` for a ``ValueError`` naming
        ``layer`` and the valid range.
        tl_wavelet's own callers (:func:`band_sweep`, :mod:`tl_wavelet.view`) check
        layers against the model before adding any hook.

    Returns
    -------
    tuple
        ``(hook name, hook function)``, for ``model.hooks(fwd_hooks=[...])`` or ``run_with_hooks``.

    Examples
    --------
    >>> name, fn = band_ablation_hook(1, heads=3, bands=["A5"])
    >>> name
    'blocks.1.attn.hook_z'
    >>> loss = model.run_with_hooks(tokens, return_type="loss", fwd_hooks=[(name, fn)])  # doctest: +SKIP
    """
    method = check_method(method)
    spec = BandSpec(causal, band_wavelet, level, mode)
    remove = spec.resolve(bands)
    seed = check_int(seed, "seed")
    if model is not None:
        shape = model_shape(model)
        layer = check_index(layer, "layer", shape.n_layers)
        head_list = None if heads is None else resolve_heads(shape, heads)
    else:
        layer = check_int(layer, "layer")
        if layer < 0:
            raise ValueError(
                f"layer={layer}: a negative layer counts from the end, which needs the model: pass model=... "
                "(or the layer's index)."
            )
        # types and emptiness now; the range once the hook sees the layer's heads
        head_list = None if heads is None else [check_int(h, "heads") for h in as_list(heads, "heads")]
        if head_list is not None and not head_list:
            raise ValueError("heads is empty: pass None for every head, or a list of head indices.")
    _refuse_unused_source(method, reference, source_index)
    if reference is not None and reference.ndim != 4:
        raise ValueError(f"reference must be hook_z activations [batch, pos, head, d_head], got shape {tuple(reference.shape)}.")
    return hook_name("z", layer), _z_hook_fn(layer, head_list, remove, spec, method, reference, source_index, seed)


class ZBands(Target):
    """Sweep target: positional bands of each head's ``hook_z``, replaced by ``method``.

    Examples
    --------
    >>> t = ZBands(BandSpec(level=2), "zero")
    >>> [a.band for a in t.ablations([0], [1], None, n=8)]
    ['A2', 'D2', 'D1']
    """

    act = "z"

    def __init__(self, spec: BandSpec, method: Method, seed: int = 0):
        self.spec, self.method, self.seed = spec, check_method(method), seed
        self.ref: dict[int, Tensor] = {}  # layer -> hook_z of the reference sequences
        self.source: Tensor | None = None  # resample: reference row of every swept sequence

    def use_reference(self, ref: dict[int, Tensor], source: Tensor | None) -> None:
        self.ref, self.source = ref, source

    @property
    def has_reference(self) -> bool:
        return bool(self.ref)

    def ablations(self, layers, heads, bands, n):
        idx = self.spec.resolve(bands)
        self.spec.check_length(n)
        labels = self.spec.labels
        return [Ablation(L, h, labels[b], (b,)) for L in layers for h in heads for b in idx]

    def _source(self, rows: Tensor) -> Tensor | None:
        return None if self.source is None else self.source[rows.cpu()]

    def hook_fn(self, ab, rows):
        return _z_hook_fn(ab.layer, [ab.head], [ab.index[0]], self.spec, self.method, self.ref.get(ab.layer),
                          self._source(rows), self.seed)

    def stacked_hook_fn(self, abls, rows):
        """All cells in one patch: the blocks enter equal, so one band split of the swept heads
        serves every cell; each block then gets its cell's head minus that band (plus its
        replacement), in the same arithmetic as the one-cell patch (equal results)."""
        heads = sorted({a.head for a in abls})
        col = {h: i for i, h in enumerate(heads)}
        cell_head = torch.tensor([a.head for a in abls], device="cpu")
        cell_col = torch.tensor([col[a.head] for a in abls], device="cpu")
        cell_band = torch.tensor([a.index[0] for a in abls], device="cpu")
        ref, source, b = self.ref.get(abls[0].layer), self._source(rows), len(rows)

        def fn(z: Tensor, hook) -> Tensor:
            g = z.shape[0] // b
            dev = z.device
            idx = torch.tensor(heads, device=dev)
            comps = _components(z[:b].index_select(2, idx), self.spec)  # [bands, b, n, heads, d]
            ch, cc, cb = cell_head.to(dev), cell_col.to(dev), cell_band.to(dev)
            removed = comps[cb, :, :, cc]  # [g, b, n, d]: cell i's band of its head
            zz = z.reshape(g, b, *z.shape[1:]).clone()
            ar = torch.arange(g, device=dev)
            out = zz[ar, :, :, ch] - removed
            if self.method != "zero":
                ref_comps = _components(ref.to(dev).index_select(2, idx).to(z.dtype), self.spec)[cb, :, :, cc]
                out = out + (ref_comps.mean(1, keepdim=True) if self.method == "mean"
                             else ref_comps[:, source.to(dev)])
            zz[ar, :, :, ch] = out.to(z.dtype)
            return zz.reshape(z.shape)

        return fn

    def directions(self, layer, act, rows, head_idx):
        """New-minus-removed components of every (band, swept head): ``[bands, batch, pos, head, d]``.

        The patched ``hook_z`` of cell (head ``head_idx[i]``, band b) is ``act`` plus
        ``direction[b, :, :, i]`` on that head.
        """
        x = act.detach()[:, :, head_idx]
        comps = _components(x, self.spec)
        ref_comps = None
        if self.method != "zero":
            ref = self.ref[layer]
            ref_comps = _components(ref[:, :, head_idx.to(ref.device)].to(x.device, x.dtype), self.spec)
        return replacement(comps, ref_comps, self.method, self._source(rows)) - comps

    def along(self, grad, direction, ab, heads):
        d = direction[ab.index[0], :, :, heads.index(ab.head)]
        return (grad[:, :, ab.head].double() * d.double()).sum((1, 2))

    def groups(self, ablations):
        return [(self.spec.labels[b], (b,)) for b in sorted({a.index[0] for a in ablations})]

    def shift(self, x, direction, key, head_idx):
        shift = torch.zeros_like(x)
        shift[:, :, head_idx] = direction[key[0]].to(x.dtype)  # [b, p, h, d] on the swept heads
        return shift
