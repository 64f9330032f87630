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
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .adapter import hook_name, model_shape, resolve_layers, run_until

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
    >>> meta[0]["wavelength"][:3]  # tokens per turn of pairs 0, 1, 2  # doctest: +SKIP
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
    run_until(model, tokens, [(n, grab) for n in names], stop_at=hook_name("sin", layers[-1]))
    for L in layers:
        if set(got[L]) != {"cos", "sin"}:
            raise RuntimeError(f"Layer {L} did not fire hook_cos/hook_sin; cannot read its RoPE frequencies.")
    return {L: (got[L]["cos"], got[L]["sin"]) for L in layers}


# --------------------------------------------------------------------------- RoPE


def _rope_parameters(config) -> dict[str, dict[str, Any]]:
    """``{layer_type or "default": rope parameters}`` from an HF config (transformers 4 or 5)."""
    rp = getattr(config, "rope_parameters", None)
    if rp is None:
        # transformers 4.x layout
        theta = getattr(config, "rope_theta", None)
        if theta is None:
            return {}
        out = {"default": {"rope_theta": float(theta), **(getattr(config, "rope_scaling", None) or {})}}
        out["default"].setdefault("rope_type", out["default"].get("type", "default"))
        local = getattr(config, "rope_local_base_freq", None)
        if local is not None:
            out = {
                "full_attention": out["default"],
                "sliding_attention": {"rope_theta": float(local), "rope_type": "default"},
            }
        return out
    if "rope_theta" in rp:
        return {"default": dict(rp)}
    return {k: dict(v) for k, v in rp.items()}


def _hf_layer_info(config, n_layers: int) -> list[dict[str, Any]]:
    """Per layer: rope base, rope type and sliding window read from an HF config."""
    rp = _rope_parameters(config)
    layer_types = getattr(config, "layer_types", None)
    window = getattr(config, "sliding_window", None)
    out = []
    for layer in range(n_layers):
        ltype = layer_types[layer] if layer_types is not None else None
        params = rp.get(ltype) if ltype in rp else rp.get("default")
        if params is None and len(rp) == 1:
            params = next(iter(rp.values()))
        sliding = ltype == "sliding_attention" or (layer_types is None and window is not None
                                                   and getattr(config, "use_sliding_window", False))
        out.append({
            "rope_base": float(params["rope_theta"]) if params else None,
            "rope_type": (params or {}).get("rope_type", "default"),
            "sliding_window": int(window) if sliding and window is not None else None,
        })
    return out


def rope_metadata(model) -> list[dict[str, Any]]:
    """Per-layer RoPE description of a loaded model.

    The rotary frequencies are measured from the model's own computation: on a
    ``TransformerBridge`` from ``blocks.L.attn.hook_cos`` / ``hook_sin`` for a 2-token input,
    on a ``HookedTransformer`` from each attention module's ``rotary_cos`` / ``rotary_sin``
    buffers, as ``atan2(sin, cos)`` at position 1. This holds under RoPE scaling (an
    amplitude factor cancels) and with per-layer bases. ``rope_base`` comes from the HF
    config (``rope_parameters``), checked against the measured frequencies when the RoPE
    is unscaled (``inv_freq[1] == base ** (-2 / rotary_dim)``).

    Parameters
    ----------
    model
        A ``TransformerBridge`` or ``HookedTransformer``, e.g. from :func:`load`.

    Returns
    -------
    list of dict, one per layer, with keys

    - ``"layer"`` (int),
    - ``"rope_base"`` (float; from the HF config, else inferred from ``inv_freq[1]``),
    - ``"rotary_dim"`` (int; the number of rotated dimensions of a head),
    - ``"sliding_window"`` (int or None),
    - ``"inv_freq"`` (float64 Tensor[rotary_dim / 2], radians per position),
    - ``"rope_type"`` (str; ``"default"`` for unscaled RoPE).

    Raises
    ------
    ValueError
        The model has no rotary position embeddings.

    Examples
    --------
    >>> meta = rope_metadata(load("gemma3-270m"))  # doctest: +SKIP
    >>> [(m["layer"], m["rope_base"], m["sliding_window"]) for m in meta][4:6]  # doctest: +SKIP
    [(4, 10000.0, 512), (5, 1000000.0, None)]
    """
    cfg = model.cfg
    n_layers = cfg.n_layers
    hf_config = None
    original = getattr(model, "original_model", None)
    if original is not None:
        hf_config = getattr(original, "config", None)
    hf_config = getattr(model, "_tl_wavelet_hf_config", hf_config)

    # The frequencies are read off the model's own cos/sin tables (tl_wavelet.rope), the
    # config only names them: the two are checked against each other below.
    try:
        measured = rope_frequencies(model)
    except ValueError as exc:
        raise ValueError(f"RoPE metadata needs a rotary model: {exc}") from None
    freqs = {layer: m["inv_freq"].double() for layer, m in measured.items()}

    info = _hf_layer_info(hf_config, n_layers) if hf_config is not None else None
    out = []
    for layer in sorted(freqs):
        inv = freqs[layer].cpu()
        rdim = 2 * inv.numel()
        measured_base = float(inv[1]) ** (-rdim / 2) if rdim >= 4 and float(inv[1]) > 0 else float("nan")
        entry: dict[str, Any] = {"layer": layer, "rotary_dim": rdim, "inv_freq": inv}
        if info is not None and info[layer]["rope_base"] is not None:
            base, rtype, window = info[layer]["rope_base"], info[layer]["rope_type"], info[layer]["sliding_window"]
            if rtype == "default" and not math.isclose(measured_base, base, rel_tol=1e-3):
                raise RuntimeError(
                    f"Layer {layer}: the model computes RoPE with base {measured_base:.6g} but its "
                    f"config says {base:.6g}; the config and the computation disagree."
                )
        else:
            base, rtype = measured_base, "default"
            window = None
            if getattr(cfg, "attn_types", None) and cfg.attn_types[layer] == "local":
                window = getattr(cfg, "window_size", None)
        entry.update(rope_base=base, sliding_window=window, rope_type=rtype)
        out.append(entry)
    return out


