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
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from .adapter import _hf_decoder, facts, hf_is_rotary, hook_name, model_shape, resolve_layers

__all__ = ["rope_frequencies", "wavelengths", "apply_rope", "rotary_hooks", "describe_positions", "hf_rope_modules", "hf_is_rotary"]

_POSITION_NAMES = {"standard": "learned absolute", "shortformer": "learned absolute (shortformer)",
                   "alibi": "ALiBi", "rotary": "rotary (RoPE)"}


def describe_positions(model) -> str:
    """The model's position encoding in words, e.g. ``"ALiBi ('alibi')"`` (TL's cfg name in quotes)."""
    kind = getattr(model.cfg, "positional_embedding_type", None)
    return f"{_POSITION_NAMES.get(kind, 'unknown')} ({kind!r})"

_ADJACENT_PAIR_MODELS = {"gptj", "codegen"}  # HF models that rotate (2i, 2i+1) pairs


def wavelengths(inv_freq: Float[Tensor, " pair"]) -> Float[Tensor, " pair"]:
    """Tokens per full turn of each rotary pair: ``2 pi / inv_freq``."""
    return 2 * math.pi / inv_freq


_HALF = (torch.float16, torch.bfloat16)
#: farthest position a half-precision table is read at (see _freqs_from_rows)
_REFINE_UP_TO = 2**14


def _pair_angles(cos_row: Tensor, sin_row: Tensor, adjacent: bool) -> Tensor:
    """The angle of every rotary pair in one table row ``[rotary_dim]`` (float64)."""
    c, s = cos_row.double(), sin_row.double()
    r = c.shape[-1]
    if adjacent:
        c, s = c[0::2], s[0::2]
    else:
        c, s = c[: r // 2], s[: r // 2]
    return torch.atan2(s, c)


def _freqs_from_rows(rows: dict[int, tuple[Tensor, Tensor]], adjacent: bool) -> Tensor:
    """Each pair's angular frequency from table rows ``{position: (cos_row, sin_row)}``.

    Row 1 holds angle ``1 * inv_freq[i] < pi`` for every pair: exact in float32. A bf16
    table rounds cos and sin to 8 bits (an angle error of about 4e-3), which the base
    implied by ``inv_freq[1] ** (-rotary_dim / 2)`` amplifies 30-fold; so rows further out
    (positions 2, 4, 8, ...) refine it: the angle at position p is ``p * inv_freq`` modulo
    2 pi, the turn count is predicted from the estimate so far, and the error shrinks as 1 / p.
    """
    positions = sorted(rows)
    w = _pair_angles(*rows[positions[0]], adjacent) / positions[0]
    for p in positions[1:]:
        a = _pair_angles(*rows[p], adjacent)
        turns = torch.round((p * w - a) / (2 * math.pi))
        w = (a + 2 * math.pi * turns) / p
    return w


def _refine_positions(n: int | None) -> list[int]:
    """1, then powers of two below ``n`` (and below :data:`_REFINE_UP_TO`)."""
    limit = min(n or 2, _REFINE_UP_TO + 1)
    return [1] + [2**k for k in range(1, 15) if 2**k < limit]


def _rows_of_table(cos: Tensor, sin: Tensor) -> dict[int, tuple[Tensor, Tensor]]:
    """Rows of a full ``[pos, rotary_dim]`` table: position 1, and further out for half precision."""
    cos, sin = cos.reshape(-1, cos.shape[-1]), sin.reshape(-1, sin.shape[-1])
    positions = _refine_positions(cos.shape[0]) if cos.dtype in _HALF else [1]
    return {p: (cos[p].cpu(), sin[p].cpu()) for p in positions}


def rope_frequencies(model, layers=None) -> dict[int, dict]:
    """Per-layer RoPE description of a model, read off its own computation.

    ``{layer: {"inv_freq", "wavelength", "rotary_dim", "adjacent_pairs", "rope_base",
    "rope_type", "sliding_window"}}``:

    - ``inv_freq`` (float64 ``[rotary_dim / 2]``, radians per position) and ``wavelength``
      (tokens per turn) are measured from the model's own cos/sin tables: on a
      ``TransformerBridge`` ``blocks.L.attn.hook_cos`` / ``hook_sin`` for a 2-token input, on
      a ``HookedTransformer`` each attention's ``rotary_cos`` / ``rotary_sin``, as
      ``atan2(sin, cos)`` (exact under RoPE scaling, where an amplitude factor cancels, and
      with per-layer bases); not TransformerLens's ``cfg.rotary_base`` (wrong for some
      models under transformers 5);
    - ``rotary_dim`` (rotated dimensions of a head), ``adjacent_pairs`` (GPT-J layout);
    - ``rope_base``, ``rope_type``, ``sliding_window``: from the Hugging Face config
      (``rope_parameters``) where the model has one, checked against the measured
      frequencies when the RoPE is unscaled (``inv_freq[1] == base ** (-2 / rotary_dim)``);
      else the base implied by ``inv_freq[1]``, ``"default"``, and TransformerLens's local
      attention window.

    Tensors are float64 on the CPU, wherever the model is. The tables are read once per
    model (a 2-token forward on a TransformerBridge) and kept by its
    :class:`~tl_wavelet.adapter.ModelFacts`: later calls run nothing.

    Raises ValueError for a model without rotary position embeddings, RuntimeError where
    the config and the computation disagree on the base.

    >>> meta = rope_frequencies(model)          # doctest: +SKIP
    >>> meta[0]["wavelength"][:3]  # tokens per turn of pairs 0, 1, 2  # doctest: +SKIP
    >>> [(L, m["rope_base"], m["sliding_window"]) for L, m in rope_frequencies(gemma).items()][4:6]  # doctest: +SKIP
    [(4, 10000.0, 512), (5, 1000000.0, None)]
    """
    shape = model_shape(model)
    if not shape.rotary:
        raise ValueError(
            f"RoPE frequencies need a rotary model; this one uses {describe_positions(model)} positions. "
            "Positional metrics work without RoPE: analyze_heads(..., rope=False), band_ablation_hook."
        )
    layers = resolve_layers(shape, layers)
    every = facts(model).memo("rope_frequencies", lambda: _with_config(model, _read_frequencies(model, shape)))
    # copies: a caller who edits its table must not edit the model's facts
    return {L: {k: v.clone() if isinstance(v, Tensor) else v for k, v in every[L].items()} for L in layers}


def _read_frequencies(model, shape) -> dict[int, dict]:
    """Every layer's RoPE metadata, read off the model's own tables (float64, CPU)."""
    layers = list(range(shape.n_layers))
    if shape.backend == "hooked":
        adjacent = bool(getattr(model.cfg, "rotary_adjacent_pairs", False))
        rows = {L: _rows_of_table(model.blocks[L].attn.rotary_cos.detach(), model.blocks[L].attn.rotary_sin.detach())
                for L in layers}
    else:
        hf_cfg = getattr(model.original_model, "config", None)
        adjacent = getattr(hf_cfg, "model_type", "") in _ADJACENT_PAIR_MODELS
        if all(hook_name("cos", L) in model.hook_dict for L in layers):
            rows = _bridge_rows(model, layers)
        else:
            # GPT-J style bridges apply RoPE inside the HF attention, with no hook_cos/hook_sin.
            rows = {L: _rows_of_table(*table) for L, table in _hf_position_tables(model, layers).items()}
    out = {}
    for L, layer_rows in rows.items():
        inv = _freqs_from_rows(layer_rows, adjacent)
        rotary_dim = layer_rows[1][0].shape[-1]
        base = float(inv[1] ** (-rotary_dim / 2)) if inv.numel() > 1 else math.nan
        out[L] = {
            "inv_freq": inv,
            "wavelength": wavelengths(inv),
            "rotary_dim": int(rotary_dim),
            "adjacent_pairs": adjacent,
            "rope_base": base,
        }
    return out


def _hf_position_tables(model, layers) -> dict[int, tuple[Tensor, Tensor]]:
    """cos/sin tables ``[pos, rotary_dim]`` from the HF model's own ``embed_positions`` buffer.

    GPT-J and CodeGen keep one sinusoid buffer ``cat(sin(pos * inv_freq), cos(pos * inv_freq))``
    (``[max_pos, rotary_dim]``) and rotate adjacent pairs with it; the bridge has no
    hook_cos/hook_sin for them. The frequencies read here are checked against the model's
    own attention scores by :func:`rotary_hooks`.
    """
    buffers = [
        (name, buf) for name, buf in model.original_model.named_buffers()
        if name.endswith("embed_positions") and buf.ndim == 2
    ]
    if not buffers:
        arch = type(model.original_model).__name__
        raise ValueError(
            f"{arch}: this TransformerBridge has no hook point 'blocks.L.attn.hook_cos' and no "
            "GPT-J style 'embed_positions' buffer, so tl_wavelet cannot read its RoPE frequencies. "
            "A model built with TransformerBridge.boot_native lacks these: load it with "
            "tl_wavelet.models.load(...) or TransformerBridge.boot_transformers(...). "
            "Positional metrics still work (analyze_heads(..., rope=False), band_ablation_hook)."
        )
    table = buffers[0][1].detach()
    half = table.shape[-1] // 2
    sin, cos = table[:, :half], table[:, half:]
    # back to the [pos, rotary_dim] layout of the adjacent-pair tables (theta_0, theta_0, theta_1, ...)
    cos = cos.repeat_interleave(2, dim=-1)
    sin = sin.repeat_interleave(2, dim=-1)
    return {L: (cos, sin) for L in layers}


def _bridge_rows(model, layers) -> dict[int, dict[int, tuple[Tensor, Tensor]]]:
    """``{layer: {position: (cos_row, sin_row)}}`` from the tables the bridge applies (``hook_cos`` / ``hook_sin``).

    One 2-token forward at positions (0, 1); a half-precision model gets one more per
    position 2, 4, 8, ... (``position_ids=(0, p)``), for :func:`_freqs_from_rows`.
    """
    names = {hook_name(k, L): (L, k) for L in layers for k in ("cos", "sin")}
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise ValueError(
            f"The model has no hook point {missing[0]!r}: tl_wavelet reads RoPE frequencies from "
            "the cos/sin tables the bridge applies; load the model with boot_transformers "
            "(or tl_wavelet.models.load)."
        )
    f = facts(model)
    bos = getattr(model.tokenizer, "bos_token_id", None) if getattr(model, "tokenizer", None) else None
    tok = 0 if bos is None else int(bos)
    tokens = torch.full((1, 2), tok, dtype=torch.long, device="cpu")  # run_until moves them to the model

    def probe(position: int) -> dict[int, tuple[Tensor, Tensor]]:
        got: dict[int, dict[str, Tensor]] = {L: {} for L in layers}

        def grab(t, hook):
            L, k = names[hook.name]
            got[L][k] = t.detach()[..., -1, :].reshape(-1, t.shape[-1])[0].to("cpu")  # the row at `position`

        kw = {} if position == 1 else {"position_ids": torch.tensor([[0, position]], device=f.device)}
        f.run_until(tokens, [(n, grab) for n in names], stop_at=hook_name("sin", layers[-1]), **kw)
        for L in layers:
            if set(got[L]) != {"cos", "sin"}:
                raise RuntimeError(f"Layer {L} did not fire hook_cos/hook_sin; cannot read its RoPE frequencies.")
        return {L: (got[L]["cos"], got[L]["sin"]) for L in layers}

    first = probe(1)
    rows = {L: {1: first[L]} for L in layers}
    if first[layers[0]][0].dtype in _HALF:
        for p in _refine_positions(f.context_length)[1:]:
            for L, row in probe(p).items():
                rows[L][p] = row
    return rows


def apply_rope(
    x: Float[Tensor, "batch pos head d_head"],
    inv_freq: Float[Tensor, " pair"],
    adjacent_pairs: bool = False,
    positions: Tensor | None = None,
) -> Float[Tensor, "batch pos head d_head"]:
    """Rotate the first ``2 * len(inv_freq)`` dims of ``x`` by RoPE; the rest pass through.

    Pair ``i`` is dims ``(i, i + rotary_dim/2)`` ("rotate_half": Llama, GPT-NeoX, Phi) or
    ``(2i, 2i+1)`` with ``adjacent_pairs`` (GPT-J), and turns by ``pos * inv_freq[i]``.

    Examples
    --------
    >>> x = torch.randn(1, 3, 2, 8, dtype=torch.float64)
    >>> inv = torch.tensor([1.0, 0.1], dtype=torch.float64)        # rotary_dim 4 of 8
    >>> y = apply_rope(x, inv)
    >>> torch.equal(y[0, 0], x[0, 0]), torch.equal(y[..., 4:], x[..., 4:])
    (True, True)
    >>> bool(torch.allclose(y[..., :4].pow(2).sum(-1), x[..., :4].pow(2).sum(-1)))  # rotations keep norms
    True
    """
    r = 2 * inv_freq.numel()
    n = x.shape[1]
    pos = torch.arange(n, device=x.device, dtype=torch.float64) if positions is None else positions.double()
    angle = pos[:, None] * inv_freq.to(x.device).double()[None, :]  # [pos, pair]
    cos = angle.cos()[None, :, None, :].to(x.dtype)
    sin = angle.sin()[None, :, None, :].to(x.dtype)
    rot = x[..., :r]
    if adjacent_pairs:
        a, b = rot[..., 0::2], rot[..., 1::2]
    else:
        a, b = rot[..., : r // 2], rot[..., r // 2 :]
    a2, b2 = a * cos - b * sin, b * cos + a * sin
    if adjacent_pairs:
        out = rearrange(torch.stack([a2, b2], -1), "... i two -> ... (i two)")
    else:
        out = torch.cat([a2, b2], -1)
    return torch.cat([out, x[..., r:]], -1)


_SCORE_RTOL = 1e-3


def _architecture(model) -> str:
    original = getattr(model, "original_model", None)
    if original is not None:
        return type(original).__name__
    return str(getattr(model.cfg, "original_architecture", None) or type(model).__name__)


def rotary_hooks(model) -> tuple[str, str]:
    """The hook kinds that carry a rotary model's queries and keys: ``("rot_q", "rot_k")`` or ``("q", "k")``.

    The RoPE features read the rotary pairs of q and k. ``hook_rot_q``/``hook_rot_k``
    (after the rotation) are used where they fire. Some TransformerBridge architectures
    (GPT-NeoX/Pythia, Phi-3, GPT-J on TransformerLens 4.3) rotate inside a fused
    attention and never fire them; there ``hook_q``/``hook_k`` (before the rotation) are
    used instead, which is exact for both uses: a rotation keeps each pair's norm (RoPE
    usage), and zeroing a pair before the rotation zeroes it after (RoPE ablation). That
    substitution is only accepted after checking, on a short probe sequence, that
    ``hook_q``/``hook_k`` rotated by the model's own frequencies
    (:func:`rope_frequencies`, :func:`apply_rope`) reproduce the model's
    ``hook_attn_scores`` on every layer (relative error below 1e-3, up to the score scale).
    The answer is kept by the model's :class:`~tl_wavelet.adapter.ModelFacts` (one probe per model).

    Raises
    ------
    ValueError
        The model is not rotary, or neither route reproduces its attention (the message
        names the architecture and what still works).

    Examples
    --------
    >>> rotary_hooks(model)   # doctest: +SKIP
    ('q', 'k')
    """
    shape = model_shape(model)
    return facts(model).memo("rotary_hooks", lambda: _find_rotary_hooks(model, shape))


def _find_rotary_hooks(model, shape) -> tuple[str, str]:
    arch = _architecture(model)
    if not shape.rotary:
        raise ValueError(
            f"{arch} uses {describe_positions(model)} positions, "
            "not RoPE: RoPE features do not apply (positional metrics and band_ablation_hook do)."
        )
    layers = list(range(shape.n_layers))
    kinds = ("q", "k", "rot_q", "rot_k", "pattern")
    names = {hook_name(k, L): (L, k) for L in layers for k in kinds if hook_name(k, L) in model.hook_dict}
    got: dict[int, dict[str, Tensor]] = {L: {} for L in layers}

    def grab(L: int, k: str):
        # hook.name is the canonical name on the bridge (hook_q is an alias of q.hook_out)
        def fn(t, hook):
            got[L][k] = t.detach()

        return fn

    g = torch.Generator().manual_seed(0)
    vocab = int(getattr(model.cfg, "d_vocab", 2))
    tokens = torch.randint(min(4, vocab - 1), vocab, (1, 12), generator=g, device="cpu")
    # a stop hook would need a name that fires last; the probe is short, run it whole
    facts(model).run_until(tokens, [(n, grab(*lk)) for n, lk in names.items()], stop_at=None)
    if all({"rot_q", "rot_k"} <= set(got[L]) for L in layers):
        result = ("rot_q", "rot_k")
    else:
        missing = [L for L in layers if not {"q", "k", "pattern"} <= set(got[L])]
        if missing:
            raise ValueError(
                f"{arch} ({shape.backend}): layer {missing[0]} fires neither hook_rot_q/hook_rot_k nor "
                "hook_q/hook_k/hook_pattern, so tl_wavelet cannot see its rotary queries and keys. "
                "Positional metrics still work (analyze_heads(..., rope=False)); load the model with "
                "tl_wavelet.models.load(...) or TransformerBridge.boot_transformers(...), not boot_native."
            )
        meta = rope_frequencies(model)
        for L in layers:
            err = _score_mismatch(got[L], meta[L])
            if not err < _SCORE_RTOL:
                raise ValueError(
                    f"{arch} ({shape.backend}), layer {L}: this model does not fire hook_rot_q/hook_rot_k, "
                    f"and hook_q/hook_k rotated by its RoPE frequencies do not reproduce its attention "
                    f"pattern (relative error {err:.2g}), so RoPE usage and RoPE ablation are unavailable "
                    "for it. Positional metrics still work (analyze_heads(..., rope=False), band_ablation_hook)."
                )
        result = ("q", "k")
    return result


def _score_mismatch(acts: dict[str, Tensor], meta: dict) -> float:
    """How far the model's attention is from softmax(c * RoPE(q) . RoPE(k)), best scale c.

    Compared in log space on the causal part, each query row centred (the softmax
    normaliser and any per-row shift drop out): ``log p[i, j] - mean_j log p[i, j]`` against
    ``c * (s[i, j] - mean_j s[i, j])``. ``hook_pattern`` is used, not ``hook_attn_scores``,
    because the TransformerLens 4.3 GPT-J bridge fires its pattern at ``hook_attn_scores``.
    """
    q = apply_rope(acts["q"].double().cpu(), meta["inv_freq"], meta["adjacent_pairs"])
    k = apply_rope(acts["k"].double().cpu(), meta["inv_freq"], meta["adjacent_pairs"])
    if k.shape[2] != q.shape[2]:
        k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, k)
    p = acts["pattern"].double().cpu()
    if p.shape != s.shape:
        return math.inf
    n = s.shape[-1]
    keep = torch.ones(n, n, dtype=torch.bool, device=s.device).tril() & (p > 1e-30)
    count = keep.sum(-1, keepdim=True).clamp(min=1)
    logp = torch.where(keep, p.clamp(min=1e-300).log(), 0.0)
    s = torch.where(keep, s, 0.0)
    lc = torch.where(keep, logp - logp.sum(-1, keepdim=True) / count, 0.0)
    sc = torch.where(keep, s - s.sum(-1, keepdim=True) / count, 0.0)
    scale = (lc * sc).sum() / (sc * sc).sum().clamp(min=1e-300)
    if not scale > 0:
        return math.inf
    return float((lc - scale * sc).norm() / lc.norm().clamp(min=1e-300))


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


def _with_config(model, measured: dict[int, dict]) -> dict[int, dict]:
    """The measured tables with each layer's base, RoPE type and sliding window (the HF config's, checked)."""
    cfg = model.cfg
    hf_config = getattr(getattr(model, "original_model", None), "config", None)
    hf_config = getattr(model, "_tl_wavelet_hf_config", hf_config)
    info = _hf_layer_info(hf_config, cfg.n_layers) if hf_config is not None else None
    for layer, entry in measured.items():
        measured_base = entry["rope_base"]
        if info is not None and info[layer]["rope_base"] is not None:
            base, rtype, window = info[layer]["rope_base"], info[layer]["rope_type"], info[layer]["sliding_window"]
            if rtype == "default" and math.isfinite(measured_base) and not math.isclose(measured_base, base, rel_tol=1e-3):
                raise RuntimeError(
                    f"Layer {layer}: the model computes RoPE with base {measured_base:.6g} but its "
                    f"config says {base:.6g}; the config and the computation disagree."
                )
        else:
            base, rtype, window = measured_base, "default", None
            if getattr(cfg, "attn_types", None) and cfg.attn_types[layer] == "local":
                window = getattr(cfg, "window_size", None)
        entry.update(rope_base=base, rope_type=rtype, sliding_window=window)
    return measured


# Hugging Face families whose attention is, per layer: q_proj / k_proj (Linear), an optional
# per-head or flat q_norm / k_norm, a reshape to [.., heads, d_head], then rotate_half RoPE
# (pairs i and i + rotary_dim/2) with the decoder's single ``rotary_emb``. Only there do the
# pre-rotation projections give the rotated pairs' norms (a rotation keeps them).
_HF_ROTATE_HALF = {"llama", "mistral", "qwen2", "qwen3", "olmo2"}


def hf_rope_modules(hf_model, layers) -> tuple[dict[int, dict], dict[int, tuple[torch.nn.Module, torch.nn.Module]], float]:
    """RoPE metadata and the (q, k) modules whose outputs are the unrotated q and k, of a plain HF model.

    Returns ``(meta, modules, scale)``: ``meta[layer]`` as :func:`rope_frequencies`, read
    from the cos/sin the model's own ``rotary_emb`` produces; ``modules[layer] = (q, k)``:
    ``q_norm`` / ``k_norm`` where the attention has them, else ``q_proj`` / ``k_proj``;
    ``scale``: the attention factor the model multiplies cos and sin by (1 for plain RoPE).

    Raises ``ValueError`` naming the reason where the rotary pairing cannot be known (an
    architecture outside the rotate-half Llama family, no ``rotary_emb`` frequencies, no
    separate q/k projections) and for a model without RoPE.
    """
    config = hf_model.config
    arch = type(hf_model).__name__
    mtype = getattr(config, "model_type", "")
    if mtype not in _HF_ROTATE_HALF:
        raise ValueError(
            f"RoPE usage on a plain Hugging Face {arch} (model_type {mtype!r}) is not supported: tl_wavelet reads the "
            f"rotary pairs from q_proj/k_proj only where it knows the pairing ({', '.join(sorted(_HF_ROTATE_HALF))}). "
            "Wrap the model with TransformerBridge.boot_transformers (its hook_rot_q / hook_rot_k), or pass rope=False."
        )
    decoder = _hf_decoder(hf_model)
    rotary = getattr(decoder, "rotary_emb", None)
    if rotary is None or not hasattr(rotary, "inv_freq"):
        raise ValueError(
            f"{arch} has no RoPE (its rotary_emb is {type(rotary).__name__ if rotary is not None else 'missing'}, "
            "without inv_freq): RoPE usage does not apply; pass rope=False."
        )
    # float32 x: the module computes in float32 and returns x's dtype, so the tables are exact
    # even for a bf16 model (whose inv_freq buffer HF keeps in float32)
    x = torch.zeros(1, 2, 1, dtype=torch.float32, device=rotary.inv_freq.device)
    with torch.no_grad():
        cos, sin = rotary(x, torch.arange(2, device=x.device)[None])
    cos, sin = cos.reshape(2, -1).double().cpu(), sin.reshape(2, -1).double().cpu()
    scale = float(cos[0, 0])  # cos(0) = 1 times the attention factor
    inv = _freqs_from_rows({1: (cos[1], sin[1])}, adjacent=False)
    rotary_dim = int(cos.shape[-1])
    base = float(inv[1] ** (-rotary_dim / 2)) if inv.numel() > 1 else math.nan
    meta, modules = {}, {}
    for L in layers:
        attn = decoder.layers[L].self_attn
        q = getattr(attn, "q_norm", None) if getattr(attn, "q_norm", None) is not None else getattr(attn, "q_proj", None)
        k = getattr(attn, "k_norm", None) if getattr(attn, "k_norm", None) is not None else getattr(attn, "k_proj", None)
        if q is None or k is None:
            raise ValueError(f"{arch} layer {L}: no separate q_proj/k_proj to read the rotary pairs from; pass rope=False.")
        modules[L] = (q, k)
        meta[L] = {"inv_freq": inv, "wavelength": wavelengths(inv), "rotary_dim": rotary_dim,
                   "adjacent_pairs": False, "rope_base": base}
    return meta, modules, scale
