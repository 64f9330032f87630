"""What tl_wavelet needs to know about a TransformerLens model, on TL 3.x and 4.x alike.

TransformerLens 4 replaced ``HookedTransformer`` with ``TransformerBridge``; both expose
the same hook names (``blocks.L.attn.hook_pattern`` ...) and the same hook API
(``hooks``, ``run_with_hooks``), but configs and internals differ. Everything that
depends on which one we were given lives here, so the rest of the package only sees
a :class:`ModelShape` and hook names.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from .corpus import chunk_tokens
from .validate import as_token_ids, check_indices, check_optional_int

__all__ = [
    "ModelShape",
    "model_shape",
    "hook_name",
    "resolve_layers",
    "resolve_heads",
    "require_hooks",
    "run_until",
    "last_fired",
    "as_tokens",
    "is_text",
    "vocab_size",
    "is_causal",
    "require_causal",
    "hf_layer_list",
    "LayerRunner",
]

HookFn = Callable[[Tensor, object], Tensor | None]


@dataclass(frozen=True)
class ModelShape:
    """The few numbers about a model that every tl_wavelet function needs."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    rotary: bool
    backend: str  # "bridge" (TL 4.x TransformerBridge) or "hooked" (TL 3.x HookedTransformer)

    @property
    def group_size(self) -> int:
        """Query heads served by one key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads


def model_shape(model) -> ModelShape:
    """Read layer/head counts from a TransformerBridge or HookedTransformer.

    >>> shape = model_shape(model)  # doctest: +SKIP
    >>> shape.n_layers, shape.n_heads, shape.n_kv_heads  # doctest: +SKIP
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "hooks"):
        raise TypeError(
            f"model must be a TransformerLens model (TransformerBridge on TL 4.x or "
            f"HookedTransformer on TL 3.x), got {type(model).__name__}. Load one with "
            f"tl_wavelet.models.load(...) or TransformerBridge.boot_transformers(...)."
        )
    n_heads = int(cfg.n_heads)
    n_kv = getattr(cfg, "n_key_value_heads", None) or n_heads
    backend = "bridge" if hasattr(model, "original_model") else "hooked"
    rotary = getattr(cfg, "positional_embedding_type", None) == "rotary"
    return ModelShape(
        n_layers=int(cfg.n_layers),
        n_heads=n_heads,
        n_kv_heads=int(n_kv),
        d_head=int(cfg.d_head),
        rotary=rotary,
        backend=backend,
    )


def hook_name(kind: str, layer: int) -> str:
    """``hook_name("pattern", 3) == "blocks.3.attn.hook_pattern"`` (TL's naming, both versions)."""
    return f"blocks.{layer}.attn.hook_{kind}"


# Order in which a block's attention hooks fire (same on the bridge and HookedTransformer).
_FIRING_RANK = {"q": 0, "k": 1, "v": 2, "cos": 3, "sin": 4, "rot_q": 5, "rot_k": 6, "attn_scores": 7, "pattern": 8, "z": 9}


def last_fired(names: Iterable[str]) -> str:
    """The attention hook among ``names`` that fires last in a forward pass."""

    def key(name: str):
        parts = name.split(".")
        return int(parts[1]), _FIRING_RANK[parts[-1].removeprefix("hook_")]

    return max(names, key=key)


def resolve_layers(shape: ModelShape, layers: int | Iterable[int] | None, name: str = "layers") -> list[int]:
    """``None`` -> every layer; an int or any list-like of ints (numpy, tensors, ranges);
    negative indices count from the end as in Python; errors name the range."""
    return check_indices(layers, name, shape.n_layers, what="layer")


def resolve_heads(shape: ModelShape, heads: int | Iterable[int] | None, name: str = "heads") -> list[int]:
    """``None`` -> every head; same rules as :func:`resolve_layers`."""
    return check_indices(heads, name, shape.n_heads, what="head")


def require_hooks(model, names: Sequence[str], why: str = "") -> None:
    """Fail early, with the fix, when a hook point the analysis needs is absent."""
    available = model.hook_dict
    missing = [n for n in names if n not in available]
    if missing:
        hint = ""
        if any("rot_" in n for n in missing):
            hint = (
                " hook_rot_q/hook_rot_k only exist on rotary (RoPE) models, and models built "
                "with TransformerBridge.boot_native do not fire them: load the model with "
                "boot_transformers (or tl_wavelet.models.load)."
            )
        raise ValueError(f"The model has no hook point {missing[0]!r}{' (' + why + ')' if why else ''}.{hint}")


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once the last activation we need is seen."""


def run_until(
    model,
    tokens: Int[Tensor, "batch pos"],
    fwd_hooks: list[tuple[str | Callable, HookFn]],
    stop_at: str | None,
    **forward_kwargs,
) -> None:
    """Run ``model(tokens)`` with ``fwd_hooks``, stopping right after hook ``stop_at`` fires.

    Analysis needs no logits, and on small models the unembedding is a large share of
    the forward (Gemma-3-270m: about half), so we end the pass from a hook. Hooks are
    removed on exit, including when a hook raises.
    """

    def stop(tensor, hook):
        raise _StopForward

    hooks = list(fwd_hooks) + ([(stop_at, stop)] if stop_at is not None else [])
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        try:
            model(tokens, return_type=None, **forward_kwargs)
        except _StopForward:
            pass


_BIDIRECTIONAL = ("MaskedLM", "Bert", "Roberta", "Electra", "Albert", "Deberta", "Encoder")


def is_causal(model) -> bool:
    """Whether the model predicts the next token (a decoder), not a bidirectional encoder.

    TL 3.x ``HookedTransformer`` is always a decoder (encoders are ``HookedEncoder``); a
    bridge is a decoder when its HF config says ``is_decoder``, else it is judged by its HF
    architecture name (``BertForMaskedLM`` ... are encoders).
    """
    names = [type(model).__name__, str(getattr(getattr(model, "cfg", None), "original_architecture", "") or "")]
    hf = getattr(model, "original_model", None)
    if hf is not None:
        if getattr(getattr(hf, "config", None), "is_decoder", False):
            return True  # e.g. BertLMHeadModel(is_decoder=True): a BERT made causal
        names.append(type(hf).__name__)
        names += list(getattr(getattr(hf, "config", None), "architectures", None) or [])
    return not any(tag in name for name in names for tag in _BIDIRECTIONAL)


def require_causal(model, what: str) -> None:
    """Refuse a loss-based measurement on a bidirectional encoder (it has no next-token loss)."""
    if not is_causal(model):
        raise ValueError(
            f"{what} measures the change of next-token loss, but this model is a bidirectional encoder "
            "(e.g. BERT): every position sees the next token and its language-model head predicts masked "
            "tokens, so a next-token loss would be meaningless. Use a causal (decoder) model; "
            "analyze_heads still measures an encoder's attention."
        )


def vocab_size(model) -> int | None:
    """The model's vocabulary size (``cfg.d_vocab``), or None when it does not say."""
    v = getattr(getattr(model, "cfg", None), "d_vocab", None)
    return int(v) if isinstance(v, (int, np.integer)) and v > 0 else None


def is_text(data) -> bool:
    """A string, or a non-empty list/tuple of strings."""
    return isinstance(data, str) or (
        isinstance(data, (list, tuple)) and bool(data) and all(isinstance(t, str) for t in data)
    )


def as_tokens(
    model, data, *, seq_len: int | None = None, n_sequences: int | None = None, name: str = "tokens",
    min_len: int = 1,
) -> Int[Tensor, "batch pos"]:
    """Turn what a user holds into a ``[batch, pos]`` LongTensor of equal-length sequences.

    The one set of token forms every tl_wavelet function takes:

    - token ids: an integer tensor or NumPy array ``[batch, pos]`` (or ``[pos]``), a list
      of ids, or a list of equal-length lists; ids are checked against the model's
      vocabulary. ``seq_len`` keeps the first ``seq_len`` positions (longer than the
      sequences is an error); ``n_sequences`` the first sequences.
    - text: a string is tokenised and cut into windows of ``seq_len`` tokens, each
      starting with BOS (:func:`tl_wavelet.corpus.chunk_tokens`); a list of strings is
      cut document by document, so no window crosses two texts.

    Examples
    --------
    >>> as_tokens(model, [[3, 5, 7, 9]]).shape             # doctest: +SKIP
    torch.Size([1, 4])
    >>> as_tokens(model, ["doc one ...", "doc two ..."], seq_len=64)  # doctest: +SKIP
    """
    seq_len = check_optional_int(seq_len, "seq_len", minimum=1)
    n_sequences = check_optional_int(n_sequences, "n_sequences", minimum=1)
    if is_text(data):
        if seq_len is None:
            raise ValueError(f"{name} is text: pass seq_len=... to cut it into equal-length token windows.")
        try:
            return chunk_tokens(model, data, seq_len, n_sequences=n_sequences)  # per document: no window spans two texts
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    tokens = as_token_ids(data, name, vocab_size=vocab_size(model), min_len=min_len)
    if seq_len is not None:
        if seq_len > tokens.shape[1]:
            raise ValueError(
                f"seq_len={seq_len} is longer than the {name} ({tokens.shape[1]} positions): pass seq_len <= "
                f"{tokens.shape[1]} (or None) with token ids; seq_len cuts text, or keeps a prefix of ids."
            )
        tokens = tokens[:, :seq_len]
    if n_sequences is not None:
        if n_sequences > tokens.shape[0]:
            raise ValueError(
                f"n_sequences={n_sequences} but {name} holds {tokens.shape[0]} sequence(s): lower it or pass None."
            )
        tokens = tokens[:n_sequences]
    return tokens


# ------------------------------------------------------------------ running from a layer
class _PassThrough(torch.nn.Module):
    """Stands in for a decoder layer whose output is already known (the cached residual)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def hf_layer_list(model) -> torch.nn.ModuleList | None:
    """The HuggingFace ModuleList that holds a TransformerBridge's blocks, or None."""
    blocks = list(getattr(model, "blocks", []))
    for mod in model.original_model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == len(blocks) and all(a is b for a, b in zip(mod, blocks)):
            return mod
    return None


class LayerRunner:
    """Runs the model from the residual entering a layer, skipping the blocks before it.

    HookedTransformer (TL 3.x) does this with ``start_at_layer``. TransformerBridge (TL
    4.x) accepts ``start_at_layer`` but still executes blocks ``0..L-1`` and discards their
    output, so there the earlier HuggingFace decoder layers are swapped, for the duration
    of the call only, for pass-through modules (the layer list keeps its length, so
    per-index layer types such as Gemma-3's sliding/global masks stay aligned).
    :meth:`check` guards this: if the shortcut does not reproduce the clean logits, the
    runner falls back to full forwards and warns.
    """

    def __init__(self, model, shape: ModelShape):
        self.model, self.shape = model, shape
        self.layer_list = hf_layer_list(model) if shape.backend == "bridge" else None
        self.skip = shape.backend == "hooked" or self.layer_list is not None
        self.checked = False

    def logits_from(self, layer: int, resid: Tensor, tokens: Tensor, fwd_hooks) -> Tensor:
        """Logits of ``tokens`` given ``resid``, the residual entering ``layer``, with ``fwd_hooks``."""
        model = self.model
        with model.hooks(fwd_hooks=fwd_hooks):
            if not self.skip:
                return model(tokens, return_type="logits")
            if self.shape.backend == "hooked":
                return model(resid, start_at_layer=layer, return_type="logits")
            saved = [self.layer_list[i] for i in range(layer)]
            try:
                for i in range(layer):
                    self.layer_list[i] = _PassThrough()
                return model(resid, return_type="logits")
            finally:  # the model must come back unchanged, also on error or Ctrl-C
                for i, m in enumerate(saved):
                    self.layer_list[i] = m

    def check(self, layer: int, resid: Tensor, tokens: Tensor, clean_logits: Tensor) -> None:
        """Once per run: the shortcut must reproduce the clean logits, else use full forwards."""
        if self.checked or not self.skip:
            return
        self.checked = True
        try:
            with torch.no_grad():
                got = self.logits_from(layer, resid, tokens, [])
            err = float((got - clean_logits).norm() / clean_logits.norm().clamp_min(1e-30))
            ok = err < 1e-4
        except Exception as e:  # an architecture whose layer loop the pass-through does not fit
            err, ok = f"{type(e).__name__}: {e}", False
        if not ok:
            warnings.warn(
                f"band_sweep: running from layer {layer} did not reproduce the clean logits ({err}); "
                "falling back to one full forward per ablation (slower, same results).",
                stacklevel=3,
            )
            self.skip = False
