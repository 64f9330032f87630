"""Position-encoding comparison (the paper's Table 4): scale sensitivity by re-running.

The paper's scale sensitivity compares a head's wavelet coefficients on a sequence x and
on ``x_alpha``, the same text cut to ``floor(alpha n)`` tokens. For a causal model the cut
sequence's attention is exactly the prefix of the full one, which is what
:func:`tl_wavelet.analyze_heads` uses. A bidirectional encoder (BERT, absolute positions)
attends differently once the text is cut, so here every model is simply run again on the
cut tokens: the same code measures RoPE decoders and absolute-position encoders alike.

Signal: the attention each key position *receives*, averaged over the queries that can
see it (all queries in an encoder, queries ``q >= k`` in a causal model). The paper's
``a_h(t)``, "attention over token positions t", names no query; a per-key average is the
one reading that exists for both kinds of model.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import metrics as M
from ..adapter import facts, hook_name, model_shape, require_hooks, resolve_layers
from ..paper import paper_numbers
from ..signals import received_attention
from ..transforms import dwt_max_level, min_length
from ..validate import check_bool, check_int, check_ratios

__all__ = ["received_attention", "scale_sensitivity_rerun", "position_encoding_table", "paper_table4"]

_ENCODINGS = {"RoPE models (typical)": "rotary", "bert-base (absolute positions)": "absolute",
              "flan-t5-base (T5 bias)": "T5 relative bias"}


def paper_table4() -> pd.DataFrame:
    """The paper's scale-sensitivity rows (its Table 4), from :mod:`tl_wavelet.paper`."""
    nums = paper_numbers()
    nums = nums[nums["metric"].str.startswith("scale_sensitivity_") & nums["model"].isin(list(_ENCODINGS))]
    rows = {}
    for _, r in nums.iterrows():
        row = rows.setdefault(r["model"], {"model": f"{r['model']} [paper]", "position_encoding": _ENCODINGS[r["model"]]})
        alpha = r["metric"].removeprefix("scale_sensitivity_")
        row[f"S_{alpha}"] = f"{r['low']:g}-{r['high']:g}" if pd.isna(r["value"]) else float(r["value"])
    return pd.DataFrame(list(rows.values()))


def scale_sensitivity_rerun(
    model,
    tokens,
    *,
    alphas: tuple[float, ...] = (0.5, 0.25),
    wavelet: str = "db2",
    level: int = 5,
    layers=None,
    batch_size: int = 8,
    progress: bool = True,
    seq_len: int | None = None,
    n_sequences: int | None = None,
    documents=None,
) -> pd.DataFrame:
    """Per-head scale sensitivity S(alpha), running the model on the cut tokens.

    ``tokens`` takes every form of :func:`tl_wavelet.adapter.as_tokens`: token ids
    (``seq_len`` keeps a prefix, ``n_sequences`` the first sequences) or text (a string
    or a list of documents, cut into ``seq_len``-token windows per document; ``seq_len``
    is then required). Windows of one document are not independent: uncertainties
    resample **documents** (text: each window's document; token ids: ``documents``, one id
    per sequence, e.g. from :func:`tl_wavelet.corpus.chunk_documents`; without them every
    sequence is its own unit, and the table says so).

    Returns one row per (layer, head) with ``S_<alpha>`` (paper: 1 - cos of the DWT
    coefficient vectors, each scale cut to the shorter length) and ``S_<alpha>_shares``
    (ours: 1 - cos of the band-energy share vectors), each with ``_se`` (delete-one-document
    jackknife), ``n`` and ``unit`` (what the SE resamples), and ``causal``. ``df.attrs["model"]``
    holds the model-level means (over heads) with their standard errors by the same unit,
    which :func:`position_encoding_table` reports.

    Examples
    --------
    >>> df = scale_sensitivity_rerun(model, tlw.corpus.default_corpus(), seq_len=128,
    ...                              n_sequences=8, progress=False)  # doctest: +SKIP
    """
    from ..inference.resample import ClusterSums, resample
    from ..inference.units import as_clusters, tokens_and_documents

    shape = model_shape(model)
    layers = resolve_layers(shape, layers)
    tokens, documents, unit = tokens_and_documents(model, tokens, documents, seq_len=seq_len, n_sequences=n_sequences,
                                                   name="tokens", default_seq_len=None)
    codes, labels = as_clusters(documents, tokens.shape[0], "documents")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    progress = check_bool(progress, "progress")
    level = check_int(level, "level", minimum=1)
    alphas = check_ratios(alphas, "alphas")
    require_hooks(model, [hook_name("pattern", L) for L in layers], "scale sensitivity reads attention patterns")
    n = tokens.shape[1]
    cuts = {a: math.floor(a * n) for a in alphas}
    for a, m in cuts.items():
        if m < 2 or dwt_max_level(m, wavelet) < 1:
            raise ValueError(
                f"alpha={a} cuts {n} tokens to {m}, too short for one {wavelet} level: "
                f"use sequences of at least {math.ceil(min_length(wavelet, 1) / a)} tokens."
            )
    sums = ClusterSums(len(labels))
    causal_seen = set()
    f = facts(model)
    f.placement()
    stop = hook_name("pattern", layers[-1])
    batches = range(0, tokens.shape[0], batch_size)
    keys = [f"S_{a:g}{suffix}" for a in alphas for suffix in ("", "_shares")]
    for start in tqdm(batches, desc="scale sensitivity", unit="batch", disable=not progress):
        batch = f.to_device(tokens[start : start + batch_size])
        signals: dict[int, dict[int, Tensor]] = {}
        for length in [n] + list(cuts.values()):
            def grab(p, hook, length=length):
                L = int(hook.name.split(".")[1])
                causal_seen.add(bool((p.triu(1) == 0).all()))
                signals.setdefault(length, {})[L] = received_attention(p.detach().double())  # noqa: B023

            f.run_until(batch[:, :length], [(hook_name("pattern", L), grab) for L in layers], stop_at=stop)
        for a, m in cuts.items():
            lev = min(level, dwt_max_level(m, wavelet))
            for paper, key in ((True, f"S_{a:g}"), (False, f"S_{a:g}_shares")):
                per_layer = [M.scale_sensitivity(signals[n][L], signals[m][L], wavelet, lev, paper=paper) for L in layers]
                sums.add(key, torch.stack(per_layer, 1), codes[start : start + batch_size])  # [b, layers, heads]
    g = len(labels)

    def per_head(t):
        return torch.stack([t[k][0] / t[k][1].clamp(min=1) for k in keys], 1)  # [R, keys, layers, heads]

    def per_model(t):
        return per_head(t).flatten(2).mean(-1)  # [R, keys]: heads weighted alike, as the paper averages

    heads = resample(sums, per_head, unit=unit)
    model_level = resample(sums, per_model, unit=unit)
    rows = []
    for li, L in enumerate(layers):
        for h in range(shape.n_heads):
            row = {"layer": L, "head": h, "causal": all(causal_seen)}
            for ki, key in enumerate(keys):
                row[key] = float(heads.value[ki, li, h])
                row[f"{key}_se"] = float(heads.se[ki, li, h])
            row["n"], row["unit"] = g, unit
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["model"] = {key: {"mean": float(model_level.value[ki]), "se": float(model_level.se[ki]),
                               "low": float(model_level.low[ki]), "high": float(model_level.high[ki])}
                         for ki, key in enumerate(keys)}
    df.attrs["n"], df.attrs["unit"], df.attrs["n_sequences"] = g, unit, int(tokens.shape[0])
    return df


def position_encoding_table(results: dict[str, tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Model-level means of :func:`scale_sensitivity_rerun` beside the paper's Table 4 rows.

    ``results`` maps a model name to ``(position_encoding, per_head_dataframe)``. Each model's
    ``_se`` is the standard error of its mean over heads **by document** (the rerun's
    ``df.attrs["model"]``; heads of one model are not independent samples), with ``n`` and
    ``unit`` saying what was resampled. There is one model per position encoding here, so
    no SE covers the difference between models: ``n_models`` says so.
    """
    if not isinstance(results, dict):
        raise TypeError(f"results must be a dict model -> (position_encoding, DataFrame), got {type(results).__name__}.")
    for name, value in results.items():
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], pd.DataFrame)):
            raise TypeError(
                f"results[{name!r}] must be (position_encoding, scale_sensitivity_rerun DataFrame), got {value!r:.80}."
            )
    counts: dict[str, int] = {}
    for encoding, _ in results.values():
        counts[encoding] = counts.get(encoding, 0) + 1
    rows = []
    for name, (encoding, df) in results.items():
        row = {"model": name, "position_encoding": encoding}
        model_level = df.attrs.get("model", {})
        for col in df.columns:
            if col.startswith("S_") and not col.endswith("_se"):
                if col in model_level:
                    row[col] = model_level[col]["mean"]
                    row[f"{col}_se"] = model_level[col]["se"]
                else:  # a table made elsewhere, without per-document sums: no honest SE
                    row[col] = float(df[col].mean())
                    row[f"{col}_se"] = math.nan
        row["n"] = df.attrs.get("n", math.nan)
        row["unit"] = df.attrs.get("unit", "n/a")
        row["n_models"] = counts[encoding]
        rows.append(row)
    return pd.concat([pd.DataFrame(rows), paper_table4()], ignore_index=True)
