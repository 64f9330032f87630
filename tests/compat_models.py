"""Tiny random-weight HF models of every architecture the compatibility suite covers.

Each builder returns an HF model (eager attention, eval mode) built from the
architecture's own config class with 2 layers and tiny dims; :func:`save_tiny` writes it
with a small word-level tokenizer to a directory that ``tl_wavelet.models.load`` reads.
No hub, no mocks: the HF model is the independent truth the suite compares against.
"""
from __future__ import annotations

VOCAB = 97

# name -> (config class name, model class name, config kwargs, rotary?)
_COMMON_DECODER = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=False,
)

ARCHS: dict[str, tuple[str, str, dict, bool]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_COMMON_DECODER, num_key_value_heads=2), True),
    "llama3-scaled": ("LlamaConfig", "LlamaForCausalLM", dict(
        _COMMON_DECODER, num_key_value_heads=2, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    ), True),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(_COMMON_DECODER, num_key_value_heads=2), True),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(_COMMON_DECODER, num_key_value_heads=2, head_dim=16), True),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_COMMON_DECODER, num_key_value_heads=2, sliding_window=None), True),
    # attention soft-capping off: the RoPE-ablation truth below recomputes scores as c * q.k
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", dict(
        _COMMON_DECODER, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
        attn_logit_softcapping=None,
    ), True),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
        _COMMON_DECODER, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
    ), True),
    "phi": ("PhiConfig", "PhiForCausalLM", dict(_COMMON_DECODER, partial_rotary_factor=0.5), True),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(
        _COMMON_DECODER, num_key_value_heads=4, pad_token_id=1, bos_token_id=3, eos_token_id=2,
    ), True),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(_COMMON_DECODER, rotary_pct=0.25), True),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", dict(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=256,
        tie_word_embeddings=False,
    ), True),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", dict(_COMMON_DECODER, num_key_value_heads=4), True),
    "stablelm": ("StableLmConfig", "StableLmForCausalLM", dict(_COMMON_DECODER, num_key_value_heads=4, partial_rotary_factor=0.25), True),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256), False),
    "bert": ("BertConfig", "BertLMHeadModel", dict(is_decoder=True, 
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=256, pad_token_id=1,
    ), False),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4), False),
}
ROTARY = [name for name, spec in ARCHS.items() if spec[3]]
NON_ROTARY = [name for name, spec in ARCHS.items() if not spec[3]]


def tiny_hf(name: str, seed: int = 0, **overrides):
    """The tiny random-weight HF model of architecture ``name`` (eager attention, eval mode);
    ``overrides`` replace config fields (e.g. a longer context)."""
    import torch
    import transformers

    cfg_cls, model_cls, kwargs, _ = ARCHS[name]
    cfg = getattr(transformers, cfg_cls)(**{**kwargs, **overrides})
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(cfg).eval()
    # Random init puts most weights near 0: scale up so attention is far from uniform and
    # the comparisons below are not trivially satisfied.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim == 2 and "embed" not in n and "wte" not in n and "wpe" not in n:
                p.mul_(4.0)
    model.config.architectures = [model_cls]
    return model


def save_tiny(name: str, directory, tokenizer, seed: int = 0):
    """Save ``tiny_hf(name)`` and ``tokenizer`` to ``directory``; return the HF model."""
    hf = tiny_hf(name, seed)
    hf.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return hf
