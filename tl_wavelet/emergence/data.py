"""A synthetic language whose dependency distances are known: each token copies the token
a planted distance back, or is noise; some sequences also repeat an earlier span (an
induction opportunity at an unplanted distance)."""
from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["synthetic_language", "DEFAULT_DISTANCES", "english_bytes", "ENGLISH_VOCAB"]

DEFAULT_DISTANCES = (1, 4, 16, 64)


def synthetic_language(
    n_sequences: int,
    seq_len: int,
    *,
    vocab: int = 64,
    distances: Sequence[int] = DEFAULT_DISTANCES,
    weights: Sequence[float] | None = None,
    noise: float = 0.2,
    repeat_prob: float = 0.5,
    repeat_len: int = 24,
    seed: int = 0,
) -> Int[Tensor, "batch pos"]:
    """Token sequences in which token t copies token ``t - d`` for a planted distance ``d``.

    At each position one rule is drawn: with probability ``noise`` a uniformly random
    token, otherwise a copy from ``t - d`` with ``d`` drawn from ``distances`` (by
    ``weights``, default equal) among those that reach back inside the sequence (a
    random token where none does). So the best predictor of token t mixes the tokens at
    ``t - d`` for every planted ``d``: a model gains from attending at exactly those
    distances. Afterwards, with probability ``repeat_prob`` a sequence gets a span of
    ``repeat_len`` tokens from its first half copied to a random later place, which
    only an induction mechanism (find the earlier occurrence, copy its successor) predicts.

    Parameters
    ----------
    n_sequences, seq_len : output shape
    vocab : number of token ids (0 .. vocab-1)
    distances, weights : the planted copy distances and their probabilities
    noise : probability of a random token
    repeat_prob, repeat_len : the repeated-span (induction) part; ``repeat_prob=0`` turns it off
    seed : everything is drawn from one ``torch.Generator`` seeded with it

    Examples
    --------
    >>> x = synthetic_language(2, 32, vocab=16, distances=(4,), noise=0.0, repeat_prob=0.0, seed=1)
    >>> bool((x[:, 4:] == x[:, :-4]).all())
    True
    """
    for name, v in (("n_sequences", n_sequences), ("seq_len", seq_len), ("vocab", vocab), ("repeat_len", repeat_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}.")
    distances = [int(d) for d in distances]
    if not distances or min(distances) < 1:
        raise ValueError(f"distances must be positive ints, got {distances!r}.")
    if weights is None:
        weights = [1.0] * len(distances)
    if len(weights) != len(distances) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("weights must be one non-negative number per distance, not all zero.")
    if not 0 <= noise <= 1 or not 0 <= repeat_prob <= 1:
        raise ValueError(f"noise and repeat_prob must lie in [0, 1], got {noise}, {repeat_prob}.")
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n_sequences, seq_len), generator=g)
    d_t = torch.tensor(distances)
    w = torch.tensor(weights, dtype=torch.float64)
    rows = torch.arange(n_sequences)
    for t in range(1, seq_len):
        ok = d_t <= t
        if not ok.any():
            continue
        wt = torch.where(ok, w, 0)
        pick = torch.multinomial(wt.expand(n_sequences, -1), 1, generator=g)[:, 0]
        copy = torch.rand(n_sequences, generator=g, device="cpu") >= noise
        src = t - d_t[pick]
        x[:, t] = torch.where(copy, x[rows, src], x[:, t])
    if repeat_prob > 0 and 3 * repeat_len <= seq_len:
        rep = torch.rand(n_sequences, generator=g, device="cpu") < repeat_prob
        half = seq_len // 2
        for i in rep.nonzero()[:, 0].tolist():
            s = int(torch.randint(0, half - repeat_len + 1, (1,), generator=g))
            u = int(torch.randint(max(half, s + repeat_len), seq_len - repeat_len + 1, (1,), generator=g))
            x[i, u : u + repeat_len] = x[i, s : s + repeat_len].clone()
    return x


# ---------------------------------------------------------------------- English
# Byte-level tokens: 256 ids cover every character of the packaged corpus exactly (no
# tokenizer to train or ship, nothing unknown), and a 256-row embedding keeps the decoder
# CPU-sized; a subword vocabulary (SmolLM2's has 49152 entries) would make the embedding and
# unembedding most of the model and of each step's time.
ENGLISH_VOCAB = 256
_HELD_OUT = 0.1  # the last 10 % of every document: the probe, never trained on


def _english_documents() -> list[Tensor]:
    from ..corpus import default_corpus

    return [torch.tensor(list(t.encode("utf-8")), dtype=torch.long) for t in default_corpus()]


def english_bytes(
    n_sequences: int, seq_len: int, *, split: str = "train", seed: int = 0, return_documents: bool = False
) -> Int[Tensor, "batch pos"] | tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """Windows of the packaged English corpus (:func:`tl_wavelet.corpus.default_corpus`) as UTF-8 bytes.

    Each window lies inside one document (no window joins two texts). ``split="train"``
    draws from the first 90 % of every document, ``"probe"`` from the last 10 %, so a
    probe is held-out text. Windows start at seeded random offsets, documents drawn in
    proportion to their length; token ids are byte values (vocabulary 256). With
    ``return_documents`` also each window's document (its index in
    :func:`tl_wavelet.corpus.default_corpus`): windows of one document are not independent,
    and uncertainties resample documents (:mod:`tl_wavelet.inference`).

    Examples
    --------
    >>> x = english_bytes(2, 32, seed=0)
    >>> x.shape, int(x.max()) < 256
    (torch.Size([2, 32]), True)
    >>> bytes(x[0].tolist()).decode("utf-8", errors="replace")  # doctest: +SKIP
    """
    for name, v in (("n_sequences", n_sequences), ("seq_len", seq_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}.")
    if split not in ("train", "probe"):
        raise ValueError(f"split must be 'train' or 'probe', got {split!r}.")
    parts, owners = [], []
    for i, doc in enumerate(_english_documents()):
        cut = int(len(doc) * (1 - _HELD_OUT))
        part = doc[:cut] if split == "train" else doc[cut:]
        if len(part) >= seq_len:
            parts.append(part)
            owners.append(i)
    if not parts:
        raise ValueError(f"seq_len={seq_len} is longer than every document's {split} part: use a shorter seq_len.")
    g = torch.Generator().manual_seed(seed)
    starts_per_doc = torch.tensor([len(p) - seq_len + 1 for p in parts], dtype=torch.float64)
    doc = torch.multinomial(starts_per_doc.expand(n_sequences, -1), 1, replacement=True, generator=g)[:, 0]
    u = torch.rand(n_sequences, generator=g, dtype=torch.float64, device="cpu")
    start = (u * starts_per_doc[doc]).long()
    windows = torch.stack([parts[int(d)][int(s) : int(s) + seq_len] for d, s in zip(doc, start)])
    if return_documents:
        return windows, torch.tensor([owners[int(d)] for d in doc], dtype=torch.long, device="cpu")
    return windows
