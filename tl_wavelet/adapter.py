"""What tl_wavelet knows about a model: one :class:`ModelFacts` per model, made once and cached.

TransformerLens 4 replaced ``HookedTransformer`` with ``TransformerBridge``; both expose
the same hook names (``blocks.L.attn.hook_pattern`` ...) and the same hook API
(``hooks``, ``run_with_hooks``), but configs and internals differ; a plain Hugging Face
model (what :mod:`tl_wavelet.track` measures during training) has neither. Everything
that depends on which one we were given lives here: :func:`facts` returns the model's
:class:`ModelFacts` (backend, shape, where it lives, its hooks, how to run it), and every
other module asks it instead of guessing. Facts derived from a forward pass (the RoPE
tables, which hooks carry the rotary q/k) are computed once per model and kept on the
CPU (:meth:`ModelFacts.memo`).

Where the model lives is read afresh on every :attr:`ModelFacts.device` (a model can be
moved after its facts were made), and checked: parameters, buffers and TransformerLens's
``cfg.device`` must agree.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from .corpus import chunk_tokens
from .validate import as_token_ids, check_indices, check_optional_int

__all__ = [
    "ModelFacts",
    "facts",
    "Placement",
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
BACKENDS = ("bridge", "hooked", "hf")


@dataclass(frozen=True)
class ModelShape:
    """The few numbers about a model that every tl_wavelet function needs."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    rotary: bool
    backend: str  # "bridge" (TL 4.x TransformerBridge), "hooked" (TL 3.x HookedTransformer) or "hf" (plain HF)

    @property
    def group_size(self) -> int:
        """Query heads served by one key/value head (1 without grouped-query attention)."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class Placement:
    """Where a model's tensors are, read off its parameters and buffers."""

    devices: tuple[torch.device, ...]  # every device holding a parameter or buffer
    input_device: torch.device  # where token ids go: the input embedding's device
    dtype: torch.dtype  # the input embedding's dtype: what activations start in
    dtypes: tuple[torch.dtype, ...]  # every floating dtype among the parameters


def _not_a_tl_model(model) -> TypeError:
    return TypeError(
        f"model must be a TransformerLens model (TransformerBridge on TL 4.x or HookedTransformer on TL 3.x) "
        f"or a Hugging Face PreTrainedModel (tl_wavelet.track only), got {type(model).__name__}. Load one with "
        "tl_wavelet.models.load(...) or TransformerBridge.boot_transformers(...)."
    )


def _backend(model) -> str:
    if hasattr(model, "cfg") and hasattr(model, "hooks") and hasattr(model, "hook_dict"):
        return "bridge" if hasattr(model, "original_model") else "hooked"
    config = getattr(model, "config", None)
    if isinstance(model, torch.nn.Module) and config is not None and hasattr(config, "num_hidden_layers"):
        return "hf"
    raise _not_a_tl_model(model)


def _hf_decoder(hf):
    return hf.get_decoder() if hasattr(hf, "get_decoder") else getattr(hf, "model", hf)


def hf_is_rotary(hf_model) -> bool:
    """True when a plain HF model's decoder has a RoPE ``rotary_emb`` (with frequencies)."""
    rotary = getattr(_hf_decoder(hf_model), "rotary_emb", None)
    return rotary is not None and hasattr(rotary, "inv_freq")


def _shape(model, backend: str) -> ModelShape:
    if backend == "hf":
        c = model.config
        n_heads = int(c.num_attention_heads)
        return ModelShape(
            n_layers=int(c.num_hidden_layers), n_heads=n_heads,
            n_kv_heads=int(getattr(c, "num_key_value_heads", None) or n_heads),
            d_head=int(getattr(c, "head_dim", None) or c.hidden_size // n_heads),
            rotary=hf_is_rotary(model), backend="hf",
        )
    cfg = model.cfg
    n_heads = int(cfg.n_heads)
    return ModelShape(
        n_layers=int(cfg.n_layers), n_heads=n_heads,
        n_kv_heads=int(getattr(cfg, "n_key_value_heads", None) or n_heads), d_head=int(cfg.d_head),
        rotary=getattr(cfg, "positional_embedding_type", None) == "rotary", backend=backend,
    )


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are one device when 0 is the current one."""
    if a.type != b.type:
        return False
    if a.index == b.index:
        return True
    current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


class ModelFacts:
    """Everything tl_wavelet needs to know about one model; get it with :func:`facts`.

    Attributes
    ----------
    backend : ``"bridge"`` (TransformerLens 4 ``TransformerBridge``), ``"hooked"``
        (TransformerLens 3 ``HookedTransformer``) or ``"hf"`` (a plain Hugging Face model:
        measured by :mod:`tl_wavelet.track` through ``output_attentions``, no hooks).
    shape : :class:`ModelShape` (layers, heads, key/value heads, head size, rotary or not).
    name, vocab_size, context_length : from the model's config (None where it does not say).

    ``device`` / ``dtype`` / :meth:`placement` read where the model is now (checked);
    :meth:`run_until`, :meth:`logits` run it on any backend; :meth:`memo` keeps facts that
    cost a forward (RoPE tables, rotary hooks), computed once, on the CPU.

    Examples
    --------
    >>> f = facts(model)                           # doctest: +SKIP
    >>> f.backend, f.shape.n_layers, f.device, f.dtype   # doctest: +SKIP
    ('bridge', 30, device(type='cuda', index=0), torch.bfloat16)
    """

    def __init__(self, model):
        self.backend = _backend(model)
        self.shape = _shape(model, self.backend)
        self._ref = weakref.ref(model)
        self._memo: dict[str, Any] = {}
        if self.backend == "hf":
            c = model.config
            self.name = getattr(c, "_name_or_path", None) or type(model).__name__
            self.vocab_size = int(c.vocab_size)
            self.context_length = next((int(getattr(c, k)) for k in ("max_position_embeddings", "n_positions", "n_ctx")
                                        if getattr(c, k, None)), None)
        else:
            self.name = getattr(model.cfg, "model_name", None)
            v = getattr(model.cfg, "d_vocab", None)
            self.vocab_size = int(v) if isinstance(v, (int, np.integer)) and v > 0 else None
            ctx = getattr(model.cfg, "n_ctx", None)
            self.context_length = int(ctx) if isinstance(ctx, (int, np.integer)) and ctx > 0 else None

    def __repr__(self) -> str:
        s = self.shape
        try:
            where = f"{self.device}, {self.dtype}"
        except (ValueError, RuntimeError) as e:
            where = f"placement not usable: {e}"
        return (f"ModelFacts({self.name!r}, backend={self.backend!r}, {s.n_layers} layers x {s.n_heads} heads "
                f"({s.n_kv_heads} kv, d_head {s.d_head}), rotary={s.rotary}, {where})")

    @property
    def model(self):
        model = self._ref()
        if model is None:
            raise RuntimeError("The model these facts describe no longer exists.")
        return model

    # ------------------------------------------------------------------ where it lives
    def _input_weight(self, model) -> Tensor:
        if self.backend == "hooked":
            return model.embed.W_E
        hf = model.original_model if self.backend == "bridge" else model
        emb = hf.get_input_embeddings() if hasattr(hf, "get_input_embeddings") else None
        weight = getattr(emb, "weight", None)
        if isinstance(weight, Tensor):
            return weight
        return next(hf.parameters())

    def placement(self) -> Placement:
        """Where the model's tensors are now, checked.

        Raises ValueError, naming the devices and the fix, when weights sit on the meta
        device (no values), when a TransformerLens model is split between the CPU and an
        accelerator (TransformerLens 4.3's bridge refuses such device maps; TL 3 runs on
        GPUs only when split), or when ``cfg.device`` disagrees with the weights
        (TransformerLens moves inputs to ``cfg.device``).
        """
        model = self.model
        tensors = list(model.parameters()) + list(model.buffers())
        if not tensors:
            raise ValueError(f"model ({type(model).__name__}) has no parameters: there is nothing to measure.")
        devices = tuple(sorted({t.device for t in tensors}, key=str))
        dtypes = tuple(sorted({p.dtype for p in model.parameters() if p.is_floating_point()}, key=str))
        if any(d.type == "meta" for d in devices):
            raise ValueError(
                "model has weights on the meta device, which holds shapes without values (a model built under "
                "torch.device('meta') or init_empty_weights, or not loaded yet): load its weights, e.g. with "
                "tl_wavelet.models.load(...), before measuring it."
            )
        kinds = {d.type for d in devices}
        if self.backend != "hf" and "cpu" in kinds and len(kinds) > 1:
            raise ValueError(
                f"model is split between {', '.join(map(str, devices))}: TransformerLens does not run a model whose "
                "parts sit on the CPU and an accelerator at once (TL 4.3's TransformerBridge refuses such device "
                "maps). Put the whole model on one device: model.to('cuda'), or tl_wavelet.models.load(..., "
                "device='cuda'); spread a model over several GPUs only."
            )
        weight = self._input_weight(model)
        placement = Placement(devices=devices, input_device=weight.device, dtype=weight.dtype, dtypes=dtypes)
        if self.backend != "hf":
            said = getattr(model.cfg, "device", None)
            if said is not None and not _same_device(torch.device(said), weight.device):
                raise ValueError(
                    f"model.cfg.device says {str(said)!r} but the model's weights are on {weight.device} "
                    "(TransformerBridge.boot_transformers(hf_model=..., device=...) leaves a model that was loaded "
                    f"elsewhere where it is). Move it with model.to({str(said)!r}), or load it with "
                    f"tl_wavelet.models.load(..., device={str(said)!r})."
                )
        return placement

    @property
    def device(self) -> torch.device:
        """Where token ids go (the input embedding's device), after :meth:`placement`'s checks."""
        return self.placement().input_device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype activations start in (the input embedding's)."""
        return self.placement().dtype

    def check_placement(self, device: torch.device, dtype: torch.dtype | None = None) -> None:
        """Every parameter and buffer on ``device`` (and every floating parameter in ``dtype``), else RuntimeError."""
        model = self.model
        self.placement()
        named = list(model.named_parameters()) + list(model.named_buffers())
        off = [n for n, t in named if not _same_device(t.device, device)]
        if off:
            raise RuntimeError(
                f"The model was asked to be on {device} but {len(off)} of its tensors are elsewhere "
                f"(e.g. {off[0]!r} on {dict(named)[off[0]].device}). This is a bug in how it was loaded: "
                f"model.to({str(device)!r}) moves it."
            )
        if dtype is not None:
            wrong = [n for n, p in model.named_parameters() if p.is_floating_point() and p.dtype != dtype]
            if wrong:
                raise RuntimeError(
                    f"The model was asked to be in {dtype} but {len(wrong)} parameter(s) are not "
                    f"(e.g. {wrong[0]!r} in {dict(model.named_parameters())[wrong[0]].dtype}): model.to({dtype}) casts it."
                )

    def check_context(self, n: int, allow: bool = False, what: str = "tokens") -> None:
        """Refuse sequences longer than the model's stated context (``allow``: measure them, with a warning)."""
        ctx = self.context_length
        if ctx is None or n <= ctx:
            return
        if not allow:
            raise ValueError(
                f"{what} have {n} positions but the model's stated context is {ctx} (its configuration's maximum "
                f"position): pass sequences of at most {ctx} positions, or allow_beyond_context=True to measure "
                "positions the model was not trained on."
            )
        warnings.warn(
            f"{what}: {n} positions, beyond the model's stated context of {ctx}: the heads are measured where the "
            "model was not trained (RoPE extrapolation).", stacklevel=3)

    def to_device(self, tokens: Tensor) -> Tensor:
        """``tokens`` on the model's input device."""
        return tokens.to(self.device)

    # ------------------------------------------------------------------ facts that cost a forward
    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per model and key; later calls return the kept value.

        For facts that need a forward pass (RoPE frequencies read from the model's own
        cos/sin tables, which hooks carry the rotary queries): no hidden forward per call.
        Keep what is stored on the CPU: the model may move between devices.
        """
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # ------------------------------------------------------------------ hooks and running
    def has_hook(self, name: str) -> bool:
        return self.backend != "hf" and name in self.model.hook_dict

    def require_hooks(self, names: Sequence[str], why: str = "") -> None:
        """Fail early, with the fix, when a hook point the analysis needs is absent."""
        if self.backend == "hf":
            raise TypeError(
                f"This is a plain Hugging Face {type(self.model).__name__}, which has no TransformerLens hook points"
                f"{' (' + why + ')' if why else ''}: wrap it with TransformerBridge.boot_transformers(...) or load it "
                "with tl_wavelet.models.load(...)."
            )
        available = self.model.hook_dict
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

    def run_until(self, tokens: Tensor, fwd_hooks: list, stop_at: str | None, **forward_kwargs) -> None:
        """Run the model on ``tokens`` (moved to its device) with ``fwd_hooks``, ending after hook ``stop_at``.

        Analysis needs no logits, and on small models the unembedding is a large share of
        the forward (Gemma-3-270m: about half), so we end the pass from a hook. Hooks are
        removed on exit, including when a hook raises.
        """
        model = self.model

        def stop(tensor, hook):
            raise _StopForward

        hooks = list(fwd_hooks) + ([(stop_at, stop)] if stop_at is not None else [])
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            try:
                model(self.to_device(tokens), return_type=None, **forward_kwargs)
            except _StopForward:
                pass

    def logits(self, tokens: Tensor, **kwargs) -> Tensor:
        """The model's logits ``[batch, pos, vocab]`` for ``tokens`` (moved to its device), any backend."""
        model = self.model
        if self.backend == "hf":
            return model(input_ids=self.to_device(tokens), **kwargs).logits
        return model(self.to_device(tokens), return_type="logits", **kwargs)


_FACTS: "weakref.WeakKeyDictionary[Any, ModelFacts]" = weakref.WeakKeyDictionary()


def facts(model) -> ModelFacts:
    """The :class:`ModelFacts` of ``model``: made on first use, then the same object.

    Raises TypeError naming what is supported for anything that is not a TransformerLens
    model (or, for :mod:`tl_wavelet.track`, a Hugging Face ``PreTrainedModel``).
    """
    if isinstance(model, ModelFacts):
        return model
    try:
        got = _FACTS.get(model)
    except TypeError:  # not weak-referenceable: certainly not a model
        got = None
    if got is None:
        got = ModelFacts(model)
        _FACTS[model] = got
    return got


def model_shape(model) -> ModelShape:
    """Layer/head counts of a TransformerBridge or HookedTransformer (``facts(model).shape``).

    >>> shape = model_shape(model)  # doctest: +SKIP
    >>> shape.n_layers, shape.n_heads, shape.n_kv_heads  # doctest: +SKIP
    """
    f = facts(model)
    if f.backend == "hf":
        raise _not_a_tl_model(f.model)
    return f.shape


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
    """Fail early, with the fix, when a hook point the analysis needs is absent (:meth:`ModelFacts.require_hooks`)."""
    facts(model).require_hooks(names, why)


class _StopForward(Exception):
    """Raised from a hook to end a forward pass once the last activation we need is seen."""


def run_until(
    model,
    tokens: Int[Tensor, "batch pos"],
    fwd_hooks: list[tuple[str | Callable, HookFn]],
    stop_at: str | None,
    **forward_kwargs,
) -> None:
    """Run ``model(tokens)`` with ``fwd_hooks``, stopping right after hook ``stop_at`` fires
    (:meth:`ModelFacts.run_until`; ``tokens`` go to the model's device)."""
    facts(model).run_until(tokens, fwd_hooks, stop_at, **forward_kwargs)


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
    """The model's vocabulary size, or None when it does not say."""
    return facts(model).vocab_size


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
