"""Load a model (known offline checkpoint, local HF directory or hub name) hooked for TransformerLens."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

from ..adapter import facts
from ..rope import _rope_parameters
from ..validate import check_bool, check_device, check_dtype
from .cache import _ensure_cache
from .registry import ENCODERS, KNOWN_MODELS, _known_names_text, resolve_name, tl_major_version

__all__ = ["load", "load_hf", "load_encoder"]


def _check_load_args(name, cache_dir, refresh) -> None:
    """What load/load_hf check before touching a file or the hub."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a model name or a directory path, got {type(name).__name__}")
    if not os.fspath(name).strip():
        raise ValueError("name is empty: pass a known model (e.g. 'smollm2-135m'), a local directory or a hub name.")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a directory path (str or os.PathLike) or None, got {type(cache_dir).__name__}.")
    check_bool(refresh, "refresh")


def load_hf(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
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
    device
        Where the weights go (``"cpu"``, ``"cuda"``, ``"cuda:1"``; checked to exist here).
    dtype
        Floating dtype of the returned weights, a ``torch.dtype`` or its name
        (``"bfloat16"``); the cache itself is float32.
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

    _check_load_args(name, cache_dir, refresh)
    device, dtype = check_device(device), check_dtype(dtype)
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
    hf.to(device)
    hf.eval()
    return hf, tok


# --------------------------------------------------------------------------- TL wrapping


def _boot_bridge(label: str, hf, tok, device, dtype):
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(label, hf_model=hf, tokenizer=tok, device=device, dtype=dtype)


def _hooked_from_hf(label: str, hf, tok, device, dtype):
    """HookedTransformer (TransformerLens 3.x) with the weights of ``hf``, unprocessed.

    TL 3.x only knows hub names; its config builder reads a local directory's
    ``config.json`` but not every architecture, so Llama (plain RoPE), Gemma-2, Gemma-3
    and OLMo-2 get their config built here from the HF config, the others through TL's
    own config builder (:func:`_hooked_config_and_state`); weights are always converted
    with TL's own converters. No LayerNorm folding or centring, so hooks see the model's
    raw values, and the logits are checked against the HF model's (``RuntimeError`` if
    they differ). Architectures TL 3 cannot hold raise ``NotImplementedError`` naming
    the backend that works.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained import weight_conversions as W

    c = hf.config
    arch = type(hf).__name__
    if arch in _HOOKED_UNSUPPORTED:
        raise NotImplementedError(
            f"TransformerLens {tl_major_version()}.x's HookedTransformer does not support {arch} "
            f"({_HOOKED_UNSUPPORTED[arch]}). Use backend='bridge' on TransformerLens >= 4 "
            "(`pip install -U transformer-lens`)."
        )
    rp = _rope_parameters(c)
    plain_llama = arch == "LlamaForCausalLM" and rp.get("default", {}).get("rope_type", "default") == "default"
    if not plain_llama and arch != "Gemma3ForCausalLM":
        cfg, state = _hooked_config_and_state(hf, arch, dtype, device)
        return _finish_hooked(HookedTransformer(cfg, tokenizer=tok, move_to_device=False), state, hf, arch, label, device)
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
    if plain_llama:
        base = rp["default"]["rope_theta"]
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
    return _finish_hooked(HookedTransformer(cfg, tokenizer=tok, move_to_device=False), state, hf, arch, label, device)


def _finish_hooked(model, state, hf, arch: str, label: str, device):
    """Load TL-converted weights unprocessed, check the logits against HF, tag the model."""
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
    _check_logits(model, hf, arch)
    # rope_frequencies reads bases and windows from the HF config (TL's cfg lacks rope types).
    model._tl_wavelet_hf_config = hf.config
    model._tl_wavelet_name = label
    return model


# Architectures TL 3.x's HookedTransformer cannot hold (the bridge of TL >= 4 can).
_HOOKED_UNSUPPORTED = {
    "StableLmForCausalLM": "no StableLM config or weight conversion in TransformerLens 3",
    "BertLMHeadModel": "TransformerLens 3 loads BERT only as the bidirectional HookedEncoder",
    "BertForMaskedLM": "TransformerLens 3 loads BERT only as the bidirectional HookedEncoder",
}
# Architectures TL 3.x names only by hub name (its config builder has no branch reading
# their HF config), or whose HF config it misreads under transformers 5 (Phi's
# partial_rotary_factor moved into rope_parameters): their HookedTransformerConfig is
# built here, the weights are converted by TL's own function.
_HOOKED_BY_HAND = ("Gemma2ForCausalLM", "Olmo2ForCausalLM", "PhiForCausalLM")


def _hooked_config_and_state(hf, arch: str, dtype, device):
    """(HookedTransformerConfig, state dict) for ``hf`` through TransformerLens 3's own converters.

    TL 3's ``get_pretrained_model_config`` reads a local directory's ``config.json`` with
    ``AutoConfig``, but it picks some architectures from the directory *name* (a path with
    "llama" or "gemma" in it takes a hub-name branch), so the config is written to a fresh
    neutrally named directory first. Weights come from ``get_pretrained_state_dict`` with
    ``hf_model=hf``: TL's weight conversion for that architecture, no hub access.
    """
    import tempfile

    from transformer_lens import loading_from_pretrained as LP
    from transformer_lens.pretrained import weight_conversions as W

    c = hf.config
    if arch in _HOOKED_BY_HAND:
        cfg = _hooked_config_by_hand(c, arch, dtype, device)
        convert = {"Gemma2ForCausalLM": W.convert_gemma_weights, "Olmo2ForCausalLM": W.convert_olmo2_weights,
                   "PhiForCausalLM": W.convert_phi_weights}[arch]
        return cfg, convert(hf, cfg)
    with tempfile.TemporaryDirectory(prefix="tlw-hf-config-") as tmp:
        c.save_pretrained(tmp)
        # TL 3 reads a few fields that transformers 5 moved or dropped: put them back.
        if arch == "GPT2LMHeadModel":
            _patch_config_json(tmp, {"n_ctx": c.n_positions})
        try:
            cfg = LP.get_pretrained_model_config(tmp, device=device, dtype=dtype)
        except (ValueError, KeyError, AttributeError, NotImplementedError) as exc:
            raise NotImplementedError(
                f"TransformerLens {tl_major_version()}.x's HookedTransformer could not build a config "
                f"for {arch} ({type(exc).__name__}: {exc}). Use backend='bridge' on TransformerLens >= 4."
            ) from exc
        if cfg.original_architecture != arch:
            raise NotImplementedError(
                f"TransformerLens {tl_major_version()}.x read this {arch} config as "
                f"{cfg.original_architecture}; use backend='bridge' on TransformerLens >= 4."
            )
        try:
            state = LP.get_pretrained_state_dict(tmp, cfg, hf_model=hf, dtype=dtype)
        except ValueError as exc:
            raise NotImplementedError(
                f"TransformerLens {tl_major_version()}.x has no weight conversion for {arch} ({exc}). "
                "Use backend='bridge' on TransformerLens >= 4."
            ) from exc
    return cfg, state


def _patch_config_json(directory: str, fields: dict) -> None:
    if not fields:
        return
    path = Path(directory) / "config.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def _hooked_config_by_hand(c, arch: str, dtype, device):
    """HookedTransformerConfig of a Gemma-2, OLMo-2 or Phi HF config, field by field as TL 3's branches."""
    from transformer_lens import HookedTransformerConfig

    rp = _rope_parameters(c)
    if arch == "PhiForCausalLM":
        d_head = c.hidden_size // c.num_attention_heads
        factor = (getattr(c, "rope_parameters", None) or {}).get("partial_rotary_factor") or getattr(
            c, "partial_rotary_factor", 1.0)
        return HookedTransformerConfig(
            d_model=c.hidden_size, d_head=d_head, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size,
            n_layers=c.num_hidden_layers, n_ctx=c.max_position_embeddings, eps=c.layer_norm_eps,
            d_vocab=c.vocab_size, act_fn=c.hidden_act, initializer_range=c.initializer_range,
            normalization_type="LN", positional_embedding_type="rotary", rotary_base=rp["default"]["rope_theta"],
            rotary_dim=round(factor * d_head), use_attn_scale=True, parallel_attn_mlp=True,
            default_prepend_bos=False, original_architecture=arch, dtype=dtype, device=device,
        )
    d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv = c.num_key_value_heads
    common = dict(
        d_model=c.hidden_size, d_head=d_head, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size,
        n_layers=c.num_hidden_layers, n_ctx=min(int(c.max_position_embeddings), 8192), eps=c.rms_norm_eps,
        d_vocab=c.vocab_size, normalization_type="RMS", positional_embedding_type="rotary",
        rotary_dim=d_head, rotary_adjacent_pairs=False, gated_mlp=True,
        n_key_value_heads=kv if kv != c.num_attention_heads else None, original_architecture=arch,
        initializer_range=c.initializer_range, dtype=dtype, device=device,
    )
    params = next(iter(rp.values()))
    if arch == "Olmo2ForCausalLM" and kv != c.num_attention_heads:
        raise NotImplementedError(
            f"TransformerLens {tl_major_version()}.x converts OLMo-2 weights without grouped-query "
            f"attention, and this model has {kv} key/value heads for {c.num_attention_heads} query heads. "
            "Use backend='bridge' on TransformerLens >= 4."
        )
    if params.get("rope_type", "default") != "default":
        raise NotImplementedError(
            f"backend='hooked' builds {arch} with plain RoPE only, not rope_type={params.get('rope_type')!r}; "
            "use backend='bridge' (TransformerLens >= 4)."
        )
    if arch == "Gemma2ForCausalLM":
        layer_types = list(getattr(c, "layer_types", None) or ["sliding_attention", "full_attention"] * (c.num_hidden_layers // 2))
        return HookedTransformerConfig(
            act_fn=c.hidden_activation, rotary_base=params["rope_theta"], final_rms=True,
            use_attn_scale=True, attn_scale=float(c.query_pre_attn_scalar) ** 0.5,
            use_normalization_before_and_after=True, window_size=c.sliding_window, use_local_attn=True,
            attn_types=["local" if t == "sliding_attention" else "global" for t in layer_types],
            attn_scores_soft_cap=c.attn_logit_softcapping or -1.0,
            output_logits_soft_cap=c.final_logit_softcapping or -1.0, **common,
        )
    return HookedTransformerConfig(
        act_fn=c.hidden_act, rotary_base=params["rope_theta"], attn_types=["global"] * c.num_hidden_layers, **common
    )


@torch.no_grad()
def _check_logits(model, hf, arch: str) -> None:
    """Refuse a converted HookedTransformer whose logits differ from the HF model's.

    Both run on the HF model's device. The tolerance follows the dtype: 1e-3 of the largest
    logit in float32/64; in bf16/fp16 the two implementations round differently (about
    2^-8 per op), so 5e-2.
    """
    vocab = int(hf.config.vocab_size)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(min(4, vocab - 1), vocab, (1, 10), generator=g, device="cpu")
    ours = facts(model).logits(tokens).float().cpu()
    ref = facts(hf).logits(tokens).float().cpu()
    atol = 5e-2 if facts(hf).dtype in (torch.bfloat16, torch.float16) else 1e-3
    err = float((ours - ref).abs().max()) if ours.shape == ref.shape else float("inf")
    scale = max(float(ref.abs().max()), 1.0)
    if not err <= atol * scale:
        raise RuntimeError(
            f"The HookedTransformer converted from {arch} does not reproduce the HF model's logits "
            f"(max abs difference {err:.3g}); TransformerLens {tl_major_version()}.x does not convert "
            "this configuration faithfully. Use backend='bridge' on TransformerLens >= 4."
        )


def load(
    name: str,
    *,
    backend: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
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
        ``"hooked"`` (``HookedTransformer``) on 3.x. ``"hooked"`` needs TransformerLens 3.x;
        it converts a local directory offline with TransformerLens's own weight converters
        and checks the logits against the HF model. Which architecture works on which
        backend, tested: docs/compatibility.md (TL 3 has no StableLM, and BERT only as
        the bidirectional ``HookedEncoder``: those raise ``NotImplementedError``).
    device, dtype
        Where and in which floating dtype the model runs: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ``"mps"`` (a device this machine lacks is refused, naming it);
        ``torch.bfloat16`` or a name such as ``"bf16"``. Every backend puts the whole
        model there, checked after loading: parameters, buffers and ``model.cfg.device``
        agree. Metrics are computed in float32/float64 whatever the dtype, and every
        table and report comes back on the CPU.
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
    NotImplementedError
        ``backend="hooked"`` for an architecture TransformerLens 3.x cannot hold (the
        message names it and the backend that works).
    RuntimeError
        ``backend="hooked"``: the converted model's logits differ from the HF model's.

    Examples
    --------
    >>> model = load("smollm2-135m")  # doctest: +SKIP
    >>> logits = model("The cat sat on the mat.")  # doctest: +SKIP
    >>> logits.shape  # doctest: +SKIP
    torch.Size([1, 8, 49152])
    """
    _check_load_args(name, cache_dir, refresh)
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
    device, dtype = check_device(device), check_dtype(dtype)
    canon = resolve_name(os.fspath(name)) if isinstance(name, (str, os.PathLike)) else None
    label = KNOWN_MODELS[canon].hub_name if canon else os.fspath(name)
    if backend == "bridge":
        hf, tok = load_hf(name, device=device, dtype=dtype, cache_dir=cache_dir, refresh=refresh)
        model = _boot_bridge(label, hf, tok, device, dtype)
    else:  # converted and checked on the CPU, then moved: the HF copy never takes accelerator memory
        hf, tok = load_hf(name, dtype=dtype, cache_dir=cache_dir, refresh=refresh)
        model = _hooked_from_hf(label, hf, tok, torch.device("cpu"), dtype)
        if device.type != "cpu":
            model.to(device, print_details=False)  # HookedTransformer.to updates cfg.device too
    facts(model).check_placement(device, dtype)
    return model


def load_encoder(name: str = "minilm-l6", *, device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32):
    """A bidirectional BERT encoder with absolute positions, as a TransformerBridge (on ``device``, in ``dtype``).

    Only its attention is meaningful: the checkpoint has no masked-LM head, so the bridge
    gets ``BertForMaskedLM`` with that head freshly initialised (never used for metrics).
    Its ``hook_pattern`` equals the HF model's attentions exactly (checked in the tests).

    >>> enc = load_encoder("minilm-l6")   # doctest: +SKIP
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be an encoder name (one of {', '.join(ENCODERS)}), got {type(name).__name__}.")
    device, dtype = check_device(device), check_dtype(dtype)
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
    model = _boot_bridge(spec["hub_name"], hf.to(device, dtype), tok, device, dtype)
    facts(model).check_placement(device, dtype)
    return model
