"""Load a model (known offline checkpoint, local HF directory or hub name) hooked for TransformerLens."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from .cache import _ensure_cache
from ..rope import _rope_parameters
from .registry import ENCODERS, KNOWN_MODELS, _known_names_text, resolve_name, tl_major_version

__all__ = ["load", "load_hf", "load_encoder"]


def load_hf(
    name: str,
    *,
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
):
    """The plain HuggingFace model (eager attention, eval mode) and tokenizer behind ``name``.

    This is what :func:`load` wraps; it is also the independent reference its logits are
    tested against.

    Parameters
    ----------
    name
        A known offline model (see :data:`KNOWN_MODELS`; aliases accepted), a local
        HuggingFace model directory, or a hub name.
    dtype
        Floating dtype of the returned weights (the cache itself is float32).
    cache_dir
        Root of the converted-model cache, for known models only; default
        :func:`default_cache_root`.
    refresh
        Rebuild the cache of a known model from its GGUF file.

    Returns
    -------
    (transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase)

    Examples
    --------
    >>> hf, tok = load_hf("smollm2-135m")  # doctest: +SKIP
    >>> hf.config.num_hidden_layers  # doctest: +SKIP
    30
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a model name or a directory path, got {type(name).__name__}")
    name = os.fspath(name)
    canon = resolve_name(name) if not Path(name).expanduser().is_dir() else None
    if canon is not None:
        source = str(_ensure_cache(KNOWN_MODELS[canon], cache_dir, refresh))
    elif Path(name).expanduser().is_dir():
        source = str(Path(name).expanduser())
        if not (Path(source) / "config.json").exists():
            raise ValueError(
                f"{source!r} is a directory but not a HuggingFace model directory (no config.json). "
                "Pass a directory written by `save_pretrained`, or a known model name. "
                + _known_names_text()
            )
    else:
        source = name
    try:
        tok = AutoTokenizer.from_pretrained(source)
        hf = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation="eager")
    except (OSError, ValueError) as exc:
        if canon is not None:
            raise RuntimeError(
                f"The cached model at {source} could not be read ({exc}); "
                f"rebuild it with load({name!r}, refresh=True)."
            ) from exc
        raise ValueError(
            f"Could not load {name!r} with transformers ({type(exc).__name__}: {exc}). "
            "Without a reachable model hub only local HuggingFace directories and the "
            f"offline models work. {_known_names_text()}"
        ) from exc
    if not hf.config.architectures:
        hf.config.architectures = [type(hf).__name__]
    hf.eval()
    return hf, tok


# --------------------------------------------------------------------------- TL wrapping


def _boot_bridge(label: str, hf, tok, device, dtype):
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(label, hf_model=hf, tokenizer=tok, device=device, dtype=dtype)


def _hooked_from_hf(label: str, hf, tok, device, dtype):
    """HookedTransformer (TransformerLens 3.x) with the weights of ``hf``, unprocessed.

    TL 3.x only knows hub names; its config builder reads a local directory's
    ``config.json`` but not every architecture, so Llama- and Gemma-3-layout models get
    their config built here from the HF config and their weights converted with TL's own
    converters. No LayerNorm folding or centring, so hooks see the model's raw values and
    logits equal the HF model's.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained import weight_conversions as W

    c = hf.config
    arch = type(hf).__name__
    d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads
    common = dict(
        d_model=c.hidden_size,
        d_head=d_head,
        n_heads=c.num_attention_heads,
        d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers,
        n_ctx=min(int(c.max_position_embeddings), 8192),
        eps=c.rms_norm_eps,
        d_vocab=c.vocab_size,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=d_head,
        rotary_adjacent_pairs=False,
        final_rms=True,
        gated_mlp=True,
        n_key_value_heads=kv if kv != c.num_attention_heads else None,
        original_architecture=arch,
        tokenizer_prepends_bos=None,
        dtype=dtype,
        device=device,
    )
    rp = _rope_parameters(c)
    if arch == "LlamaForCausalLM":
        base = rp["default"]["rope_theta"]
        rope_type = rp["default"].get("rope_type", "default")
        if rope_type != "default":
            raise NotImplementedError(
                f"The HookedTransformer path here supports plain RoPE only, not rope_type={rope_type!r}; "
                "use backend='bridge' (TransformerLens >= 4)."
            )
        cfg = HookedTransformerConfig(act_fn=c.hidden_act, rotary_base=base, **common)
        state = W.convert_llama_weights(hf, cfg)
    elif arch == "Gemma3ForCausalLM":
        layer_types = list(c.layer_types)
        cfg = HookedTransformerConfig(
            act_fn=c.hidden_activation,
            rotary_base=rp["full_attention"]["rope_theta"],
            rotary_base_local=rp["sliding_attention"]["rope_theta"],
            use_attn_scale=True,
            attn_scale=float(c.query_pre_attn_scalar) ** 0.5,
            use_normalization_before_and_after=True,
            use_qk_norm=True,
            window_size=c.sliding_window,
            use_local_attn=True,
            attn_types=["local" if t == "sliding_attention" else "global" for t in layer_types],
            attn_scores_soft_cap=c.attn_logit_softcapping or -1.0,
            output_logits_soft_cap=c.final_logit_softcapping or -1.0,
            initializer_range=c.initializer_range,
            **common,
        )
        state = W.convert_gemma_weights(hf, cfg)
    else:
        raise NotImplementedError(
            f"backend='hooked' here supports Llama- and Gemma-3-layout models, not {arch}; "
            "use TransformerLens >= 4 with backend='bridge' for other architectures."
        )
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    model.to(device)
    model.eval()
    # rope_metadata reads bases and windows from the HF config (TL's cfg lacks rope types).
    model._tl_wavelet_hf_config = c
    model._tl_wavelet_name = label
    return model


def load(
    name: str,
    *,
    backend: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
):
    """Load a RoPE language model, wrapped for TransformerLens with eager attention.

    Parameters
    ----------
    name
        ``"smollm2-135m"`` or ``"gemma3-270m"`` (aliases such as ``"google/gemma-3-270m"``
        work; see :data:`KNOWN_MODELS`), a local HuggingFace model directory, or a hub name
        (needs a reachable hub or a local HuggingFace cache).
    backend
        ``None`` picks ``"bridge"`` (``TransformerBridge``) on TransformerLens 4.x and
        ``"hooked"`` (``HookedTransformer``) on 3.x. ``"hooked"`` needs TransformerLens 3.x.
    device, dtype
        Where and in which floating dtype the model runs.
    cache_dir
        Root of the converted-model cache (known models only). Default
        ``$TL_WAVELET_CACHE`` or ``~/.cache/tl_wavelet/models``; each model lives in
        ``<root>/<name>``.
    refresh
        Rebuild a known model's cache from its GGUF file.

    Returns
    -------
    transformer_lens.model_bridge.TransformerBridge or transformer_lens.HookedTransformer

    Raises
    ------
    ValueError
        Unknown name that transformers cannot load either (the message lists the
        offline models), or an unknown ``backend``.
    ImportError
        A known model's package is missing (the message gives the pip command), or
        ``backend="hooked"`` on TransformerLens 4.x.

    Examples
    --------
    >>> model = load("smollm2-135m")  # doctest: +SKIP
    >>> logits = model("The cat sat on the mat.")  # doctest: +SKIP
    >>> logits.shape  # doctest: +SKIP
    torch.Size([1, 8, 49152])
    """
    major = tl_major_version()
    if backend is None:
        backend = "bridge" if major >= 4 else "hooked"
    if backend not in ("bridge", "hooked"):
        raise ValueError(f"backend must be None, 'bridge' or 'hooked', got {backend!r}")
    if backend == "hooked" and major >= 4:
        raise ImportError(
            "backend='hooked' needs HookedTransformer, which TransformerLens 4.x removed "
            f"(installed: {major}.x). Use backend='bridge' (or None), or "
            "`pip install 'transformer-lens<4'`."
        )
    if backend == "bridge":
        if importlib.util.find_spec("transformer_lens.model_bridge") is None:
            raise ImportError(
                "backend='bridge' needs transformer_lens.model_bridge, which this TransformerLens "
                f"({major}.x) lacks: `pip install -U transformer-lens`, or use backend='hooked'."
            )
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32, got {dtype!r}")
    canon = resolve_name(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else None
    label = KNOWN_MODELS[canon].hub_name if canon else os.fspath(name)
    hf, tok = load_hf(name, dtype=dtype, cache_dir=cache_dir, refresh=refresh)
    if backend == "bridge":
        return _boot_bridge(label, hf, tok, device, dtype)
    return _hooked_from_hf(label, hf, tok, device, dtype)


def load_encoder(name: str = "minilm-l6", *, device: str | torch.device = "cpu"):
    """A bidirectional BERT encoder with absolute positions, as a TransformerBridge.

    Only its attention is meaningful: the checkpoint has no masked-LM head, so the bridge
    gets ``BertForMaskedLM`` with that head freshly initialised (never used for metrics).
    Its ``hook_pattern`` equals the HF model's attentions exactly (checked in the tests).

    >>> enc = load_encoder("minilm-l6")   # doctest: +SKIP
    """
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; known: {', '.join(ENCODERS)}.")
    spec = ENCODERS[name]
    found = importlib.util.find_spec(spec["package"])
    if found is None or not found.submodule_search_locations:
        raise ImportError(f"Encoder {name!r} needs its package: {spec['pip_command']}")
    if tl_major_version() < 4:
        raise NotImplementedError(
            "The encoder comparison uses TransformerBridge (TransformerLens >= 4); TL 3.x's "
            "HookedEncoder is not supported here."
        )
    import transformers
    from transformers import AutoTokenizer, BertForMaskedLM

    source = Path(list(found.submodule_search_locations)[0]) / spec["subdir"]
    tok = AutoTokenizer.from_pretrained(source)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the absent MLM head is expected, not news
    try:
        hf = BertForMaskedLM.from_pretrained(source, attn_implementation="eager").eval()
    finally:
        transformers.logging.set_verbosity(verbosity)
    hf.config.architectures = ["BertForMaskedLM"]
    return _boot_bridge(spec["hub_name"], hf, tok, device, torch.float32)
