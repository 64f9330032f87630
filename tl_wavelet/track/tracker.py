"""``Tracker``: wavelet metrics of a model while it trains, one probe every ``every`` steps.

::

    tracker = Tracker(probe_tokens, every=50, out="runs/track.csv")
    for step in range(n_steps):
        loss = model(batch, return_type="loss"); loss.backward(); opt.step(); opt.zero_grad()
        tracker.log(model, step)           # a no-op unless step % every == 0
    tracker.to_dataframe()                 # step, layer, head, band shares, scale_tokens, ...

A log runs under ``torch.no_grad()`` in eval mode and restores every submodule's mode; it
reads the model being trained in place (no weight copy), so the training loop sees the
same model, parameters, gradients and optimizer state afterwards.
"""
from __future__ import annotations

import json
import math
import os
import warnings
import weakref
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from ..ablation import band_sweep
from ..adapter import ModelFacts, facts, hook_name, resolve_layers
from ..analysis import HeadAccumulator, MetricConfig
from ..rope import hf_rope_modules
from ..stats import MIN_CORRELATION_N
from ..validate import as_list, as_token_ids, check_bool, check_int
from .probe import induction_loss, preserved_state, probe_model

__all__ = ["Tracker", "track_checkpoints", "read_log"]

_FORMATS = (".csv", ".jsonl")


def _check_positive_int(name: str, value) -> int:
    return check_int(value, name, minimum=1)


def _log_paths(out: Path) -> dict[str, Path]:
    """Head rows go to ``out``; layer and sweep rows to siblings ``<stem>_layers`` / ``<stem>_sweep``."""
    return {
        "heads": out,
        "layers": out.with_name(f"{out.stem}_layers{out.suffix}"),
        "sweep": out.with_name(f"{out.stem}_sweep{out.suffix}"),
    }


def read_log(path: str | os.PathLike, table: str = "heads") -> pd.DataFrame:
    """Reload what a :class:`Tracker` with ``out=path`` wrote.

    Parameters
    ----------
    path : the ``out`` given to the tracker (``.csv`` or ``.jsonl``)
    table : ``"heads"`` (== ``tracker.to_dataframe()``), ``"layers"``
        (== ``tracker.layer_dataframe()``) or ``"sweep"`` (== ``tracker.sweep_dataframe()``)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be the tracker's out path (str or os.PathLike), got {type(path).__name__}.")
    paths = _log_paths(Path(path))
    if table not in paths:
        raise ValueError(f"table must be one of {', '.join(paths)}, got {table!r}.")
    p = paths[table]
    if not p.exists():
        raise FileNotFoundError(f"No tracker log at {p}: was the tracker created with out={str(path)!r}?")
    if p.suffix == ".csv":
        return pd.read_csv(p, keep_default_na=False, na_values=["nan", "NaN", ""])
    # json.loads reads NaN back as float nan (pd.read_json would make an all-NaN column object)
    with open(p, encoding="utf-8") as f:
        return pd.DataFrame([json.loads(line) for line in f if line.strip()])


class Tracker:
    """Log per-head wavelet metrics, probe loss and induction loss during training.

    Parameters
    ----------
    probe_tokens : LongTensor [batch, pos], the fixed probe every log measures
        (e.g. 8 x 128 tokens of held-out data); at most the model's context long.
    every : log when ``step % every == 0`` (a positive int)
    layers : layers to measure (None: all)
    metrics : :class:`~tl_wavelet.analysis.MetricConfig` or a dict of its fields
        (signal "offset_profile" or "pattern_rows"; default ``level=5``)
    sweep : None, or a dict of :func:`~tl_wavelet.ablation.band_sweep` arguments: an
        attribution band sweep (``attribution="atp"`` unless given) on the probe at each log
        (TransformerLens models only: it patches ``hook_z``)
    out : ``.csv`` or ``.jsonl`` path; rows are appended as they are made (a crash loses at
        most one log) and reload with :func:`read_log`. Must not exist yet.
    induction : (n_sequences, half_length) of the induction probe: random tokens repeated
        once; ``None`` turns it off. Default ``(8, pos // 2)``.
    batch_size : probe sequences per forward pass
    seed : seed of the induction probe's random tokens
    rope : measure RoPE usage (``rope_*`` columns)? None: where the model is rotary (on a
        plain HF model: where :func:`tl_wavelet.rope.hf_rope_modules` knows its q/k
        pairing; elsewhere a warning and no RoPE columns); True: required (an error where
        it cannot be measured); False: never

    Examples
    --------
    >>> tracker = Tracker(probe, every=50, metrics=dict(level=4))   # doctest: +SKIP
    >>> for step in range(1000):                                    # doctest: +SKIP
    ...     train_step(model, step)
    ...     tracker.log(model, step)
    >>> tracker.to_dataframe()[["step", "layer", "head", "scale_tokens"]]  # doctest: +SKIP
    """

    def __init__(
        self,
        probe_tokens: Int[Tensor, "batch pos"],
        every: int = 50,
        layers: int | Iterable[int] | None = None,
        metrics: MetricConfig | Mapping | None = None,
        sweep: Mapping | None = None,
        out: str | os.PathLike | None = None,
        *,
        induction: tuple[int, int] | None = (8, None),
        batch_size: int = 8,
        seed: int = 0,
        rope: bool | None = None,
    ):
        if isinstance(probe_tokens, str) or (isinstance(probe_tokens, list) and probe_tokens
                                             and all(isinstance(t, str) for t in probe_tokens)):
            raise TypeError("probe_tokens must be token ids (the tracker has no tokenizer): tokenise the text first, "
                            "e.g. tlw.corpus.chunk_tokens(model, texts, seq_len).")
        # ids in every form the library takes (tensor, numpy, lists); the vocabulary is checked per model
        self.probe_tokens = as_token_ids(probe_tokens, "probe_tokens").cpu()
        self._warn_small_probe(self.probe_tokens.shape[0])
        self.every = _check_positive_int("every", every)
        self.batch_size = _check_positive_int("batch_size", batch_size)
        if layers is not None:  # types now; the range once the model is seen
            items = as_list(layers, "layers")
            if not items:
                raise ValueError("layers is empty: pass None for every layer, or layer indices.")
            for L in items:
                check_int(L, "layers")
        self.layers = layers
        if metrics is None:
            metrics = MetricConfig()
        elif isinstance(metrics, Mapping):
            metrics = MetricConfig(**metrics)
        elif not isinstance(metrics, MetricConfig):
            raise TypeError(f"metrics must be a MetricConfig or a dict of its fields, got {type(metrics).__name__}.")
        if metrics.signal == "z":
            raise ValueError("signal='z' is not tracked: use 'offset_profile' or 'pattern_rows' (attention patterns).")
        self.metrics = metrics
        metrics.check_length(self.probe_tokens.shape[1])
        if sweep is not None and not isinstance(sweep, Mapping):
            raise TypeError(f"sweep must be None or a dict of band_sweep arguments, got {type(sweep).__name__}.")
        self.sweep = None if sweep is None else {"attribution": "atp", "progress": False, **sweep}
        if induction is not None:
            if not isinstance(induction, (tuple, list)) or len(induction) != 2:
                raise TypeError(f"induction must be None or (n_sequences, half_length), got {induction!r}.")
            n_ind, half = induction
            _check_positive_int("induction[0] (sequences)", n_ind)
            half = self.probe_tokens.shape[1] // 2 if half is None else _check_positive_int("induction[1] (half length)", half)
            induction = (n_ind, half)
        self.induction = induction
        self.seed = check_int(seed, "seed")
        if rope is not None and not isinstance(rope, bool):
            raise TypeError(f"rope must be None, True or False, got {rope!r}.")
        self.rope = rope
        self._heads: list[pd.DataFrame] = []
        self._layers: list[pd.DataFrame] = []
        self._sweeps: list[pd.DataFrame] = []
        self._checked: "weakref.WeakSet[ModelFacts]" = weakref.WeakSet()  # models checked once
        self._warned: "weakref.WeakSet[ModelFacts]" = weakref.WeakSet()  # models warned about RoPE usage once
        self._induction_tokens: Tensor | None = None
        self.out = None if out is None else self._open_out(Path(out))
        self._columns: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ small probes
    @staticmethod
    def _warn_small_probe(n: int) -> None:
        """Warn once, here, about statistics every log will leave NaN (not at each log)."""
        undefined = []
        if n < 2:
            undefined.append("the standard errors (columns *_se) need at least 2")
        if n < MIN_CORRELATION_N:
            undefined.append(f"rho and rho_se (a correlation over sequences) need at least {MIN_CORRELATION_N}")
        if undefined:
            warnings.warn(
                f"probe_tokens holds {n} sequence(s): {'; '.join(undefined)} probe sequences, so every log "
                f"reports them as NaN. Pass at least {MIN_CORRELATION_N} probe sequences.",
                RuntimeWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ output files
    @staticmethod
    def _open_out(out: Path) -> Path:
        if out.suffix not in _FORMATS:
            raise ValueError(f"out must end in {' or '.join(_FORMATS)}, got {str(out)!r}.")
        paths = _log_paths(out)
        for p in paths.values():
            if p.exists():
                raise ValueError(f"out file {str(p)!r} already exists: pass a new path or delete it (rows are appended).")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a", encoding="utf-8"):
                pass
            out.unlink()  # only a probe: the first log creates the files
        except OSError as e:
            raise ValueError(f"out {str(out)!r} is not writable ({e.strerror or e}): pass a path in a writable folder.") from None
        return out

    def _append(self, table: str, df: pd.DataFrame) -> None:
        if self.out is None or df.empty:
            return
        p = _log_paths(self.out)[table]
        if p.suffix == ".csv":
            first = table not in self._columns
            cols = self._columns.setdefault(table, list(df.columns))
            df.reindex(columns=cols).to_csv(p, mode="a", header=first, index=False)
        else:
            with open(p, "a", encoding="utf-8") as f:
                for rec in df.to_dict(orient="records"):
                    f.write(json.dumps(rec, allow_nan=True) + "\n")

    # ------------------------------------------------------------------ checks
    def _check_model(self, f) -> None:
        """Everything that can be wrong with the model, checked before it is touched."""
        f.placement()  # where it lives may change between logs: checked every time
        if f in self._checked:
            return
        model = f.model
        ctx = f.context_length
        need = self.probe_tokens.shape[1]
        if self.induction is not None:
            need = max(need, 2 * self.induction[1])
        if ctx is not None and need > ctx:
            raise ValueError(
                f"probe_tokens / induction probe need {need} positions but the model's context is {ctx}: "
                f"pass shorter probe_tokens (pos <= {ctx}) or a smaller induction=(n, half <= {ctx // 2})."
            )
        vocab = f.vocab_size
        if int(self.probe_tokens.max()) >= vocab or int(self.probe_tokens.min()) < 0:
            raise ValueError(f"probe_tokens hold ids outside the model's vocabulary [0, {vocab}).")
        if f.backend == "hf":
            impl = getattr(model.config, "_attn_implementation", None) or "eager"
            if impl != "eager":
                raise ValueError(
                    f"This Hugging Face model runs {impl!r} attention, which returns no attention patterns: "
                    "load or build it with attn_implementation='eager' (or call model.set_attn_implementation('eager'))."
                )
            if self.sweep is not None:
                raise ValueError(
                    "sweep= needs a TransformerLens model (it patches hook_z): wrap the HF model with "
                    "TransformerBridge.boot_transformers, or pass sweep=None."
                )
        else:
            names = [hook_name("pattern", L) for L in resolve_layers(f.shape, self.layers)]
            f.require_hooks(names, "the tracker reads attention patterns")
        self._checked.add(f)

    def _hf_rope_setup(self, f: ModelFacts):
        """(meta, modules, scale) of :func:`hf_rope_modules` for an HF model, or None (no RoPE usage)."""
        if self.rope is False:
            return None
        if not f.shape.rotary:
            if self.rope:
                raise ValueError(f"rope=True, but this {type(f.model).__name__} has no RoPE (no rotary_emb frequencies).")
            return None
        layers = resolve_layers(f.shape, self.layers)

        def read():
            try:
                return hf_rope_modules(f.model, layers)
            except ValueError as e:
                return e

        got = f.memo(f"hf_rope_modules {layers}", read)  # read once per model
        if isinstance(got, ValueError):
            if self.rope:
                raise got
            if f not in self._warned:
                self._warned.add(f)
                warnings.warn(f"{got} The tracker logs no RoPE-usage columns for it.", stacklevel=3)
            return None
        return got

    def _make_induction(self, vocab: int) -> Tensor:
        if self._induction_tokens is None:
            n, half = self.induction
            g = torch.Generator().manual_seed(self.seed)
            # avoid the first ids, where tokenizers keep special tokens
            low = min(4, vocab - 1)
            first = torch.randint(low, vocab, (n, half), generator=g, device="cpu")
            self._induction_tokens = torch.cat([first, first], dim=1)
        return self._induction_tokens

    # ------------------------------------------------------------------ logging
    def log(self, model, step: int, *, force: bool = False) -> bool:
        """Probe ``model`` at ``step`` if ``step % every == 0`` (or ``force``); True when it logged."""
        step = check_int(step, "step", minimum=0)
        force = check_bool(force, "force")
        if not force and step % self.every:
            return False
        f = facts(model)
        self._check_model(f)
        cfg = asdict(self.metrics)
        with preserved_state(model):
            hf_modules = None
            if f.backend == "hf":
                rope = self._hf_rope_setup(f)
                meta, hf_modules = (None, None) if rope is None else (rope[0], rope[1:])
                acc = HeadAccumulator.from_shape(f.shape, self.layers, rope_meta=meta, **cfg)
            else:
                acc = HeadAccumulator(model, layers=self.layers, rope=self.rope, **cfg)
            with warnings.catch_warnings():
                # small-probe NaNs were announced once, when the tracker was made
                warnings.filterwarnings("ignore", message=r".* is undefined with \d+ sample", category=RuntimeWarning)
                report, probe_loss = probe_model(f, self.probe_tokens, acc, self.batch_size, hf_modules)
            ind = math.nan
            if self.induction is not None:
                ind = induction_loss(f, self._make_induction(f.vocab_size))
        extra = {"step": step, "probe_loss": probe_loss, "induction_loss": ind}
        heads = report.to_dataframe()
        layers = report.layer_summary()
        for df in (heads, layers):
            for i, (k, v) in enumerate(extra.items()):
                df.insert(i if k == "step" else len(df.columns), k, v)
        sweep = None
        if self.sweep is not None:
            sweep = self._run_sweep(model)
            sweep.insert(0, "step", step)
        self._heads.append(heads)
        self._layers.append(layers)
        self._append("heads", heads)
        self._append("layers", layers)
        if sweep is not None:
            self._sweeps.append(sweep)
            self._append("sweep", sweep)
        return True

    def _run_sweep(self, model) -> pd.DataFrame:
        params = [p for p in model.parameters()]
        grads = [p.grad for p in params]
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            kw = dict(self.sweep)
            kw.setdefault("layers", self.layers)
            df = band_sweep(model, self.probe_tokens, **kw)
        finally:
            # the sweep's gradient passes must not leak into the training step's .grad
            for p, g in zip(params, grads):
                p.grad = g
            for m, was in modes:
                m.training = was
        return df.reset_index(drop=True)

    # ------------------------------------------------------------------ results
    def to_dataframe(self) -> pd.DataFrame:
        """One row per (step, layer, head): ``HeadReport.to_dataframe()`` columns + losses."""
        return pd.concat(self._heads, ignore_index=True) if self._heads else pd.DataFrame()

    def layer_dataframe(self) -> pd.DataFrame:
        """One row per (step, layer): rho, scale coverage, mean band shares, losses."""
        return pd.concat(self._layers, ignore_index=True) if self._layers else pd.DataFrame()

    def sweep_dataframe(self) -> pd.DataFrame:
        """One row per (step, layer, head, band) of the attribution sweep (empty without ``sweep=``)."""
        return pd.concat(self._sweeps, ignore_index=True) if self._sweeps else pd.DataFrame()

    def losses(self) -> pd.DataFrame:
        """One row per step: ``step, probe_loss, induction_loss``."""
        df = self.layer_dataframe()
        if df.empty:
            return pd.DataFrame(columns=["step", "probe_loss", "induction_loss"])
        return df.groupby("step", as_index=False)[["probe_loss", "induction_loss"]].first()


def track_checkpoints(
    load_fn: Callable[[int], object],
    steps: Iterable[int],
    probe_tokens: Int[Tensor, "batch pos"],
    *,
    progress: bool = True,
    **tracker_kwargs,
) -> Tracker:
    """Run the tracker over saved checkpoints: ``load_fn(step)`` returns the model at ``step``.

    ``load_fn`` can read local directories (``lambda s: load_model(f"ckpt/step{s}")``),
    Pythia-style hub revisions where a hub is reachable
    (``AutoModelForCausalLM.from_pretrained(name, revision=f"step{s}", attn_implementation="eager")``),
    or TransformerLens 3's ``HookedTransformer.from_pretrained(name, checkpoint_value=s)``.
    Each model is logged once (``every`` does not apply) and released before the next.

    Examples
    --------
    >>> tr = track_checkpoints(lambda s: load(f"runs/ckpt/{s}"), [0, 100, 200], probe)  # doctest: +SKIP
    >>> tr.layer_dataframe()[["step", "layer", "rho"]]                                   # doctest: +SKIP
    """
    if not callable(load_fn):
        raise TypeError(f"load_fn must be a callable step -> model, got {type(load_fn).__name__}.")
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
        raise TypeError(f"steps must be an iterable of checkpoint steps, e.g. [0, 100, 200], got {steps!r}.")
    steps = [check_int(s, "steps", minimum=0) for s in steps]  # numpy/torch ints too
    if not steps:
        raise ValueError("steps is empty: pass the checkpoint steps to load, e.g. [0, 100, 200].")
    progress = check_bool(progress, "progress")
    tracker = Tracker(probe_tokens, **tracker_kwargs)
    for s in tqdm(steps, desc="track_checkpoints", unit="ckpt", disable=not progress):
        model = load_fn(s)
        tracker.log(model, int(s), force=True)
        del model
    return tracker
