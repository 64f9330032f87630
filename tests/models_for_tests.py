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


# ---------------------------------------------------------------------- planted null-model checks
# Layer-0 heads whose attention scores are planted through the weights and real RoPE:
#   score(q, k) = -rate * d + sum over offsets o of a cosine comb peaked at d = o + noise * c(token_k)
# d = q - k, c(token) a fixed random number per token (the key's "content"). rate alone (no
# offsets): attention decays smoothly with distance, exactly the null's exponential law plus its
# key-content noise. Offsets: structure at chosen distances that no decay law has.
DECAY_RATES = {0: 0.0, 1: 0.03, 2: 0.08, 3: 0.2}          # smooth decay, no multi-scale structure
MULTI_OFFSETS = {0: (6,), 1: (3, 12), 2: (1, 6, 24), 3: (16,)}  # spikes at several distances


@torch.no_grad()
def plant_scores(hf, heads: dict, *, rope_theta: float, head_dim: int, noise: float = 0.7,
                 sharpness: float = 40.0, seed: int = 0):
    """Plant layer-0 heads: ``heads[h] = (rate, offsets)``; see the comment above.

    Coordinate 0 of every embedding is large (8) and the same for all tokens, coordinate 1 a
    standard normal number per token (its content); the rest is shrunk. In rotary pair i,
    k = (kappa_i, 0) and q = (a cos phi, -a sin phi) give a score a kappa_i cos(d theta_i - phi) /
    sqrt(head_dim): the lowest-frequency pair with phi = -pi/2 gives -a kappa sin(d theta_min)
    ~ -a kappa theta_min d (a linear decay in d), the second-lowest pair reads coordinate 1
    (c(token_k)) with phi = 0 (the noise), the other pairs with phi = o theta_i make the comb
    peaked at d = o.
    """
    cfg = hf.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    half = head_dim // 2
    theta = rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / head_dim)
    g = torch.Generator().manual_seed(seed)
    emb = hf.model.embed_tokens.weight
    emb[:, 2:] *= 0.05
    emb[:, 0] = 8.0
    emb[:, 1] = torch.randn(emb.shape[0], generator=g).to(emb.dtype)
    hf.model.layers[0].input_layernorm.weight.fill_(1.0)
    attn = hf.model.layers[0].self_attn
    lo, nz = half - 1, half - 2  # the lowest-frequency pair (decay) and the next (noise)
    comb = [i for i in range(half) if i not in (lo, nz)]
    root = math.sqrt(head_dim)
    wq = torch.zeros_like(attn.q_proj.weight)
    wk = torch.zeros_like(attn.k_proj.weight)
    for kv in range(n_kv):
        base = kv * head_dim
        for i in comb + [lo]:
            wk[base + i, 0] = 1.0 / 8.0          # k_i = (1, 0): reads the constant coordinate (8 after the norm)
        wk[base + nz, 1] = 1.0                   # k = (c(token), 0)
    for h in range(n_heads):
        rate, offsets = heads.get(h, (0.0, ()))
        base = h * head_dim
        # decay: -a sin(d theta_lo) / root = -rate d  =>  a = rate root / theta_lo
        wq[base + lo + half, 0] = rate * root / float(theta[lo]) / 8.0
        wq[base + nz, 0] = noise * root / 8.0
        per = sharpness * root / max(len(comb), 1)
        for o in offsets:
            for i in comb:
                wq[base + i, 0] += per * math.cos(o * float(theta[i])) / 8.0
                wq[base + i + half, 0] += -per * math.sin(o * float(theta[i])) / 8.0
    attn.q_proj.weight.copy_(wq)
    attn.k_proj.weight.copy_(wk)


def planted_scores_model(heads: dict, tokenizer, *, noise: float = 0.7, label: str = "planted-scores", seed: int = 0):
    """A tiny Llama (TransformerBridge) with :func:`plant_scores` heads in layer 0."""
    hf = tiny_llama_hf(planted=False, seed=seed)
    plant_scores(hf, heads, rope_theta=hf.config.rope_theta if hasattr(hf.config, "rope_theta") else 10000.0,
                 head_dim=hf.config.head_dim, noise=noise, seed=seed)
    return boot_bridge(hf, tokenizer, label)
