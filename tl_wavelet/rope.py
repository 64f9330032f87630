"""RoPE frequencies of a model, per layer, read from the model itself.

TransformerLens 4's ``cfg.rotary_base`` is wrong under transformers 5 (it reads
``rope_theta``, which moved into ``config.rope_parameters``), and Gemma-3 uses different
bases on local and global layers. So we never trust a config number: we read the
cos/sin tables the model actually applies and recover each pair's angular frequency
as ``atan2(sin[pos=1], cos[pos=1])``. That is exact for any base, any rope scaling
(scaling changes the tables, which we read) and any attention-factor (which multiplies
cos and sin alike and cancels in atan2).
"""
from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from .adapter import hook_name, model_shape, resolve_layers

__all__ = ["rope_frequencies", "wavelengths"]

_ADJACENT_PAIR_MODELS = {"gptj", "codegen"}  # HF models that rotate (2i, 2i+1) pairs


def wavelengths(inv_freq: Float[Tensor, " pair"]) -> Float[Tensor, " pair"]:
    """Tokens per full turn of each rotary pair: ``2 pi / inv_freq``."""
    return 2 * math.pi / inv_freq


def _freqs_from_tables(cos: Tensor, sin: Tensor, adjacent: bool) -> Tensor:
    # Tables are [pos, rotary_dim]; row 1 holds angle 1 * inv_freq[i] < pi for every pair.
    c, s = cos[1].double(), sin[1].double()
    r = c.shape[-1]
    if adjacent:
        c, s = c[0::2], s[0::2]
    else:
        c, s = c[: r // 2], s[: r // 2]
    return torch.atan2(s, c)


def rope_frequencies(model, layers=None) -> dict[int, dict]:
    """Per-layer RoPE metadata: ``{layer: {"inv_freq", "wavelength", "rotary_dim", "adjacent_pairs", "rope_base"}}``.

    ``rope_base`` is the base implied by the second pair, ``inv_freq[1] = base^(-2/rotary_dim)``
    (exact for unscaled RoPE; for scaled RoPE it is the effective base of the high-frequency end).

    >>> meta = rope_frequencies(model)          # doctest: +SKIP
    >>> meta[0]["wavelength"][:3]               # tokens per turn of pairs 0, 1, 2
    """
    shape = model_shape(model)
    if not shape.rotary:
        raise ValueError(
            "RoPE frequencies need a rotary model; this one uses "
            f"{getattr(model.cfg, 'positional_embedding_type', 'unknown')!r} positions."
        )
    layers = resolve_layers(shape, layers)
    if shape.backend == "hooked":
        adjacent = bool(getattr(model.cfg, "rotary_adjacent_pairs", False))
        tables = {
            L: (model.blocks[L].attn.rotary_cos, model.blocks[L].attn.rotary_sin) for L in layers
        }
    else:
        hf_cfg = getattr(model.original_model, "config", None)
        adjacent = getattr(hf_cfg, "model_type", "") in _ADJACENT_PAIR_MODELS
        tables = _bridge_tables(model, layers)
    out = {}
    for L, (cos, sin) in tables.items():
        cos = cos.reshape(-1, cos.shape[-1])
        sin = sin.reshape(-1, sin.shape[-1])
        inv = _freqs_from_tables(cos, sin, adjacent)
        rotary_dim = cos.shape[-1]
        base = float(inv[1] ** (-rotary_dim / 2)) if inv.numel() > 1 else math.nan
        out[L] = {
            "inv_freq": inv,
            "wavelength": wavelengths(inv),
            "rotary_dim": int(rotary_dim),
            "adjacent_pairs": adjacent,
            "rope_base": base,
        }
    return out


def _bridge_tables(model, layers) -> dict[int, tuple[Tensor, Tensor]]:
    names = {hook_name(k, L): (L, k) for L in layers for k in ("cos", "sin")}
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise ValueError(
            f"The model has no hook point {missing[0]!r}: tl_wavelet reads RoPE frequencies from "
            "the cos/sin tables the bridge applies; load the model with boot_transformers "
            "(or tl_wavelet.models.load)."
        )
    got: dict[int, dict[str, Tensor]] = {L: {} for L in layers}

    def grab(t, hook):
        L, k = names[hook.name]
        got[L][k] = t.detach()

    bos = getattr(model.tokenizer, "bos_token_id", None) if getattr(model, "tokenizer", None) else None
    tok = 0 if bos is None else int(bos)
    device = next(model.parameters()).device
    tokens = torch.full((1, 2), tok, dtype=torch.long, device=device)
    from .adapter import run_until

    run_until(model, tokens, [(n, grab) for n in names], stop_at=hook_name("sin", layers[-1]))
    for L in layers:
        if set(got[L]) != {"cos", "sin"}:
            raise RuntimeError(f"Layer {L} did not fire hook_cos/hook_sin; cannot read its RoPE frequencies.")
    return {L: (got[L]["cos"], got[L]["sin"]) for L in layers}
