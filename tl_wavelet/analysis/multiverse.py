"""A definition multiverse: every reading of the paper's open metric choices, in one pass.

The paper (arXiv 2410.18067 v4) defines its metrics in words that leave choices open:
which query rows form a head's signal a_h(t), whether the DC term counts in the power
spectrum, the window and padding, whether the attention sink counts, over what the
correlation rho runs, which wavelet and level, how x_alpha "samples" the sequence. A
*reading* fixes every choice a metric depends on; :func:`multiverse` computes every
reading of every metric the paper publishes, from one streamed forward pass (one hook per
layer feeds all readings), with standard errors over sequences.

Axes (docs/metrics.md, "The multiverse", quotes the paper's words behind each):

======================  =========================================================
``signal``              offset_profile, last_row, pattern_rows, received
``first_key``           kept, dropped (the attention sink, renormalised away)
``dc``                  removed, kept (the spectrum's mean term)
``window``              hann, none
``padding``             2n, pow2, none (DFT length)
``correlation``         sequences (per head), rows (per head, within a sequence),
                        heads (per layer, within a sequence)
``wavelet``             any discrete PyWavelets name (default db2, haar, db4)
``level``               positive int or "max" (deepest the sequence supports)
``entropy_norm``        normalized, raw (wavelet entropy)
``sampling``            prefix, decimate (x_alpha of the scale sensitivity)
``alignment``           coefficients, shares (how S compares the two DWTs)
======================  =========================================================

Each metric depends on some axes only (:data:`METRIC_AXES`); its readings cross those.
Structurally meaningless crossings are not formed: ``correlation="rows"`` needs the
multi-row ``pattern_rows`` signal, and the wavelet metrics (wavelet entropy, scale
sensitivity) use the single full-length signals (``pattern_rows`` is left out there, its
wavelet metrics are those of ``last_row``).

Standard errors: the sums of every reading are kept per **document** (``groups``: each
sequence's document, e.g. from :func:`tl_wavelet.corpus.chunk_documents`; text passed to
:func:`multiverse` is labelled so by itself), and the SE is the delete-one-document
jackknife of the reading's value (mean over layers and heads), so it also covers rho,
which has no per-sequence value, and respects that windows of one document are not
independent. Without document labels, sequence i goes to group i mod ``n_groups`` and the
table says that its unit is a sequence group. Memory does not grow with the number of sequences.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Iterable, Mapping

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from .. import metrics as M
from ..adapter import ModelShape, hook_name, model_shape, require_hooks, resolve_layers
from ..paper import paper_numbers
from ..signals import offset_aligned_rows
from ..stats import MIN_CORRELATION_N, to_host
from ..transforms import dwt_max_level, min_length
from ..validate import check_int
from .config import MetricConfig
from .hooks import _signals_from_pattern, spectral_metrics
from .run import stream

__all__ = ["AXES", "METRIC_AXES", "MultiverseAccumulator", "multiverse", "paper_bands", "joint_reproductions"]

# Default values of every axis (the first value is the library's default reading).
AXES: dict[str, tuple] = {
    "signal": ("offset_profile", "last_row", "pattern_rows", "received"),
    "first_key": ("kept", "dropped"),
    "dc": ("removed", "kept"),
    "window": ("hann", "none"),
    "padding": ("2n", "none"),
    "correlation": ("sequences", "rows", "heads"),
    "wavelet": ("db2", "haar", "db4"),
    "level": (5, "max"),
    "entropy_norm": ("normalized", "raw"),
    "sampling": ("prefix", "decimate"),
    "alignment": ("coefficients", "shares"),
}
# Allowed values where they form a closed set (wavelet and level are checked by rule).
_ALLOWED = {
    "signal": AXES["signal"],
    "first_key": ("kept", "dropped"),
    "dc": ("removed", "kept"),
    "window": ("hann", "none"),
    "padding": ("2n", "pow2", "none"),
    "correlation": ("sequences", "rows", "heads"),
    "entropy_norm": ("normalized", "raw"),
    "sampling": ("prefix", "decimate"),
    "alignment": ("coefficients", "shares"),
}
_SPECTRAL = ("signal", "first_key", "dc", "window", "padding")
_WAVELET = ("signal", "first_key", "wavelet", "level")
# metric family -> the axes its readings cross
METRIC_AXES: dict[str, tuple[str, ...]] = {
    "spectral": _SPECTRAL,
    "rho": _SPECTRAL + ("correlation",),
    "wavelet_entropy": _WAVELET + ("entropy_norm",),
    "scale_sensitivity": _WAVELET + ("sampling", "alignment"),
}
_SPECTRAL_METRICS = ("low_band_share", "mid_band_share", "high_band_share", "spectral_entropy", "selectivity")
_WAVELET_SIGNALS = ("offset_profile", "last_row", "received")


def _check_axes(axes: Mapping | None) -> dict[str, tuple]:
    """Defaults overridden by ``axes``; unknown names or values raise, listing the valid ones."""
    if axes is None:
        return dict(AXES)
    if not isinstance(axes, Mapping):
        raise TypeError(f"axes must be a dict of axis name -> values, got {type(axes).__name__}.")
    out = dict(AXES)
    for name, values in axes.items():
        if name not in AXES:
            raise ValueError(f"Unknown axis {name!r}: valid axes are {', '.join(AXES)}.")
        if isinstance(values, (str, int)):
            values = (values,)
        values = tuple(dict.fromkeys(values))  # keep order, drop repeats
        if not values:
            raise ValueError(f"axis {name!r} has no values: give at least one, e.g. {AXES[name][0]!r}.")
        for v in values:
            if name == "wavelet":
                try:
                    dwt_max_level(2, v)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"axis 'wavelet': {e}") from None
            elif name == "level":
                if not (v == "max" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)):
                    raise ValueError(f"axis 'level': {v!r} is not valid; use positive ints or 'max'.")
            elif v not in _ALLOWED[name]:
                raise ValueError(
                    f"axis {name!r}: unknown value {v!r}; valid values are {', '.join(map(str, _ALLOWED[name]))}."
                )
        out[name] = values
    return out


def paper_bands() -> dict[str, tuple[float, float, str]]:
    """The paper's published value or range per multiverse metric: ``metric -> (low, high, source)``.

    rho: the seven headline models (-0.737..-0.421; the Pythia family list is left out);
    band shares: Pythia-12B, "said to hold generally"; spectral entropy, selectivity and
    scale sensitivity: the "RoPE models (typical)" ranges; wavelet entropy per scale: the
    one model with values (Llama-3.2-1B), a point.

    >>> paper_bands()["low_band_share"][:2]
    (0.6, 0.8)
    """
    nums = paper_numbers()
    out = {}
    heads = nums[(nums["metric"] == "rho") & (nums["note"] != "Pythia family list")]
    out["rho"] = (float(heads["low"].min()), float(heads["high"].max()), "rho of 7 models (paper v4)")
    for band in ("low", "mid", "high"):
        r = nums[nums["metric"] == f"band_{band}_pct"].iloc[0]
        out[f"{band}_band_share"] = (float(r["low"]) / 100, float(r["high"]) / 100, f"{r['model']} band power (paper v4)")
    typical = nums[nums["model"] == "RoPE models (typical)"]
    for _, r in typical.iterrows():
        out[r["metric"]] = (float(r["low"]), float(r["high"]), "RoPE models, 'about' (paper v4)")
    for _, r in nums[nums["metric"].str.startswith("wavelet_entropy_s")].iterrows():
        out[r["metric"]] = (float(r["low"]), float(r["high"]), f"{r['model']} (paper v4)")
    return out


class _Grouped:
    """Sums and counts of a per-sequence quantity per sequence group (NaN entries skipped)."""

    def __init__(self, n_groups: int) -> None:
        self.n_groups = n_groups
        self.s: Tensor | None = None
        self.c: Tensor | None = None

    def add(self, values: Tensor, groups: Tensor) -> None:
        v = to_host(values)
        ok = ~torch.isnan(v)
        v = torch.where(ok, v, torch.zeros((), dtype=v.dtype, device=v.device))
        if self.s is None:
            self.s = torch.zeros(self.n_groups, *v.shape[1:], dtype=torch.float64, device=v.device)
            self.c = torch.zeros_like(self.s)
        # one sum per group present (a batch holds few), rather than index_add_, which is
        # slow under thread contention; a one-hot product would turn 0 * inf into NaN
        if groups.unique().numel() == groups.numel():  # the usual case: batch <= n_groups
            self.s[groups] += v
            self.c[groups] += ok.to(v.dtype)
            return
        for g in groups.unique().tolist():
            sel = groups == g
            self.s[g] += v[sel].sum(0)
            self.c[g] += ok[sel].sum(0)


def _jackknife(s: Tensor, c: Tensor, stat) -> tuple[Tensor, Tensor]:
    """``stat(sums, counts)`` on all groups, and its delete-one-group jackknife SE.

    ``s``, ``c``: [groups, ...]; ``stat`` maps totals [...] (or [groups, ...]) to values.
    """
    seen = c.flatten(1).sum(1) > 0
    s, c = s[seen], c[seen]
    value = stat(s.sum(0), c.sum(0))
    g = s.shape[0]
    if g < 2:
        return value, torch.full_like(value, math.nan)
    loo = stat(s.sum(0) - s, c.sum(0) - c)  # [g, ...]
    se = ((g - 1) / g * (loo - loo.mean(0)).pow(2).sum(0)).sqrt()
    return value, se


def _nanmean_units(x: Tensor) -> Tensor:
    """Mean over the unit axis (the last axis here: layer x head), skipping NaN."""
    ok = ~torch.isnan(x)
    return torch.where(ok, x, 0).sum(-1) / ok.sum(-1).clamp(min=1) + torch.where(ok.any(-1), 0.0, math.nan)


def _mean_stat(s: Tensor, c: Tensor) -> Tensor:
    # per-unit means [..., unit, k] -> mean over units [..., k]; a unit never defined is NaN
    per_unit = torch.where(c > 0, s / c.clamp(min=1), torch.full_like(s, math.nan))
    return _nanmean_units(per_unit.transpose(-1, -2))


def _rho_stat(s: Tensor, c: Tensor) -> Tensor:
    # s [..., unit, 5] = sums of x, y, xx, yy, xy; Pearson per unit, mean over units
    r = M.pearson_from_moments(c[..., 0], s[..., 0], s[..., 1], s[..., 2], s[..., 3], s[..., 4])
    r = torch.where(c[..., 0] >= MIN_CORRELATION_N, r, math.nan)  # as HeadReport's rho: >= 4 points
    return _nanmean_units(r)[..., None]


def _pearson_min_n(x: Tensor, y: Tensor) -> Tensor:
    """Pearson along the last axis; NaN with fewer than MIN_CORRELATION_N points."""
    r = M.pearson(x, y)
    return r if x.shape[-1] >= MIN_CORRELATION_N else torch.full_like(r, math.nan)


class MultiverseAccumulator:
    """Streams every reading of the paper's metrics from ``hook_pattern``, one hook per layer.

    Parameters
    ----------
    model : TransformerBridge or HookedTransformer; or a :class:`~tl_wavelet.adapter.ModelShape`
        for patterns fed by hand through :meth:`update` (e.g. a Hugging Face model's
        ``output_attentions=True`` patterns)
    axes : dict axis -> values overriding :data:`AXES` (None: all defaults)
    layers : layers to measure (None: all)
    alphas : truncation ratios of the scale sensitivity S(alpha)
    max_rows : query rows per sequence of the ``pattern_rows`` signal
    n_groups : without ``groups``: sequence i goes to group i mod n_groups for the jackknife
    groups : one document (any int or string id) per sequence, in the order they are fed:
        the jackknife deletes one document at a time (``n_groups`` is then ignored)

    Use :meth:`hooks` with ``model.hooks(...)`` / ``run_with_hooks``, or feed patterns
    yourself with :meth:`update`; then :meth:`to_dataframe`.

    >>> acc = MultiverseAccumulator(model, axes={"signal": ["last_row"]})   # doctest: +SKIP
    >>> _ = model.run_with_hooks(tokens, fwd_hooks=acc.hooks())             # doctest: +SKIP
    >>> acc.to_dataframe().head()                                           # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        axes: Mapping | None = None,
        *,
        layers: int | Iterable[int] | None = None,
        alphas: tuple[float, ...] = (0.5, 0.25),
        max_rows: int = 32,
        n_groups: int = 20,
        groups=None,
    ) -> None:
        self.axes = _check_axes(axes)
        self.n_groups = check_int(n_groups, "n_groups", minimum=2)  # groups for the jackknife SE
        self._group_of: Tensor | None = None  # each sequence's document code, when given
        self.se_unit = f"sequence group (i mod {self.n_groups})"
        if groups is not None:
            from ..inference.units import as_clusters

            self._group_of, labels = as_clusters(groups, None, "groups")
            self.n_groups, self.se_unit = len(labels), "document"
        self.alphas = tuple(alphas)
        self.max_rows = max_rows
        # one validated MetricConfig per signal definition and per spectrum definition
        self._signal_cfgs = {
            (sig, fk): MetricConfig(signal=sig, drop_first_key=fk == "dropped", alphas=self.alphas, max_rows=max_rows)
            for sig in self.axes["signal"]
            for fk in self.axes["first_key"]
        }
        self._spectrum_cfgs = {
            (dc, w, p): MetricConfig(remove_dc=dc == "removed", window=w, padding=p)
            for dc in self.axes["dc"]
            for w in self.axes["window"]
            for p in self.axes["padding"]
        }
        # the (wavelet, level) readings computed; check_length leaves out default ones a length cannot hold
        self._explicit = set(axes) if axes is not None else set()
        self.wavelet_levels = list(itertools.product(self.axes["wavelet"], self.axes["level"]))
        self.dropped: list[tuple[str, object]] = []
        self._set_config()
        self.shape = model if isinstance(model, ModelShape) else model_shape(model)
        self.layers = resolve_layers(self.shape, layers)
        if not isinstance(model, ModelShape):
            require_hooks(model, [hook_name("pattern", L) for L in self.layers], "the multiverse reads attention patterns")
        self._seen = {L: 0 for L in self.layers}
        self._pending: dict[int, tuple[dict, int]] = {}  # this forward pass, not yet committed
        self._acc: dict[int, _Grouped] = {}
        self._layout: dict[tuple, tuple[int, tuple]] | None = None
        self._levels: dict[tuple[str, object], int] = {}
        self.seq_len: int | None = None

    @property
    def stop_hook(self) -> str:
        """The last hook the readings need: a forward may end right after it."""
        return hook_name("pattern", self.layers[-1])

    @property
    def n_sequences(self) -> int:
        return min(self._seen.values())

    def hooks(self) -> list[tuple[str, object]]:
        """``(hook_name, fn)`` pairs for ``model.hooks(fwd_hooks=...)`` / ``run_with_hooks``."""

        def make(layer: int):
            def fn(pattern: Tensor, hook) -> None:
                self._update(layer, pattern, staged=True)

            return fn

        return [(hook_name("pattern", L), make(L)) for L in self.layers]

    # ------------------------------------------------------------------ checks
    def _set_config(self) -> None:
        # the config stream() checks lengths with: the most demanding (wavelet, int level) computed
        ints = [(w, lv) for w, lv in self.wavelet_levels if lv != "max"]
        if ints:
            w_need, lv_need = max(ints, key=lambda p: min_length(*p))
        else:
            w_need, lv_need = max((w for w, _ in self.wavelet_levels), key=lambda w: min_length(w, 1)), 1
        self.config = MetricConfig(wavelet=w_need, level=lv_need, alphas=self.alphas)

    def _unfit(self, n: int) -> dict[tuple[str, object], tuple[bool, str]]:
        """(wavelet, level) readings ``n`` tokens cannot hold -> (the whole wavelet fails, why and the fix)."""
        out = {}
        for w, lv in self.wavelet_levels:
            deepest = dwt_max_level(n, w)
            short = [a for a in self.alphas if math.floor(a * n) < 2 or dwt_max_level(math.floor(a * n), w) < 1]
            if deepest < 1:
                out[(w, lv)] = (True, f"{w} needs at least {min_length(w, 1)} tokens for one DWT level, got {n}.")
            elif short:
                a = short[0]
                out[(w, lv)] = (True, f"alpha={a} cuts {n} tokens to {math.floor(a * n)}, too short for one {w} level: "
                                      f"use sequences of at least {math.ceil(min_length(w, 1) / a)} tokens or a larger alpha.")
            elif lv != "max" and lv > deepest:
                out[(w, lv)] = (False, (
                    f"level {lv} of {w} needs sequences of at least {min_length(w, lv)} tokens, but the corpus has "
                    f"{n}: pass longer sequences (seq_len >= {min_length(w, lv)}), or drop that level from "
                    f"axes['level'] ({w} supports up to {deepest} at {n} tokens; 'max' always fits)."))
        return out

    def check_length(self, n: int) -> None:
        """Fit the readings to sequences of ``n`` tokens.

        A (wavelet, level) reading the length cannot hold is left out with a ``UserWarning``
        naming it when it comes from the defaults (db4 at level 5 needs 224 tokens, so at 128
        the defaults keep db4 at level "max" = 4). One you asked for raises, naming the fix:
        its wavelet and level both given in ``axes``, or a wavelet given that fits at no level.
        """
        unfit = self._unfit(n)
        if not unfit:
            return
        for whole_wavelet, why in unfit.values():
            if "wavelet" in self._explicit and (whole_wavelet or "level" in self._explicit):
                raise ValueError(why)
        kept = [p for p in self.wavelet_levels if p not in unfit]
        if not kept:
            raise ValueError(next(iter(unfit.values()))[1])
        self.wavelet_levels = kept
        self.dropped += list(unfit)
        self._set_config()
        names = ", ".join(f"wavelet={w} level={lv}" for w, lv in unfit)
        warnings.warn(
            f"{len(unfit)} default multiverse reading(s) cannot be computed on {n}-token sequences and are left out: "
            f"{names} ({next(iter(unfit.values()))[1]}) Pass longer sequences to include them, or set axes['wavelet'] / "
            "axes['level'] yourself.",
            UserWarning,
            stacklevel=2,
        )

    def _level(self, wavelet: str, level, n: int) -> int:
        lv = dwt_max_level(n, wavelet) if level == "max" else level
        self._levels[(wavelet, level)] = lv
        return lv

    # ------------------------------------------------------------------ feeding
    def update(self, layer: int, pattern: Float[Tensor, "batch head q k"]) -> None:
        """Fold one layer's attention pattern (``hook_pattern``) into every reading, at once.

        (What :meth:`hooks` feed is committed per forward pass, once every layer has fired:
        a pass that fails part-way is dropped whole.)
        """
        self._update(layer, pattern, staged=False)

    @torch.no_grad()
    def _update(self, layer: int, pattern: Tensor, staged: bool) -> None:
        if layer not in self._seen:
            raise ValueError(f"layer {layer} is not measured by this accumulator (layers {self.layers}).")
        act = pattern.detach()
        if act.dtype in (torch.float16, torch.bfloat16):
            act = act.float()
        b, _, n, _ = act.shape
        if self.seq_len is None:
            self.check_length(n)
        self.seq_len = n
        values: dict[tuple, Tensor] = {}
        singles, multi = {}, {}
        gathered = {}  # one offset gather per first-key choice serves offset_profile and pattern_rows
        for (sig, fk), cfg in self._signal_cfgs.items():
            aligned = None
            if sig in ("offset_profile", "pattern_rows"):
                if fk not in gathered:
                    gathered[fk] = offset_aligned_rows(act, cfg.drop_first_key)
                aligned = gathered[fk]
            rows, lengths, full, shorts = _signals_from_pattern(act, cfg, aligned)
            if sig == "pattern_rows":
                # float64 rows: per-row entropies of float32 rows round to 1e-7, and rho over
                # near-constant entropies amplifies that
                multi[(sig, fk)] = (rows.double(), lengths)
            else:
                singles[(sig, fk)] = (full.double(), {a: x.double() for a, x in shorts.items()})
        # single-row signals share one length: stack them and measure all at once
        if singles:
            keys = list(singles)
            full = torch.cat([singles[k][0] for k in keys])  # [K*b, h, 1, n]
            self._spectral(values, keys, b, full, None)
            wkeys = [k for k in keys if k[0] in _WAVELET_SIGNALS]
            if wkeys:
                stacked = torch.stack([singles[k][0] for k in wkeys])  # [K, b, h, 1, n]
                shorts = {a: torch.stack([singles[k][1][a] for k in wkeys]) for a in self.alphas}
                self._wavelet(values, wkeys, stacked, shorts, n)
        if multi:  # pattern_rows of each first-key choice, stacked; lengths differ per row
            keys = list(multi)
            rows = torch.cat([multi[k][0] for k in keys])
            lengths = torch.cat([multi[k][1].expand(b, 1, -1) for k in keys])  # [K*b, 1, r]
            self._spectral(values, keys, b, rows, lengths)
        if not staged:
            self._fold(layer, values, b)
            return
        if layer in self._pending:  # the pass before stopped part-way: drop it whole
            warnings.warn(
                f"MultiverseAccumulator: a forward pass fed layer(s) {sorted(self._pending)} of {self.layers} and then "
                "stopped; what it measured is left out, so every layer counts the same sequences.",
                RuntimeWarning, stacklevel=3)
            self._pending = {}
        self._pending[layer] = (values, b)
        if len(self._pending) == len(self.layers):
            pending, self._pending = self._pending, {}
            for L, (v, bb) in pending.items():
                self._fold(L, v, bb)

    def _rollback(self) -> None:
        """Drop the current, failed forward pass (:func:`~tl_wavelet.analysis.stream` calls it on an error)."""
        self._pending = {}

    def _fold(self, layer: int, values: dict[tuple, Tensor], b: int) -> None:
        """All readings of one layer as one [batch, features] block: one update per forward."""
        groups = self._groups(layer, b)
        self._seen[layer] += b
        if self._layout is None:
            self._layout, start = {}, 0
            for key, v in values.items():
                size = int(math.prod(v.shape[1:]))
                self._layout[key] = (start, tuple(v.shape[1:]))
                start += size
        flat = torch.cat([values[k].double().reshape(values[k].shape[0], -1) for k in self._layout], 1)
        self._acc.setdefault(layer, _Grouped(self.n_groups)).add(flat, groups)

    def _groups(self, layer: int, b: int) -> Tensor:
        """The jackknife groups of the next ``b`` sequences of ``layer``: their documents, or i mod n_groups."""
        seen = self._seen[layer]
        if self._group_of is None:
            return (torch.arange(b, device="cpu") + seen) % self.n_groups
        if seen + b > self._group_of.numel():
            raise ValueError(f"groups: {self._group_of.numel()} document ids were given, but sequence {seen + b} arrived: "
                             "give one id per sequence fed.")
        return self._group_of[seen : seen + b]

    def _spectral(self, values, keys, b, rows, lengths) -> None:
        """Fourier readings of signals stacked along the batch axis ([len(keys) * b, h, r, n])."""
        h_pos_rows = M.positional_entropy(rows, lengths)  # [K*b, h, r]
        hp = h_pos_rows.mean(-1).double()
        corr = self.axes["correlation"]
        by_rows = keys[0][0] == "pattern_rows" and "rows" in corr

        def split(x: Tensor):
            return dict(zip(keys, x.split(b)))

        for spec_key, cfg in self._spectrum_cfgs.items():
            sm = spectral_metrics(rows, lengths, cfg, per_row=by_rows)
            shares = sm["spectral_shares"]
            block = torch.cat([shares, sm["spectral_entropy"][..., None], sm["selectivity"][..., None]], -1)
            h_spec = sm["spectral_entropy"].double()
            moments = torch.stack([hp, h_spec, hp * hp, h_spec * h_spec, hp * h_spec], -1)
            for k, v in split(block).items():
                values[("spectral", k + spec_key)] = v
            if "sequences" in corr:  # per head over sequences: the five Pearson sums
                for k, v in split(moments).items():
                    values[("rho_moments", k + spec_key + ("sequences",))] = v
            if "heads" in corr:  # per layer over heads, one value per sequence
                for k, v in split(_pearson_min_n(hp, h_spec)[:, None, None]).items():
                    values[("rho", k + spec_key + ("heads",))] = v
            if by_rows:  # per head over query rows, one value per (sequence, head)
                r = _pearson_min_n(h_pos_rows.double(), sm["spectral_entropy_rows"].double())
                for k, v in split(r[..., None]).items():
                    values[("rho", k + spec_key + ("rows",))] = v

    def _wavelet(self, values, keys, full, shorts, n) -> None:
        """Wavelet readings of the single-row signals stacked as [K, b, h, 1, n]."""
        ax = self.axes
        done: dict[tuple, Tensor] = {}  # levels that resolve alike ("max" may equal 5) are computed once
        for w, lv in self.wavelet_levels:
            level = self._level(w, lv, n)
            for norm in ax["entropy_norm"]:
                if (w, level, norm) not in done:
                    done[(w, level, norm)] = M.wavelet_entropy(
                        full, w, level, "symmetric", normalized=norm == "normalized").mean(-2)
                we = done[(w, level, norm)]
                for i, k in enumerate(keys):
                    values[("wavelet_entropy", k + (w, lv, norm))] = we[i]
        for a in self.alphas:
            m = math.floor(a * n)
            cut = {
                "prefix": shorts[a],  # the signal of the sequence cut to m tokens (a causal prefix)
                "decimate": full[..., (torch.arange(m, device=full.device) * n) // m],  # the full signal at m evenly spaced positions
            }
            # both samplings stacked on a new leading axis: the full signal's DWT is shared
            short = torch.stack([cut[sm] for sm in ax["sampling"]])  # [S, K, b, h, 1, m]
            for w, lv in self.wavelet_levels:
                level = self._level(w, lv, n)
                for align in ax["alignment"]:
                    if (a, w, level, align) not in done:
                        done[(a, w, level, align)] = M.scale_sensitivity(
                            full, short, w, level, "symmetric", paper=align == "coefficients").mean(-1)
                    s = done[(a, w, level, align)]  # [S, K, b, h]
                    for j, sampling in enumerate(ax["sampling"]):
                        for i, k in enumerate(keys):
                            values[(f"scale_sensitivity_{a:g}", k + (w, lv, sampling, align))] = s[j, i][..., None]

    # ------------------------------------------------------------------ results
    def to_dataframe(self) -> pd.DataFrame:
        """One row per (reading, metric): value (mean over layers and heads), jackknife SE.

        Columns: ``metric, value, se, n_sequences, n_units`` (layer-head units, or layers
        for ``correlation="heads"``, with a defined value), one column per axis (None where
        the axis does not apply to the metric), ``reading`` (the choices as text), and
        the paper's ``paper_low, paper_high`` with ``in_paper_range``.
        A reading undefined at this sample size is NaN, with a warning.
        """
        if self._pending:
            warnings.warn(
                f"MultiverseAccumulator: a forward pass fed layer(s) {sorted(self._pending)} of {self.layers} and then "
                "stopped; what it measured is left out.", RuntimeWarning, stacklevel=2)
            self._pending = {}
        if self.n_sequences == 0:
            raise RuntimeError(
                "No sequences were measured: run the model with these hooks first "
                "(e.g. model.run_with_hooks(tokens, fwd_hooks=acc.hooks()))."
            )
        merged: dict[tuple, tuple[Tensor, Tensor]] = {}
        for key in sorted(self._layout, key=str):
            start, shape = self._layout[key]
            size = int(math.prod(shape))

            def part(t: Tensor) -> Tensor:
                return t[:, start : start + size].reshape(t.shape[0], *shape)  # noqa: B023 (used in this iteration)

            # units = layer x head, stacked along the unit axis
            merged[key] = tuple(torch.cat([part(getattr(self._acc[L], x)) for L in self.layers], 1) for x in "sc")
        bands = paper_bands()
        n_clusters = int(max(int((self._acc[L].c.flatten(1).sum(1) > 0).sum()) for L in self.layers))
        rows, undefined = [], []
        for (family, reading), (s, c) in merged.items():
            if family == "rho_moments":
                value, se = _jackknife(s, c, _rho_stat)
                metrics, axes_of = ["rho"], METRIC_AXES["rho"]
                units = int((~torch.isnan(M.pearson_from_moments(
                    c.sum(0)[..., 0], *[s.sum(0)[..., i] for i in range(5)]))).sum())
            else:
                value, se = _jackknife(s, c, _mean_stat)
                units = int((c.sum(0)[..., 0] > 0).sum())
                if family == "spectral":
                    metrics, axes_of = list(_SPECTRAL_METRICS), METRIC_AXES["spectral"]
                elif family == "rho":
                    metrics, axes_of = ["rho"], METRIC_AXES["rho"]
                    ok = c.sum(0)[..., 0] > 0
                    per_unit = torch.where(ok, s.sum(0)[..., 0] / c.sum(0)[..., 0].clamp(min=1), math.nan)
                    units = int((~torch.isnan(per_unit)).sum())
                elif family == "wavelet_entropy":
                    metrics = [f"wavelet_entropy_s{j}" for j in range(value.shape[0])]
                    axes_of = METRIC_AXES["wavelet_entropy"]
                else:
                    metrics, axes_of = [family], METRIC_AXES["scale_sensitivity"]
            choice = dict(zip(axes_of, reading))
            for j, metric in enumerate(metrics):
                v, e = float(value[j]), float(se[j])
                low, high, _ = bands.get(metric, (math.nan, math.nan, ""))
                row = {"metric": metric, "value": v, "se": e, "n_sequences": self.n_sequences, "n_units": units,
                       "n_clusters": n_clusters, "se_unit": self.se_unit}
                row.update({a: choice.get(a) for a in AXES})
                if "level" in choice:
                    row["level_used"] = self._levels[(choice["wavelet"], choice["level"])]
                row["reading"] = ", ".join(f"{a}={choice[a]}" for a in axes_of)
                row["paper_low"], row["paper_high"] = low, high
                row["in_paper_range"] = (low <= v <= high) if not (math.isnan(low) or math.isnan(v)) else None
                if math.isnan(v):
                    undefined.append(f"{metric} [{row['reading']}]")
                rows.append(row)
        if undefined:
            warnings.warn(
                f"{len(undefined)} reading(s) are undefined at this sample size ({self.n_sequences} sequences) "
                f"and are NaN, e.g. {undefined[0]}: a correlation needs at least {MIN_CORRELATION_N} points that vary "
                "(sequences, rows or heads). Measure more sequences.",
                RuntimeWarning,
                stacklevel=2,
            )
        df = pd.DataFrame(rows)
        order = {m: i for i, m in enumerate(["rho", *_SPECTRAL_METRICS])}
        df["_o"] = df["metric"].map(lambda m: order.get(m, len(order)))
        return df.sort_values(["_o", "metric", "reading"]).drop(columns="_o").reset_index(drop=True)


def multiverse(
    model,
    tokens_or_texts,
    axes: Mapping | None = None,
    *,
    layers=None,
    alphas: tuple[float, ...] = (0.5, 0.25),
    max_rows: int = 32,
    n_groups: int = 20,
    batch_size: int = 8,
    seq_len: int | None = None,
    n_sequences: int | None = None,
    progress: bool = True,
    documents=None,
) -> pd.DataFrame:
    """Every reading of the paper's ambiguous metrics, from one streamed pass over a corpus.

    Parameters
    ----------
    model : TransformerBridge (TL 4.x) or HookedTransformer (TL 3.x)
    tokens_or_texts : LongTensor [batch, pos], a string, or a list of strings (cut into
        ``seq_len``-token windows starting with BOS).
    axes : dict axis -> values, overriding the defaults in :data:`AXES` for those axes
        (e.g. ``{"signal": ["last_row"], "wavelet": ["db2"]}``). Unknown names or values
        raise ``ValueError`` listing the valid ones.
    layers : layers to measure, None for all
    alphas : truncation ratios of the scale sensitivity S(alpha)
    max_rows : query rows per sequence for the ``pattern_rows`` signal
    n_groups : without document labels, sequence groups (i mod n_groups) for the jackknife
    batch_size, seq_len, n_sequences, progress : as in :func:`tl_wavelet.analyze_heads` (text is
        cut into ``seq_len``-token windows, 256 by default)
    documents : with token ids, one document id per sequence: the jackknife deletes one
        document at a time (text is labelled by its own documents)

    Returns
    -------
    DataFrame, one row per (reading, metric): ``metric, value, se`` (value: mean over
    layers and heads; se: delete-one-document jackknife, ``n_clusters`` documents, unit in
    ``se_unit``), one column per axis (None where it does not apply), ``reading``, and the
    paper's ``paper_low, paper_high, in_paper_range``. Counting readings in the paper's range
    is exploratory: readings are correlated and the range is the span of a few point values
    (the claims are tested by :func:`tl_wavelet.inference.evaluate_claims`). Plot it with
    :func:`tl_wavelet.report.specification_curve`.

    Example
    -------
    >>> df = tlw.multiverse(model, tokens, axes={"wavelet": ["db2"]}, progress=False)  # doctest: +SKIP
    >>> df.query("metric == 'rho'").sort_values("value")[["reading", "value", "se"]]   # doctest: +SKIP
    """
    from ..inference.units import tokens_and_documents

    # text is cut into windows per document and labelled; token ids keep their length unless seq_len cuts them
    tokens, docs, _ = tokens_and_documents(model, tokens_or_texts, documents, seq_len=seq_len, n_sequences=n_sequences,
                                           name="tokens_or_texts")
    acc = MultiverseAccumulator(model, axes, layers=layers, alphas=alphas, max_rows=max_rows, n_groups=n_groups,
                                groups=docs)
    acc.check_length(tokens.shape[1])
    stream(model, tokens, [acc], batch_size=batch_size, progress=progress)
    return acc.to_dataframe()


def joint_reproductions(df: pd.DataFrame, metrics: tuple[str, ...] = ("rho", "low_band_share")) -> pd.DataFrame:
    """Readings under which every metric in ``metrics`` falls in the paper's range at once.

    Metrics are joined on the axes they share (e.g. rho and the low-band share on
    signal, first_key, dc, window, padding). Returns the joined rows (empty: no single
    reading reproduces them together).
    """
    parts = []
    for m in metrics:
        sub = df[df["metric"] == m]
        axes = [a for a in AXES if sub[a].notna().any()]
        parts.append((sub[axes + ["value", "se", "in_paper_range"]].rename(
            columns={"value": m, "se": f"{m}_se", "in_paper_range": f"{m}_ok"}), axes))
    out, shared = parts[0]
    for frame, axes in parts[1:]:
        on = [a for a in shared if a in axes]
        out = out.merge(frame, on=on)
        shared = list(dict.fromkeys(shared + axes))
    ok = out[[f"{m}_ok" for m in metrics]].fillna(False).astype(bool).all(axis=1)
    return out[ok].drop(columns=[f"{m}_ok" for m in metrics]).reset_index(drop=True)
