"""One probe of a model under training: head metrics, probe loss and induction loss.

Three kinds of model are measured in place, without copying weights:

- a TransformerLens 4 ``TransformerBridge`` or TransformerLens 3 ``HookedTransformer``:
  the metrics come from :class:`~tl_wavelet.analysis.HeadAccumulator`'s own hooks;
- a Hugging Face ``PreTrainedModel`` (eager attention): its ``output_attentions=True``
  patterns are fed to the same accumulator (:meth:`HeadAccumulator.add`), so the metric
  code is the one :func:`~tl_wavelet.analysis.analyze_heads` runs. RoPE usage comes from
  forward hooks on the attention's q/k projections (or q/k norms), before the rotation:
  RoPE rotates each (i, i + d/2) pair, which keeps its norm, so the per-pair energies are
  those of the rotated q and k (:func:`tl_wavelet.rope.hf_rope_modules` says where the
  pairing is known).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

from ..adapter import ModelShape, model_shape
from ..analysis import HeadAccumulator, HeadReport
from ..rope import hf_is_rotary

__all__ = ["backend_of", "shape_of", "context_length", "vocab_size", "logits", "probe_model", "preserved_state"]


def backend_of(model) -> str:
    """``"bridge"``, ``"hooked"`` or ``"hf"``; a TypeError naming what is supported otherwise."""
    if hasattr(model, "cfg") and hasattr(model, "hooks") and hasattr(model, "hook_dict"):
        return "bridge" if hasattr(model, "original_model") else "hooked"
    config = getattr(model, "config", None)
    if isinstance(model, torch.nn.Module) and config is not None and hasattr(config, "num_hidden_layers"):
        return "hf"
    raise TypeError(
        f"tl_wavelet.track needs a TransformerLens model (TransformerBridge, HookedTransformer) or a "
        f"Hugging Face PreTrainedModel with attention layers, got {type(model).__name__}."
    )


def shape_of(model, backend: str) -> ModelShape:
    if backend != "hf":
        return model_shape(model)
    c = model.config
    n_heads = int(c.num_attention_heads)
    return ModelShape(
        n_layers=int(c.num_hidden_layers),
        n_heads=n_heads,
        n_kv_heads=int(getattr(c, "num_key_value_heads", None) or n_heads),
        d_head=int(getattr(c, "head_dim", None) or c.hidden_size // n_heads),
        rotary=hf_is_rotary(model),
        backend="hf",
    )


def context_length(model, backend: str) -> int | None:
    """Longest sequence the model accepts (None when it does not say)."""
    if backend != "hf":
        return int(model.cfg.n_ctx)
    c = model.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        if getattr(c, key, None):
            return int(getattr(c, key))
    return None


def vocab_size(model, backend: str) -> int:
    return int(model.cfg.d_vocab if backend != "hf" else model.config.vocab_size)


def logits(model, backend: str, tokens: Int[Tensor, "batch pos"], **kwargs) -> Float[Tensor, "batch pos vocab"]:
    if backend == "hf":
        return model(input_ids=tokens, **kwargs).logits
    return model(tokens, return_type="logits")


def per_token_loss(lg: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos-1"]:
    """Next-token cross-entropy; entry i is the loss of predicting token i+1."""
    return F.cross_entropy(
        lg[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none"
    ).view(tokens.shape[0], -1)


@contextmanager
def preserved_state(model):
    """Eval mode and no autograd inside; every submodule's train/eval flag restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, was in modes:
            m.training = was


def probe_model(
    model,
    backend: str,
    tokens: Int[Tensor, "batch pos"],
    acc: HeadAccumulator,
    batch_size: int,
    hf_modules: tuple[dict, float] | None = None,
) -> tuple[HeadReport, float]:
    """Feed ``acc`` from one pass over ``tokens``; return its report and the mean probe loss.

    The metrics and the loss come from the same forward pass. Call inside
    :func:`preserved_state`. On an HF model whose accumulator measures RoPE usage,
    ``hf_modules`` is ``(modules, scale)`` of :func:`tl_wavelet.rope.hf_rope_modules`.
    """
    device = next(model.parameters()).device
    total, count = 0.0, 0
    handles = _rope_forward_hooks(acc, hf_modules) if backend == "hf" and acc.rope else []
    try:
        for start in range(0, tokens.shape[0], batch_size):
            t, c = _probe_batch(model, backend, tokens[start : start + batch_size].to(device), acc)
            total += t
            count += c
    finally:
        for h in handles:
            h.remove()
    return acc.report(), total / count


def _rope_forward_hooks(acc: HeadAccumulator, hf_modules) -> list:
    """Forward hooks on the HF q/k modules feeding :meth:`HeadAccumulator.add_rope`."""
    modules, scale = hf_modules
    d_head = acc.shape.d_head
    handles = []
    for L in acc.layers:
        for which, module in zip(("q", "k"), modules[L]):
            def fn(mod, args, output, L=L, which=which):
                x = output.detach()
                if x.ndim == 3:  # [batch, pos, heads * d_head] (projection or flat norm)
                    x = rearrange(x, "b p (h d) -> b p h d", d=d_head)
                # the model multiplies cos and sin by `scale`: the rotated pair's norm grows by it
                acc.add_rope(L, which, x if scale == 1.0 else x * scale)

            handles.append(module.register_forward_hook(fn))
    return handles


def _probe_batch(model, backend: str, batch: Tensor, acc: HeadAccumulator) -> tuple[float, int]:
    """One forward of the probe: feed ``acc``, return (summed next-token loss, count)."""
    if backend == "hf":
        out = model(input_ids=batch, output_attentions=True)
        attn = out.attentions
        if attn is None or len(attn) != acc.shape.n_layers or any(a is None for a in attn):
            raise ValueError(
                "The Hugging Face model returned no attention patterns with output_attentions=True: "
                "load or build it with attn_implementation='eager' (sdpa/flash kernels do not return them)."
            )
        for L in acc.layers:
            acc.add(L, attn[L])
        lg = out.logits
    else:
        with model.hooks(fwd_hooks=acc.hooks()):
            lg = model(batch, return_type="logits")
    loss = per_token_loss(lg, batch)
    return float(loss.sum()), loss.numel()


def induction_loss(model, backend: str, tokens: Int[Tensor, "batch pos"]) -> float:
    """Mean loss on the second copy of a repeated random sequence (from its second token on).

    The first token of the copy cannot be predicted from the sequence before it; every later
    one can, by looking up where the current token occurred and copying its successor
    (an induction head).
    """
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    half = tokens.shape[1] // 2
    loss = per_token_loss(logits(model, backend, tokens), tokens)
    # entry i predicts token i+1: tokens half+1 .. 2*half-1
    return float(loss[:, half:].mean())
