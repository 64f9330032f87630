"""Drill down into one head on one text: per-token band decomposition, shown with CircuitsVis.

:func:`head` runs the model once on the text (plus one run per band with ``ablate=True``)
and returns a :class:`HeadView`: a per-token DataFrame and a CircuitsVis display (tokens
coloured per band, the band-decomposed attention patterns) that works offline.

What the bands are
------------------
The band ablation (:func:`~tl_wavelet.ablation.band_ablation_hook`) splits the head's
output ``z`` over query positions into causal bands, ``z = sum_b Z_b`` with
``Z_b = causal_bands(z)[b]`` (:func:`~tl_wavelet.transforms.causal_bands`). Because
``z[t] = sum_s a[t, s] v[s]`` is linear in the attention pattern ``a``, the same split of
``a`` over its query axis gives the attention each band reads with:
``A_b = causal_bands(a, dim=0)[b]``, ``sum_b A_b = a`` row by row, and ``Z_b = A_b @ v``
exactly. ``A_J`` is the part of the head's reading that stays the same over about ``2^J``
consecutive queries (an attention sink, a running average), ``D_1`` the part that changes
from one token to the next (a previous-token head). Removing band ``b`` in the ablation is
the same as making the head attend with ``a - A_b``.

Per token ``t`` the table holds ``attn_<band>``, the band's share of the attention it
reads (``|A_b[t]|_1 / sum_b |A_b[t]|_1``), ``z_norm_<band>`` (``|Z_b[t]|``), the clean
next-token ``loss`` at ``t`` (predicting token ``t + 1``) and, with ``ablate=True``,
``delta_loss_<band>``: the change of that loss when the band is removed (zero ablation).

Texts longer than the model's context are truncated to its first ``n_ctx`` tokens with a
warning (``truncate=False`` refuses them instead).

Examples
--------
>>> v = tlw.view.head(model, "The cat sat on the mat.", layer=3, head=5, ablate=True)  # doctest: +SKIP
>>> v  # doctest: +SKIP
>>> v.to_dataframe()  # doctest: +SKIP

In a notebook ``v`` shows the tokens coloured per band and the band attention patterns;
``v.to_dataframe()`` has one row per token.
"""
from __future__ import annotations

import html as _html
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from uuid import uuid4

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from .ablation.positional import band_ablation_hook, resolve_bands
from .adapter import facts, hook_name, model_shape, require_hooks, resolve_heads, resolve_layers, vocab_size
from .transforms import band_labels, causal_bands
from .validate import check_bool

# the report's CircuitsVis helpers (circuitsvis_html, _parts, _script) are internal
__all__ = ["head", "compare_heads", "top_heads", "HeadView", "HeadViews"]


# ------------------------------------------------------------------ CircuitsVis, offline
def _circuitsvis_js() -> str:
    try:
        import circuitsvis
    except ImportError as e:  # an optional dependency: say how to get it
        raise ImportError(
            "tl_wavelet.view draws with CircuitsVis: pip install circuitsvis (or tl_wavelet[view])."
        ) from e
    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    # the bundled build, inlined: the page loads nothing from the network
    return path.read_text(encoding="utf-8").replace("</script>", "")


def circuitsvis_html(elements: Sequence[tuple[str, dict]], titles: Sequence[str] | None = None) -> str:
    """Render CircuitsVis components offline, the bundled JavaScript inlined once for all.

    ``circuitsvis``'s own objects inline the 1.3 MB bundle once per widget (and link its
    CDN when they find a network); this puts several widgets on one page with one copy.

    Parameters
    ----------
    elements : ``(component name, props)`` pairs, e.g.
        ``("ColoredTokensMulti", {"tokens": [...], "values": [[...]], "labels": [...]})``
    titles : optional heading per element

    Returns
    -------
    str : an HTML fragment (``<div>`` + one ``<script type="module">``).
    """
    divs, calls = circuitsvis_parts(elements, titles)
    return f'<div class="tlw-view">{divs}{circuitsvis_script(calls)}</div>'


def circuitsvis_parts(elements: Sequence[tuple[str, dict]], titles: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """The ``<div>`` placeholders and the render calls of :func:`circuitsvis_html`, apart.

    A page with widgets in several places puts each ``divs`` where it belongs and all the
    calls in one :func:`circuitsvis_script` at the end (a module script's names are its own,
    so the calls must share the script that holds the bundle).
    """
    from circuitsvis.utils.convert_props import convert_props

    ids = [f"tlw-cv-{uuid4().hex[:12]}" for _ in elements]
    titles = list(titles) if titles is not None else [""] * len(elements)
    divs = "".join(
        (f'<div style="font-weight:600;margin-top:8px">{_html.escape(t)}</div>' if t else "")
        + f'<div id="{i}" style="margin: 6px 0 15px 0;"></div>'
        for i, t in zip(ids, titles)
    )
    calls = [f"CircuitsVis.render({json.dumps(i)}, CircuitsVis.{name}, {convert_props(props)});"
             for i, (name, props) in zip(ids, elements)]
    return divs, calls


def circuitsvis_script(calls: Sequence[str]) -> str:
    """One ``<script type="module">``: the bundled CircuitsVis build, then ``calls``."""
    body = "\n".join(calls)
    return f'<script type="module">\n{_circuitsvis_js()}\n{body}\n</script>'


# ------------------------------------------------------------------ results
@dataclass
class HeadView:
    """One head on one text. ``table`` has one row per token (see :mod:`tl_wavelet.view`).

    Attributes
    ----------
    tokens : the text's tokens as strings (BOS included)
    attention : ``[q, k]`` the head's attention pattern
    band_attention : ``[band, q, k]`` its split over query positions (sums to ``attention``)
    z_bands : ``[band, pos, d_head]`` the head output's band components (sum to ``hook_z``)
    """

    layer: int
    head: int
    labels: list[str]
    tokens: list[str]
    attention: Float[Tensor, "q k"] = field(repr=False)
    band_attention: Float[Tensor, "band q k"] = field(repr=False)
    z_bands: Float[Tensor, "band pos d_head"] = field(repr=False)
    table: pd.DataFrame = field(repr=False)

    @property
    def name(self) -> str:
        return f"L{self.layer}H{self.head}"

    def to_dataframe(self) -> pd.DataFrame:
        """One row per token: position, token, attn_<band>, z_norm_<band>, loss, delta_loss_<band>."""
        return self.table.copy()

    def _elements(self) -> tuple[list[tuple[str, dict]], list[str]]:
        cols = [c for c in self.table.columns if c.startswith(("attn_", "z_norm_", "delta_loss_"))]
        values = self.table[cols].to_numpy(float)
        values = np.where(np.isfinite(values), values, 0.0)  # the last token has no next-token loss
        names = [c.replace("attn_", "attention share ").replace("z_norm_", "|z| ").replace("delta_loss_", "Δloss without ")
                 for c in cols]
        pats = torch.cat([self.attention[None], self.band_attention]).numpy()
        m = float(np.abs(pats).max()) or 1.0
        toks = _display_tokens(self.tokens)
        return (
            [
                ("ColoredTokensMulti", {"tokens": toks, "values": values, "labels": names}),
                ("AttentionHeads", {
                    "attention": pats, "tokens": toks,
                    "attentionHeadNames": [f"{self.name} attention"] + [f"{self.name} band {b}" for b in self.labels],
                    "maxValue": m, "minValue": -m, "negativeColor": "blue", "positiveColor": "red",
                }),
            ],
            [f"{self.name}: per token (pick a value; hover a token for all)",
             f"{self.name}: attention, and the part of it each band reads with (blue = negative)"],
        )

    def html(self) -> str:
        """The CircuitsVis display as an HTML fragment that works offline (no network URL)."""
        return circuitsvis_html(*self._elements())

    def _repr_html_(self) -> str:
        return self.html()


@dataclass
class HeadViews:
    """Several heads on the same text (:func:`compare_heads`); indexable like a list."""

    views: list[HeadView]

    def __getitem__(self, i) -> HeadView:
        return self.views[i]

    def __len__(self) -> int:
        return len(self.views)

    def to_dataframe(self) -> pd.DataFrame:
        """Every head's per-token table, stacked, with ``layer`` and ``head`` columns first."""
        return pd.concat([v.table.assign(layer=v.layer, head=v.head) for v in self.views], ignore_index=True)[
            ["layer", "head", *self.views[0].table.columns]
        ]

    def wide(self, column: str = "attn_{band}") -> pd.DataFrame:
        """Side by side: one row per token, one column per (head, band) of ``column``."""
        v0 = self.views[0]
        out = v0.table[["position", "token"]].copy()
        for v in self.views:
            for b in v.labels:
                c = column.format(band=b)
                if c in v.table.columns:
                    out[f"{v.name} {c}"] = v.table[c].to_numpy()
        return out

    def html(self) -> str:
        """All heads in one offline CircuitsVis display (attention side by side, tokens per head and band)."""
        return circuitsvis_html(*self._elements())

    def _elements(self) -> tuple[list[tuple[str, dict]], list[str]]:
        v0 = self.views[0]
        toks = _display_tokens(v0.tokens)
        pats = np.stack([v.attention.numpy() for v in self.views])
        share_cols = [(v, f"attn_{b}") for v in self.views for b in v.labels]
        values = np.stack([v.table[c].to_numpy(float) for v, c in share_cols], axis=1)
        labels = [f"{v.name} attention share {c[5:]}" for v, c in share_cols]
        extra = []
        for v in self.views:
            for c in v.table.columns:
                if c.startswith("delta_loss_"):
                    extra.append((f"{v.name} Δloss without {c[11:]}", np.nan_to_num(v.table[c].to_numpy(float))))
        if extra:
            values = np.concatenate([values, np.stack([e[1] for e in extra], axis=1)], axis=1)
            labels += [e[0] for e in extra]
        return (
            [("AttentionHeads", {"attention": pats, "tokens": toks, "attentionHeadNames": [v.name for v in self.views]}),
             ("ColoredTokensMulti", {"tokens": toks, "values": values, "labels": labels})],
            ["attention patterns side by side (click a head)",
             "per token: pick a head and band (attention share, Δloss without it); hover a token for all values"],
        )

    def _repr_html_(self) -> str:
        return self.html()


def top_heads(sweep: pd.DataFrame, n: int = 3) -> list[tuple[int, int, str]]:
    """The ``n`` heads with the largest exact band-ablation effects in a band sweep, one band each.

    Exact values only (``delta_loss``; with attribution sweeps these are the verified
    cells), ranked by ``|delta_loss|``; each head appears once, with its largest band.

    Examples
    --------
    >>> df = pd.DataFrame({"layer": [1, 1, 2], "head": [3, 3, 0], "band": ["A5", "D1", "D2"],
    ...                    "delta_loss": [0.2, 0.1, np.nan]})
    >>> top_heads(df)
    [(1, 3, 'A5')]
    """
    if not isinstance(sweep, pd.DataFrame) or not {"layer", "head", "band", "delta_loss"} <= set(sweep.columns):
        raise ValueError("top_heads needs band_sweep's DataFrame (columns layer, head, band, delta_loss).")
    exact = sweep[sweep["delta_loss"].notna()]
    exact = exact.reindex(exact["delta_loss"].abs().sort_values(ascending=False).index)
    out, seen = [], set()
    for L, h, b in zip(exact["layer"], exact["head"], exact["band"]):
        if (int(L), int(h)) not in seen:
            seen.add((int(L), int(h)))
            out.append((int(L), int(h), str(b)))
        if len(out) == n:
            break
    return out


def _display_tokens(tokens: list[str]) -> list[str]:
    # CircuitsVis draws whitespace tokens as nothing; show them
    return [t.replace("\n", "⏎") if t.strip() else (t.replace(" ", "·").replace("\n", "⏎") or "∅") for t in tokens]


# ------------------------------------------------------------------ input checks
def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}.")
    return int(value)


def _tokens(model, text, truncate: bool) -> Tensor:
    if isinstance(text, str):
        if not text:
            raise ValueError("text is empty: pass a string of at least a few words.")
        if getattr(model, "tokenizer", None) is None:  # TransformerLens would assert without a message
            raise ValueError("text is a string, but the model has no tokenizer (model.tokenizer is None): pass the "
                             "token ids as a tensor, or load the model with its tokenizer.")
        toks = model.to_tokens(text, truncate=False)  # TL would cut it silently; we say so (below)
    elif isinstance(text, Tensor):
        if text.dtype not in (torch.int32, torch.int64) or text.ndim not in (1, 2) or (text.ndim == 2 and text.shape[0] != 1):
            raise ValueError(f"text as tokens must be an integer tensor [pos] or [1, pos], got {text.dtype} {tuple(text.shape)}.")
        toks = text.reshape(1, -1).long()
        n_vocab = vocab_size(model)
        if toks.numel() and n_vocab is not None and not (0 <= int(toks.min()) and int(toks.max()) < n_vocab):
            raise ValueError(f"text holds token ids outside the model's vocabulary 0..{n_vocab - 1} "
                             f"(min {int(toks.min())}, max {int(toks.max())}).")
    else:
        raise TypeError(f"text must be a string or a token tensor, got {type(text).__name__}.")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and toks.shape[1] > n_ctx:
        if not truncate:
            raise ValueError(
                f"text is {toks.shape[1]} tokens, longer than the model's context ({n_ctx}): shorten it, or pass "
                "truncate=True to keep its first n_ctx tokens."
            )
        warnings.warn(f"text is {toks.shape[1]} tokens; keeping the first {n_ctx} (the model's context).", stacklevel=3)
        toks = toks[:, :n_ctx]
    return toks


def _level(level, n: int) -> int:
    if n < 2:
        raise ValueError(f"text has {n} token(s); a band decomposition needs at least 2.")
    if level is None:
        return min(5, int(math.log2(n)))  # the causal bands of level J need 2^J positions
    level = _check_int("level", level)
    if level < 1 or 2**level > n:
        raise ValueError(
            f"level {level} needs at least 2^{level} = {2**level} tokens for its bands to exist, the text has {n}: "
            f"use level <= {int(math.log2(n))} (or level=None) or a longer text."
        )
    return level


# ------------------------------------------------------------------ the work
def _views(model, text, heads, bands, level, band_wavelet, ablate, truncate) -> list[HeadView]:
    shape = model_shape(model)
    pairs = []
    for lh in heads:
        if not (isinstance(lh, (tuple, list)) and len(lh) == 2):
            raise TypeError(f"heads are (layer, head) pairs, e.g. [(1, 3), (2, 0)]; got {lh!r}.")
        (L,) = resolve_layers(shape, [_check_int("layer", lh[0])], name="layer")
        (h,) = resolve_heads(shape, [_check_int("head", lh[1])], name="head")
        pairs.append((L, h))
    if not pairs:
        raise ValueError("heads is empty: pass at least one (layer, head) pair.")
    toks = _tokens(model, text, truncate)
    n = toks.shape[1]
    level = _level(level, n)
    labels = band_labels(level)
    chosen = [labels[i] for i in resolve_bands(bands, level)]
    layers = sorted({L for L, _ in pairs})
    names = [hook_name(k, L) for L in layers for k in ("pattern", "z")]
    require_hooks(model, names, "needed by tl_wavelet.view")
    toks = facts(model).to_device(toks)
    with torch.no_grad():
        # run_with_cache removes its hooks itself, also when the forward raises
        logits, cache = model.run_with_cache(toks, names_filter=lambda nm: nm in names)
        clean = _token_loss(logits, toks)
        str_tokens = _str_tokens(model, toks[0])
        out = []
        for L, h in pairs:
            a = cache[hook_name("pattern", L)][0, h].double().cpu()
            z = cache[hook_name("z", L)][0, :, h].double().cpu()
            band_a = causal_bands(a, band_wavelet, level, dim=0)  # over queries: the ablation's split
            band_z = causal_bands(z, band_wavelet, level, dim=0)
            mass = band_a.abs().sum(-1)  # [band, q]
            share = mass / mass.sum(0, keepdim=True).clamp(min=1e-30)
            tab = {"position": np.arange(n), "token": str_tokens}
            for j, b in enumerate(labels):
                tab[f"attn_{b}"] = share[j].numpy()
            for j, b in enumerate(labels):
                tab[f"z_norm_{b}"] = band_z[j].norm(dim=-1).numpy()
            tab["loss"] = np.append(clean, np.nan)
            if ablate:
                for b in chosen:
                    hook = band_ablation_hook(L, h, [b], band_wavelet=band_wavelet, level=level, model=model)
                    ablated = _token_loss(model.run_with_hooks(toks, fwd_hooks=[hook], return_type="logits"), toks)
                    tab[f"delta_loss_{b}"] = np.append(ablated - clean, np.nan)
            out.append(HeadView(L, h, labels, str_tokens, a.float(), band_a.float(), band_z.float(), pd.DataFrame(tab)))
    return out


def _str_tokens(model, ids: Tensor) -> list[str]:
    """The tokens as text; without a tokenizer, the ids themselves (TransformerLens would assert)."""
    if getattr(model, "tokenizer", None) is None:
        return [f"[{int(i)}]" for i in ids]
    return [str(t) for t in model.to_str_tokens(ids)]


def _token_loss(logits: Float[Tensor, "1 pos vocab"], toks) -> np.ndarray:
    """Next-token cross-entropy at positions 0..n-2 (float64), as numpy."""
    logp = logits[0, :-1].double().log_softmax(-1)
    return (-logp.gather(-1, toks[0, 1:, None])[:, 0]).cpu().numpy()


def head(
    model,
    text: str | Tensor,
    layer: int,
    head: int,
    *,
    bands: str | Sequence[str] | None = None,
    ablate: bool = False,
    level: int | None = None,
    band_wavelet: str = "haar",
    truncate: bool = True,
) -> HeadView:
    """One head on one text: band-split attention and output per token, optionally ablated.

    Parameters
    ----------
    model : TransformerBridge (TL 4.x) or HookedTransformer (TL 3.x); any attention model
        (the positional bands need no RoPE)
    text : a string (tokenised with the model's tokenizer, BOS prepended) or a token tensor
    layer, head : the head
    bands : bands to ablate with ``ablate=True`` (names such as ``"A5"``, ``"D1"``; default all)
    ablate : also measure each band's per-token loss change (one forward per band)
    level : decomposition depth (default: 5, or less for texts shorter than 32 tokens)
    band_wavelet : the causal bands' filter (``"haar"``, as the ablation's default)
    truncate : texts longer than the context keep their first ``n_ctx`` tokens with a
        warning; ``False`` raises instead

    Returns
    -------
    HeadView ; ``.to_dataframe()`` one row per token, ``.html()`` the offline CircuitsVis view.

    Examples
    --------
    >>> v = head(model, "w5 w6 w7 w8 w9 w10 w11 w12", layer=0, head=0)   # doctest: +SKIP
    >>> v.to_dataframe().columns[:4].tolist()                          # doctest: +SKIP
    ['position', 'token', 'attn_A3', 'attn_D3']
    """
    return _views(model, text, [(layer, head)], bands, level, band_wavelet, check_bool(ablate, "ablate"),
                  check_bool(truncate, "truncate"))[0]


def compare_heads(
    model,
    text: str | Tensor,
    heads: Sequence[tuple[int, int]],
    *,
    bands: str | Sequence[str] | None = None,
    ablate: bool = False,
    level: int | None = None,
    band_wavelet: str = "haar",
    truncate: bool = True,
) -> HeadViews:
    """Two or more heads on the same text, side by side (one forward pass for all of them).

    ``heads`` are ``(layer, head)`` pairs; the other parameters are those of :func:`head`.

    Returns
    -------
    HeadViews ; ``.to_dataframe()`` (stacked), ``.wide("attn_{band}")`` (side by side), ``.html()``.

    Examples
    --------
    >>> vs = compare_heads(model, text, [(1, 3), (2, 0)])      # doctest: +SKIP
    >>> vs.wide("z_norm_{band}")                               # doctest: +SKIP
    """
    return HeadViews(_views(model, text, list(heads), bands, level, band_wavelet, check_bool(ablate, "ablate"),
                            check_bool(truncate, "truncate")))
