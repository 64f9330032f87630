"""Attribution estimators of every ablation's loss change: AtP, AtP plus curvature, IG.

All three read the gradient of the loss with respect to the swept activations and dot it
with each cell's removal direction, which the :class:`~tl_wavelet.ablation.spec.Target`
supplies; nothing here knows whether the cells are wavelet bands of ``hook_z`` or RoPE
pairs of ``hook_rot_q``.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from ..adapter import hook_name
from ..distributed import shard_range
from .passes import chunks, clean_pass, next_token_logp, pick, progress_bar, token_losses
from .spec import Ablation, Target

__all__ = ["ESTIMATORS", "FISHER_SEQUENCE_SAMPLES", "attribute"]

#: attribution estimators: plain attribution patching; AtP plus a Gauss-Newton (Fisher)
#: curvature term; integrated gradients along the path that removes one band from every
#: swept head at once (see band_sweep)
ESTIMATORS = ("atp", "atp2", "ig")

#: atp2's default number of sampled backward passes is chosen so that samples x sequences
#: reaches this (SmolLM2, 4 sequences, zero ablation: top-20 Spearman with the exact sweep
#: 0.83 (0.67-0.94 over 40 draws) with 1 sample, 0.93 (0.87-0.98 over 5 draws) with 8)
FISHER_SEQUENCE_SAMPLES = 32


def attribute(model, target: Target, tokens, valid, ablations, layers, heads, estimator, ig_steps, fisher_samples,
              seed, batch_size, progress, shard: tuple[int, int] = (0, 1)):
    """Gradient estimates of every ablation's delta_loss: ``({ablation: estimate}, clean loss sum)``.

    ``atp``: ``grad(loss, a) . delta_a`` at the clean run, for every swept activation a.
    ``atp2``: ``atp`` plus ``0.5 * delta_a' F delta_a / n_tokens``, ``F`` the Gauss-Newton
    matrix of the summed cross-entropy (for softmax outputs, the Fisher). With next tokens
    ``y'`` sampled from the model, ``G = grad sum_t log p(y'_t)`` has ``E[(G . d)^2] =
    d' F d``: scores have mean zero, and tokens are sampled independently, so cross terms
    vanish. Squares are taken per sequence (sequences are independent, so their cross terms
    are pure noise), which lowers the variance by the number of sequences at no cost.
    ``ig``: for each band, the path ``a_L + alpha * delta_L`` (every swept layer and head
    at once); the estimate is ``delta . mean_k grad`` over midpoints ``alpha_k`` (the
    straight-line integrated gradient of that joint path, read per head). ``ig`` with
    one step at alpha = 0 would be ``atp``.

    ``shard=(rank, world)`` runs only that rank's contiguous block of the batches (the
    estimates are sums over batches, normalised by the tokens of all of them); atp2's
    sampled tokens then come from a generator seeded ``seed + rank``.
    """
    n_seq = tokens.shape[0]
    n_tok = int(valid.sum())
    names = {L: hook_name(target.act, L) for L in layers}
    groups = target.groups(ablations)
    first_order = estimator in ("atp", "atp2")
    paths = [None] if first_order else list(range(len(groups)))
    alphas = [0.0] if first_order else [(k + 0.5) / ig_steps for k in range(ig_steps)]
    batches = chunks(n_seq, batch_size, tokens.device)
    batches = [batches[i] for i in shard_range(len(batches), *shard)]
    # the bar counts gradient passes (atp2's sampled ones included): it moves while a batch runs
    bar = progress_bar(len(batches) * (1 + fisher_samples if first_order else len(paths) * len(alphas)), progress,
                       f"band_sweep ({estimator})")
    est: dict[Ablation, float] = {a: 0.0 for a in ablations}
    head_idx = torch.tensor(heads, device="cpu")  # moved to each activation's device where it indexes
    gen = torch.Generator(device="cpu").manual_seed(int(seed) + shard[0])  # draws the same on every device
    clean_sum = 0.0
    try:
        for rows in batches:
            toks, ok = tokens[rows], valid[rows]
            # clean activations and removal directions of every swept layer; AtP's one
            # gradient pass is itself the clean run, so it needs no separate clean pass
            clean_grads, sampled = None, []
            if first_order:
                clean_grads, acts, loss_sum, sampled = _grads(model, toks, ok, n_tok, names, layers, target, None, groups,
                                                              None, 0.0, head_idx, fisher_samples, gen, bar)
                clean_sum += loss_sum
                if target.needs_reference and not target.has_reference:  # band_sweep left the reference to this batch
                    target.use_swept_as_reference(acts, seed)
            else:
                clean_logits, _, got = clean_pass(model, toks, [], list(names.values()))
                clean_sum += float(token_losses(clean_logits, toks)[ok].sum())
                del clean_logits
                acts = {L: got[names[L]] for L in layers}
            directions = {L: target.directions(L, acts[L], rows, head_idx) for L in layers}
            for path in paths:
                for alpha in alphas:
                    if clean_grads is not None:
                        grads = clean_grads
                    else:
                        grads = _grads(model, toks, ok, n_tok, names, layers, target, directions, groups, path, alpha,
                                       head_idx, bar=bar)[0]
                    cells = [a for a in ablations if path is None or groups[path][1] == target.key(a)]  # this IG path's band
                    # one host read per pass, not one per cell
                    lin = torch.stack([target.along(grads[a.layer], directions[a.layer], a, heads).sum() for a in cells])
                    for a, v in zip(cells, lin.tolist()):
                        est[a] += v / len(alphas)
                    if sampled:
                        quad = torch.stack([sum((target.along(G[a.layer], directions[a.layer], a, heads) ** 2).sum()
                                                for G in sampled) for a in cells])
                        for a, v in zip(cells, quad.tolist()):
                            est[a] += v / (2 * n_tok * len(sampled))
    finally:
        bar.close()
    return est, clean_sum


@contextmanager
def _weights_frozen(model):
    """Weights out of autograd for the call: no graph before the first swept layer and no
    inputs saved for weight gradients nobody reads (about 4% of an attribution pass)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _grads(model, toks, ok, n_tok, names, layers, target: Target, directions, groups, path, alpha, head_idx,
           fisher_samples=0, gen=None, bar=None):
    """Gradients of the (token-mean) loss w.r.t. each swept activation on one interpolated path,
    the activations, the summed loss, and ``fisher_samples`` gradients of the summed
    log-likelihood of next tokens sampled from the model: ``(grads, acts, loss_sum, sampled)``."""
    outs: dict[int, Tensor] = {}

    def make(L):
        def fn(x, hook):
            if not x.requires_grad:  # frozen weights: make the first swept activation a leaf
                x = x.detach().requires_grad_(True)
            if path is not None and alpha:
                x = x + alpha * target.shift(x, directions[L], groups[path][1], head_idx)
            outs[L] = x
            return x

        return fn

    with torch.enable_grad(), _weights_frozen(model), model.hooks(fwd_hooks=[(names[L], make(L)) for L in layers]):
        logits = model(toks, return_type="logits")
        logp = next_token_logp(logits)
        del logits
        # the unembedding's device: on a model spread over devices, not the tokens' one
        dev = logp.device
        ok = ok.to(dev)
        loss_sum = torch.where(ok, -pick(logp, toks[:, 1:].to(dev)).double(), 0.0).sum()
        inputs = [outs[L] for L in layers]
        gs = torch.autograd.grad(loss_sum / n_tok, inputs, retain_graph=fisher_samples > 0)
        if bar is not None:
            bar.update(1)
        sampled = []
        if fisher_samples:
            # inverse-CDF sampling from uniforms drawn by the CPU generator: the same draws on
            # every device (a CUDA generator's stream differs from the CPU's for one seed)
            cdf = logp.detach().exp().reshape(-1, logp.shape[-1]).cumsum(-1)
            for s in range(fisher_samples):
                u = torch.rand(cdf.shape[0], 1, generator=gen, dtype=torch.float64, device="cpu")
                y = torch.searchsorted(cdf, (u.to(dev) * cdf[:, -1:].double()).to(cdf.dtype))
                y = y.clamp_(max=cdf.shape[-1] - 1).reshape(ok.shape)
                loglik = torch.where(ok, pick(logp, y), 0.0).sum()
                g_s = torch.autograd.grad(loglik, inputs, retain_graph=s < fisher_samples - 1)
                sampled.append({L: g.detach() for L, g in zip(layers, g_s)})
                if bar is not None:
                    bar.update(1)
    return ({L: g.detach() for L, g in zip(layers, gs)}, {L: outs[L].detach() for L in layers},
            float(loss_sum.detach()), sampled)
