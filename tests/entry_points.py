"""Every public entry point of tl_wavelet, run on one model and returned in a comparable form.

Used by tests/test_device.py (on the CPU: a model in bf16/fp16, and every call under
``torch.set_default_device("meta")``, which turns any tensor made on the default device
instead of the activation's into an error) and tests/test_gpu.py (the same calls on CUDA
against the CPU). Each entry takes a :class:`Ctx` and returns nested dicts/lists of
DataFrames, tensors and numbers; :func:`assert_close` compares two such results and
:func:`assert_on_host` checks that nothing in one is left on an accelerator.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

import tl_wavelet as tlw
from tl_wavelet import view
from tl_wavelet.ablation import band_ablation_hook, band_sweep, rope_ablation_hook
from tl_wavelet.analysis import HeadAccumulator, MetricConfig, stream
from tl_wavelet.analysis.compare import scale_sensitivity_rerun
from tl_wavelet.inference import measure_against_null
from tl_wavelet.track import Tracker, TrackerCallback, track_checkpoints

LEVEL = 3


@dataclass
class Ctx:
    model: Any  # a TransformerLens model (bridge or hooked) on the device under test
    hf: Any  # a plain HF Llama (eager) on the same device: the tracker's third backend
    tokens: torch.Tensor  # [6, 64] token ids on the CPU (every function takes them there)
    text: str  # words of the tiny vocabulary, for text entry points
    tmp: Path


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _report_view(report) -> dict:
    return {"heads": report.to_dataframe(), "layers": report.layer_summary(), "stats": report.stats, "rope": report.rope}


def _loss(model, tokens, hooks) -> float:
    with torch.no_grad():
        return float(model.run_with_hooks(tokens, return_type="loss", fwd_hooks=hooks))


def _tracker_frames(tr: Tracker) -> dict:
    return {"heads": tr.to_dataframe(), "layers": tr.layer_dataframe(), "sweep": tr.sweep_dataframe()}


def _callback(c: Ctx) -> dict:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    tr = Tracker(c.tokens[:4], every=1, metrics=dict(level=LEVEL), induction=(2, 16))
    cb = TrackerCallback(tr)
    args = TrainingArguments(output_dir=str(c.tmp / "trainer"), report_to=[], use_cpu=True)
    state = TrainerState()
    cb.on_train_begin(args, state, TrainerControl(), model=c.hf)
    state.global_step = 1
    cb.on_step_end(args, state, TrainerControl(), model=c.hf)
    return _tracker_frames(tr)


def _stream(c: Ctx) -> dict:
    a = HeadAccumulator(c.model, level=LEVEL)
    b = HeadAccumulator(c.model, level=LEVEL, signal="pattern_rows", paper=True)
    stream(c.model, c.tokens, [a, b], batch_size=4, progress=False)
    return {"default": _report_view(a.report()), "paper_rows": _report_view(b.report())}


def _composed(c: Ctx) -> dict:
    acc = HeadAccumulator(c.model, layers=[0, 1], level=LEVEL)
    with c.model.hooks(fwd_hooks=acc.hooks()), torch.no_grad():
        c.model(c.tokens.to(tlw.facts(c.model).device), return_type=None)
    return _report_view(acc.report())


def _sweep(**kw) -> Callable[[Ctx], pd.DataFrame]:
    def run(c: Ctx) -> pd.DataFrame:
        return band_sweep(c.model, c.tokens[:4], layers=[0], heads=[0, 2], progress=False, **{"level": LEVEL, **kw})

    return run


ENTRY_POINTS: dict[str, Callable[[Ctx], Any]] = {
    "analyze_heads": lambda c: _report_view(tlw.analyze_heads(c.model, c.tokens, level=LEVEL, progress=False)),
    "analyze_heads.paper": lambda c: _report_view(tlw.analyze_heads(c.model, c.tokens, level=LEVEL, paper=True,
                                                                    progress=False)),
    "analyze_heads.z": lambda c: _report_view(tlw.analyze_heads(c.model, c.tokens, level=LEVEL, signal="z",
                                                                progress=False)),
    "analyze_heads.text": lambda c: _report_view(tlw.analyze_heads(c.model, c.text, seq_len=32, level=LEVEL,
                                                                   progress=False)),
    "stream": _stream,
    "HeadAccumulator.hooks": _composed,
    "multiverse": lambda c: tlw.multiverse(c.model, c.tokens, {"signal": ["offset_profile", "last_row"],
                                                               "wavelet": ["db2"], "level": [3]},
                                           n_groups=3, progress=False),
    "rope_frequencies": lambda c: tlw.rope_frequencies(c.model),
    "band_sweep.zero": _sweep(),
    "band_sweep.mean": _sweep(method="mean"),
    "band_sweep.resample": _sweep(method="resample"),
    "band_sweep.atp": _sweep(attribution="atp", verify_top_k=2),
    "band_sweep.atp2": _sweep(attribution="atp2", verify_top_k=2),
    "band_sweep.ig": _sweep(attribution="ig"),
    "band_sweep.rope": _sweep(target="rope", n_rope_bands=2),
    "band_sweep.rope.atp": _sweep(target="rope", n_rope_bands=2, attribution="atp"),
    "band_ablation_hook": lambda c: _loss(c.model, c.tokens[:4], [band_ablation_hook(0, [0, 2], ["A3", "D1"], level=LEVEL)]),
    "band_ablation_hook.mean": lambda c: _loss(c.model, c.tokens[:4], [band_ablation_hook(
        0, [2], ["D2"], level=LEVEL, method="mean")]),
    "rope_ablation_hook": lambda c: _loss(c.model, c.tokens[:4], rope_ablation_hook(c.model, 0, [0, 1], ["R0"], on="qk",
                                                                                     n_bands=2)),
    "Tracker.log": lambda c: _tracker_frames(_logged(Tracker(c.tokens[:4], every=1, metrics=dict(level=LEVEL),
                                                             induction=(2, 16),
                                                             sweep=dict(attribution="atp", layers=[1], level=LEVEL)),
                                                     c.model)),
    "Tracker.log.hf": lambda c: _tracker_frames(_logged(Tracker(c.tokens[:4], every=1, metrics=dict(level=LEVEL),
                                                                induction=(2, 16)), c.hf)),
    "TrackerCallback": _callback,
    "track_checkpoints": lambda c: _tracker_frames(track_checkpoints(lambda s: c.model, [0, 5], c.tokens[:4], progress=False,
                                                                     metrics=dict(level=LEVEL), induction=None)),
    "view.head": lambda c: view.head(c.model, c.tokens[0, :32], 0, 2, bands=["A3", "D1"], ablate=True,
                                     level=LEVEL).to_dataframe(),
    "view.compare_heads": lambda c: [v.to_dataframe() for v in view.compare_heads(c.model, c.tokens[0, :32],
                                                                                  [(0, 0), (1, 3)], level=LEVEL)],
    "scale_sensitivity_rerun": lambda c: scale_sensitivity_rerun(c.model, c.tokens, level=2, progress=False),
    "measure_against_null": lambda c: measure_against_null(
        c.model, c.tokens, documents=[i // 2 for i in range(c.tokens.shape[0])],
        reading=MetricConfig(level=LEVEL), progress=False).head_table(("spec_low", "rho")),
    "measure_against_null.hf": lambda c: measure_against_null(
        c.hf, c.tokens, documents=[i // 2 for i in range(c.tokens.shape[0])],
        reading=MetricConfig(level=LEVEL), progress=False).head_table(("spec_low",)),
}


def _logged(tr: Tracker, model) -> Tracker:
    tr.log(model, 0)
    return tr


def run(name: str, c: Ctx) -> Any:
    """One entry point's result, warnings (small-sample NaNs) silenced."""
    return _quiet(lambda: ENTRY_POINTS[name](c))


# ------------------------------------------------------------------ comparing results
def _leaves(x, path="") -> list[tuple[str, Any]]:
    if isinstance(x, dict):
        return [leaf for k, v in x.items() for leaf in _leaves(v, f"{path}/{k}")]
    if isinstance(x, (list, tuple)):
        return [leaf for i, v in enumerate(x) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, x)]


def assert_on_host(result) -> None:
    """Every tensor in ``result`` is on the CPU, and float64 where it is a floating statistic."""
    for path, x in _leaves(result):
        if isinstance(x, torch.Tensor):
            assert x.device.type == "cpu", f"{path} is on {x.device}"
        if isinstance(x, pd.DataFrame):
            for col in x.columns:
                cell = next(iter(x[col]), None)
                assert not isinstance(cell, torch.Tensor), f"{path}: column {col} holds tensors"


def assert_no_new_nans(got, want, what: str) -> None:
    """``got`` (a half-precision model's result) has no NaN that ``want`` (its float32 twin's) lacks."""
    w = dict(_leaves(want))
    for path, x in _leaves(got):
        if isinstance(x, pd.DataFrame):
            num = x.select_dtypes(include=[np.number]).columns
            new_nan = x[num].isna() & ~w[path][num].isna()
            if "verified" in x.columns:  # which cells are verified follows the estimates: compare rows verified in both
                new_nan = new_nan[x["verified"] & w[path]["verified"]]
            assert not new_nan.to_numpy().any(), f"{path}: NaN only in {what} in {list(num[new_nan.any()])}"
        elif isinstance(x, torch.Tensor) and x.is_floating_point():
            assert not (x.isnan() & ~w[path].isnan()).any(), f"{path}: NaN only in {what}"


def _as_frame_values(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    num = df.select_dtypes(include=[np.number, bool])
    return num, df.drop(columns=num.columns)


def assert_close(got, want, *, rtol: float, atol: float, labels: bool = True, skip=()) -> None:
    """``got`` equals ``want``: numbers to rtol/atol (NaN where NaN), strings exactly when ``labels``."""
    g, w = dict(_leaves(got)), dict(_leaves(want))
    assert g.keys() == w.keys(), f"different structure: {sorted(set(g) ^ set(w))[:5]}"
    for path in g:
        a, b = g[path], w[path]
        if any(s in path for s in skip):
            continue
        if isinstance(b, pd.DataFrame):
            assert list(a.columns) == list(b.columns), path
            assert a.shape == b.shape, path
            an, ao = _as_frame_values(a)
            bn, bo = _as_frame_values(b)
            for col in bn.columns:
                if any(s in col for s in skip):
                    continue
                _close(an[col].to_numpy(dtype=float), bn[col].to_numpy(dtype=float), rtol, atol, f"{path}:{col}")
            if labels:
                for col in bo.columns:
                    assert ao[col].astype(str).tolist() == bo[col].astype(str).tolist(), f"{path}:{col}"
        elif isinstance(b, torch.Tensor):
            assert a.shape == b.shape and a.dtype == b.dtype, f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
            _close(a.double().cpu().numpy(), b.double().cpu().numpy(), rtol, atol, path)
        elif isinstance(b, (float, int, np.floating, np.integer)) and not isinstance(b, bool):
            _close(np.array([float(a)]), np.array([float(b)]), rtol, atol, path)
        else:
            assert a == b or (a != a and b != b), f"{path}: {a!r} vs {b!r}"


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float, where: str) -> None:
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    assert (nan_a == nan_b).all(), f"{where}: NaN at different places ({int(nan_a.sum())} vs {int(nan_b.sum())})"
    ok = ~nan_a
    same_inf = np.isinf(a) & (a == b)
    finite = ok & ~same_inf
    err = np.abs(a[finite] - b[finite])
    tol = atol + rtol * np.abs(b[finite])
    if err.size and not (err <= tol).all():
        i = int(np.argmax(err - tol))
        raise AssertionError(f"{where}: {a[finite][i]!r} vs {b[finite][i]!r} (|diff| {err[i]:.3g} > {tol[i]:.3g}; "
                             f"{int((err > tol).sum())} of {err.size} entries)")


def max_rel_diff(got, want) -> float:
    """Largest |got - want| / max(|want|, 1e-12) over every finite number of two results (for reports)."""
    worst = 0.0
    g, w = dict(_leaves(got)), dict(_leaves(want))
    for path in w:
        a, b = g.get(path), w[path]
        if isinstance(b, pd.DataFrame):
            an, _ = _as_frame_values(a)
            bn, _ = _as_frame_values(b)
            pairs = [(an[c].to_numpy(dtype=float), bn[c].to_numpy(dtype=float)) for c in bn.columns]
        elif isinstance(b, torch.Tensor):
            pairs = [(a.double().cpu().numpy(), b.double().cpu().numpy())]
        elif isinstance(b, (float, int)) and not isinstance(b, bool):
            pairs = [(np.array([float(a)]), np.array([float(b)]))]
        else:
            continue
        for x, y in pairs:
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.maximum(np.abs(y[ok]), 1e-12))))
    return worst if not math.isnan(worst) else math.inf
