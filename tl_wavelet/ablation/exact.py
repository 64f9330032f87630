"""The exact runner: every ablation run for real, from the residual entering its layer.

Why it is faster than the loop a user writes (one ``run_with_hooks`` per layer, head and
band): the clean run is done once per batch of sequences, caching the residual stream
entering every swept layer; each ablation of layer ``L`` then runs only blocks
``L..end`` from that cached residual (:class:`~tl_wavelet.adapter.LayerRunner`, which
knows how on TL 3 and TL 4). Several ablations of one layer can be stacked along the
batch (``batch_size`` rows per forward); on CPU this does not lower the per-ablation cost
(on a GPU it should; not measured, no GPU was lent to this project).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..adapter import LayerRunner, hook_name
from .passes import chunks, clean_pass, progress_bar, token_losses
from .spec import Ablation, Target

__all__ = ["LossAccumulator", "stacked_hook", "run_exact"]


class LossAccumulator:
    """Per-ablation sums of per-token loss changes: per sequence and per position bucket."""

    def __init__(self, n_seq: int, buckets):
        self.n_seq, self.buckets = n_seq, buckets
        self.seq_sum: dict[Ablation, np.ndarray] = {}
        self.bucket_sum: dict[Ablation, np.ndarray] = {}
        self.seq_count = np.zeros(n_seq)
        self.bucket_count = np.zeros(len(buckets))

    def counts(self, valid: Tensor, rows: Tensor):
        """Count the real tokens of sequences ``rows``."""
        self.seq_count[rows.cpu().numpy()] += valid.sum(1).cpu().numpy()
        for i, (lo, hi) in enumerate(self.buckets):
            self.bucket_count[i] += float(valid[:, lo:hi + 1].sum())

    def add(self, ab: Ablation, delta: Tensor, valid: Tensor, rows: Tensor):
        """Add the per-token loss changes ``delta`` of ablation ``ab`` on sequences ``rows``."""
        d = torch.where(valid, delta, torch.zeros_like(delta))
        s = self.seq_sum.setdefault(ab, np.zeros(self.n_seq))
        s[rows.cpu().numpy()] += d.sum(1).cpu().numpy()
        bs = self.bucket_sum.setdefault(ab, np.zeros(len(self.buckets)))
        for i, (lo, hi) in enumerate(self.buckets):
            bs[i] += float(d[:, lo:hi + 1].sum())

    def row(self, ab: Ablation) -> dict:
        """``delta_loss``, ``se`` (over sequences), ``n_tokens`` and the per-bucket means of ``ab``."""
        s, n = self.seq_sum[ab], self.seq_count
        total = n.sum()
        per_seq = s[n > 0] / n[n > 0]
        se = float(per_seq.std(ddof=1) / math.sqrt(len(per_seq))) if len(per_seq) > 1 else math.nan
        out = {"delta_loss": float(s.sum() / total), "se": se, "n_tokens": int(total)}
        for (lo, hi), v, c in zip(self.buckets, self.bucket_sum[ab], self.bucket_count):
            out[f"delta_loss_pos_{lo}_{hi}"] = float(v / c) if c else math.nan
        return out


def stacked_hook(target: Target, abls: Sequence[Ablation], rows: Tensor):
    """One hook applying ablation g to the g-th block of ``len(rows)`` batch rows."""
    fns = [target.hook_fn(ab, rows) for ab in abls]
    b = len(rows)

    def fn(x, hook):
        parts = [f(x[g * b:(g + 1) * b], hook) for g, f in enumerate(fns)]
        return torch.cat(parts, 0)

    return hook_name(target.act, abls[0].layer), fn


def run_exact(model, runner: LayerRunner, target: Target, tokens, valid, ablations, buckets, batch_size, progress):
    """Every ablation's per-token loss change, accumulated: ``(LossAccumulator, clean loss sum)``."""
    n_seq = tokens.shape[0]
    acc = LossAccumulator(n_seq, buckets)
    by_layer: dict[int, list[Ablation]] = {}
    for a in ablations:
        by_layer.setdefault(a.layer, []).append(a)
    layers = sorted(by_layer)
    batches = chunks(n_seq, batch_size, tokens.device)
    per_fwd = [max(1, batch_size // len(r)) for r in batches]
    total = sum(math.ceil(len(v) / g) for g in per_fwd for v in by_layer.values())
    bar = progress_bar(total, progress, "band_sweep (exact)")
    clean_sum = 0.0
    try:
        for rows, group in zip(batches, per_fwd):
            toks, ok = tokens[rows], valid[rows]
            clean_logits, resid, _ = clean_pass(model, toks, layers)
            clean = token_losses(clean_logits, toks)
            clean_sum += float(clean[ok].sum())
            acc.counts(ok, rows)
            runner.check(layers[0], resid[layers[0]], toks, clean_logits)
            del clean_logits
            for L in layers:
                todo = by_layer[L]
                for s in range(0, len(todo), group):
                    stack = todo[s:s + group]
                    g = len(stack)
                    hook = stacked_hook(target, stack, rows)
                    with torch.no_grad():
                        logits = runner.logits_from(L, resid[L].repeat(g, 1, 1), toks.repeat(g, 1), [hook])
                    losses = token_losses(logits, toks.repeat(g, 1)).reshape(g, len(rows), -1)
                    for a, lo in zip(stack, losses):
                        acc.add(a, lo - clean, ok, rows)
                    bar.update(1)
    finally:
        bar.close()
    return acc, clean_sum
