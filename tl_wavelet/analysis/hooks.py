"""Hooks that stream attention-head activations into metric accumulators.

Nothing is cached: each hook turns one layer's activation into per-(sequence, head)
metric values right away (see :func:`layer_metrics`) and folds them into running sums
(:mod:`tl_wavelet.stats`), so memory does not grow with the number of sequences.

The hooks are ordinary TransformerLens ``(name, fn)`` pairs that compose with
``model.hooks(...)``, ``run_with_hooks`` and ``run_with_cache``::

    acc = HeadAccumulator(model, signal="offset_profile", level=5)
    with model.hooks(fwd_hooks=acc.hooks()):
        model(tokens)
    report = acc.report()          # a tl_wavelet.HeadReport
"""
from __future__ import annotations

import math
import threading
import warnings
import weakref
from dataclasses import asdict, dataclass, field
from typing import Iterable

import torch
from einops import rearrange, reduce
from jaxtyping import Float
from torch import Tensor

from .. import metrics as M
from ..adapter import ModelShape, hook_name, is_causal, model_shape, require_hooks, resolve_layers
from ..rope import describe_positions, rope_frequencies, rotary_hooks
from ..signals import offset_aligned_rows, prefix_offset_profiles, received_attention, row_plan, without_first_key
from ..state import check_fingerprint, model_fingerprint
from ..stats import MIN_CORRELATION_N, PackedMoments, RunningCorrelation, RunningMoments, to_host
from ..transforms import causal_bands
from ..validate import check_bool, check_choice, check_int, check_tensor, check_type, warn_small_sample
from .config import KEY_ORDER_SIGNALS, MetricConfig
from .dwt_maps import dwt_maps, dwt_metrics
from .result import HeadReport

__all__ = ["layer_metrics", "spectral_metrics", "rope_pair_energy", "HeadAccumulator", "metric_hooks"]

_HALF = (torch.float16, torch.bfloat16)


def _on(t: Tensor, device: torch.device, cache: dict) -> Tensor:
    """``t`` (a small host table) on ``device``, copied once per device and kept."""
    key = (id(t), device)
    if key not in cache:
        cache[key] = t.to(device)
    return cache[key]


_DEVICE_TABLES: dict = {}


class _Shared(threading.local):
    """What several accumulators read off one activation, computed by the first hook that
    fires on it and reused by the others (the default and the paper metrics read the same
    offset profile, the same DWT of it, the same non-finite count): a memo tied to the
    activation tensor itself (a weak reference to it, or to the tensor it views, the view's
    shape and strides, and the version counter, so a tensor freed, replaced or edited in
    place is never matched), dropped when the next one arrives or the
    activation is freed (nothing outlives the forward that made it)."""

    def __init__(self):
        self.ref, self.version, self.view, self.memo = None, None, None, {}

    def memo_for(self, act: Tensor) -> dict:
        # A TransformerBridge hands each hook function its own view of one tensor (q and k
        # reshaped per call): the memo follows the viewed tensor and the view's geometry
        base = act if act._base is None else act._base
        view = (tuple(act.shape), act.stride(), act.storage_offset(), act.dtype)
        if self.ref is None or self.ref() is not base or self.version != act._version or self.view != view:
            self.ref, self.version, self.view, self.memo = weakref.ref(base, self._freed), act._version, view, {}
        return self.memo

    def _freed(self, ref) -> None:
        if ref is self.ref:
            self.ref, self.version, self.view, self.memo = None, None, None, {}

    def stack_for(self, sigs: list[tuple], signal_key: tuple) -> tuple[tuple, dict]:
        """Per-layer signals ``(rows, lengths, full, shorts)`` stacked along the batch, and a
        memo for the metrics of the stack: made by the first accumulator of a forward pass
        and found by the others that read the same signals (tied to them by weak references,
        dropped when they are freed)."""
        srcs = [t for sg in sigs for t in (sg[0], sg[2])]
        key = (signal_key, tuple(map(id, srcs)))
        stacks = self.__dict__.setdefault("stacks", {})
        hit = stacks.get(key)
        if hit is not None and all(r() is t for r, t in zip(hit[0], srcs)):
            return hit[1], hit[2]
        rows = torch.cat([sg[0] for sg in sigs])
        full = rows if all(sg[2] is sg[0] for sg in sigs) else torch.cat([sg[2] for sg in sigs])
        shorts = {a: torch.cat([sg[3][a] for sg in sigs]) for a in sigs[0][3]}
        stacked = (rows, sigs[0][1], full, shorts)  # lengths: a function of the length, one for every layer
        stacks[key] = ([weakref.ref(t) for t in srcs], stacked, {})
        weakref.finalize(sigs[0][0], stacks.pop, key, None)
        return stacked, stacks[key][2]


#: The layers of a pass are measured together in groups whose signals take at most this
#: many bytes (the metrics' work tensors take several times that at once, so this bounds
#: the memory the stack adds to the forward's); a layer larger than this alone is measured
#: in its hook (long contexts, ``pattern_rows`` or ``z`` signals of many rows).
DEFER_BYTES = 2**24


def _signal_bytes(signals: tuple) -> int:
    rows, _, full, shorts = signals
    ts = [rows, *([] if full is rows else [full]), *shorts.values()]
    return sum(t.numel() * t.element_size() for t in ts)


_SHARED = _Shared()


def _signals_from_pattern(pattern: Tensor, cfg: MetricConfig, aligned=None, causal: bool | None = None):
    """(rows, lengths, full, short) for an attention pattern [b, h, q, k].

    ``aligned``: ``offset_aligned_rows(pattern, cfg.drop_first_key)`` when the caller already
    has it (several signals from one gather). ``causal``: whether the model is causal, when
    the caller knows (else read off the pattern: a host round trip). Nothing here waits on
    the device: lengths and row choices are functions of the length, made on the host.
    """
    n = pattern.shape[-1]
    shorts = {}
    if aligned is None and cfg.signal == "pattern_rows":
        aligned = offset_aligned_rows(pattern, cfg.drop_first_key)
    if cfg.signal == "offset_profile":
        # the cut sequences' profiles (causal prefixes) are partial sums of the same rows:
        # one pass over the pattern serves the full and every cut profile
        cuts = {a: math.floor(a * n) for a in cfg.alphas}
        prof = prefix_offset_profiles(pattern, cfg.drop_first_key, [n, *cuts.values()],
                                      aligned=None if aligned is None else aligned[0])
        rows = full = prof[n][..., None, :]  # [b, h, 1, n]
        lengths = None
        for a, m in cuts.items():
            shorts[a] = prof[m][..., None, :]
    elif cfg.signal == "last_row":
        # the last query, the only one that sees the whole sequence, in key order; the cut
        # sequence's last query is row m - 1 of the causal prefix
        def last(p: Tensor) -> Tensor:
            return without_first_key(p) if cfg.drop_first_key else p

        full = last(pattern[..., -1:, :])
        rows, lengths = full, None
        for a in cfg.alphas:
            m = math.floor(a * n)
            shorts[a] = last(pattern[..., m - 1 : m, :m])
    elif cfg.signal == "received":
        p = without_first_key(pattern) if cfg.drop_first_key else pattern
        if causal is None:
            causal = bool((pattern.triu(1) == 0).all())  # checked once: the prefixes inherit it
        full = received_attention(p, dtype=torch.float64, causal=causal)[..., None, :]
        rows, lengths = full, None
        for a in cfg.alphas:
            m = math.floor(a * n)
            shorts[a] = received_attention(p[..., :m, :m], dtype=torch.float64, causal=causal)[..., None, :]
    else:  # pattern_rows
        all_rows = aligned[0]
        idx, lengths = row_plan(n, cfg.drop_first_key, min(cfg.min_length(), n), cfg.max_rows, cfg.paper)
        rows = all_rows[..., _on(idx, pattern.device, _DEVICE_TABLES), :]
        lengths = _on(lengths, pattern.device, _DEVICE_TABLES)
        # The DWT metrics need one signal of full length: the last query row, the only
        # one that sees the whole sequence, in key order (the paper's a_h(t)); without the
        # first key when it is dropped, as every other signal
        def last(p: Tensor) -> Tensor:
            return without_first_key(p) if cfg.drop_first_key else p

        full = last(pattern[..., -1:, :])
        for a in cfg.alphas:
            m = math.floor(a * n)
            shorts[a] = last(pattern[..., m - 1 : m, :m])
    return rows, lengths, full, shorts


def _signals_from_z(z: Tensor, cfg: MetricConfig):
    """(rows, lengths, full, short): each of a head's d_head channels is a signal over positions,
    in float64 (as every other signal: sums over channels then do not depend on the layout)."""
    x = rearrange(z, "b p h d -> b h d p").to(torch.float64)
    n = x.shape[-1]
    shorts = {a: x[..., : math.floor(a * n)] for a in cfg.alphas}
    return x, None, x, shorts


def _working_copy(activation: Tensor, kind: str, cfg: MetricConfig) -> Tensor:
    """The activation the metrics read: detached; bf16/fp16 kept for a pattern (gathered as
    is, every sum in float64) unless renormalised without the first key, else float32."""
    act = activation.detach()
    keep_half = kind == "pattern" and not cfg.drop_first_key and cfg.signal in ("offset_profile", "pattern_rows")
    if not act.is_floating_point() or (act.dtype in _HALF and not keep_half):
        act = act.float()
    return act


def layer_metrics(
    activation: Tensor, cfg: MetricConfig, kind: str = "pattern"
) -> dict[str, Float[Tensor, "batch head *k"]]:
    """Every head metric of one layer, one value per (sequence, head).

    Parameters
    ----------
    activation : ``hook_pattern`` [batch, head, q, k] (kind="pattern") or
        ``hook_z`` [batch, pos, head, d_head] (kind="z").
    cfg : MetricConfig

    Returns
    -------
    dict of name -> Tensor [batch, head, ...] on the activation's device: ``band_energy``
    [.., level+1], ``spectral_shares`` [.., 3], ``spectral_entropy``, ``selectivity``,
    ``positional_entropy``, ``wavelet_entropy`` [.., level+1], ``reconstruction_error``,
    ``sigma_t``, ``delta_w``, ``efficiency``, ``scale_sensitivity_<alpha>``.
    """
    check_choice(kind, "kind", ("pattern", "z"))
    check_type(cfg, "cfg", MetricConfig, "a MetricConfig")
    check_tensor(activation, "activation", ndim=4,
                 shape="([batch, head, q, k] for kind='pattern', [batch, pos, head, d_head] for 'z')")
    cfg.check_length(activation.shape[-1] if kind == "pattern" else activation.shape[1])
    if activation.is_floating_point() and not torch.isfinite(activation).all():
        raise ValueError("activation contains NaN or inf: pass a finite attention pattern (or hook_z).")
    return _layer_values(_working_copy(activation, kind, cfg), cfg, kind)


def _layer_values(act: Tensor, cfg: MetricConfig, kind: str, causal: bool | None = None) -> dict[str, Tensor]:
    """:func:`layer_metrics` on a checked working copy: device work only, no host round trip.

    The pattern stays in its dtype (a float64 copy of [b, h, n, n] costs more than every
    metric together); signals are reduced to [b, h, r, n] before the metrics, which run
    in float64 (the metrics' private cores: the public functions' argument and NaN checks
    would each wait on the device).
    """
    n = act.shape[-1] if kind == "pattern" else act.shape[1]
    if kind == "pattern":
        signals = _signals_from_pattern(act, cfg, causal=causal)
    else:
        signals = _signals_from_z(act, cfg)
    return _signal_metrics(signals, cfg, kind, n)


def _signal_metrics(signals: tuple, cfg: MetricConfig, kind: str, n: int, memo: dict | None = None) -> dict[str, Tensor]:
    """Every metric of one layer from its signals ``(rows, lengths, full, shorts)`` (of
    :func:`_signals_from_pattern`, :func:`_signals_from_z`, or the blockwise attention of
    :mod:`tl_wavelet.analysis.blockwise`), for sequences of ``n`` positions, float64.
    ``memo``: a dict shared by the accumulators that read the same activation (what does not
    depend on the configuration: positional entropy and uncertainty of the same rows).

    Written for few device ops (each a kernel launch on a GPU): the DWT metrics are sparse
    products (:mod:`tl_wavelet.analysis.dwt_maps`), rows of one full-length signal skip the
    masks, and a mean over one row is the row itself.
    """
    rows, lengths, full, shorts = signals
    out: dict[str, Tensor] = {}
    memo = {} if memo is None else memo

    def row_mean(v: Tensor) -> Tensor:  # [b, h, r] -> [b, h]
        return v[..., 0] if v.shape[-1] == 1 else v.mean(-1)

    maps = dwt_maps(full.shape[-1], cfg.wavelet, cfg.mode, cfg.level, cfg.paper, cfg.alphas, full.device)
    dwt = dwt_metrics(full, shorts, maps, normalized=not cfg.paper, memo=memo)
    # Band energies: which dyadic scale the head works at. "band_energy_deep" runs to the
    # depth that reaches every offset, so the characteristic scale sees attention far back;
    # "band_energy" folds the levels beyond cfg.level into A_J for the reported shares.
    if cfg.paper or cfg.signal in KEY_ORDER_SIGNALS:
        energy = dwt["band_energy"]
    elif kind == "pattern":
        # Seen from the query: attention at distance d in the dyadic band holding d.
        energy = M._anchored_bands(rows, cfg.band_wavelet, M.full_depth(n, cfg.level), lengths).pow(2)
    else:
        bands = causal_bands(rows, cfg.band_wavelet, cfg.level)  # [J+1, b, h, d, p]
        energy = rearrange(bands.pow(2).sum(-1), "j ... -> ... j")
    out["band_energy_deep"] = energy[..., 0, :] if energy.shape[-2] == 1 else reduce(energy, "b h r j -> b h j", "sum")
    out["band_energy"] = M.fold_bands(out["band_energy_deep"], cfg.level)

    out.update(spectral_metrics(rows, lengths, cfg))

    key = ("row_metrics", id(rows), kind)
    if key not in memo:  # keyed by the rows' identity: held in the memo beside them, so the id is not reused
        if kind == "pattern":
            h_pos = M._positional_entropy(rows, lengths, "mass")
        else:
            h_pos = M._positional_entropy(rows.pow(2).sum(-2, keepdim=True), None, "mass")
        unc = M._uncertainty(rows, lengths)
        # delta_w is inf for rows with no lag-1 correlation (attention on one token); average
        # the finite rows and keep inf only when every row is such a spike
        dw = unc["delta_w"]
        if dw.shape[-1] == 1:
            delta_w = dw[..., 0]
        else:
            finite = torch.isfinite(dw)
            n_fin = finite.sum(-1)
            delta_w = torch.where(n_fin > 0, torch.where(finite, dw, 0.0).sum(-1) / n_fin.clamp(min=1), math.inf)
        memo[key] = (rows, {"positional_entropy": row_mean(h_pos), "sigma_t": row_mean(unc["sigma_t"]),
                            "efficiency": row_mean(unc["efficiency"]), "delta_w": delta_w})
    out.update(memo[key][1])

    out["wavelet_entropy"] = dwt["wavelet_entropy"][..., 0, :] if full.shape[-2] == 1 else dwt["wavelet_entropy"].mean(-2)
    for name in ["reconstruction_error", *(f"scale_sensitivity_{a:g}" for a in shorts)]:
        out[name] = row_mean(dwt[name])
    return out


def spectral_metrics(
    rows: Float[Tensor, "batch head r n"], lengths: Tensor | None, cfg: MetricConfig, per_row: bool = False
) -> dict[str, Tensor]:
    """The paper's Fourier metrics of one head's signals, powers summed over its rows.

    Returns ``spectral_shares`` [batch, head, 3] (low / mid / high), ``spectral_entropy``
    and ``selectivity`` [batch, head] under ``cfg``'s DC, window and padding choices; with
    ``per_row`` also ``spectral_entropy_rows`` [batch, head, r] (one value per row).
    Float64.
    """
    # The metrics' private cores: rows come from a pattern checked once at the hook, and the
    # public functions' per-call NaN / sign checks on every derived tensor were a tenth of
    # the multiverse's time.
    nfft = cfg.nfft(rows.shape[-1])
    P, freqs = M._power_spectrum(rows, None if lengths is None else M._full_lengths(rows, lengths), nfft,
                                 cfg.dc_removed, cfg.window)
    total = P[..., 0, :] if P.shape[-2] == 1 else reduce(P, "b h r f -> b h f", "sum")
    member = M._table(("band_members", nfft, cfg.dc_removed, P.device), lambda: M._band_members(freqs))
    out = {
        "spectral_shares": M._spectral_band_shares(total, freqs, member),
        "spectral_entropy": M._spectral_entropy(total),
        "selectivity": M._frequency_selectivity(total),
    }
    if per_row:
        out["spectral_entropy_rows"] = M._spectral_entropy(P)
    return out


def rope_pair_energy(
    x: Float[Tensor, "batch pos head d_head"], rotary_dim: int, adjacent_pairs: bool = False
) -> Float[Tensor, "batch head pair"]:
    """Mean squared norm of every 2-D rotary pair of rotated q (or k), per head.

    RoPE rotates pair i by angle ``pos * inv_freq[i]``; the rotation keeps the pair's norm,
    so the norm says how much the head *uses* that frequency regardless of position.
    HF/TransformerLens Llama-style models pair dims (i, i + rotary_dim/2)
    ("rotate_half"); GPT-J style pairs adjacent dims (2i, 2i+1).
    """
    check_tensor(x, "x", ndim=4, shape="[batch, pos, head, d_head]")
    rotary_dim = check_int(rotary_dim, "rotary_dim", minimum=2, maximum=x.shape[-1])
    if rotary_dim % 2:
        raise ValueError(f"rotary_dim must be even (dims come in rotary pairs), got {rotary_dim}.")
    return _pair_energy(x, rotary_dim, check_bool(adjacent_pairs, "adjacent_pairs"))


def _pair_energy(x: Tensor, rotary_dim: int, adjacent_pairs: bool) -> Tensor:
    """rope_pair_energy's core (checked arguments; float64 on x's device)."""
    # squares summed over positions first (one pass in float64), pairs of dims after
    per_dim = reduce(x[..., :rotary_dim].double().square(), "b p h d -> b h d", "sum")
    if adjacent_pairs:
        pairs = rearrange(per_dim, "b h (i two) -> b h i two", two=2)
    else:
        pairs = rearrange(per_dim, "b h (two i) -> b h i two", two=2)
    return pairs.sum(-1) / x.shape[1]


def _nonfinite_sequences(act: Tensor) -> Tensor:
    """How many sequences of a batch hold a NaN or inf, as a device scalar (no host wait).

    A sum over a sequence is not finite exactly when one of its terms is not (an inf, a NaN,
    or infs of both signs): one reducing pass, no mask tensor. Summed in float32 at least,
    whose range no attention probability or activation sum comes near.
    """
    dt = torch.float64 if act.dtype == torch.float64 else torch.float32
    s = act.sum(dim=tuple(range(1, act.ndim)), dtype=dt)
    return torch.isnan(s - s).sum()  # s - s: 0 when s is finite, NaN for inf and NaN (isfinite is four ops)


@dataclass
class _LayerState:
    moments: dict[str, RunningMoments] = field(default_factory=dict)
    rho: RunningCorrelation = field(default_factory=RunningCorrelation)
    n_seen: int = 0
    nonfinite: Tensor | None = None  # sequences fed a NaN/inf activation (a device counter)


class HeadAccumulator:
    """Streams per-head metrics over any number of forward passes.

    Parameters
    ----------
    model : TransformerBridge or HookedTransformer
    layers : layers to measure (None: all)
    rope : also measure RoPE frequency usage from ``hook_rot_q``/``hook_rot_k`` (or
        ``hook_q``/``hook_k`` where the model does not fire those; see
        :func:`tl_wavelet.rope.rotary_hooks`) (None: when the model is rotary)
    documents : one document id (int or str) per sequence, in the order the sequences
        are fed (e.g. from :func:`tl_wavelet.corpus.chunk_documents`): the sums are also
        kept per document and the standard errors are delete-one-document jackknife SEs
        (windows of one document are not independent). None: SEs over sequences.
        Memory: documents x layers x heads x ~(2 x bands + 20) float64 sums.
    **config : fields of :class:`MetricConfig`

    Example
    -------
    >>> acc = HeadAccumulator(model, level=4)                      # doctest: +SKIP
    >>> _ = model.run_with_hooks(tokens, fwd_hooks=acc.hooks())    # doctest: +SKIP
    >>> acc.report().to_dataframe().head()                         # doctest: +SKIP
    """

    def __init__(self, model, layers: int | Iterable[int] | None = None, rope: bool | None = None, *,
                 documents=None, **config):
        self.shape: ModelShape = model_shape(model)
        self._causal: bool | None = is_causal(model)  # "received" counts the queries that see each key
        self.model_name = getattr(getattr(model, "cfg", None), "model_name", None)
        self.config = MetricConfig(**config)
        self.layers = resolve_layers(self.shape, layers)
        self.rope = self.shape.rotary if rope is None else check_bool(rope, "rope")
        self.seq_len: int | None = None  # set by the first batch; later batches must match
        if self.rope and not self.shape.rotary:
            raise ValueError(
                "RoPE frequency usage needs a rotary model; this model's positional embedding is "
                f"{describe_positions(model)}. Pass rope=False "
                "(the positional metrics still work)."
            )
        self.rope_meta = None
        # hook_rot_q/hook_rot_k, or hook_q/hook_k where the model rotates without firing
        # them (pair norms are rotation-invariant; see tl_wavelet.rope.rotary_hooks)
        self._rope_kinds = ("rot_q", "rot_k")
        if self.rope:
            self.rope_meta = rope_frequencies(model, self.layers)
            self._rope_kinds = rotary_hooks(model)
        kinds = self._kinds()
        require_hooks(model, [hook_name(k, L) for L in self.layers for k in kinds], "needed for head metrics")
        self._state = {L: _LayerState() for L in self.layers}
        self._rope_q = {L: RunningMoments() for L in self.layers}
        self._rope_k = {L: RunningMoments() for L in self.layers}
        self._pending: dict[tuple[int, str], tuple[dict, int, int]] = {}  # this forward pass, not yet committed
        self.attention_path = "patterns"  # set by analysis.stream: "patterns" or "blockwise"
        self.seq_len: int | None = None
        self._set_documents(documents)
        self.fingerprint = {
            "model": model_fingerprint(model),
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()},
            "layers": list(self.layers),
            "rope": self.rope,
        }

    @classmethod
    def from_shape(cls, shape: ModelShape, layers: int | Iterable[int] | None = None, *,
                   rope_meta: dict[int, dict] | None = None, documents=None, **config) -> "HeadAccumulator":
        """An accumulator fed by hand through :meth:`add`, for models without TransformerLens hooks.

        E.g. the attention patterns a Hugging Face model returns with
        ``output_attentions=True`` (what :mod:`tl_wavelet.track` does). RoPE usage is
        measured when ``rope_meta`` (per layer, as :func:`tl_wavelet.rope.rope_frequencies`)
        is given and q and k are fed through :meth:`add_rope`.
        """
        self = cls.__new__(cls)
        self.shape = shape
        self._causal = None  # read off the patterns
        self.model_name = None  # no TransformerLens model here
        self.config = MetricConfig(**config)
        self.layers = resolve_layers(shape, layers)
        self.rope, self.rope_meta, self._rope_kinds = rope_meta is not None, rope_meta, ("rot_q", "rot_k")
        self.seq_len = None
        self._state = {L: _LayerState() for L in self.layers}
        self._rope_q = {L: RunningMoments() for L in self.layers} if self.rope else {}
        self._rope_k = {L: RunningMoments() for L in self.layers} if self.rope else {}
        self._pending = {}
        self.attention_path = "patterns"
        self._set_documents(documents)
        return self

    def _set_documents(self, documents) -> None:
        self._doc_codes: Tensor | None = None  # each fed sequence's document code (CPU), in feed order
        self._doc_labels: list | None = None  # code -> the caller's id
        self._doc_on: dict = {}  # the codes copied to a device once
        self._doc_offset = 0  # where this process's sequences start (set per rank by analysis.stream)
        if documents is not None:
            from ..inference.units import as_clusters  # lazily: tl_wavelet.inference builds on this module

            self._doc_codes, self._doc_labels = as_clusters(documents, None, "documents")

    @property
    def se_unit(self) -> str:
        """What the standard errors resample: "document" (built with ``documents=``) or "sequence"."""
        return "sequence" if self._doc_labels is None else "document"

    def _clusters(self, seen: int, b: int, device: torch.device) -> Tensor | None:
        """The document codes of the next ``b`` sequences of a layer that has seen ``seen`` (None without documents)."""
        if self._doc_codes is None:
            return None
        start = self._doc_offset + seen
        if start + b > self._doc_codes.numel():
            raise ValueError(f"documents: {self._doc_codes.numel()} document ids were given, but sequence {start + b} "
                             "arrived: give one id per sequence fed.")
        if device not in self._doc_on:
            self._doc_on[device] = self._doc_codes.to(device)
        return self._doc_on[device][start : start + b]

    def add_rope(self, layer: int, which: str, activation: Float[Tensor, "batch pos head d_head"]) -> None:
        """Fold one layer's queries (``which="q"``) or keys (``"k"``) [batch, pos, head, d_head] into the RoPE usage.

        Rotated or not: RoPE rotates each pair, which keeps its norm. Folded at once (what
        :meth:`hooks` feeds is committed per forward pass instead).
        """
        if not self.rope:
            raise ValueError("this accumulator measures no RoPE usage: build it with rope_meta=... to feed q/k.")
        if layer not in self._state:
            raise ValueError(f"layer {layer!r} is not measured by this accumulator (layers={self.layers}).")
        check_choice(which, "which", ("q", "k"))
        check_tensor(activation, "activation", ndim=4, floating=True, shape="[batch, pos, head, d_head]")
        self._rope_hook(layer, which, staged=False)(activation, None)

    def add(self, layer: int, activation: Tensor, kind: str = "pattern") -> None:
        """Fold one layer's ``hook_pattern``-shaped [batch, head, q, k] (or ``hook_z``) activation in, at once."""
        if layer not in self._state:
            raise ValueError(f"layer {layer} is not measured by this accumulator (layers={self.layers}).")
        check_choice(kind, "kind", ("pattern", "z"))
        check_tensor(activation, "activation", ndim=4)
        if activation.is_floating_point() and not torch.isfinite(activation).all():
            raise ValueError("activation contains NaN or inf: pass a finite attention pattern (or hook_z).")
        self._metric_hook(layer, kind, staged=False)(activation, None)

    def _kinds(self) -> list[str]:
        main = "z" if self.config.signal == "z" else "pattern"
        # Firing order inside a block: rot_q, rot_k, pattern, z.
        return (list(self._rope_kinds) if self.rope else []) + [main]

    @property
    def stop_hook(self) -> str:
        """The last hook these metrics need: a forward may end right after it."""
        return hook_name(self._kinds()[-1], self.layers[-1])

    def _check_seq_len(self, n: int) -> None:
        # The deep band energies have ceil(log2 n) + 1 bands and every metric compares
        # sequences of one length: mixing lengths would mix incomparable numbers.
        if self.seq_len is not None and n != self.seq_len:
            raise ValueError(
                f"tokens: this HeadAccumulator measured sequences of {self.seq_len} positions and now got {n}. "
                "Its metrics compare sequences of one length: cut every batch to one length, or use one "
                "accumulator per length."
            )

    def _metric_hook(self, layer: int, kind: str, staged: bool = True):
        cfg = self.config

        def fn(activation: Tensor, hook) -> None:
            n = activation.shape[-1] if kind == "pattern" else activation.shape[1]
            self._check_seq_len(n)
            cfg.check_length(n)
            memo = _SHARED.memo_for(activation)
            if kind == "pattern":
                # the working copy's dtype follows from the activation's and the signal key, so
                # a hit skips the copy too (a float32 copy of a bf16 pattern per accumulator)
                key = ("signals", cfg.signal_key(n), activation.dtype, self._causal)
                if key not in memo:
                    memo[key] = _signals_from_pattern(_working_copy(activation, kind, cfg), cfg, causal=self._causal)
                signals = memo[key]
            else:
                signals = _signals_from_z(_working_copy(activation, kind, cfg), cfg)
            size = _signal_bytes(signals)
            if staged and size <= DEFER_BYTES:
                # measured with other layers, stacked, when the pass's last hook has fired
                values = {"_signals": signals, "_kind": kind, "_bytes": size}
            else:
                values = _signal_metrics(signals, cfg, kind, n, memo)
            # sequences whose activation holds NaN/inf (e.g. fp16 overflow): their NaN metrics are
            # left out of the sums; counted on the device and reported by report()
            if "nonfinite" not in memo:
                memo["nonfinite"] = _nonfinite_sequences(activation.detach())
            values["_nonfinite"] = memo["nonfinite"]
            self._put((layer, "main"), values, activation.shape[0], n, staged)

        return fn

    def _feed_attention(self, layer: int, query: Tensor, key: Tensor, output: Tensor, signals: tuple | None,
                        bad: Tensor) -> None:
        """One layer of a blockwise forward (:mod:`tl_wavelet.analysis.blockwise`): its post-RoPE
        ``query`` [b, h, n, d] and ``key`` [b, h_kv, n, d], the attention ``output`` [b, n, h, d]
        (``hook_z``'s layout), this accumulator's ``signals`` computed from them, and ``bad`` [b]:
        which sequences carry a NaN/inf query or key."""
        b, n, cfg = query.shape[0], query.shape[-2], self.config
        self._check_seq_len(n)
        cfg.check_length(n)
        if signals is None:  # signal="z": the attention output
            values = _layer_values(_working_copy(output, "z", cfg), cfg, "z")
        else:
            values = _signal_metrics(signals, cfg, "pattern", n)
        values["_nonfinite"] = bad.sum()
        self._put((layer, "main"), values, b, n, True)
        if self.rope:
            meta = self.rope_meta[layer]
            for which, x in (("q", query), ("k", key)):
                self._put((layer, which), _pair_energy(x.detach().transpose(1, 2), meta["rotary_dim"],
                                                       meta["adjacent_pairs"]), b, n, True)

    def _rope_hook(self, layer: int, which: str, staged: bool = True):
        meta = self.rope_meta[layer]

        def fn(activation: Tensor, hook) -> None:
            self._check_seq_len(activation.shape[1])
            memo = _SHARED.memo_for(activation)
            key = ("pair_energy", meta["rotary_dim"], meta["adjacent_pairs"])
            if key not in memo:
                memo[key] = _pair_energy(activation.detach(), meta["rotary_dim"], meta["adjacent_pairs"])
            values = memo[key]
            self._put((layer, which), values, activation.shape[0], activation.shape[1], staged)

        return fn

    # ------------------------------------------------------------- one forward pass, all or nothing
    # What the hooks measure in one forward pass is kept aside until every hook of the pass
    # has fired, then added to the running sums (device-side: no host round trip). A pass
    # that fails part-way (a later hook raised, the user stopped early) is dropped whole,
    # so every layer always counts the same sequences.
    def _put(self, key: tuple[int, str], values, batch: int, n: int, staged: bool) -> None:
        if not staged:  # add() / add_rope(): folded at once
            self._fold_pass({key: (values, batch, n)})
            return
        if key in self._pending:  # this hook fires again: the pass before stopped part-way
            self._drop_pending()
        self._pending[key] = (values, batch, n)
        if len(self._pending) == len(self.layers) * (3 if self.rope else 1):
            pending, self._pending = self._pending, {}
            if len({b for _, b, _ in pending.values()}) != 1:
                raise ValueError(
                    "One forward pass fed these hooks batches of different sizes "
                    f"({sorted({b for _, b, _ in pending.values()})}): run every measured layer on the same sequences."
                )
            self._fold_pass(pending)

    def _fold_pass(self, pending: dict) -> None:
        """Every value one forward pass measured, added to the sums at once: one packed update
        for the metrics of all layers (with their documents) and one for the RoPE usage
        (:class:`~tl_wavelet.stats.PackedMoments`), not one per metric and layer: the numbers
        of one RunningMoments (and one RunningCorrelation for rho) per metric and layer.
        ``pending``: ``{(layer, "main" | "q" | "k"): (values, batch, n)}``, a whole pass or
        (:meth:`add`, :meth:`add_rope`) one entry."""
        main = self._stacked_metrics([(L, v) for (L, part), v in pending.items() if part == "main"])
        rope = [((L, part), v) for (L, part), v in pending.items() if part != "main"]
        if main:
            b, n = main[0][1][1], main[0][1][2]
            members, shapes, cols, xs, ys = [], [], [], [], []
            for L, (values, _, _) in main:
                st = self._state[L]
                values = dict(values)
                bad = values.pop("_nonfinite")
                st.nonfinite = bad if st.nonfinite is None else st.nonfinite + bad
                for key, val in values.items():
                    members.append(st.moments.setdefault(key, RunningMoments()))
                    shapes.append(tuple(val.shape[1:]))
                    cols.append(val.reshape(b, -1))
                xs.append(values["positional_entropy"])
                ys.append(values["spectral_entropy"])
            # rho's moments (x, y, xy, xx, yy) of every layer: five blocks of [b, layers x heads]
            x, y = torch.stack(xs, 1).double(), torch.stack(ys, 1).double()
            for k, v in (("x", x), ("y", y), ("xy", x * y), ("xx", x * x), ("yy", y * y)):
                members += [self._state[L].rho._m[k] for L, _ in main]
                shapes += [tuple(x.shape[2:])] * len(main)
                cols.append(v.reshape(b, -1))
            st0 = self._state[main[0][0]]
            clusters = self._clusters(st0.n_seen, b, x.device)
            g = None if self._doc_labels is None else len(self._doc_labels)
            self._packing("main", members, shapes).update(torch.cat(cols, 1).double(), clusters, g)
            for L, _ in main:
                self._state[L].n_seen += b
            self.seq_len = n
        if rope:
            b, n = rope[0][1][1], rope[0][1][2]
            members = [(self._rope_q if part == "q" else self._rope_k)[L] for (L, part), _ in rope]
            vals = [v for _, (v, _, _) in rope]
            self._packing("rope", members, [tuple(v.shape[1:]) for v in vals]).update(
                torch.cat([v.reshape(b, -1) for v in vals], 1).double())
            self.seq_len = n

    def _stacked_metrics(self, main: list) -> list:
        """``main``'s entries with their metrics: the layers whose hooks kept only their signals
        are measured together, their signals stacked along the batch (one set of kernels per
        forward pass instead of one per layer; every metric is per sequence and head, so the
        numbers are those of one layer at a time, up to the order of float64 sums)."""
        deferred = [(i, v) for i, (_, v) in enumerate(main) if "_signals" in v[0]]
        out = list(main)
        # consecutive layers in groups of at most DEFER_BYTES of signals
        groups, size = [], None
        for entry in deferred:
            nbytes = entry[1][0]["_bytes"]
            if size is None or size + nbytes > DEFER_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(entry)
            size += nbytes
        for group in groups:
            sigs = [v[0]["_signals"] for _, v in group]
            kind, b, n = group[0][1][0]["_kind"], group[0][1][1], group[0][1][2]
            stacked, memo = _SHARED.stack_for(sigs, self.config.signal_key(n))
            values = _signal_metrics(stacked, self.config, kind, n, memo)
            per_layer = {k: v.split(b, dim=0) for k, v in values.items()}
            for j, (i, (vals, bb, nn)) in enumerate(group):
                layer_vals = {k: v[j] for k, v in per_layer.items()}
                layer_vals["_nonfinite"] = vals["_nonfinite"]
                out[i] = (main[i][0], (layer_vals, bb, nn))
        return out

    def _packing(self, name: str, members: list, shapes: list) -> PackedMoments:
        """The packed update of these members (kept while they are the same objects in the same layout)."""
        key = (name, tuple(map(id, members)), tuple(shapes))
        packs = self.__dict__.setdefault("_packs", {})
        pack = packs.get(name)
        if pack is None or pack[0] != key or any(a is not b for a, b in zip(pack[1].members, members)):
            packs[name] = pack = (key, PackedMoments(members, shapes))
        return pack[1]

    def _drop_pending(self, quiet: bool = False) -> set:
        """Forget what a forward pass that did not complete fed (a warning says which layers); returns its keys."""
        dropped = set(self._pending)
        if self._pending and not quiet:
            fed = sorted({L for L, _ in self._pending})
            warnings.warn(
                f"HeadAccumulator: a forward pass fed layer(s) {fed} of {self.layers} and then stopped (an error "
                "in the forward, or a stop before the last measured layer); what it measured is left out, so every "
                "layer counts the same sequences.",
                RuntimeWarning,
                stacklevel=4,
            )
        self._pending = {}
        return dropped

    def _rollback(self) -> None:
        """Drop the current, failed forward pass (:func:`~tl_wavelet.analysis.stream` calls it on an error)."""
        self._drop_pending(quiet=True)

    def hooks(self) -> list[tuple[str, object]]:
        """``(hook_name, fn)`` pairs for ``model.hooks(fwd_hooks=...)`` / ``run_with_hooks``."""
        out = []
        main = "z" if self.config.signal == "z" else "pattern"
        for L in self.layers:
            if self.rope:
                out.append((hook_name(self._rope_kinds[0], L), self._rope_hook(L, "q")))
                out.append((hook_name(self._rope_kinds[1], L), self._rope_hook(L, "k")))
            out.append((hook_name(main, L), self._metric_hook(L, main)))
        return out

    @property
    def n_sequences(self) -> int:
        """Sequences every measured layer has counted (complete forward passes only)."""
        return min(s.n_seen for s in self._state.values())

    # ------------------------------------------------------------- saved / merged state
    def state_dict(self) -> dict:
        """The running sums and what they were measured on (``fingerprint``).

        Plain tensors and containers: ``torch.save`` it, reload it with
        ``torch.load(path, weights_only=True)``, and :meth:`load_state_dict` or
        :meth:`merge` it into an accumulator built with the same model and options.
        """
        self._drop_pending()
        return {
            "version": 1,
            "fingerprint": self.fingerprint,
            "seq_len": self.seq_len,
            "layers": {
                L: {"n_seen": st.n_seen, "moments": {k: m.state_dict() for k, m in st.moments.items()},
                    "rho": st.rho.state_dict(), "nonfinite": 0 if st.nonfinite is None else int(st.nonfinite)}
                for L, st in self._state.items()
            },
            "rope_q": {L: m.state_dict() for L, m in self._rope_q.items()},
            "rope_k": {L: m.state_dict() for L, m in self._rope_k.items()},
            "documents": None if self._doc_labels is None else list(self._doc_labels),
        }

    def _checked(self, sd, what: str) -> dict:
        name = what.split()[0]
        if isinstance(sd, HeadAccumulator):
            sd = sd.state_dict()
        if not isinstance(sd, dict):
            raise TypeError(f"{name} must be a HeadAccumulator or its state_dict(), got {type(sd).__name__}.")
        if sd.get("version") != 1:
            raise ValueError(f"{what} is not a HeadAccumulator state (version 1); got {type(sd).__name__}.")
        check_fingerprint(self.fingerprint, sd.get("fingerprint"), what)
        if set(sd["layers"]) != set(self.layers):  # implied by the fingerprint; a hand-edited state
            raise ValueError(f"{what} holds layers {sorted(sd['layers'])}, this accumulator {self.layers}.")
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Replace the running sums with a saved state (see :meth:`state_dict`).

        Raises ValueError naming what differs when the state comes from another model,
        metric configuration, layer set or RoPE setting.
        """
        sd = self._checked(sd, "sd (the state to load)")
        self.reset()
        self.merge(sd)

    def reset(self) -> None:
        """Forget every sequence seen so far (the hooks stay valid)."""
        self._state, self.seq_len, self._pending = {L: _LayerState() for L in self.layers}, None, {}
        for L in self.layers:
            self._rope_q[L], self._rope_k[L] = RunningMoments(), RunningMoments()

    def merge(self, other: "HeadAccumulator | dict") -> "HeadAccumulator":
        """Add another accumulator's sums (or a saved state) to these, in place; returns self.

        Merging accumulators that saw disjoint sequences gives the report of one pass over
        all of them (float64 sums: equal up to rounding, about 1e-15 relative).

        >>> a = HeadAccumulator(model, level=3)                       # doctest: +SKIP
        >>> b = HeadAccumulator(model, level=3)                       # doctest: +SKIP
        >>> stream(model, tokens[:8], [a]); stream(model, tokens[8:], [b])  # doctest: +SKIP
        >>> a.merge(b).report()       # == one pass over tokens      # doctest: +SKIP
        """
        sd = self._checked(other, "other (the state to merge)")
        self._drop_pending()
        cluster_map = self._cluster_map(sd)
        if sd["seq_len"] is not None:
            if self.seq_len is not None and sd["seq_len"] != self.seq_len:
                raise ValueError(
                    f"Cannot merge states measured on sequences of {sd['seq_len']} and {self.seq_len} tokens: "
                    "the metrics depend on the length."
                )
            self.seq_len = sd["seq_len"]
        for L in self.layers:
            theirs, mine = sd["layers"][L], self._state[L]
            mine.n_seen += int(theirs["n_seen"])
            if theirs.get("nonfinite"):  # states saved before this count existed hold none
                mine.nonfinite = int(theirs["nonfinite"]) + (0 if mine.nonfinite is None else mine.nonfinite)
            for key, m in theirs["moments"].items():
                mine.moments.setdefault(key, RunningMoments()).merge(m, cluster_map)
            mine.rho.merge(theirs["rho"], cluster_map)
            self._rope_q[L].merge(sd["rope_q"][L])
            self._rope_k[L].merge(sd["rope_k"][L])
        return self

    def _cluster_map(self, sd: dict) -> Tensor | None:
        """Where a merged state's documents go among these (its labels matched to ours, new ones appended)."""
        theirs = sd.get("documents")
        measured = any(int(sd["layers"][L]["n_seen"]) for L in self.layers)
        if theirs is None:
            if self._doc_labels is not None and measured:
                raise ValueError("other (the state to merge) was measured without document labels and this accumulator "
                                 "with them: its standard errors could not be by document. Measure both with documents=.")
            return None
        if self._doc_labels is None:
            if self.n_sequences > 0:
                raise ValueError("other (the state to merge) was measured with document labels and this accumulator "
                                 "without: build it with documents=... (the ids of the sequences it is fed).")
            self._doc_labels = []
        codes = {v: i for i, v in enumerate(self._doc_labels)}
        for v in theirs:
            if v not in codes:
                codes[v] = len(self._doc_labels)
                self._doc_labels.append(v)
        return torch.tensor([codes[v] for v in theirs], dtype=torch.long, device="cpu")

    @property
    def n_documents(self) -> int | None:
        """Documents whose sequences were measured (None without document labels)."""
        if self._doc_labels is None:
            return None
        st = self._state[self.layers[0]]
        cn = st.moments["positional_entropy"].cn if "positional_entropy" in st.moments else None
        return 0 if cn is None else int((to_host(cn).flatten(1).amax(1) > 0).sum())

    def report(self):
        """Freeze the running sums into a :class:`tl_wavelet.HeadReport` (float64, on the CPU)."""
        dropped = self._drop_pending()
        missing_rope = [L for L in self.layers if (L, "main") in dropped and (L, "q") not in dropped]
        if self.n_sequences == 0 and self.rope and missing_rope:
            L = missing_rope[0]
            raise RuntimeError(
                f"Layer {L}: the RoPE-usage hooks ({', '.join(hook_name(k, L) for k in self._rope_kinds)}) "
                "never fired while the head metrics did. Run the model with every hook of "
                "acc.hooks(), or build the accumulator with rope=False."
            )
        if self.n_sequences == 0:
            raise RuntimeError(
                "No sequences were measured: run the model with these hooks first "
                "(e.g. model.run_with_hooks(tokens, fwd_hooks=acc.hooks()))."
            )
        n = self.n_sequences
        bad = {L: int(st.nonfinite) for L, st in self._state.items() if st.nonfinite is not None and int(st.nonfinite)}
        if bad:
            warnings.warn(
                f"Non-finite (NaN/inf) activations in {sum(bad.values())} (sequence, layer) pair(s), layers "
                f"{sorted(bad)}: their undefined metrics are left out of the means (a float16 overflow? run the model "
                "in bfloat16 or float32).", RuntimeWarning, stacklevel=2)
        n_docs = self.n_documents
        if n_docs is not None and n_docs < 2:
            warn_small_sample("The standard errors by document (columns *_se)", n_docs, 2, unit="documents")
        elif n < 2:
            warn_small_sample("The standard errors (columns *_se)", n, 2)
        if n < MIN_CORRELATION_N:
            warn_small_sample("rho (a correlation over sequences) and rho_se", n, MIN_CORRELATION_N)
        # the sums cross to the host here, once per report: statistics are float64 on the CPU
        stats = {}
        for L, st in self._state.items():
            for key, mom in st.moments.items():
                stats[(L, key)] = (to_host(mom.mean), to_host(mom.se))
            stats[(L, "rho")] = (to_host(st.rho.r), to_host(st.rho.se))
        # leave-one-document-out rho per head: the jackknife of rho averaged over a layer's heads
        replicates = None if n_docs is None else {L: {"rho": to_host(st.rho.replicates())} for L, st in self._state.items()}
        rope = None
        if self.rope:
            rope = {}
            g = self.shape.group_size
            for L in self.layers:
                if self._rope_q[L].n is None or self._rope_k[L].n is None:
                    raise RuntimeError(
                        f"Layer {L}: the RoPE-usage hooks ({', '.join(hook_name(k, L) for k in self._rope_kinds)}) "
                        "never fired while the head metrics did. Run the model with every hook of "
                        "acc.hooks(), or build the accumulator with rope=False."
                    )
                q = to_host(self._rope_q[L].mean)
                k = to_host(self._rope_k[L].mean).repeat_interleave(g, dim=0)
                rope[L] = {"q": q, "k": k, **self.rope_meta[L]}
        return HeadReport(
            config=self.config,
            shape=self.shape,
            layers=list(self.layers),
            n_sequences=self.n_sequences,
            seq_len=self.seq_len,
            stats=stats,
            rope=rope,
            model_name=self.model_name,
            attention=self.attention_path,
            se_unit=self.se_unit,
            n_clusters=n if n_docs is None else n_docs,
            replicates=replicates,
        )


def metric_hooks(accumulator: HeadAccumulator) -> list[tuple[str, object]]:
    """The accumulator's hooks as ``(name, fn)`` pairs (same as ``accumulator.hooks()``)."""
    check_type(accumulator, "accumulator", HeadAccumulator, "a HeadAccumulator")
    return accumulator.hooks()
