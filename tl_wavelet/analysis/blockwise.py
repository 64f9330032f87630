"""Head signals from queries and keys, a block of queries at a time: long contexts without n x n patterns.

Every attention metric reads a few signals per head (an offset profile, the last row, the
attention keys receive, a few query rows), each of length n. They are sums over rows of the
attention pattern, so they can be built from blocks of rows: for queries ``q0..q1`` the
probabilities over keys ``0..q1`` are computed exactly as the model's eager attention does
(scores, scale, soft-capping, causal / sliding-window / given mask, softmax in float32,
rounded to the model's dtype), reduced into the signals, and dropped. Memory is
O(block x n) per head, never n x n, and the signals equal the pattern path's up to float
rounding (tests/test_blockwise.py, every architecture of the compatibility suite).

Where the queries and keys come from: the model runs with its fast attention (SDPA) through
a transformers attention function registered here, which hands each layer's post-RoPE
query and key (and the attention output, for ``signal="z"``) to the accumulators, then
computes the layer's output with the model's own kernel. A TransformerBridge computes
attention in its own components (eagerly, whatever the HF model was loaded with), so for
this path its HF model runs with those components swapped back to the HF attention modules
for the duration of the call; TransformerLens hooks do not fire meanwhile. TransformerLens
3's HookedTransformer has no HF model: patterns only.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..signals import row_plan, without_first_key
from .config import MetricConfig

__all__ = ["attention_rows", "block_signals", "BlockwiseRun", "blockwise_forward", "check_against_patterns", "ATTENTION_NAME"]

#: the name of the attention function registered with transformers
ATTENTION_NAME = "tl_wavelet_blockwise"
#: bytes one block of probabilities (and its temporaries) may take: the block height follows
BLOCK_BYTES = {"cpu": 2**28, "default": 2**30}
_HALF = (torch.float16, torch.bfloat16)
_KNOWN_KWARGS = {"dropout", "scaling", "softcap", "sliding_window", "position_ids", "use_cache", "cache_position",
                 "output_attentions", "is_causal", "position_embeddings", "past_key_values", "past_key_value",
                 "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}


def attention_rows(
    query: Tensor,
    key: Tensor,
    q0: int,
    q1: int,
    *,
    scaling: float,
    softcap: float | None = None,
    sliding_window: int | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Attention probabilities of queries ``q0..q1-1`` over keys ``0..q1-1``: ``[b, h, q1-q0, q1]``.

    As the eager attention of transformers computes them: ``q k^T * scaling``, soft-capped
    (``tanh(s / cap) * cap``), masked (``mask``: bool, True = attend, or additive; else causal,
    and within ``sliding_window`` keys when given), softmax in float32, rounded to the query's
    dtype. ``query`` is ``[b, h, n, d]``, ``key`` ``[b, h_kv, n, d]`` (grouped heads are
    shared as transformers' ``repeat_kv`` shares them).
    """
    b, h, _, d = query.shape
    k = key[:, :, :q1].transpose(-1, -2)
    # the scale on the block of queries (d per row) rather than on the scores (q1 per row):
    # a pass over the scores saved, the same numbers up to float rounding
    qb = query[:, :, q0:q1] * scaling
    if key.shape[1] != h:
        # grouped heads: the query heads sharing a key head (transformers' repeat_kv order,
        # head = kv * group + i) are rows of one product, so the keys are not copied per head
        s = torch.matmul(qb.reshape(b, key.shape[1], -1, d), k).view(b, h, q1 - q0, q1)
    else:
        s = torch.matmul(qb, k)
    if softcap is not None:
        s = torch.tanh(s / softcap) * softcap
    if mask is not None:
        m = mask[..., q0:q1, :q1]
        s = s.masked_fill(~m, torch.finfo(s.dtype).min) if m.dtype == torch.bool else s + m.to(s.dtype)
    else:
        # causal: only keys q0..q1-1 can be in a row's future; with a sliding window, keys
        # from 0 on can be behind it
        lo = 0 if sliding_window is not None else q0
        qi = torch.arange(q0, q1, device=s.device)[:, None]
        ki = torch.arange(lo, q1, device=s.device)[None, :]
        keep = ki <= qi
        if sliding_window is not None:
            keep = keep & (ki > qi - sliding_window)
        s[..., lo:] = s[..., lo:].masked_fill(~keep, torch.finfo(s.dtype).min)
    return torch.softmax(s, dim=-1, dtype=torch.float32).to(query.dtype)


def _block_height(b: int, h: int, n: int, device: torch.device, block: int | None) -> int:
    if block is not None:
        return max(1, min(block, n))
    budget = BLOCK_BYTES.get(device.type, BLOCK_BYTES["default"])
    per_row = b * h * n * 4 * 6  # float32 scores, probabilities, the aligned copy and temporaries
    return max(1, min(n, budget // max(per_row, 1)))


class _Signals:
    """The running sums that become one layer's signals, fed one block of rows at a time.

    Offset sums are kept with the offsets reversed (index ``n - 1 - d``): that is the order
    in which a strided view reads a block's rows aligned by offset without flipping them
    (see :meth:`_aligned`); the small sums are flipped once, in :meth:`signals`.
    """

    def __init__(self, cfg: MetricConfig, b: int, h: int, n: int, device, dtype):
        self.cfg, self.n, self.device = cfg, n, device
        # the dtype the pattern path measures in: the pattern's for gathered signals, else float32
        keep = not cfg.drop_first_key and cfg.signal in ("offset_profile", "pattern_rows")
        self.work = dtype if keep or dtype not in _HALF else torch.float32
        self.cuts = {a: math.floor(a * n) for a in cfg.alphas}
        f64 = dict(dtype=torch.float64, device=device)
        if cfg.signal in ("offset_profile", "received"):
            # offset_profile: reversed offsets; received: keys in order. A cut's sums are the
            # total as it stood after the cut's last row (see add).
            self.total = torch.zeros(b, h, n, **f64)
            self.cut_total: dict[float, Tensor] = {}
        needs_rows = cfg.signal in ("last_row", "pattern_rows")
        self.rows_of_interest = {n - 1, *(m - 1 for m in self.cuts.values())} if needs_rows else set()
        self.kept: dict[int, Tensor] = {}  # query row -> its probabilities (key order), for last rows
        self.buffer: Tensor | None = None  # see _aligned
        if cfg.signal == "pattern_rows":
            idx, self.lengths = row_plan(n, cfg.drop_first_key, min(cfg.min_length(), n), cfg.max_rows, cfg.paper)
            self.row_idx = idx.tolist()
            self.rows = torch.zeros(b, h, len(self.row_idx), n, dtype=self.work, device=device)

    def add(self, p: Tensor, q0: int) -> None:
        """Fold in rows ``q0..q0+B-1`` of the pattern (``[b, h, B, q1]``, keys ``0..q1-1``)."""
        cfg, n = self.cfg, self.n
        if cfg.drop_first_key:
            p = without_first_key(p)
        q1 = p.shape[-1]
        for q in self.rows_of_interest:
            if q0 <= q < q0 + p.shape[-2]:
                self.kept[q] = p[..., q - q0, : q + 1].to(self.work)
        if cfg.signal == "pattern_rows":
            aligned = self._aligned(p, q0)  # [b, h, B, q1]: offsets q1 - 1 .. 0
            for j, q in enumerate(self.row_idx):
                if q0 <= q < q0 + p.shape[-2]:
                    self.rows[..., j, :q1] = aligned[..., q - q0, :].flip(-1)
        elif cfg.signal in ("offset_profile", "received"):
            if cfg.signal == "offset_profile":
                x, cols = self._aligned(p, q0), slice(n - q1, n)  # offsets q1 - 1 .. 0, summed reversed
            else:
                x, cols = p.to(self.work), slice(0, q1)
            # A cut sequence is a causal prefix: its sums are the running total right after its last
            # row (rows q < m reach neither offsets nor keys >= m). The block is split at the cuts
            # inside it and the total kept there, so no row is summed twice.
            rows = p.shape[-2]
            edges = sorted({0, rows, *(m - q0 for m in self.cuts.values() if q0 < m < q0 + rows)})
            for r0, r1 in zip(edges, edges[1:]):
                # a block's rows summed in float32 (a few hundred values: ~1e-7), blocks added in float64
                self.total[..., cols] += x[..., r0:r1, :].sum(-2, dtype=torch.float32)
                for a, m in self.cuts.items():
                    if q0 + r1 == m:
                        self.cut_total[a] = self.total.clone()

    def _aligned(self, p: Tensor, q0: int) -> Tensor:
        """``A[r, j] = p[r, q0 + r - d]`` with ``d = q1 - 1 - j`` for keys ``>= 0``, else 0.

        A strided view, not a gather, and no flip: the block is copied (once, in the working
        dtype) behind ``n`` zero columns of a buffer ``2n`` wide, so the key of offset ``d`` of
        row ``r`` lies at column ``n + q0 + r - d``: a view with row stride ``2n + 1`` reads
        row ``r``'s offsets from high to low, and a negative key lands in the zeros.
        """
        rows, q1, n = p.shape[-2], p.shape[-1], self.n
        if self.buffer is None or self.buffer.shape[-2] < rows or self.buffer.dtype != self.work:
            # one zeroed buffer per layer: blocks write keys from column n on (keys only grow from
            # block to block), so the first n columns stay zero
            self.buffer = torch.zeros(*p.shape[:-2], rows, 2 * n, dtype=self.work, device=p.device)
        width = self.buffer.shape[-1]
        self.buffer[..., :rows, n : n + q1] = p
        strides = self.buffer.stride()
        # column of (r, d = q1 - 1 - j): n + q0 + r - q1 + 1 + j
        return self.buffer.as_strided((*p.shape[:-2], rows, q1), (*strides[:-2], width + 1, 1),
                                      self.buffer.storage_offset() + n + q0 - q1 + 1)

    def signals(self, causal: bool = True):
        """``(rows, lengths, full, shorts)`` as :func:`tl_wavelet.analysis.hooks._signals_from_pattern` gives them."""
        cfg, n, dfk = self.cfg, self.n, int(self.cfg.drop_first_key)
        f64 = dict(dtype=torch.float64, device=self.device)
        if cfg.signal == "offset_profile":
            def profile(total_reversed: Tensor, m: int) -> Tensor:
                total = total_reversed[..., n - m:].flip(-1)
                return (total / (torch.arange(m, 0, -1, **f64) - dfk).clamp(min=1))[..., None, :]

            full = profile(self.total, n)
            return full, None, full, {a: profile(self.cut_total[a], m) for a, m in self.cuts.items()}
        if cfg.signal == "received":
            def received(total: Tensor, m: int) -> Tensor:
                seen_by = torch.arange(m, 0, -1, **f64) if causal else torch.full((m,), float(m), **f64)
                return (total[..., :m] / seen_by)[..., None, :]

            full = received(self.total, n)
            return full, None, full, {a: received(self.cut_total[a], m) for a, m in self.cuts.items()}
        full = self.kept[n - 1][..., None, :]
        shorts = {a: self.kept[m - 1][..., None, :] for a, m in self.cuts.items()}
        if cfg.signal == "last_row":
            return full, None, full, shorts
        return self.rows, self.lengths.to(self.device), full, shorts  # pattern_rows


def block_signals(
    query: Tensor,
    key: Tensor,
    cfgs: list[MetricConfig],
    *,
    scaling: float,
    softcap: float | None = None,
    sliding_window: int | None = None,
    mask: Tensor | None = None,
    block: int | None = None,
    on_block: Callable[[], None] | None = None,
    value: Tensor | None = None,
) -> tuple[list[tuple], Tensor | None]:
    """The signals of every config in ``cfgs`` from one layer's query ``[b, h, n, d]`` and key
    ``[b, h_kv, n, d]``, a block of queries at a time (one pass over the blocks serves all).

    With ``value`` ``[b, h_kv, n, d]`` also the attention output per head ``[b, n, h, d]``
    (``hook_z``), as eager attention computes it (probabilities in the model's dtype times v).
    """
    b, h, n, _ = query.shape
    # configs that read the same signal share its sums (e.g. the default and the paper metrics)
    unique: dict[tuple, _Signals] = {}
    for cfg in cfgs:
        if cfg.signal_key(n) not in unique:
            unique[cfg.signal_key(n)] = _Signals(cfg, b, h, n, query.device, query.dtype)
    sums = list(unique.values())
    step = _block_height(b, h, n, query.device, block)
    z = None
    if value is not None:
        z = torch.empty(b, h, n, value.shape[-1], dtype=query.dtype, device=query.device)
        v = value if value.shape[1] == h else value.repeat_interleave(h // value.shape[1], dim=1)
    for q0 in range(0, n, step):
        q1 = min(n, q0 + step)
        p = attention_rows(query, key, q0, q1, scaling=scaling, softcap=softcap, sliding_window=sliding_window,
                           mask=mask)
        for s in sums:
            s.add(p, q0)
        if z is not None:
            z[:, :, q0:q1] = torch.matmul(p, v[:, :, :q1])
        del p
        if on_block is not None:
            on_block()
    done = {k: s.signals() for k, s in unique.items()}
    return [done[c.signal_key(n)] for c in cfgs], None if z is None else z.transpose(1, 2)


# ------------------------------------------------------------------ running the model with its fast attention
class _StopBlockwise(Exception):
    """Ends the forward once the last layer an accumulator needs has been measured."""


@dataclass
class BlockwiseRun:
    """What one forward pass does at each attention layer: ``feed(layer, query, key, value, mask, kwargs)``."""

    feed: Callable[..., None]
    last_layer: int
    base: Callable | None = None  # the model's own attention function, set by blockwise_forward


_ACTIVE: contextvars.ContextVar[BlockwiseRun | None] = contextvars.ContextVar("tl_wavelet_blockwise", default=None)


def _attention(module, query, key, value, attention_mask, **kwargs):
    run = _ACTIVE.get()
    if run is None:  # called outside blockwise_forward (a model left switched by a crash): be the base
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    layer = getattr(module, "layer_idx", None)
    unknown = set(kwargs) - _KNOWN_KWARGS
    if unknown:
        raise NotImplementedError(
            f"Layer {layer}: this attention takes {sorted(unknown)}, which the blockwise path does not reproduce "
            "(attention sinks, ALiBi biases ...): analyse it with attention='patterns'."
        )
    run.feed(layer, query, key, value, attention_mask, kwargs)
    if layer == run.last_layer:
        raise _StopBlockwise  # the forward ends here: this layer's output is never needed
    return run.base(module, query, key, value, attention_mask, **kwargs)


def _register(base: str) -> str:
    """The name of our attention function over ``base``, registered with transformers: the masks
    are ``base``'s own (SDPA's: none at all for plain causal attention, no n x n mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    name = f"{ATTENTION_NAME}_{base}"
    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, _attention)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name


#: the attention the model computes its own output with during a blockwise run: None picks SDPA
#: where the model supports it (else its own); "eager" reproduces an eager forward exactly
BASE_ATTENTION: str | None = None


def _base_attention(hf) -> tuple[str, Callable]:
    """``(name, function)`` of the attention the model computes its output with: :data:`BASE_ATTENTION`,
    else its own, or SDPA where it ran eager and supports SDPA."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    impl = getattr(hf.config, "_attn_implementation", "eager") or "eager"
    if impl.startswith(ATTENTION_NAME):  # left switched by an interrupted run
        impl = impl.removeprefix(ATTENTION_NAME + "_")
    if BASE_ATTENTION is not None:
        impl = BASE_ATTENTION
    elif impl == "eager" and getattr(hf, "_supports_sdpa", False):
        impl = "sdpa"
    if impl == "eager":
        from importlib import import_module

        eager = getattr(import_module(type(hf).__module__), "eager_attention_forward", None)
        if eager is None:
            raise NotImplementedError(
                f"{type(hf).__name__} does not compute its attention through transformers' attention functions "
                "(no eager_attention_forward), so the blockwise path cannot see its queries and keys"
            )
        return impl, eager
    return impl, ALL_ATTENTION_FUNCTIONS[impl]


@contextlib.contextmanager
def _hf_attention_modules(model, backend: str):
    """The HF model to run: a TransformerBridge's, with its attention components swapped back to the
    HF attention modules they wrap (restored on exit, also on error)."""
    if backend == "hf":
        yield model
        return
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    hf = model.original_model
    swaps = []
    for name, mod in list(hf.named_modules()):
        if isinstance(mod, AttentionBridge) and getattr(mod, "_original_component", None) is not None:
            parent_name, _, attr = name.rpartition(".")
            parent = hf.get_submodule(parent_name) if parent_name else hf
            if getattr(parent, attr, None) is mod:
                swaps.append((parent, attr, mod))
    try:
        for parent, attr, mod in swaps:
            setattr(parent, attr, mod._original_component)
        yield hf
    finally:
        for parent, attr, mod in swaps:
            setattr(parent, attr, mod)


def blockwise_forward(model, backend: str, tokens: Tensor, run: BlockwiseRun) -> None:
    """Run ``tokens`` through the model's HF forward with its fast attention, feeding ``run`` at each layer.

    The model's attention implementation and (for a bridge) its components are restored on
    exit, also when a feed raises.
    """
    if backend not in ("bridge", "hf"):
        raise ValueError(
            "attention='blockwise' runs a model's Hugging Face forward; a TransformerLens 3 HookedTransformer has none: "
            "use attention='patterns' (or load the model as a TransformerBridge on TransformerLens 4)."
        )
    with _hf_attention_modules(model, backend) as hf:
        prev = hf.config._attn_implementation
        base, run.base = _base_attention(hf)
        token = _ACTIVE.set(run)
        try:
            hf.set_attn_implementation(_register(base))
            with torch.no_grad():
                hf(input_ids=tokens, use_cache=False)
        except _StopBlockwise:
            pass
        finally:
            _ACTIVE.reset(token)
            hf.set_attn_implementation(prev)


# ------------------------------------------------------------------ is the blockwise path exact for this model?
#: relative difference from the model's own eager patterns above which the blockwise path is refused
CHECK_RTOL = {torch.float32: 1e-4, torch.float64: 1e-8}
_CHECK_RTOL_HALF = 2e-2


def check_against_patterns(f, n: int = 48) -> str | None:
    """None when blockwise attention rows reproduce the model's own ``hook_pattern`` on a probe
    sequence (every layer, relative to the largest probability), else why not. Kept per model
    (:meth:`~tl_wavelet.adapter.ModelFacts.memo`): one probe per model."""
    return f.memo("blockwise_check", lambda: _check(f, n))


def _check(f, n: int) -> str | None:
    from ..adapter import hook_name

    model = f.model
    if f.backend != "bridge":
        return f"the {f.backend} backend has no Hugging Face forward to run blockwise"
    g = torch.Generator().manual_seed(0)
    vocab = f.vocab_size or 2
    tokens = torch.randint(min(4, vocab - 1), vocab, (1, n), generator=g, device="cpu")
    names = [hook_name("pattern", L) for L in range(f.shape.n_layers)]
    if not all(f.has_hook(nm) for nm in names):
        return "the model has no hook_pattern to check the blockwise rows against"
    with torch.no_grad():
        _, cache = model.run_with_cache(f.to_device(tokens), names_filter=lambda nm: nm in names)
    ours: dict[int, Tensor] = {}

    def feed(layer, query, key, value, mask, kwargs):
        ours[layer] = attention_rows(query, key, 0, query.shape[-2], scaling=_scaling(kwargs, query),
                                     softcap=kwargs.get("softcap"), sliding_window=kwargs.get("sliding_window"), mask=mask)

    try:
        blockwise_forward(model, f.backend, f.to_device(tokens), BlockwiseRun(feed, last_layer=f.shape.n_layers - 1))
    except NotImplementedError as e:
        return str(e)
    rtol = CHECK_RTOL.get(f.dtype, _CHECK_RTOL_HALF)
    for L, name in enumerate(names):
        if L not in ours:
            return f"layer {L}'s attention did not run through the blockwise function"
        want = cache[name].double()
        got = ours[L].double()
        if got.shape != want.shape:
            return f"layer {L}: rows of shape {tuple(got.shape)} against patterns {tuple(want.shape)}"
        err = float((got - want).abs().max() / want.abs().max().clamp(min=1e-30))
        if not err <= rtol:
            return f"layer {L}: blockwise rows differ from the model's patterns by {err:.2g} (tolerance {rtol:g})"
    return None


def _scaling(kwargs: dict, query: Tensor) -> float:
    s = kwargs.get("scaling")
    return float(s) if s is not None else query.shape[-1] ** -0.5
