"""Tiny real TransformerLens models for the unit suite (no hub, no mocks).

`planted_llama` builds an HF Llama whose layer-0 heads attend, through real RoPE, to a
chosen offset (previous token, offset k) or uniformly; it is loaded through
TransformerBridge.boot_transformers, so every hook is TransformerLens's own.
"""
from __future__ import annotations

import math
import tempfile

import torch

PLANTED_OFFSETS = {0: 1, 1: None, 2: 6, 3: 16}  # head -> attended offset; None = uniform


def word_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="w0", pad_token="w1", eos_token="w2", bos_token="w3"
    )
    # An in-memory tokenizer can crash the bridge (KeyError 'name_or_path'): round-trip it.
    d = tempfile.mkdtemp(prefix="tlw-tok-")
    fast.save_pretrained(d)
    return AutoTokenizer.from_pretrained(d)


def tiny_llama_hf(*, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, d_model=64, vocab=97, seed=0,
                  rope_theta=10000.0, planted=True, n_ctx=512):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=d_model, intermediate_size=2 * d_model,
        num_hidden_layers=n_layers, num_attention_heads=n_heads, num_key_value_heads=n_kv_heads,
        head_dim=head_dim, max_position_embeddings=n_ctx, rope_theta=rope_theta,
        attn_implementation="eager", tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(cfg).eval()
    if planted:
        plant_heads(hf, PLANTED_OFFSETS, rope_theta=rope_theta, head_dim=head_dim)
    return hf


@torch.no_grad()
def plant_heads(hf, offsets: dict, *, rope_theta: float, head_dim: int, sharpness: float = 60.0):
    """Make layer-0 head h attend to offset offsets[h] (None: uniform over the prefix).

    Every embedding gets the same large coordinate 0, so ln1's output has a constant
    direction; W_Q and W_K read only that direction. With k = B(1, 0) in each rotary pair
    and q = A(cos k_h theta_i, -sin k_h theta_i), the RoPE score is
    A B sum_i cos((d - k_h) theta_i), maximal exactly at offset d = k_h.
    """
    cfg = hf.config
    d_model = cfg.hidden_size
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    half = head_dim // 2
    theta = rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / head_dim)
    emb = hf.model.embed_tokens.weight
    emb[:, 0] = 8.0
    emb[:, 1:] *= 0.05
    attn = hf.model.layers[0].self_attn
    hf.model.layers[0].input_layernorm.weight.fill_(1.0)
    # ln1(x)[0] ~ sqrt(d_model) for every token, since coordinate 0 dominates the RMS.
    unit = 1.0 / math.sqrt(d_model)
    scale = math.sqrt(sharpness * math.sqrt(head_dim) / half)
    wq = torch.zeros_like(attn.q_proj.weight)
    wk = torch.zeros_like(attn.k_proj.weight)
    for kv in range(n_kv):
        wk[kv * head_dim: kv * head_dim + half, 0] = scale * unit
    for h in range(n_heads):
        k_h = offsets.get(h)
        if k_h is None:
            continue  # q = 0: every score equal, attention uniform over the causal prefix
        rows = slice(h * head_dim, (h + 1) * head_dim)
        q = torch.cat([torch.cos(k_h * theta), -torch.sin(k_h * theta)]) * scale * unit
        wq[rows, 0] = q.to(wq.dtype)
    attn.q_proj.weight.copy_(wq)
    attn.k_proj.weight.copy_(wk)


def boot_bridge(hf, tokenizer, label="tiny-llama"):
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(label, hf_model=hf, tokenizer=tokenizer, device="cpu")


def saved_tiny_model(d, *, n_words: int, seed: int):
    """A planted tiny Llama and its word tokenizer saved to ``d`` as a local HF checkpoint,
    with ``words.txt``: ``n_words`` random words for the CLI's ``--text``."""
    import random

    tiny_llama_hf(planted=True).save_pretrained(d)
    word_tokenizer(97).save_pretrained(d)
    r = random.Random(seed)
    (d / "words.txt").write_text(" ".join(f"w{r.randrange(4, 97)}" for _ in range(n_words)), encoding="utf-8")
    return d


def state_sums(sd, prefix=""):
    """Every tensor of a (nested) state dict, by path: the running sums merges must preserve."""
    out = {}
    for k, v in sd.items():
        if isinstance(v, dict):
            out.update(state_sums(v, f"{prefix}{k}/"))
        elif isinstance(v, torch.Tensor):
            out[prefix + str(k)] = v
    return out
