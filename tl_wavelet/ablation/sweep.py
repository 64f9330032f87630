"""``band_sweep``: the loss change when one band of one head is removed, for many heads and bands.

A thin driver: it validates the arguments, builds the target (:class:`.positional.ZBands`
for positional bands of ``hook_z``, :class:`.rope.RopePairs` for RoPE pairs of
``hook_rot_q``), and hands the cells to the exact runner (:mod:`.exact`) or to an
attribution estimator (:mod:`.attribution`), whose largest estimates ``verify_top_k``
re-runs exactly.

Loss: next-token cross-entropy per token from the logits (log-softmax in float32,
sums over tokens in float64), averaged over all real tokens; with an
``attention_mask`` (right padding) padded targets are left out.
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from .. import distributed as D
from ..adapter import (
    LayerRunner,
    as_tokens,
    facts,
    hook_name,
    is_text,
    model_shape,
    require_causal,
    require_hooks,
    resolve_heads,
    resolve_layers,
)
from ..rope import rope_frequencies
from ..state import check_fingerprint, digest, model_fingerprint, tensor_digest
from ..validate import check_bool, check_int, check_optional_int, check_right_padding, warn_small_sample
from .attribution import ESTIMATORS, FISHER_SEQUENCE_SAMPLES, attribute
from .exact import run_exact
from .passes import chunks, clean_pass
from .positional import ZBands
from .rope_pairs import RopePairs, _default_n_bands, rope_bands
from .spec import BandSpec, Target, check_method

__all__ = ["band_sweep", "position_buckets", "ESTIMATORS"]


# ------------------------------------------------------------------ inputs
def _prepare(model, tokens, attention_mask, seq_len=None, name="tokens") -> tuple[Tensor, Tensor | None]:
    """``[batch, pos]`` tokens (any form of :func:`~tl_wavelet.adapter.as_tokens`) and an
    optional right-padding mask, validated and on the model's device."""
    device = facts(model).device
    if is_text(tokens):
        if attention_mask is not None:
            raise ValueError("attention_mask applies to padded token ids; text is cut into full windows without one.")
        seq_len = 256 if seq_len is None else seq_len
    tokens = as_tokens(model, tokens, seq_len=seq_len, name=name)
    if tokens.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 positions (a next-token loss), got shape {tuple(tokens.shape)}.")
    mask = None if attention_mask is None else check_right_padding(attention_mask, tokens)
    return tokens.to(device), None if mask is None else mask.to(device)


def _with_documents(model, tokens, attention_mask, seq_len, documents):
    """``(tokens, mask, document codes or None)``: text labels its windows with their documents;
    token ids carry ``documents`` (one id per sequence); one string or unlabelled ids: None."""
    from ..inference.units import as_clusters  # lazily: tl_wavelet.inference builds on the sweep's modules

    if is_text(tokens):
        if documents is not None:
            raise ValueError("documents: tokens is text, cut into windows per document, which labels them itself; "
                             "pass documents=... only with token ids.")
        if isinstance(tokens, str):
            return (*_prepare(model, tokens, attention_mask, seq_len), None)
        from ..corpus import chunk_documents

        if attention_mask is not None:
            raise ValueError("attention_mask applies to padded token ids; text is cut into full windows without one.")
        try:
            ids, docs = chunk_documents(model, tokens, 256 if seq_len is None else seq_len)
        except ValueError as e:
            raise ValueError(f"tokens: {e}") from None
        toks, mask = _prepare(model, ids, None)
        return toks, mask, docs.numpy()
    toks, mask = _prepare(model, tokens, attention_mask, seq_len)
    if documents is None:
        return toks, mask, None
    codes, _ = as_clusters(documents, toks.shape[0], "documents")
    return toks, mask, codes.numpy()


def position_buckets(n: int) -> list[tuple[int, int]]:
    """Dyadic (factor 4) buckets of predicting positions ``0..n-2``: (0,15), (16,63), (64,255), ...

    The last bucket ends at the last predicting position ``n - 2``, so the sweep's
    ``delta_loss_pos_<lo>_<hi>`` columns name the positions they average.

    Examples
    --------
    >>> position_buckets(128)
    [(0, 15), (16, 63), (64, 126)]
    """
    n = check_int(n, "n", minimum=2)  # positions: at least one next-token prediction
    edges, out, lo = [0, 16], [], 0
    while edges[-1] < n - 1:
        edges.append(edges[-1] * 4)
    for lo, hi in zip(edges, edges[1:]):
        if lo <= n - 2:
            out.append((lo, min(hi - 1, n - 2)))
    return out


# ------------------------------------------------------------------ the sweep
def band_sweep(
    model,
    tokens: Int[Tensor, "batch pos"],
    *,
    target: Literal["z", "rope"] = "z",
    layers: int | Sequence[int] | None = None,
    heads: int | Sequence[int] | None = None,
    bands: Sequence[str] | Sequence[int] | None = None,
    method: Literal["zero", "mean", "resample"] = "zero",
    causal: bool = True,
    batch_size: int = 8,
    progress: bool = True,
    attribution: bool | Literal["atp", "atp2", "ig"] = False,
    verify_top_k: int = 0,
    level: int = 5,
    band_wavelet: str = "haar",
    mode: str = "symmetric",
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    reference: Int[Tensor, "rbatch pos"] | None = None,
    n_rope_bands: int | None = None,
    ig_steps: int = 4,
    fisher_samples: int | None = None,
    seed: int = 0,
    seq_len: int | None = None,
    cells_per_forward: int | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    resume: dict | None = None,
    documents=None,
) -> pd.DataFrame:
    """Loss change when one band of one head is removed, for every (layer, head, band).

    Parameters
    ----------
    model : TransformerBridge or HookedTransformer
        TL 4.x or TL 3.x; it must be causal (a decoder): a bidirectional encoder such as
        BERT has no next-token loss and is refused.
    tokens : Tensor, array, list or str
        Token ids (a ``[batch, pos]`` tensor or NumPy array, a list of ids, a list of
        equal-length lists; pad on the right and pass ``attention_mask`` for unequal
        lengths) or text (a string, or a list of strings cut document by document), as in
        :func:`~tl_wavelet.adapter.as_tokens`.
    target : {"z", "rope"}
        ``"z"``: positional bands of the head output ``hook_z``
        (:func:`~tl_wavelet.ablation.band_ablation_hook`); ``"rope"``: groups of rotary
        pairs zeroed in the head's rotated queries ``hook_rot_q``
        (:func:`~tl_wavelet.ablation.rope_ablation_hook`, exact per head).
    layers, heads : int or sequence of int or None
        Which to sweep (``None``: all).
    bands : sequence of str or int, optional
        ``target="z"``: names from ``band_labels(level)`` (default all);
        ``target="rope"``: names ``R0..R{n_rope_bands-1}`` (default all) or one explicit
        list of pair indices.
    method : {"zero", "mean", "resample"}
        ``mean``/``resample`` for ``target="z"`` only; their source is ``reference``
        (token ids) when given, else the swept sequences themselves (a seeded derangement
        for resample).
    causal : bool
        Causal bands (default; a non-causal DWT would leak future tokens into the loss).
    batch_size : int
        Rows per forward: sequences per clean pass, and ablations stacked per patched
        forward (``batch_size // sequences``).
    progress : bool
        Show a tqdm bar.
    attribution : bool or {"atp", "atp2", "ig"}
        ``False``: every effect exact. ``True`` / ``"atp"``: attribution patching (one
        forward+backward per batch); ``"atp2"``: AtP plus the second-order term
        ``0.5 * d' F d`` with ``F`` the Gauss-Newton (Fisher) matrix of the loss,
        estimated from ``fisher_samples`` extra backward passes with next tokens sampled
        from the model (unbiased; per-sequence squares). Zero-ablating a band that carries
        a head's steady output (often ``A5``) is a large move along which the loss is
        nearly quadratic, so first-order AtP misses it and ``atp2`` does not (SmolLM2, 4
        sequences, zero ablation: top-20 Spearman with the exact sweep 0.93 vs 0.68 for
        AtP, at 6x AtP's cost; with mean ablation AtP alone reaches 0.97; see
        docs/ablation.md). ``"ig"``: integrated gradients, ``ig_steps`` forward+backward
        passes per band, each moving one band of every swept head from clean to removed at
        once (on SmolLM2 it ranks no better than AtP but sizes the large effects better;
        see benchmarks/results/sweep.md). Rows then carry ``estimate`` for every cell and
        exact columns only where verified.
    verify_top_k : int
        With attribution, recompute the ``k`` largest ``abs(estimate)`` exactly.
    level, band_wavelet, mode : int, str, str
        The positional decomposition (:class:`~tl_wavelet.ablation.spec.BandSpec`;
        ``mode`` for the DWT only).
    attention_mask : Tensor, optional
        Right-padding mask ``[batch, pos]`` (1 = real token).
    reference : Tensor, optional
        Token ids of other sequences for ``mean`` / ``resample``.
    n_rope_bands : int, optional
        How many wavelength groups make the RoPE bands (``None``: 4, or the number of
        rotary pairs of a layer that has fewer).
    ig_steps : int
        Integration steps of ``attribution="ig"``.
    fisher_samples : int, optional
        Sampled backward passes per batch of ``attribution="atp2"``; ``None``: enough that
        samples x sequences >= 32 (8 for 4 sequences, 1 from 32 on).
    seed : int
        Resample permutation, and the sampled next tokens of ``atp2``.
    seq_len : int, optional
        Text: window length (default 256); token ids: keep the first ``seq_len`` positions.
    cells_per_forward : int, optional
        Exact cells of one layer stacked along the batch in one patched forward (the clean
        prefix runs once, the cells from the patched layer on). ``None``: on a GPU as many
        as 70 % of the free memory holds (sized on the first patched forward; halved on an
        out-of-memory error), on the CPU ``batch_size // sequences`` (compute-bound:
        stacking saves nothing there). Results do not depend on it.
    on_checkpoint : callable, optional
        Called with the sweep's state (plain containers, ``torch.save``-able) after the
        attribution pass and after every group of exact cells per rank (8 on the CPU, 256
        on a GPU; each group repeats the clean pass); save it to resume.
    resume : dict, optional
        A state passed to ``on_checkpoint`` by an interrupted call with the same model,
        tokens and options: its attribution estimates and finished cells are kept, and
        only the rest runs. A state from other arguments is refused (ValueError naming
        what differs).
    documents : sequence, optional
        Token ids only: one document id per sequence (e.g. from
        :func:`tl_wavelet.corpus.chunk_documents`); ``se`` is then the delete-one-document
        jackknife SE (windows of one document are not independent samples). Text (a list
        of documents) labels its windows itself.

    Returns
    -------
    pandas.DataFrame
        One row per (layer, head, band): ``delta_loss`` (mean change of next-token
        cross-entropy over real tokens, nats; positive = the band mattered), ``se``
        (standard error by document where the sequences carry their documents, else over
        sequences: ``df.attrs["se_unit"]``, ``df.attrs["n_clusters"]``), ``n_tokens``, ``delta_loss_pos_{lo}_{hi}`` (the
        mean change over predicting positions lo..hi, dyadic buckets), and with
        attribution ``estimate`` and ``verified``. ``df.attrs`` holds the clean loss and
        the settings.

    Notes
    -----
    Under ``torch.distributed`` (e.g. ``torchrun``) every rank passes the same arguments
    (checked by one ``all_gather`` of digests) and gets the same DataFrame: exact cells are
    dealt out round-robin (rank ``r`` runs cells ``r, r + world, ...`` on all sequences,
    so costly early-layer cells spread evenly) and their rows gathered; attribution passes
    split the batches of sequences and their sums are added in rank order; verified cells
    are dealt out like exact ones. Exact and ``atp`` / ``ig`` results equal a single
    process's up to float rounding; ``atp2`` draws its sampled tokens on rank ``r`` from
    ``seed + r``, so it is the same estimator with other random draws. More ranks than
    exact cells (or than sequences, for attribution) is a ValueError.

    Examples
    --------
    >>> df = band_sweep(model, tokens[:4], layers=[0, 1], heads=[0, 3])   # doctest: +SKIP
    >>> df.sort_values("delta_loss", ascending=False).head()              # doctest: +SKIP
    >>> est = band_sweep(model, tokens, attribution=True, verify_top_k=10) # doctest: +SKIP
    """
    shape = model_shape(model)
    require_causal(model, "band_sweep")
    estimator = _check_options(target, method, attribution, batch_size, verify_top_k, ig_steps, fisher_samples)
    batch_size, verify_top_k, ig_steps = (check_int(v, k) for k, v in
                                          (("batch_size", batch_size), ("verify_top_k", verify_top_k), ("ig_steps", ig_steps)))
    fisher_samples = check_optional_int(fisher_samples, "fisher_samples", minimum=1)
    cells_per_forward = check_optional_int(cells_per_forward, "cells_per_forward", minimum=1)
    progress = check_bool(progress, "progress")
    _check_callback(on_checkpoint)
    n_rope_bands = None if n_rope_bands is None else check_int(n_rope_bands, "n_rope_bands", minimum=1)
    seed = check_int(seed, "seed")
    tokens, mask, clusters = _with_documents(model, tokens, attention_mask, seq_len, documents)
    if fisher_samples is None:
        # the curvature term's relative noise is about sqrt(2 / (samples x sequences)): keep it near 0.25
        fisher_samples = max(1, math.ceil(FISHER_SEQUENCE_SAMPLES / tokens.shape[0]))
    layers = resolve_layers(shape, layers)
    heads = resolve_heads(shape, heads)
    n = tokens.shape[1]
    cells: Target = (ZBands(BandSpec(causal, band_wavelet, level, mode), method, seed) if target == "z"
                     else RopePairs(model, shape, n_rope_bands))
    ablations = cells.ablations(layers, heads, bands, n)
    require_hooks(model, [hook_name(cells.act, L) for L in layers] + [f"blocks.{L}.hook_resid_pre" for L in layers],
                  why=f"band_sweep target={target!r}")
    options = dict(target=target, method=method, causal=causal, batch_size=batch_size, attribution=estimator,
                   verify_top_k=verify_top_k, level=level, wavelet=band_wavelet, mode=mode, n_rope_bands=n_rope_bands,
                   ig_steps=ig_steps, fisher_samples=fisher_samples, seed=seed)
    world = D.world_size()
    if world > 1:
        _check_distributed(model, tokens, mask, reference, ablations, estimator, world, options)
        progress = progress and D.rank() == 0
    # attribution's gradient pass records hook_z of the swept sequences anyway: when they are
    # the reference and fit in one batch, it serves as the reference (no separate clean pass;
    # with several ranks, every rank needs the reference, so each collects it)
    reference_from_grad_pass = (cells.needs_reference and reference is None and estimator in ("atp", "atp2")
                                and tokens.shape[0] <= batch_size and world == 1)
    if cells.needs_reference and not reference_from_grad_pass:
        _collect_reference(model, cells, tokens, reference, layers, batch_size, seed)

    fingerprint = {
        "model": model_fingerprint(model)["weights"], "tokens": tensor_digest(tokens),
        "attention_mask": None if mask is None else tensor_digest(mask), "reference": digest(reference),
        # the order of a saved state's options: kept, so that states saved before still resume
        "options": repr({"target": target, "layers": layers, "heads": heads, "bands": bands,
                         **{k: v for k, v in options.items() if k != "target"}}),
        **({} if clusters is None else {"documents": digest(torch.as_tensor(clusters))}),
    }
    run = _SweepRun(model, LayerRunner(model, shape), cells, tokens, mask, batch_size, progress, cells_per_forward,
                    _resume_state(resume, fingerprint), fingerprint, on_checkpoint, clusters)
    if estimator is None:
        rows, clean_sum = run.exact(ablations)
        df = pd.DataFrame([{"layer": a.layer, "head": a.head, "band": a.band, **rows[a]} for a in ablations])
    else:
        est, clean_sum = run.attribution(ablations, layers, heads, estimator, ig_steps,
                                         fisher_samples if estimator == "atp2" else 0, seed)
        df = _verified_frame(ablations, est, run.buckets, verify_top_k, run.exact)
    n_docs = None if clusters is None else len(np.unique(clusters))
    df = _small_sample_nans(df, tokens.shape[0], method, reference, estimator, fisher_samples, n_docs)
    if target == "rope":
        df = _with_wavelengths(model, df, n_rope_bands)
    n_tok = int(run.valid.sum())
    df.attrs.update(
        clean_loss=clean_sum / n_tok, n_tokens=n_tok, n_sequences=int(tokens.shape[0]), seq_len=n,
        target=target, method=method, causal=causal, band_wavelet=band_wavelet, level=level,
        attribution=estimator or False, skipped_early_layers=run.runner.skip,
        se_unit="sequence" if clusters is None else "document", n_clusters=int(tokens.shape[0]) if n_docs is None else n_docs,
        **({"fisher_samples": fisher_samples} if estimator == "atp2" else {}),
    )
    return df


class _SweepRun:
    """One sweep's work and its resumable state: exact cells (grouped between checkpoints, dealt out
    over ranks) and the attribution pass."""

    def __init__(self, model, runner, cells: Target, tokens, mask, batch_size, progress, cells_per_forward, saved,
                 fingerprint, on_checkpoint, clusters=None):
        self.model, self.runner, self.cells, self.tokens, self.clusters = model, runner, cells, tokens, clusters
        self.batch_size, self.progress, self.cells_per_forward = batch_size, progress, cells_per_forward
        self.saved, self.fingerprint, self.on_checkpoint = saved, fingerprint, on_checkpoint
        self.world, self.rank = D.world_size(), D.rank()
        n = tokens.shape[1]
        self.buckets = position_buckets(n)
        self.valid = torch.ones(tokens.shape[0], n - 1, dtype=torch.bool, device=tokens.device)
        if mask is not None:
            self.valid = mask[:, 1:] & mask[:, :-1]

    def checkpoint(self) -> None:
        if self.on_checkpoint is not None:
            self.on_checkpoint({"kind": "tl_wavelet.band_sweep", "fingerprint": self.fingerprint, **self.saved,
                                "rows": dict(self.saved["rows"])})  # a snapshot: later cells must not change it

    def _exact_group(self, todo) -> None:
        """Run cells ``todo`` (with several ranks, every world-th cell each, on all sequences) and
        gather their rows into the saved state."""
        mine = D.split_evenly(todo, self.rank, self.world)

        def local():
            if not mine:  # fewer cells to verify than ranks: this rank idles
                return {}, None
            acc, clean = run_exact(self.model, self.runner, self.cells, self.tokens, self.valid, mine, self.buckets,
                                   self.batch_size, self.progress, self.cells_per_forward, self.clusters)
            return {_key(a): acc.row(a) for a in mine}, clean

        parts = D.run_collectively(local, "band_sweep (exact)")
        self.saved["rows"].update({k: row for part, _ in parts for k, row in part.items()})
        self.saved["clean_sum"] = next(c for _, c in parts if c is not None)
        self.checkpoint()

    def exact(self, cells_to_run) -> tuple[dict, float]:
        """``({cell: result row}, clean loss sum)``, skipping cells a resumed state holds."""
        todo = [a for a in cells_to_run if _key(a) not in self.saved["rows"]]
        per_rank = _CELLS_PER_CHECKPOINT if self.tokens.device.type == "cpu" else _CELLS_PER_CHECKPOINT_GPU
        size = len(todo) if self.on_checkpoint is None else per_rank * self.world
        for i in range(0, len(todo), max(size, 1)):
            self._exact_group(todo[i:i + size])
        return {a: self.saved["rows"][_key(a)] for a in cells_to_run}, self.saved["clean_sum"]

    def attribution(self, ablations, layers, heads, estimator, ig_steps, fisher_samples, seed) -> tuple[dict, float]:
        """``({cell: estimate}, clean loss sum)`` of the attribution pass (or the resumed state's)."""
        saved = self.saved
        if saved["estimates"] is None:
            parts = D.run_collectively(
                lambda: attribute(self.model, self.cells, self.tokens, self.valid, ablations, layers, heads, estimator,
                                  ig_steps, fisher_samples, seed, self.batch_size, self.progress,
                                  shard=(self.rank, self.world)),
                "band_sweep (attribution)")
            # sums over each rank's batches, added in rank order: the same on every rank
            saved["estimates"] = {_key(a): sum(part[0][a] for part in parts) for a in ablations}
            saved["attribution_clean_sum"] = sum(part[1] for part in parts)
            self.checkpoint()
        return {a: saved["estimates"][_key(a)] for a in ablations}, saved["attribution_clean_sum"]


#: atp2's curvature term is left out (NaN) below this many samples x sequences: its relative
#: noise sqrt(2 / (samples x sequences)) is then above 70%
MIN_FISHER_DRAWS = 4


def _with_wavelengths(model, df: pd.DataFrame, n_rope_bands: int | None) -> pd.DataFrame:
    """Add ``wavelength_min``/``wavelength_max`` (tokens) after ``band``: what ``R0..`` mean per layer."""
    layers = [int(L) for L in df["layer"].unique()]
    waves = rope_frequencies(model, layers=layers)
    tables = {L: {b.name: b for b in rope_bands(model, L, _default_n_bands(waves[L]) if n_rope_bands is None else n_rope_bands)}
              for L in layers}
    lo, hi = [], []
    for L, band in zip(df["layer"], df["band"]):
        b = tables[int(L)].get(band)
        if b is not None:
            lo.append(b.wavelength_min)
            hi.append(b.wavelength_max)
        else:  # an explicit group "pairs 3,5": its own wavelengths
            pairs = [int(p) for p in str(band).removeprefix("pairs ").split(",")]
            w = waves[int(L)]["wavelength"][pairs].double()
            lo.append(float(w.min()))
            hi.append(float(w.max()))
    at = list(df.columns).index("band") + 1
    df.insert(at, "wavelength_max", hi)
    df.insert(at, "wavelength_min", lo)
    return df


def _small_sample_nans(df, n_seq, method, reference, estimator, fisher_samples, n_docs=None) -> pd.DataFrame:
    """NaN, with a warning that says how many are needed, where a number is undefined at this sample size."""
    effect_cols = [c for c in df.columns if c.startswith("delta_loss") or c in ("se", "estimate")]
    if method == "mean" and reference is None and n_seq < 2:
        # the mean of one sequence's band is that band: "replacing" it changes nothing
        warn_small_sample("method='mean' over the swept sequences (no reference=...)", n_seq, 2, stacklevel=4)
        df[effect_cols] = np.nan
        return df
    if n_docs is not None and n_docs < 2 and "se" in df:
        warn_small_sample("se (a standard error by document)", n_docs, 2, stacklevel=4, unit="documents")
    elif n_seq < 2:
        warn_small_sample("se (a standard error over sequences)", n_seq, 2, stacklevel=4)
    if estimator == "atp2" and fisher_samples * n_seq < MIN_FISHER_DRAWS:
        warn_small_sample(
            f"atp2's curvature estimate (fisher_samples={fisher_samples} x {n_seq} sequence(s))",
            fisher_samples * n_seq, MIN_FISHER_DRAWS, stacklevel=4,
        )
        df["estimate"] = np.nan
    return df


def _check_options(target, method, attribution, batch_size, verify_top_k, ig_steps, fisher_samples) -> str | None:
    """Validate band_sweep's options; return the estimator name (``None``: exact)."""
    if target not in ("z", "rope"):
        raise ValueError(f"target must be 'z' (positional bands of hook_z) or 'rope' (rotary pairs of hook_rot_q), got {target!r}.")
    method = check_method(method)
    if target == "rope" and method != "zero":
        raise ValueError("target='rope' removes rotary pairs (method='zero'); mean/resample apply to target='z'.")
    if isinstance(attribution, np.bool_):
        attribution = bool(attribution)
    estimator = {True: "atp", False: None}.get(attribution, attribution) if isinstance(attribution, bool) else attribution
    if estimator is not None and (not isinstance(estimator, str) or estimator not in ESTIMATORS):
        raise ValueError(f"attribution must be True, False or one of {ESTIMATORS}, got {attribution!r}.")
    for name, value, low in (("batch_size", batch_size, 1), ("verify_top_k", verify_top_k, 0), ("ig_steps", ig_steps, 1)):
        check_int(value, name, minimum=low)
    if verify_top_k and estimator is None:
        raise ValueError("verify_top_k re-runs the largest attribution estimates exactly: pass attribution=True too.")
    check_optional_int(fisher_samples, "fisher_samples", minimum=1)
    return estimator


#: exact cells per rank between two checkpoints (each group repeats the clean pass once); on a
#: GPU more, so that a group fills a stacked forward
_CELLS_PER_CHECKPOINT = 8
_CELLS_PER_CHECKPOINT_GPU = 256


def _key(a) -> tuple:
    """A cell's identity in a saved state: (layer, head, band, index)."""
    return (int(a.layer), int(a.head), str(a.band), tuple(int(i) for i in a.index))


def _check_callback(on_checkpoint) -> None:
    if on_checkpoint is not None and not callable(on_checkpoint):
        raise TypeError(f"on_checkpoint must be a callable state -> None (or None), got {type(on_checkpoint).__name__}.")


def _resume_state(resume, fingerprint) -> dict:
    """The mutable sweep state: empty, or a resumed one checked against this call."""
    fresh = {"estimates": None, "attribution_clean_sum": None, "rows": {}, "clean_sum": None}
    if resume is None:
        return fresh
    if not isinstance(resume, dict):
        raise TypeError(f"resume must be a state (dict) passed to on_checkpoint by band_sweep, got {type(resume).__name__}.")
    if resume.get("kind") != "tl_wavelet.band_sweep":
        raise ValueError(f"resume must be a state passed to on_checkpoint by band_sweep, got {type(resume).__name__}.")
    check_fingerprint(fingerprint, resume.get("fingerprint"), "The band_sweep state to resume")
    for k in fresh:
        fresh[k] = resume.get(k, fresh[k])
    fresh["rows"] = dict(fresh["rows"])
    return fresh


def _check_distributed(model, tokens, mask, reference, ablations, estimator, world, options) -> None:
    """Every rank was called alike, and there is work for every rank."""
    D.check_same_arguments("band_sweep", {
        "model": model_fingerprint(model)["weights"], "tokens": tensor_digest(tokens),
        "attention_mask": None if mask is None else tensor_digest(mask),
        "reference": digest(reference),
        "cells": len(ablations), **options,
    })
    if estimator is None and world > len(ablations):
        raise ValueError(
            f"{world} ranks but only {len(ablations)} (layer, head, band) cells to run exactly: launch at most "
            f"{len(ablations)} ranks, or sweep more layers/heads/bands."
        )
    if estimator is not None and world > tokens.shape[0]:
        raise ValueError(
            f"{world} ranks but only {tokens.shape[0]} sequences for attribution: launch at most "
            f"{tokens.shape[0]} ranks, or pass more sequences."
        )


def _verified_frame(ablations, est, buckets, verify_top_k, exact) -> pd.DataFrame:
    """Estimates of every cell, with exact columns for the ``verify_top_k`` largest."""
    df = pd.DataFrame([{"layer": a.layer, "head": a.head, "band": a.band, "estimate": est[a]} for a in ablations])
    top = sorted(ablations, key=lambda a: -abs(est[a]))[:verify_top_k]
    exact_cols = ["delta_loss", "se", "n_tokens"] + [f"delta_loss_pos_{lo}_{hi}" for lo, hi in buckets]
    for c in exact_cols:
        df[c] = np.nan
    df["verified"] = False
    if top:
        rows, _ = exact(top)
        pos = {a: i for i, a in enumerate(ablations)}
        for a in top:
            for k, v in rows[a].items():
                df.loc[pos[a], k] = v
            df.loc[pos[a], "verified"] = True
    return df[["layer", "head", "band", *exact_cols, "estimate", "verified"]]


def _collect_reference(model, cells: Target, tokens, reference, layers, batch_size, seed):
    """The target's activations on every swept layer for the reference sequences (or the swept ones)."""
    if reference is None:
        ref_tokens = tokens
    else:
        ref_tokens, _ = _prepare(model, reference, None, seq_len=tokens.shape[1], name="reference")
        if ref_tokens.shape[1] != tokens.shape[1]:
            raise ValueError(
                f"reference sequences must have the swept length {tokens.shape[1]}, got {ref_tokens.shape[1]}."
            )
    names = [hook_name(cells.act, L) for L in layers]
    parts: dict[str, list[Tensor]] = {nm: [] for nm in names}
    for rows in chunks(ref_tokens.shape[0], batch_size, ref_tokens.device):
        _, _, got = clean_pass(model, ref_tokens[rows], [], names)
        for nm in names:
            parts[nm].append(got[nm])
    ref = {L: torch.cat(parts[nm]) for L, nm in zip(layers, names)}
    if reference is None:
        cells.use_swept_as_reference(ref, seed)
        return
    source = None
    if cells.method == "resample":
        g = torch.Generator().manual_seed(int(seed))
        source = torch.randint(ref_tokens.shape[0], (tokens.shape[0],), generator=g, device="cpu")
    cells.use_reference(ref, source)
