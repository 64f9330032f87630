"""Forward passes shared by the exact runner and attribution: clean pass, next-token losses.

Loss: next-token cross-entropy per token from the logits (log-softmax in float32, sums
over tokens in float64).
"""
from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["next_token_logp", "pick", "token_losses", "chunks", "clean_pass", "progress_bar"]


def next_token_logp(logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, "batch pos_1 vocab"]:
    """Log-probabilities of the next token, in float32, for every predicting position."""
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def pick(logp: Float[Tensor, "batch pos_1 vocab"], ids: Int[Tensor, "batch pos_1"]) -> Float[Tensor, "batch pos_1"]:
    """``logp`` of the tokens ``ids``."""
    return logp.gather(-1, ids[..., None])[..., 0]


def token_losses(logits: Float[Tensor, "batch pos vocab"], tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos_1"]:
    """Next-token cross-entropy per token, float64, on ``tokens``' device.

    On a model spread over devices the logits come from the last one (the unembedding's)
    while the tokens, and the callers' masks, stay on the first: the loss is computed
    where the logits are and handed back where the tokens are.

    Examples
    --------
    >>> logits = torch.zeros(1, 3, 4)        # uniform over 4 tokens: log 4 nats each
    >>> token_losses(logits, torch.tensor([[0, 1, 2]])).tolist()
    [[1.3862943649291992, 1.3862943649291992]]
    """
    return -pick(next_token_logp(logits), tokens[:, 1:].to(logits.device)).double().to(tokens.device)


def chunks(n_seq: int, size: int, device) -> list[Tensor]:
    """Row indices ``0..n_seq-1`` in batches of ``size``.

    Examples
    --------
    >>> [c.tolist() for c in chunks(5, 2, "cpu")]
    [[0, 1], [2, 3], [4]]
    """
    return [torch.arange(i, min(i + size, n_seq), device=device) for i in range(0, n_seq, size)]


def clean_pass(model, tokens, layers, extra_names=()):
    """Clean logits, and the residual entering each layer (plus ``extra_names`` activations)."""
    got = {}

    def grab(key):
        def fn(t, hook):
            got[key] = t.detach()

        return fn

    names = [(f"blocks.{L}.hook_resid_pre", ("resid", L)) for L in layers] + [(nm, ("extra", nm)) for nm in extra_names]
    with torch.no_grad(), model.hooks(fwd_hooks=[(nm, grab(k)) for nm, k in names]):
        logits = model(tokens, return_type="logits")
    return logits, {L: got[("resid", L)] for L in layers}, {nm: got[("extra", nm)] for nm in extra_names}


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar (``disable=`` when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled)
