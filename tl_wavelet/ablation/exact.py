"""The exact runner: every ablation run for real, from the residual entering its layer.

Why it is faster than the loop a user writes (one ``run_with_hooks`` per layer, head and
band): the clean run is done once per batch of sequences, caching the residual stream
entering every swept layer; each ablation of layer ``L`` then runs only blocks
``L..end`` from that cached residual (:class:`~tl_wavelet.adapter.LayerRunner`, which
knows how on TL 3 and TL 4). Many ablations of one layer are stacked along the batch and
patched together (:meth:`~tl_wavelet.ablation.spec.Target.stacked_hook_fn`): one patched
forward runs ``stack`` cells. On a GPU the stack is as large as memory allows (measured
on the first patched forward, halved on an out-of-memory error); on the CPU, which is
compute-bound, stacking lowers nothing and ``batch_size // sequences`` cells are stacked.
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

__all__ = ["LossAccumulator", "document_se", "stacked_hook", "run_exact", "StackSize"]


class LossAccumulator:
    """Per-ablation sums of per-token loss changes: per sequence and per position bucket.

    ``clusters``: each sequence's document code (``0..G-1``), or None. With documents the
    ``se`` is the delete-one-document jackknife SE of ``delta_loss`` (windows of one document
    are not independent); without, the SE of the per-sequence mean changes over sequences.
    """

    def __init__(self, n_seq: int, buckets, clusters: np.ndarray | None = None):
        self.n_seq, self.buckets, self.clusters = n_seq, buckets, clusters
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
        if self.clusters is not None:
            se = document_se(s, n, self.clusters)
        else:
            per_seq = s[n > 0] / n[n > 0]
            se = float(per_seq.std(ddof=1) / math.sqrt(len(per_seq))) if len(per_seq) > 1 else math.nan
        out = {"delta_loss": float(s.sum() / total), "se": se, "n_tokens": int(total)}
        for (lo, hi), v, c in zip(self.buckets, self.bucket_sum[ab], self.bucket_count):
            out[f"delta_loss_pos_{lo}_{hi}"] = float(v / c) if c else math.nan
        return out


def document_se(sums: np.ndarray, counts: np.ndarray, clusters: np.ndarray) -> float:
    """Delete-one-document jackknife SE of ``sums.sum() / counts.sum()`` (per-sequence sums and token
    counts, each sequence's document code); NaN with fewer than 2 documents holding tokens.

    >>> round(document_se(np.array([1.0, 3.0, 5.0]), np.ones(3), np.array([0, 1, 2])), 6)  # = SD / sqrt(3)
    1.154701
    """
    g = int(clusters.max()) + 1
    cs, cn = np.bincount(clusters, sums, g), np.bincount(clusters, counts, g)
    keep = cn > 0
    if keep.sum() < 2:
        return math.nan
    loo = (sums.sum() - cs[keep]) / (counts.sum() - cn[keep])
    k = int(keep.sum())
    return float(math.sqrt((k - 1) / k * ((loo - loo.mean()) ** 2).sum()))


def stacked_hook(target: Target, abls: Sequence[Ablation], rows: Tensor):
    """One hook applying ablation g to the g-th block of ``len(rows)`` batch rows."""
    return hook_name(target.act, abls[0].layer), target.stacked_hook_fn(abls, rows)


class StackSize:
    """How many cells one patched forward stacks.

    ``fixed``: that many (the ``cells_per_forward`` a user passed). Else, on the CPU,
    ``batch_size // sequences`` (compute-bound: stacking saves nothing); on a CUDA device,
    one cell first, whose peak memory per row then sizes the stack to 70 % of the free
    memory; an out-of-memory error halves it (:meth:`shrink`).
    """

    def __init__(self, fixed: int | None, batch_size: int, device: torch.device):
        self.fixed, self.batch_size, self.device = fixed, batch_size, torch.device(device)
        self.auto_cuda = fixed is None and self.device.type == "cuda"
        self.cells: int | None = fixed

    def next(self, rows: int, left: int) -> int:
        if self.cells is None:
            self.cells = 1 if self.auto_cuda else max(1, self.batch_size // rows)
        return max(1, min(self.cells, left))

    def measure(self, run, *args):
        """``run(*args)``; the first automatic CUDA forward also sizes the stack from its peak memory."""
        if not (self.auto_cuda and self.cells == 1 and not getattr(self, "_sized", False)):
            return run(*args)
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        out = run(*args)
        per_cell = max(torch.cuda.max_memory_allocated(self.device) - base, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        self.cells, self._sized = max(1, int(0.7 * free / per_cell)), True
        return out

    def shrink(self) -> bool:
        """Halve the stack after an out-of-memory error; False when it is one cell already."""
        if self.cells is None or self.cells <= 1:
            return False
        self.cells //= 2
        return True


def run_exact(model, runner: LayerRunner, target: Target, tokens, valid, ablations, buckets, batch_size, progress,
              cells_per_forward: int | None = None, clusters: np.ndarray | None = None):
    """Every ablation's per-token loss change, accumulated: ``(LossAccumulator, clean loss sum)``."""
    n_seq = tokens.shape[0]
    acc = LossAccumulator(n_seq, buckets, clusters)
    by_layer: dict[int, list[Ablation]] = {}
    for a in ablations:
        by_layer.setdefault(a.layer, []).append(a)
    layers = sorted(by_layer)
    batches = chunks(n_seq, batch_size, tokens.device)
    stack = StackSize(cells_per_forward, batch_size, tokens.device)
    bar = progress_bar(len(ablations) * len(batches), progress, "band_sweep (exact)")  # counts cells
    clean_sum = 0.0
    try:
        for rows in batches:
            toks, ok = tokens[rows], valid[rows]
            clean_logits, resid, _ = clean_pass(model, toks, layers)
            clean = token_losses(clean_logits, toks)
            clean_sum += float(clean[ok].sum())
            acc.counts(ok, rows)
            runner.check(layers[0], resid[layers[0]], toks, clean_logits)
            del clean_logits
            for L in layers:
                todo, s = by_layer[L], 0
                while s < len(todo):
                    cells = todo[s:s + stack.next(len(rows), len(todo) - s)]
                    try:
                        losses = stack.measure(_patched_losses, runner, target, L, resid[L], toks, rows, cells)
                    except torch.cuda.OutOfMemoryError:
                        if not stack.shrink():
                            raise
                        continue
                    for a, lo in zip(cells, losses):
                        acc.add(a, lo - clean, ok, rows)
                    bar.update(len(cells))
                    s += len(cells)
    finally:
        bar.close()
    return acc, clean_sum


def _patched_losses(runner: LayerRunner, target: Target, layer: int, resid: Tensor, toks: Tensor, rows: Tensor,
                    cells: Sequence[Ablation]) -> Tensor:
    """Per-token losses ``[cells, rows, pos-1]`` of ``cells`` stacked in one forward from ``layer``."""
    g = len(cells)
    hook = stacked_hook(target, cells, rows)
    with torch.no_grad():
        logits = runner.logits_from(layer, resid.repeat(g, 1, 1), toks.repeat(g, 1), [hook])
    return token_losses(logits, toks.repeat(g, 1)).reshape(g, len(rows), -1)
