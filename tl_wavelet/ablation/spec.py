"""What an ablation removes and what it puts back: the band spec, methods and the replacement.

Everything here is shared by the hooks (:mod:`.positional`, :mod:`.rope`) and by
:func:`~tl_wavelet.ablation.band_sweep`:

* :class:`BandSpec`: the positional decomposition (causal or DWT, wavelet, level, mode),
  validated once and passed through instead of four keyword arguments;
* :func:`replacement`: the one place where ``mean`` / ``resample`` values are computed,
  for the hooks and for attribution alike;
* :class:`Ablation` and :class:`Target`: one cell of a sweep, and the interface that the
  two patch targets (:class:`~tl_wavelet.ablation.positional.ZBands`,
  :class:`~tl_wavelet.ablation.rope_pairs.RopePairs`) implement, as TransformerLens's
  ``patching.py`` passes a patch setter instead of branching on the activation.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..transforms import MODES, band_labels, dwt_max_level
from ..validate import as_list, check_bool, check_int, is_int

__all__ = [
    "METHODS",
    "Method",
    "BandSpec",
    "check_method",
    "derangement",
    "replacement",
    "Ablation",
    "Target",
]

METHODS = ("zero", "mean", "resample")
Method = Literal["zero", "mean", "resample"]


def _check_level(level) -> int:
    if not isinstance(level, (bool, np.bool_)) and isinstance(level, (int, np.integer)) and level < 1:
        raise ValueError(f"level must be an int >= 1 (bands A_level, D_level..D1), got {level!r}.")
    return check_int(level, "level", minimum=1)


@dataclass(frozen=True)
class BandSpec:
    """How a head's output is split over positions into bands ``[A_J, D_J, ..., D_1]``.

    Parameters
    ----------
    causal : bool
        ``True`` (default): the causal a-trous bands
        (:func:`~tl_wavelet.transforms.causal_bands`), band values at ``t`` depend only on
        positions ``<= t`` (needed whenever a loss is measured). ``False``: the decimated
        DWT (:func:`~tl_wavelet.transforms.wavedec`), whose two-sided filters leak later
        positions into earlier ones.
    wavelet : str
        A discrete PyWavelets wavelet name.
    level : int
        ``J >= 1``, the number of detail bands.
    mode : str
        The DWT's extension mode (PyWavelets' names; only read when ``causal=False``).

    Examples
    --------
    >>> spec = BandSpec(level=3)
    >>> spec.labels
    ['A3', 'D3', 'D2', 'D1']
    >>> spec.resolve(["D1", "A3"])
    [0, 3]
    >>> BandSpec(level=0)
    Traceback (most recent call last):
    ...
    ValueError: level must be an int >= 1 (bands A_level, D_level..D1), got 0.
    """

    causal: bool = True
    wavelet: str = "haar"
    level: int = 5
    mode: str = "symmetric"

    def __post_init__(self):
        object.__setattr__(self, "level", _check_level(self.level))
        object.__setattr__(self, "causal", check_bool(self.causal, "causal"))
        if self.mode not in MODES:
            raise ValueError(f"Unknown extension mode {self.mode!r}: choose one of {', '.join(MODES)}.")
        dwt_max_level(0, self.wavelet)  # raises, naming close matches, for an unknown wavelet

    @property
    def labels(self) -> list[str]:
        """Band names, coarse to fine: ``['A5', 'D5', ..., 'D1']``."""
        return band_labels(self.level)

    def resolve(self, bands: str | int | Iterable[str | int] | None) -> list[int]:
        """Band names (``"A5"``, ``"D3"``) or indices into :attr:`labels` -> sorted indices (``None``: all)."""
        labels, level = self.labels, self.level
        if bands is None:
            return list(range(len(labels)))
        bands = [bands] if isinstance(bands, str) else as_list(bands, "bands")
        if not bands:
            # an empty selection would patch nothing: a silent no-op hook or an empty sweep
            raise ValueError(f"bands is empty: pass None for every band, or names from {labels}.")
        out = set()
        for b in bands:
            if isinstance(b, str):
                if b not in labels:
                    raise ValueError(
                        f"Unknown band {b!r} at level {level}: valid bands are {labels} "
                        "(A = the coarse approximation, D_j = details at scale 2^j; change level= for others)."
                    )
                out.add(labels.index(b))
            elif is_int(b):
                if not -len(labels) <= b < len(labels):  # negative: from the end, as in Python
                    raise ValueError(
                        f"bands: band index {b} is out of range: level {level} has bands 0..{len(labels) - 1} = "
                        f"{labels} (or -{len(labels)}..-1 from the end)."
                    )
                out.add(int(b) % len(labels))
            else:
                raise TypeError(f"bands: a band is a name such as 'A5' or 'D1' (or an index), got {b!r}.")
        return sorted(out)

    def check_length(self, n: int) -> None:
        """Refuse sequences too short for the bands to exist, naming the longest usable level."""
        level = self.level
        if self.causal:
            # The coarsest band averages over about 2^level positions; beyond the sequence it
            # only averages in the zeros before t = 0, so such bands do not exist at this length.
            if 2**level > n:
                raise ValueError(
                    f"level {level} needs sequences of at least 2^{level} = {2**level} positions for its "
                    f"causal bands to exist, got {n}: use level <= {max(int(math.log2(n)), 0)} or longer sequences."
                )
        else:
            best = dwt_max_level(n, self.wavelet)
            if level > best:
                raise ValueError(
                    f"The DWT ({self.wavelet}) at level {level} needs more than {n} positions: use level <= {best} "
                    "or longer sequences."
                )


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else a ``ValueError`` listing them."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}: choose one of {METHODS}.")
    return method


def derangement(n: int, seed: int = 0) -> Int[Tensor, " n"]:
    """A seeded permutation of ``range(n)`` with no fixed point (each row gets another row's band).

    Examples
    --------
    >>> p = derangement(5, seed=1)
    >>> bool((p != torch.arange(5)).all()), sorted(p.tolist())
    (True, [0, 1, 2, 3, 4])
    """
    n = check_int(n, "n")
    seed = check_int(seed, "seed")
    if n < 2:
        raise ValueError(
            "n: resample needs at least 2 sequences in the batch (each takes its band from another one), "
            f"got {n}: pass more sequences or reference=... (activations of other sequences)."
        )
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=g, device="cpu")
    out = torch.empty(n, dtype=torch.long, device="cpu")
    out[order] = order.roll(-1)  # a random cycle: row order[i] takes row order[i+1]
    return out


def replacement(
    removed: Float[Tensor, "k batch pos *rest"],
    ref_comps: Float[Tensor, "k rbatch pos *rest"],
    method: Method,
    source_index: Int[Tensor, " batch"] | None = None,
) -> Float[Tensor, "k batch pos *rest"]:
    """What replaces removed band components: 0, their mean over the reference, or a reference row.

    Parameters
    ----------
    removed : Tensor
        The removed components, band-first ``[k, batch, pos, ...]``.
    ref_comps : Tensor
        The same bands of the reference sequences ``[k, rbatch, pos, ...]``.
    method : str
        ``"zero"``, ``"mean"`` (the mean over reference sequences at each position, an
        activation-patching "mean ablation") or ``"resample"`` (row ``source_index[i]`` of
        the reference for sequence ``i``).
    source_index : Tensor, optional
        ``[batch]`` reference rows (``resample`` only).

    Examples
    --------
    >>> removed = torch.zeros(1, 2, 3)
    >>> ref = torch.arange(6.0).reshape(1, 2, 3)
    >>> replacement(removed, ref, "mean").tolist()
    [[[1.5, 2.5, 3.5], [1.5, 2.5, 3.5]]]
    >>> replacement(removed, ref, "resample", torch.tensor([1, 0])).tolist()
    [[[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]]
    """
    method = check_method(method)
    if method == "zero":
        return torch.zeros_like(removed)
    if method == "mean":
        return ref_comps.mean(1, keepdim=True).expand_as(removed)
    batch, n_ref = removed.shape[1], ref_comps.shape[1]
    if source_index is None:
        raise ValueError("resample needs source_index: the reference row each sequence takes its band from.")
    source_index = torch.as_tensor(source_index, dtype=torch.long, device=ref_comps.device)
    if source_index.shape != (batch,) or not (0 <= int(source_index.min()) and int(source_index.max()) < n_ref):
        raise ValueError(
            f"source_index must hold {batch} row indices into the {n_ref} reference sequences, "
            f"got {source_index.tolist() if source_index.numel() < 20 else tuple(source_index.shape)}."
        )
    return ref_comps[:, source_index]


@dataclass(frozen=True)
class Ablation:
    """One cell of a sweep: remove ``band`` (``index``: band indices or rotary dims) of one head."""

    layer: int
    head: int
    band: str
    index: tuple[int, ...]


class Target(ABC):
    """A kind of activation band that :func:`~tl_wavelet.ablation.band_sweep` can remove.

    A target knows its hook point, which cells a sweep has, how to patch one cell (exact
    runs) and which direction removing it moves the activation (attribution). The sweep
    itself never asks which target it holds.
    """

    #: hook kind (``blocks.L.attn.hook_{act}``)
    act: str
    method: Method = "zero"

    @property
    def needs_reference(self) -> bool:
        """Whether patches read reference activations (``mean`` / ``resample``)."""
        return self.method != "zero"

    @property
    def has_reference(self) -> bool:
        """Whether reference activations have been set."""
        return False

    def use_reference(self, ref: dict[int, Tensor], source: Tensor | None) -> None:
        """Reference activations per layer and, for resample, each swept sequence's source row."""
        raise ValueError(f"{type(self).__name__} has no mean/resample reference (method='zero' only).")

    def use_swept_as_reference(self, ref: dict[int, Tensor], seed: int) -> None:
        """The swept sequences' own activations are the reference (resample: a seeded
        derangement, so no sequence takes its band from itself)."""
        source = derangement(len(next(iter(ref.values()))), seed) if self.method == "resample" else None
        self.use_reference(ref, source)

    @abstractmethod
    def ablations(self, layers: Sequence[int], heads: Sequence[int], bands, n: int) -> list[Ablation]:
        """Every (layer, head, band) cell of the sweep, validated for sequences of ``n`` positions."""

    @abstractmethod
    def hook_fn(self, ab: Ablation, rows: Tensor) -> Callable[[Tensor, object], Tensor]:
        """The patch of one cell on the swept sequences ``rows`` (global indices)."""

    def stacked_hook_fn(self, abls: Sequence[Ablation], rows: Tensor) -> Callable[[Tensor, object], Tensor]:
        """One patch for ``len(abls)`` cells of one layer stacked along the batch: block ``g`` of
        ``len(rows)`` rows gets cell ``g``. The blocks enter equal (one cached residual feeds
        the patched forward), which targets may use to patch them all in a few operations;
        this default runs each cell's own patch on its block."""
        fns = [self.hook_fn(ab, rows) for ab in abls]
        b = len(rows)

        def fn(x, hook):
            return torch.cat([f(x[g * b:(g + 1) * b], hook) for g, f in enumerate(fns)], 0)

        return fn

    @abstractmethod
    def directions(self, layer: int, act: Tensor, rows: Tensor, head_idx: Tensor) -> Tensor:
        """What attribution needs from the clean activation ``act`` of ``layer`` to build each
        cell's removal direction (read back by :meth:`along` and :meth:`shift`)."""

    @abstractmethod
    def along(self, grad: Tensor, direction: Tensor, ab: Ablation, heads: Sequence[int]) -> Float[Tensor, " batch"]:
        """``grad . delta`` of cell ``ab`` per sequence (``delta``: patched minus clean activation)."""

    @abstractmethod
    def groups(self, ablations: Sequence[Ablation]) -> list[tuple[str, tuple[int, ...]]]:
        """The bands of the sweep as ``(label, key)``: an integrated-gradient path moves one of
        them in every swept head at once; ``key`` equals :meth:`key` of its cells."""

    def key(self, ab: Ablation) -> tuple[int, ...]:
        """Which group of :meth:`groups` a cell belongs to."""
        return ab.index

    @abstractmethod
    def shift(self, x: Tensor, direction: Tensor, key: tuple[int, ...], head_idx: Tensor) -> Tensor:
        """The full-activation move that removes band ``key`` from every swept head."""
