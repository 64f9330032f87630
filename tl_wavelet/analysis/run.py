"""``analyze_heads``: stream a corpus through a model and report per-head wavelet metrics."""
from __future__ import annotations

from tqdm.auto import tqdm

from ..adapter import as_tokens, last_fired, run_until
from .hooks import HeadAccumulator
from .result import HeadReport

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
    seq_len: int = 256,
    n_sequences: int | None = None,
    rope: bool | None = None,
    drop_first_key: bool = False,
) -> "HeadReport":
    """Measure every (layer, head) over a corpus, streaming: nothing is cached.

    Parameters
    ----------
    model : TransformerBridge (TL 4.x) or HookedTransformer (TL 3.x)
    tokens_or_texts : LongTensor [batch, pos], a string, or a list of strings. Text is
        tokenised and cut into ``seq_len``-token windows starting with BOS.
    signal : "offset_profile" | "pattern_rows" | "z" (docs/metrics.md)
    wavelet, level : DWT for the wavelet metrics (PyWavelets names)
    layers : layers to measure, None for all
    batch_size : sequences per forward pass
    paper : follow the paper's literal definitions where ours close its gaps
    rope : measure RoPE frequency usage (None: when the model is rotary)
    drop_first_key : ignore attention to the first (BOS / sink) token

    Returns
    -------
    HeadReport ; ``.to_dataframe()`` has one row per (layer, head).

    Example
    -------
    >>> report = analyze_heads(model, tokens, level=4, progress=False)   # doctest: +SKIP
    >>> report.to_dataframe()[["layer", "head", "dominant_band", "scale_tokens"]]  # doctest: +SKIP
    """
    acc = HeadAccumulator(
        model,
        layers=layers,
        rope=rope,
        signal=signal,
        wavelet=wavelet,
        level=level,
        paper=paper,
        drop_first_key=drop_first_key,
    )
    tokens = as_tokens(model, tokens_or_texts, seq_len=seq_len, n_sequences=n_sequences)
    stream(model, tokens, [acc], batch_size=batch_size, progress=progress)
    return acc.report()


def stream(model, tokens, accumulators, *, batch_size: int = 8, progress: bool = True) -> None:
    """Run ``tokens`` through ``model`` in batches with every accumulator's hooks at once.

    One forward pass feeds several accumulators (e.g. default and ``paper=True`` metrics,
    or several signals), and each pass ends after the last hook any of them needs.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    for acc in accumulators:
        acc.config.check_length(tokens.shape[1])
    hooks = [h for acc in accumulators for h in acc.hooks()]
    stop = last_fired(acc.stop_hook for acc in accumulators)
    device = next(model.parameters()).device
    batches = range(0, tokens.shape[0], batch_size)
    for start in tqdm(batches, desc="analyze_heads", unit="batch", disable=not progress):
        run_until(model, tokens[start : start + batch_size].to(device), hooks, stop_at=stop)
