"""``analyze_heads``: stream a corpus through a model and report per-head wavelet metrics."""
from __future__ import annotations

import warnings

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import distributed as D
from ..adapter import as_tokens, facts, is_causal, is_text, last_fired
from ..state import check_fingerprint, tensor_digest
from ..validate import check_bool, check_choice, check_int, check_optional_int, check_right_padding
from . import blockwise as B
from .hooks import HeadAccumulator
from .result import HeadReport

#: attention="auto" measures blockwise from this many tokens on (patterns cost n^2 per head)
AUTO_BLOCKWISE_FROM = 1024
ATTENTION_PATHS = ("auto", "patterns", "blockwise")

__all__ = ["analyze_heads", "stream"]


def analyze_heads(
    model,
    tokens_or_texts,
    *,
    signal: str = "offset_profile",
    wavelet: str = "db2",
    level: int = 5,
    layers=None,
    batch_size: int = 8,
    paper: bool = False,
    progress: bool = True,
    seq_len: int | None = None,
    n_sequences: int | None = None,
    rope: bool | None = None,
    drop_first_key: bool = False,
    attention_mask=None,
    attention: str = "auto",
    block_size: int | None = None,
    allow_beyond_context: bool = False,
    on_checkpoint=None,
    resume: dict | None = None,
    documents=None,
) -> "HeadReport":
    """Measure every (layer, head) over a corpus, streaming: nothing is cached.

    Parameters
    ----------
    model : TransformerBridge (TL 4.x) or HookedTransformer (TL 3.x)
    tokens_or_texts : token ids (a ``[batch, pos]`` tensor or NumPy array, a list of ids,
        a list of equal-length lists) or text (a string, or a list of strings cut
        document by document, so no window crosses two texts); see
        :func:`tl_wavelet.adapter.as_tokens`.
    signal : "offset_profile" | "pattern_rows" | "z" (docs/metrics.md)
    wavelet, level : DWT for the wavelet metrics (PyWavelets names)
    layers : layers to measure, None for all (negative indices count from the end)
    batch_size : sequences per forward pass
    paper : follow the paper's literal definitions where ours close its gaps
    seq_len : text: window length (default 256); token ids: keep the first ``seq_len``
        positions (None: all)
    n_sequences : use only the first ``n_sequences`` sequences / windows
    rope : measure RoPE frequency usage (None: when the model is rotary)
    drop_first_key : ignore attention to the first (BOS / sink) token (attention
        signals only; refused with ``signal="z"``)
    attention_mask : ``[batch, pos]`` right-padding mask (1 = real token) for a padded
        batch of token ids. Every metric compares sequences of one length, so the
        sequences are cut to the shortest real length (a warning says how many real
        tokens that drops); causal attention keeps the pads invisible to real tokens.
    attention : "auto" | "patterns" | "blockwise". ``"patterns"`` reads ``hook_pattern``
        (eager attention, batch x heads x n x n per layer). ``"blockwise"`` computes the
        same signals from each layer's queries and keys a block of queries at a time while
        the model runs its fast attention (SDPA), never holding n x n
        (:mod:`tl_wavelet.analysis.blockwise`; TransformerBridge models, checked once per
        model against their own patterns). ``"auto"``: blockwise from
        :data:`AUTO_BLOCKWISE_FROM` tokens on where it is exact for the model, else patterns.
    block_size : queries per block of the blockwise path (None: from a memory budget).
    allow_beyond_context : measure sequences longer than the model's stated context (refused
        otherwise; with a warning when allowed).
    on_checkpoint, resume : save and continue an interrupted analysis (see :func:`stream`):
        ``on_checkpoint(state)`` every 20 batches; ``resume=state`` continues from one.
    documents : token ids only: one document id per sequence (e.g. from
        :func:`tl_wavelet.corpus.chunk_documents`). The standard errors are then by document
        (delete-one-document jackknife): windows of one document are not independent. Text
        (a list of documents) labels its windows itself; a single string and unlabelled ids
        give SEs over sequences. The report says which (``se_unit``, ``n_clusters``).

    Returns
    -------
    HeadReport ; ``.to_dataframe()`` has one row per (layer, head). Under
    ``torch.distributed`` (e.g. ``torchrun``) every rank passes the same arguments, runs its
    share of the batches, and returns the same report as a single-process run (see
    :func:`stream`).

    Example
    -------
    >>> report = analyze_heads(model, tokens, level=4, progress=False)   # doctest: +SKIP
    >>> report.to_dataframe()[["layer", "head", "dominant_band", "scale_tokens"]]  # doctest: +SKIP
    """
    progress = check_bool(progress, "progress")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    from ..inference.units import tokens_and_documents  # lazily: tl_wavelet.inference builds on analysis

    if is_text(tokens_or_texts) and attention_mask is not None:
        raise ValueError("attention_mask applies to padded token ids; text is cut into full windows without one.")
    if attention_mask is None:
        tokens, documents, _ = tokens_and_documents(model, tokens_or_texts, documents, seq_len=seq_len,
                                                    n_sequences=n_sequences, name="tokens_or_texts")
        if isinstance(tokens_or_texts, str):
            documents = None  # one text: its windows are the only units there are
    else:
        full, documents, _ = tokens_and_documents(model, tokens_or_texts, documents, name="tokens_or_texts")
        mask = check_right_padding(attention_mask, full)
        tokens = as_tokens(model, full, seq_len=seq_len, n_sequences=n_sequences, name="tokens_or_texts")
        tokens = _cut_to_real_length(tokens, mask[: tokens.shape[0], : tokens.shape[1]])
        documents = None if documents is None else documents[: tokens.shape[0]]
    acc = HeadAccumulator(
        model,
        layers=layers,
        rope=rope,
        signal=signal,
        wavelet=wavelet,
        level=level,
        paper=paper,
        drop_first_key=drop_first_key,
        documents=documents,
    )
    if D.world_size() > tokens.shape[0]:
        raise ValueError(
            f"{D.world_size()} ranks but only {tokens.shape[0]} sequences: every rank needs at least one. "
            "Pass more sequences or launch fewer ranks (torchrun --nproc_per_node)."
        )
    stream(model, tokens, [acc], batch_size=batch_size, progress=progress, attention=attention, block_size=block_size,
           allow_beyond_context=allow_beyond_context, on_checkpoint=on_checkpoint, resume=resume)
    return acc.report()


def _cut_to_real_length(tokens: Tensor, mask: Tensor) -> Tensor:
    """Right-padded sequences cut to the shortest real length (every metric compares one length)."""
    lengths = mask.sum(1)
    keep = int(lengths.min())
    dropped = int((lengths - keep).sum())
    if dropped:
        warnings.warn(
            f"attention_mask: real lengths range {keep}..{int(lengths.max())}; every sequence is cut to "
            f"{keep} positions (dropping {dropped} real tokens), since the metrics compare sequences of one "
            "length. Group sequences of similar length to keep more.",
            stacklevel=3,
        )
    return tokens[:, :keep]


def _check_accumulators(accumulators, n: int) -> None:
    if not isinstance(accumulators, (list, tuple)):
        raise TypeError(f"accumulators must be a list of HeadAccumulators, got {type(accumulators).__name__}.")
    if not accumulators:
        raise ValueError("accumulators is empty: pass at least one HeadAccumulator.")
    for i, acc in enumerate(accumulators):
        if not all(hasattr(acc, a) for a in ("hooks", "config", "stop_hook")):
            raise TypeError(f"accumulators[{i}] must be a HeadAccumulator (or MultiverseAccumulator), got {type(acc).__name__}.")
        try:
            acc.config.check_length(n)
        except ValueError as e:
            raise ValueError(f"tokens: {e}") from None


def stream(model, tokens, accumulators, *, batch_size: int = 8, progress: bool = True, attention: str = "patterns",
           block_size: int | None = None, allow_beyond_context: bool = False, checkpoint_every: int = 20,
           on_checkpoint=None, resume: dict | None = None) -> None:
    """Run ``tokens`` through ``model`` in batches with every accumulator's hooks at once.

    One forward pass feeds several accumulators (e.g. default and ``paper=True`` metrics,
    or several signals), and each pass ends after the last hook any of them needs.
    ``tokens`` takes the forms of :func:`tl_wavelet.adapter.as_tokens` (token ids).
    ``attention`` / ``block_size``: which forward measures the heads (see :func:`analyze_heads`);
    the blockwise path feeds HeadAccumulators only. Sequences longer than the model's stated
    context are refused unless ``allow_beyond_context``.

    Resumable (as :func:`~tl_wavelet.ablation.band_sweep`): with ``on_checkpoint``, the state
    (plain containers: ``torch.save`` it) is handed over after every ``checkpoint_every``
    batches per rank; ``resume=state`` continues from one (a state of other tokens, batch size
    or accumulators is refused, naming what differs) and ends as an uninterrupted call.

    Distributed: when ``torch.distributed`` is initialised with several ranks, every rank
    must pass the same ``tokens`` and accumulators (checked by one ``all_gather`` of
    digests). The batches of a single-process run (``0:b, b:2b, ...``) are dealt out in
    contiguous blocks, each rank runs its own, and the accumulators' float64 sums are
    gathered and merged in rank order, so afterwards every rank's accumulators hold the
    sums of the whole ``tokens`` (equal to one process up to float64 rounding). More ranks
    than batches leaves ranks idle (with a warning that suggests a smaller ``batch_size``;
    :func:`analyze_heads` refuses more ranks than sequences). A rank that raises makes every rank raise with its
    error (:func:`tl_wavelet.distributed.run_collectively`).
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    progress = check_bool(progress, "progress")
    block_size = check_optional_int(block_size, "block_size", minimum=1)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
    if on_checkpoint is not None and not callable(on_checkpoint):
        raise TypeError(f"on_checkpoint must be a callable state -> None (or None), got {type(on_checkpoint).__name__}.")
    tokens = as_tokens(model, tokens)
    _check_accumulators(accumulators, tokens.shape[1])
    f = facts(model)
    f.placement()  # a model the backend cannot run is refused before any batch
    f.check_context(tokens.shape[1], check_bool(allow_beyond_context, "allow_beyond_context"))
    forward = _batch_runner(f, accumulators, _attention_path(f, accumulators, tokens.shape[1], attention), block_size,
                            progress and tokens.shape[1] >= 4096)
    if on_checkpoint is None and resume is None:
        _stream_pass(tokens, accumulators, forward, batch_size, progress)
        return
    fingerprint = stream_state(tokens, batch_size, accumulators, 0)["fingerprint"]
    done = _resumed(resume, fingerprint, accumulators)
    step, n = checkpoint_every * batch_size * D.world_size(), tokens.shape[0]
    bar = tqdm(total=n, initial=done, desc="analyze_heads", unit="seq", disable=not progress or D.rank() != 0)
    try:
        while done < n:
            stop = min(done + step, n)
            with warnings.catch_warnings():  # the last slice may leave ranks idle: expected here
                warnings.filterwarnings("ignore", message=".*some ranks idle.*")
                _stream_pass(tokens[done:stop], accumulators, forward, batch_size, False, first=done)
            done = stop
            if on_checkpoint is not None:
                on_checkpoint(stream_state(tokens, batch_size, accumulators, done))
            bar.update(stop - bar.n)
    finally:
        bar.close()


def stream_state(tokens: Tensor, batch_size: int, accumulators, done: int) -> dict:
    """What :func:`stream` hands ``on_checkpoint`` once ``done`` sequences of ``tokens`` are in ``accumulators``."""
    fingerprint = {"tokens": tensor_digest(tokens), "batch_size": batch_size,
                   "accumulators": [getattr(acc, "fingerprint", type(acc).__name__) for acc in accumulators]}
    return {"kind": "tl_wavelet.stream", "fingerprint": fingerprint, "done": int(done),
            "accumulators": [acc.state_dict() for acc in accumulators]}


def _resumed(resume, fingerprint: dict, accumulators) -> int:
    """Sequences a resumed state already holds (its sums loaded into ``accumulators``); 0 without one."""
    if resume is None:
        return 0
    if not isinstance(resume, dict) or resume.get("kind") != "tl_wavelet.stream":
        raise TypeError(f"resume must be a state passed to on_checkpoint by stream, got {type(resume).__name__}.")
    check_fingerprint(fingerprint, resume.get("fingerprint"), "The stream state to resume")
    for acc, sd in zip(accumulators, resume["accumulators"], strict=True):
        acc.load_state_dict(sd)
    return int(resume["done"])


def _stream_pass(tokens, accumulators, forward, batch_size: int, progress: bool, first: int = 0) -> None:
    """Every batch of ``tokens`` through ``forward``: on one process, or dealt out over the ranks and merged.

    ``first``: how many sequences the accumulators held before ``tokens`` (a resumed stream).
    """
    world, rank = D.world_size(), D.rank()
    n = tokens.shape[0]

    def run(ranges) -> None:
        for start, stop_ in tqdm(ranges, desc="analyze_heads", unit="batch", disable=not progress or rank != 0):
            try:
                forward(tokens[start:stop_])
            except BaseException:  # this batch counts nowhere: drop what its pass fed (then raise)
                for acc in accumulators:
                    if hasattr(acc, "_rollback"):
                        acc._rollback()
                raise

    if world == 1:
        run(D.batch_ranges(n, batch_size))
        return
    _distributed_pass(tokens, accumulators, run, batch_size, first)


def _distributed_pass(tokens, accumulators, run, batch_size: int, first: int) -> None:
    """This rank's batches through ``run``, then every rank's sums gathered and merged in rank order."""
    world, rank, n = D.world_size(), D.rank(), tokens.shape[0]
    if rank == 0 and world > -(-n // batch_size):
        warnings.warn(
            f"{n} sequences make {-(-n // batch_size)} batches of {batch_size} for {world} ranks: some ranks "
            f"idle. batch_size={-(-n // world)} would use every rank.",
            stacklevel=2,
        )
    for acc in accumulators:
        if not all(hasattr(acc, m) for m in ("state_dict", "load_state_dict", "merge", "reset")):
            raise TypeError(f"Distributed streaming needs mergeable accumulators; {type(acc).__name__} has no state_dict/merge/reset.")
    D.check_same_arguments("analysis.stream", {
        "tokens": tensor_digest(tokens), "batch_size": batch_size,
        **{f"accumulator {i}": acc.fingerprint for i, acc in enumerate(accumulators)},
    })
    before = [acc.state_dict() for acc in accumulators]
    for acc in accumulators:
        acc.reset()  # gather only this call's sums, not what every rank already holds

    ranges = D.batch_ranges(n, batch_size, rank, world)

    def local():
        for acc in accumulators:  # document labels are in feed order: this rank's sequences start further on
            if hasattr(acc, "_doc_offset"):
                acc._doc_offset = first + (ranges[0][0] if ranges else 0)
        run(ranges)
        return [acc.state_dict() for acc in accumulators]

    try:
        parts = D.run_collectively(local, "analysis.stream")
    finally:
        for acc, sd in zip(accumulators, before, strict=True):
            if hasattr(acc, "_doc_offset"):
                acc._doc_offset = 0
            acc.load_state_dict(sd)
    for part in parts:  # rank order on every rank: the same sums everywhere
        for acc, sd in zip(accumulators, part, strict=True):
            acc.merge(sd)


def _batch_runner(f, accumulators, path: str, block_size: int | None, bar: bool):
    """``forward(batch)``: one forward pass feeding every accumulator, by hooks on the patterns or blockwise."""
    for acc in accumulators:
        acc.attention_path = path
    if path == "blockwise":
        return _blockwise_batches(f, accumulators, block_size, bar)
    hooks = [h for acc in accumulators for h in acc.hooks()]
    stop = last_fired(acc.stop_hook for acc in accumulators)

    def forward(batch) -> None:
        f.run_until(batch, hooks, stop_at=stop)

    return forward


def _attention_path(f, accumulators, n: int, attention: str) -> str:
    """``"patterns"`` or ``"blockwise"``: what ``attention`` means for this model, length and accumulators."""
    check_choice(attention, "attention", ATTENTION_PATHS)
    if attention == "patterns" or (attention == "auto" and n < AUTO_BLOCKWISE_FROM):
        return "patterns"
    why = None
    if not all(hasattr(acc, "_feed_attention") for acc in accumulators):
        why = "the definition multiverse reads full attention patterns"
    elif not is_causal(f.model):
        why = "the model is a bidirectional encoder (the blockwise rows assume causal attention)"
    else:
        why = B.check_against_patterns(f)
    if why is None:
        return "blockwise"
    if attention == "blockwise":
        raise ValueError(f"attention='blockwise' is not available here: {why}. Use attention='patterns'.")
    warnings.warn(f"attention='auto' at {n} tokens measures from attention patterns (n x n per head): the blockwise "
                  f"path is not available here ({why}).", stacklevel=4)
    return "patterns"


def _blockwise_batches(f, accumulators, block_size: int | None, bar: bool):
    """A batch runner for the blockwise path: one pass over each layer's query blocks serves every accumulator."""
    needed = sorted({L for acc in accumulators for L in acc.layers})

    def forward(batch) -> None:
        progress = tqdm(total=None, desc="blockwise attention", unit="block", disable=not bar, leave=False)

        def feed(layer, query, key, value, mask, kwargs):
            users = [acc for acc in accumulators if layer in acc.layers]
            if not users:
                return
            cfgs = [acc.config for acc in users if acc.config.signal != "z"]
            wants_z = any(acc.config.signal == "z" for acc in users)
            signals, z = B.block_signals(query, key, cfgs, scaling=B._scaling(kwargs, query), softcap=kwargs.get("softcap"),
                                         sliding_window=kwargs.get("sliding_window"), mask=mask, block=block_size,
                                         on_block=lambda: progress.update(1), value=value if wants_z else None)
            signals = iter(signals)
            # a NaN/inf anywhere in a sequence's queries or keys makes its sum non-finite: one reduction, no host wait
            bad = ~torch.isfinite(query.sum((1, 2, 3), dtype=torch.float32) + key.sum((1, 2, 3), dtype=torch.float32))
            for acc in users:
                acc._feed_attention(layer, query, key, z, None if acc.config.signal == "z" else next(signals), bad)

        try:
            B.blockwise_forward(f.model, f.backend, f.to_device(batch), B.BlockwiseRun(feed, last_layer=needed[-1]))
        finally:
            progress.close()

    return forward
