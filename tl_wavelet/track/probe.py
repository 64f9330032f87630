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

from ..adapter import ModelFacts
from ..analysis import HeadAccumulator, HeadReport

__all__ = ["per_token_loss", "probe_model", "induction_loss", "preserved_state"]


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
    f: ModelFacts,
    tokens: Int[Tensor, "batch pos"],
    acc: HeadAccumulator,
    batch_size: int,
    hf_modules: tuple[dict, float] | None = None,
) -> tuple[HeadReport, float]:
    """Feed ``acc`` from one pass over ``tokens``; return its report and the mean probe loss.

    The metrics and the loss come from the same forward pass. Call inside
    :func:`preserved_state`. On an HF model whose accumulator measures RoPE usage,
    ``hf_modules`` is ``(modules, scale)`` of :func:`tl_wavelet.rope.hf_rope_modules`.
    Losses are summed in float64 on the model's device and read once.
    """
    total, count = torch.zeros((), dtype=torch.float64, device=f.device), 0
    handles = _rope_forward_hooks(acc, hf_modules) if f.backend == "hf" and acc.rope else []
    try:
        for start in range(0, tokens.shape[0], batch_size):
            t, c = _probe_batch(f, f.to_device(tokens[start : start + batch_size]), acc)
            total += t
            count += c
    finally:
        for h in handles:
            h.remove()
    return acc.report(), float(total) / count


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


def _probe_batch(f: ModelFacts, batch: Tensor, acc: HeadAccumulator) -> tuple[Tensor, int]:
    """One forward of the probe: feed ``acc``, return (summed next-token loss, count)."""
    model = f.model
    if f.backend == "hf":
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
    return loss.sum(dtype=torch.float64), loss.numel()


def induction_loss(f: ModelFacts, tokens: Int[Tensor, "batch pos"]) -> float:
    """Mean loss on the second copy of a repeated random sequence (from its second token on).

    The first token of the copy cannot be predicted from the sequence before it; every later
    one can, by looking up where the current token occurred and copying its successor
    (an induction head).
    """
    tokens = f.to_device(tokens)
    half = tokens.shape[1] // 2
    loss = per_token_loss(f.logits(tokens), tokens)
    # entry i predicts token i+1: tokens half+1 .. 2*half-1
    return float(loss[:, half:].mean())
