"""Shared benchmark helpers: the model under test, timing, result files."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def smollm2_or_same_shape(random_ok: bool = True):
    """SmolLM2-135M when its package is installed, else a random model of its exact shape.

    Returns (model, description). Speed depends on shape, not on weights, so a random
    model of the same shape measures the same thing; the description says which ran.
    """
    try:
        from tl_wavelet.models import load

        return load("smollm2-135m"), "SmolLM2-135M (pretrained, GGUF dequantised to float32)"
    except Exception as err:  # package missing: fall back, and say so in the results
        if not random_ok:
            raise
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from models_for_tests import boot_bridge, word_tokenizer

    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=2048,
        rope_theta=100000.0, attn_implementation="eager", tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    return boot_bridge(hf, word_tokenizer(64), "smollm2-shape-random"), (
        f"random weights in SmolLM2-135M's shape (pretrained not loadable: {reason})"
    )


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path
