"""Small Llama decoders that differ only in how they see position: RoPE, none (NoPE), or
learned absolute embeddings. Same blocks, norms, MLPs and initialisation otherwise."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["DecoderConfig", "POSITIONS", "build_decoder"]

POSITIONS = ("rope", "nope", "absolute")


@dataclass(frozen=True)
class DecoderConfig:
    """Size of the decoder (all three position kinds share it)."""

    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_head: int = 16
    d_mlp: int = 128
    vocab: int = 64
    n_ctx: int = 128
    rope_theta: float = 10000.0

    def __post_init__(self):
        for k, v in asdict(self).items():
            if k != "rope_theta" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"DecoderConfig.{k} must be a positive int, got {v!r}.")


class _NoRotation(nn.Module):
    """Stands in for LlamaRotaryEmbedding: cos = 1, sin = 0, so q and k are left as they are."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.head_dim = head_dim

    def forward(self, x, position_ids):
        shape = (*position_ids.shape, self.head_dim)
        return torch.ones(shape, dtype=x.dtype, device=x.device), torch.zeros(shape, dtype=x.dtype, device=x.device)


class _LearnedPositions(nn.Module):
    """GPT-2 style learned absolute positions, added to the token embeddings by a forward hook."""

    def __init__(self, n_ctx: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_ctx, d_model) * 0.02)

    def forward(self, embed, args, output):
        return output + self.weight[: output.shape[1]]


def build_decoder(position: str, config: DecoderConfig = DecoderConfig(), seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` (eager attention) with the given positions.

    ``position``: ``"rope"`` (Llama as is), ``"nope"`` (no positional signal: the rotary
    embedding replaced by the identity; position is only implicit in the causal mask) or
    ``"absolute"`` (identity rotation plus learned absolute position embeddings). The
    same ``seed`` gives the same initial weights for the shared parameters.

    Examples
    --------
    >>> m = build_decoder("nope", DecoderConfig(n_layers=1, n_ctx=32))
    >>> m(input_ids=torch.zeros(1, 8, dtype=torch.long)).logits.shape
    torch.Size([1, 8, 64])
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(POSITIONS)}, got {position!r}.")
    c = config
    hf_cfg = LlamaConfig(
        vocab_size=c.vocab, hidden_size=c.d_model, intermediate_size=c.d_mlp,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_heads,
        head_dim=c.d_head, max_position_embeddings=c.n_ctx, rope_theta=c.rope_theta,
        attn_implementation="eager", tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(hf_cfg)
    if position != "rope":
        model.model.rotary_emb = _NoRotation(c.d_head)
    if position == "absolute":
        g = torch.Generator().manual_seed(seed + 1)
        pos = _LearnedPositions(c.n_ctx, c.d_model)
        with torch.no_grad():
            pos.weight.copy_(torch.randn(c.n_ctx, c.d_model, generator=g) * 0.02)
        model.model.position_embeddings = pos
        model.model.embed_tokens.register_forward_hook(pos)
    return model
