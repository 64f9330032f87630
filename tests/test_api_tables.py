"""Bad input over the WHOLE public API (issue 14): one generic table runner, one table per function.

Every row is (argument, value, expected): ``expected`` is an exception type (``ValueError``
or ``TypeError``, or ``FileNotFoundError`` for a missing file) whose message must name the
argument (or ``Raises(exc, needle)`` for another needle), ``Same(canonical)``: the call
must give exactly the result of the call with the canonical value (numpy scalars, arrays,
negative indices, other token forms), or ``OK``: the call must succeed (empty tables, tiny
samples whose undefined statistics are NaN). Never an IndexError/RuntimeError from inside
torch: ``pytest.raises`` with the expected type fails on any other. For functions that take
the model, its hooks and loss must be unchanged afterwards.

``test_every_public_name_has_a_table`` walks the ``__all__`` lists (and the public methods
of the result classes): adding a public function without a table fails it.

Truths: the canonical call (``Same``), and for the maths PyWavelets (``test_transforms.py``
checks the values; here only that forms agree). Tiny random-weight models from conftest.
"""
from __future__ import annotations

import importlib
import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch

import tl_wavelet as tlw
from tl_wavelet import ablation as A
from tl_wavelet import corpus as C
from tl_wavelet import inference as INF
from tl_wavelet import models as MD
from tl_wavelet import track as T
from tl_wavelet.ablation import positional as AP
from tl_wavelet.ablation import rope_pairs as AR
from tl_wavelet.ablation import spec as AS
from tl_wavelet.ablation import sweep as ASW
from tl_wavelet.analysis import HeadAccumulator, HeadReport, MetricConfig, layer_metrics, rope_pair_energy, stream
from tl_wavelet.analysis import compare as CMP
from tl_wavelet.inference import claims as INF_CLAIMS
from tl_wavelet.inference import null as INF_NULL
from tl_wavelet.inference import units as INF_UNITS

N, LEVEL = 32, 3


# ------------------------------------------------------------------ the runner
@dataclass(frozen=True)
class Same:
    """The call must equal the call with ``canonical`` in this argument's place."""

    canonical: Any


@dataclass(frozen=True)
class Raises:
    exc: type
    needle: str


OK = "ok"


@dataclass(frozen=True)
class Lazy:
    """A value built from the context (model, tokens) when the row runs."""

    make: Callable[[dict], Any]
    label: str

    def __repr__(self):
        return self.label


@dataclass
class Table:
    call: Callable[..., Any]  # call(ctx, **kwargs)
    base: Callable[[dict], dict]  # good kwargs
    rows: list = field(default_factory=list)
    model: bool = False  # check the model's hooks and loss afterwards
    view: Callable[[dict, Any], Any] = lambda ctx, r: r  # comparable form of a result (for Same)


def _value(v, ctx):
    return v.make(ctx) if isinstance(v, Lazy) else v


def _hook_counts(model):
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


def _same(a, b, path="result"):
    if isinstance(a, HeadReport):
        a, b = a.to_dataframe(), b.to_dataframe()
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, path
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def _run(table: Table, ctx: dict, name: str, value, expected):
    model = ctx["model"]
    kw = table.base(ctx)
    kw[name] = _value(value, ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample NaN warnings: tested in test_bad_input.py
        if isinstance(expected, type) or isinstance(expected, Raises):
            exc, needle = (expected.exc, expected.needle) if isinstance(expected, Raises) else (expected, name)
            with pytest.raises(exc) as e:
                table.call(ctx, **kw)
            assert needle in str(e.value), f"the message does not name {needle!r}: {e.value}"
        elif isinstance(expected, Same):
            got = table.view(ctx, table.call(ctx, **kw))
            want = table.view(ctx, table.call(ctx, **{**kw, name: _value(expected.canonical, ctx)}))
            _same(got, want)
        else:
            assert expected == OK
            table.call(ctx, **kw)
    if table.model:
        assert _hook_counts(model) == 0, "hooks left on the model"
        with torch.no_grad():
            assert float(model(ctx["toks"][:2], return_type="loss")) == ctx["clean_loss"]


# ------------------------------------------------------------------ shared values
def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


NAN_X = _x(2, 32)
NAN_X[0, 5] = math.nan
TOKS_FLOAT = Lazy(lambda c: c["toks"][:2].double(), "float tokens")
TOKS_NUMPY = Lazy(lambda c: c["toks"][:2].numpy(), "numpy tokens")
TOKS_LIST = Lazy(lambda c: c["toks"][:2].tolist(), "list tokens")
TOKS_2 = Lazy(lambda c: c["toks"][:2], "tokens[:2]")
TOKS_1 = Lazy(lambda c: c["toks"][:1], "one sequence")
TOKS_OOV = Lazy(lambda c: c["toks"][:2] + 1000, "ids outside the vocabulary")
TOKS_EMPTY = Lazy(lambda c: c["toks"][:0], "tokens[:0]")
TOKS_SHORT = Lazy(lambda c: c["toks"][:2, :4], "4 positions")
TEXT = " ".join(f"w{5 + i % 80}" for i in range(70))


def _report(ctx):
    return ctx["report"]


def _acc(ctx, **kw):
    return HeadAccumulator(ctx["model"], level=LEVEL, layers=[0], **kw)


def _sweep_df(ctx):
    return ctx["sweep"]


def _cs():
    cs = INF.ClusterSums(2)
    cs.add("x", torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 1, 1]))
    return cs


def _cmp(ctx, fed: bool = True):
    """A NullComparison of the random model's layer 0 (fed with 4 sequences of 2 documents unless ``fed=False``)."""
    if fed:
        return INF.measure_against_null(ctx["model"], ctx["toks"][:4], documents=[0, 0, 1, 1],
                                        reading=MetricConfig(level=LEVEL), layers=[0], progress=False)
    return INF.NullComparison(tlw.facts(ctx["model"]).shape, MetricConfig(level=LEVEL), [0], [0, 1])


def _cmp_head_values(ctx, **kw):
    cmp = _cmp(ctx)
    return cmp.head_values(cmp.sums.totals(torch.ones(1, 2)), **kw)


def _loss_with(ctx, hooks):
    hooks = [hooks] if isinstance(hooks, tuple) else hooks
    with torch.no_grad():
        return float(ctx["model"].run_with_hooks(ctx["toks"][:2], return_type="loss", fwd_hooks=hooks))


def _tracker(ctx, **kw):
    return T.Tracker(ctx["toks"][:4], every=1, metrics=dict(level=LEVEL), induction=None, **kw)


def _log(tracker, ctx):
    tracker.log(ctx["model"], 0)
    return tracker


def _frames(tr):
    return tr.to_dataframe(), tr.layer_dataframe()


def _closed_fig(fig):
    import matplotlib.pyplot as plt

    plt.close("all")
    return type(fig).__name__


INT_FORMS = lambda name, good: [(name, np.int64(good), Same(good)), (name, torch.tensor(good), Same(good)),  # noqa: E731
                                (name, float(good), TypeError), (name, True, TypeError), (name, str(good), TypeError)]
BOOL_FORMS = lambda name: [(name, "no", TypeError), (name, 1, TypeError), (name, None, TypeError)]  # noqa: E731

# ------------------------------------------------------------------ the tables
TRANSFORM_ROWS = [
    ("data", [[1.0, 2.0, 3.0, 4.0]], TypeError), ("data", torch.zeros(2, 0, dtype=torch.float64), ValueError),
    ("data", "abc", TypeError), ("data", NAN_X, OK), ("data", NAN_X.numpy(), TypeError),
    ("wavelet", "db99x", Raises(ValueError, "db99x")), ("wavelet", 3, TypeError), ("mode", "wrapx", Raises(ValueError, "wrapx")),
    ("mode", 3, TypeError), ("axis", 5, ValueError), ("axis", 1.0, TypeError), ("axis", np.int64(-1), Same(-1)),
]
LEVEL_ROWS = [("level", 0, OK), ("level", -1, ValueError), ("level", 99, ValueError), *INT_FORMS("level", 2),
              ("level", None, OK)]

TABLES: dict[Any, Table] = {
    # -------------------------------------------------------------- transforms (tl_wavelet.__all__)
    tlw.wavedec: Table(lambda c, **k: tlw.wavedec(**k), lambda c: dict(data=_x(2, 32), wavelet="db2", level=2),
                       TRANSFORM_ROWS + LEVEL_ROWS + [("dim", 1, Same(None)), ("axis", Lazy(lambda c: -1, "-1 with dim=1"),
                                                                                   OK)]),
    tlw.waverec: Table(lambda c, **k: tlw.waverec(**k), lambda c: dict(coeffs=tlw.wavedec(_x(2, 32), "db2", level=2)),
                       [("coeffs", [], ValueError), ("coeffs", "abc", TypeError), ("coeffs", [_x(2, 9)], OK),
                        ("coeffs", [_x(2, 9), _x(2, 3), _x(2, 17)], ValueError), ("coeffs", [_x(2, 9), None], Raises(TypeError, "coeffs[1]")),
                        ("coeffs", Lazy(lambda c: [t.numpy() for t in tlw.wavedec(_x(2, 32), "db2", level=2)], "numpy"),
                         Raises(TypeError, "coeffs[0]")),
                        ("wavelet", "db99x", Raises(ValueError, "db99x")), ("mode", "wrapx", Raises(ValueError, "wrapx")),
                        ("axis", 5, ValueError), ("axis", np.int64(-1), Same(-1))]),
    tlw.dwt: Table(lambda c, **k: tlw.dwt(**k), lambda c: dict(data=_x(2, 32), wavelet="db2"), TRANSFORM_ROWS),
    tlw.idwt: Table(lambda c, **k: tlw.idwt(**k), lambda c: dict(cA=_x(2, 17), cD=_x(2, 17, seed=1), wavelet="db2"),
                    [("cA", _x(2, 16), ValueError), ("cA", "abc", TypeError), ("cD", _x(3, 17), ValueError),
                     ("cD", None, TypeError), ("cA", _x(2, 17).numpy(), TypeError),
                     ("wavelet", "db99x", Raises(ValueError, "db99x")), ("axis", 5, ValueError)]),
    tlw.band_energy: Table(lambda c, **k: tlw.band_energy(**k), lambda c: dict(data=_x(2, 32), wavelet="db2", level=2),
                           TRANSFORM_ROWS + LEVEL_ROWS),
    tlw.band_labels: Table(lambda c, **k: tlw.band_labels(**k), lambda c: dict(level=3),
                           [("level", 0, OK), ("level", -1, ValueError), *INT_FORMS("level", 3)]),
    tlw.causal_bands: Table(lambda c, **k: tlw.causal_bands(**k), lambda c: dict(x=_x(2, 32), level=3),
                            [("x", [[1.0, 2.0]], TypeError), ("x", _x(2, 4), OK), ("x", NAN_X, OK),  # deep levels see zeros
                             ("x", _x(2, 32).numpy(), TypeError), ("level", 0, OK), ("level", -1, ValueError),
                             ("level", 9, OK),
                             *INT_FORMS("level", 3), ("wavelet", "db99x", Raises(ValueError, "db99x")),
                             ("dim", 5, ValueError), ("dim", np.int64(-1), Same(-1)), ("dim", 1.0, TypeError)]),
    tlw.dwt_max_level: Table(lambda c, **k: tlw.dwt_max_level(**k), lambda c: dict(n=64, wavelet="db2"),
                             [("n", -1, ValueError), ("n", 0, OK), *INT_FORMS("n", 64),  # pywt: 0 levels fit 0
                              ("wavelet", "db99x", Raises(ValueError, "db99x")), ("wavelet", 4, OK),  # a filter length
                              ("wavelet", 1, ValueError), ("wavelet", None, TypeError)]),
    # -------------------------------------------------------------- analysis
    tlw.facts: Table(lambda c, **k: tlw.facts(**k), lambda c: dict(model=c["model"]),
                     [("model", "gpt2", TypeError), ("model", None, TypeError), ("model", torch.nn.Linear(2, 2), TypeError)],
                     model=True),
    tlw.analyze_heads: Table(
        lambda c, **k: tlw.analyze_heads(c["model"], **k),
        lambda c: dict(tokens_or_texts=c["toks"][:4], level=LEVEL, layers=[0], progress=False, rope=False),
        [("tokens_or_texts", TOKS_NUMPY, Same(TOKS_2)), ("tokens_or_texts", TOKS_LIST, Same(TOKS_2)),
         ("tokens_or_texts", TOKS_FLOAT, TypeError), ("tokens_or_texts", TOKS_OOV, ValueError),
         ("tokens_or_texts", TOKS_EMPTY, ValueError), ("tokens_or_texts", TOKS_1, OK),
         ("layers", np.array([0]), Same([0])), ("layers", torch.tensor([-2]), Same([0])), ("layers", np.int64(0), Same([0])),
         ("batch_size", np.int64(2), Same(2)), ("level", np.int64(LEVEL), Same(LEVEL)),
         ("drop_first_key", "no", TypeError), ("attention_mask", "all", TypeError),
         ("attention", "flash", Raises(ValueError, "attention")), ("attention", None, Raises(ValueError, "attention")),
         ("attention", "blockwise", OK), ("block_size", 0, ValueError), ("block_size", 2.5, TypeError),
         ("allow_beyond_context", "yes", TypeError), ("on_checkpoint", 3, TypeError), ("resume", "state", TypeError),
         ("tokens_or_texts", Lazy(lambda c: torch.randint(4, 97, (2, 600)), "600 positions"),
          Raises(ValueError, "stated context is 512")),
         ("documents", [0], Raises(ValueError, "documents has 1 ids")), ("documents", [0.5, 1, 1, 2], TypeError),
         ("documents", "abcd", TypeError), ("documents", np.array([0, 0, 1, 1]), OK), ("documents", ["a", "a", "b", "b"], OK)],
        model=True),
    tlw.HeadAccumulator: Table(
        lambda c, **k: HeadAccumulator(c["model"], **k), lambda c: dict(level=LEVEL),
        [("layers", [9], ValueError), ("layers", np.array([-1]), Same([1])), ("layers", "0", TypeError),
         ("layers", [], ValueError), ("rope", "yes", TypeError), ("level", 0, ValueError),
         ("signal", "rows", ValueError), ("alphas", (0.0,), ValueError), ("documents", 3, TypeError),
         ("documents", "ab", TypeError), ("documents", [None, 1], TypeError), ("documents", torch.tensor([0, 1]), OK)],
        model=True, view=lambda c, acc: (acc.layers, acc.config)),
    tlw.MetricConfig: Table(
        lambda c, **k: MetricConfig(**k), lambda c: dict(),
        [("signal", "rows", ValueError), ("signal", 3, ValueError), ("wavelet", "db99x", Raises(ValueError, "db99x")),
         ("wavelet", 3, TypeError), ("level", 0, ValueError), *INT_FORMS("level", 3), ("mode", "wrapx", Raises(ValueError, "wrapx")),
         *BOOL_FORMS("paper"), ("band_wavelet", "db99x", Raises(ValueError, "db99x")), ("alphas", (1.5,), ValueError),
         ("alphas", (), TypeError), ("alphas", "0.5", TypeError), ("alphas", 0.5, Same((0.5,))),
         ("max_rows", 0, ValueError), ("max_rows", np.int64(8), Same(8)), *BOOL_FORMS("drop_first_key"),
         ("remove_dc", "no", TypeError), ("window", "nosuch", ValueError), ("padding", "nosuch", ValueError)]),
    tlw.metric_hooks: Table(
        lambda c, **k: tlw.metric_hooks(**k), lambda c: dict(accumulator=_acc(c, rope=False)),
        [("accumulator", "acc", TypeError), ("accumulator", None, TypeError)], model=True),
    HeadReport: Table(
        lambda c, **k: HeadReport(**k),
        lambda c: {f: getattr(c["report"], f) for f in ("config", "shape", "layers", "n_sequences", "seq_len", "stats")},
        [("config", "cfg", TypeError), ("layers", [5], ValueError), ("n_sequences", 0, ValueError),
         ("n_sequences", 2.0, TypeError), ("seq_len", 0, ValueError), ("stats", {}, ValueError),
         ("n_sequences", np.int64(4), Same(4)), ("se_unit", "window", ValueError)]),
    HeadReport.to_dataframe: Table(lambda c, **k: c["report_tiny"].to_dataframe(), lambda c: {}, [("_two_sequences", None, OK)]),
    HeadReport.layer_summary: Table(lambda c, **k: c["report_tiny"].layer_summary(), lambda c: {},
                                    [("_two_sequences", None, OK)]),
    HeadReport.layer_rho: Table(lambda c, **k: c["report_tiny"].layer_rho(), lambda c: {},
                                [("_two_sequences", None, OK)]),
    HeadReport.tensor: Table(lambda c, **k: _report(c).tensor(**k), lambda c: dict(metric="spectral_entropy"),
                             [("metric", "nosuch", Raises(ValueError, "nosuch")), ("metric", 3, TypeError),
                              ("se", "no", TypeError), ("se", np.bool_(True), Same(True))]),
    HeadReport.rope_usage: Table(lambda c, **k: _report(c).rope_usage(), lambda c: {}, [("_no_rope", None, Raises(ValueError, "rope=False"))]),
    HeadReport.plot_scales: Table(lambda c, **k: _closed_fig(_report(c).plot_scales(**k)), lambda c: {},
                                  [("nosuch_option", 1, TypeError)]),
    HeadReport.plot_bands: Table(lambda c, **k: _closed_fig(_report(c).plot_bands()), lambda c: {}, [("_", None, OK)]),
    HeadReport.plot_rho: Table(lambda c, **k: _closed_fig(_report(c).plot_rho(**k)), lambda c: {},
                               [("nosuch_option", 1, TypeError)]),
    HeadReport.plot_uncertainty: Table(lambda c, **k: _closed_fig(_report(c).plot_uncertainty()), lambda c: {},
                                       [("_", None, OK)]),
    HeadReport.plot_rope_usage: Table(lambda c, **k: _closed_fig(_report(c).plot_rope_usage()), lambda c: {},
                                      [("_no_rope", None, Raises(ValueError, "rope"))]),
    HeadAccumulator.add: Table(
        lambda c, **k: _acc(c, rope=False).add(**k),
        lambda c: dict(layer=0, activation=torch.softmax(_x(1, 4, N, N), -1).tril().float()),
        [("layer", 1, Raises(ValueError, "layer 1")), ("layer", np.int64(0), OK), ("layer", "0", Raises(ValueError, "layer")),
         ("activation", torch.full((1, 4, N, N), math.nan), Raises(ValueError, "NaN")),
         ("activation", _x(4, N, N), ValueError), ("activation", "p", TypeError),
         ("activation", torch.softmax(_x(1, 4, 4, 4), -1).tril(), Raises(ValueError, "at least 24 positions")),
         ("kind", "nosuch", ValueError)]),
    HeadAccumulator.add_rope: Table(
        lambda c, **k: _acc(c).add_rope(**k),
        lambda c: dict(layer=0, which="q", activation=_x(1, N, c["model"].cfg.n_heads, c["model"].cfg.d_head).float()),
        [("layer", 1, Raises(ValueError, "layer 1")), ("layer", np.int64(0), OK), ("layer", "0", Raises(ValueError, "layer")),
         ("which", "v", ValueError), ("which", 0, ValueError), ("activation", "q", TypeError),
         ("activation", _x(N, 4), ValueError), ("activation", torch.zeros(1, N, 4, 8, dtype=torch.long), TypeError)]),
    HeadAccumulator.hooks: Table(lambda c, **k: _acc(c).hooks(), lambda c: {}, [("_", None, OK)], model=True),
    HeadAccumulator.state_dict: Table(lambda c, **k: _acc(c).state_dict(), lambda c: {}, [("_empty", None, OK)]),
    HeadAccumulator.load_state_dict: Table(
        lambda c, **k: _acc(c, rope=False).load_state_dict(**k), lambda c: dict(sd=_acc(c, rope=False).state_dict()),
        [("sd", "state", TypeError), ("sd", {}, ValueError),
         ("sd", Lazy(lambda c: HeadAccumulator(c["model"], level=LEVEL, layers=[1], rope=False).state_dict(),
                     "another layer's state"), ValueError)]),
    HeadAccumulator.reset: Table(lambda c, **k: _acc(c).reset(), lambda c: {}, [("_", None, OK)]),
    HeadAccumulator.merge: Table(
        lambda c, **k: _acc(c, rope=False).merge(**k), lambda c: dict(other=_acc(c, rope=False)),
        [("other", "acc", TypeError), ("other", None, TypeError),
         ("other", Lazy(lambda c: HeadAccumulator(c["model"], level=2, layers=[0], rope=False), "level 2"), ValueError)]),
    HeadAccumulator.report: Table(lambda c, **k: _acc(c).report(), lambda c: {},
                                  [("_nothing_measured", None, Raises(RuntimeError, "run the model with these hooks"))]),
    stream: Table(
        lambda c, **k: stream(c["model"], **k),
        lambda c: dict(tokens=c["toks"][:2], accumulators=[_acc(c, rope=False)], progress=False),
        [("accumulators", [], ValueError), ("accumulators", "acc", TypeError), ("accumulators", [None], TypeError),
         ("tokens", TOKS_FLOAT, TypeError), ("tokens", TOKS_OOV, ValueError), ("tokens", TOKS_SHORT, ValueError),
         ("batch_size", 0, ValueError), ("batch_size", 1.5, TypeError), *BOOL_FORMS("progress"),
         ("attention", "flash", Raises(ValueError, "attention")), ("block_size", -1, ValueError),
         *BOOL_FORMS("allow_beyond_context"), ("checkpoint_every", 0, ValueError), ("on_checkpoint", "f", TypeError),
         ("resume", "state", TypeError), ("resume", {"kind": "other"}, TypeError)],
        model=True),
    layer_metrics: Table(
        lambda c, **k: layer_metrics(**k),
        lambda c: dict(activation=torch.softmax(_x(1, 2, N, N), -1).tril(), cfg=MetricConfig(level=LEVEL)),
        [("activation", torch.full((1, 2, N, N), math.nan), Raises(ValueError, "NaN")), ("activation", _x(2, N), ValueError),
         ("activation", _x(1, 2, 4, N), Raises(ValueError, "pattern must be square")),
         ("activation", "p", TypeError), ("cfg", "cfg", TypeError), ("kind", "nosuch", ValueError),
         ("activation", Lazy(lambda c: torch.softmax(_x(1, 2, 4, 4), -1).tril(), "4 positions"),
          Raises(ValueError, "at least 24 positions"))]),
    rope_pair_energy: Table(
        lambda c, **k: rope_pair_energy(**k), lambda c: dict(x=_x(2, 8, 4, 16), rotary_dim=16),
        [("rotary_dim", 15, ValueError), ("rotary_dim", 32, ValueError), ("rotary_dim", 0, ValueError),
         *INT_FORMS("rotary_dim", 16), ("x", _x(8, 16), ValueError), ("x", "x", TypeError),
         *BOOL_FORMS("adjacent_pairs")]),
    tlw.multiverse: Table(
        lambda c, **k: tlw.multiverse(c["model"], **k),
        lambda c: dict(tokens_or_texts=c["toks"][:4], axes={"signal": ["offset_profile"], "level": [LEVEL], "wavelet": ["db2"]},
                       layers=[0], n_groups=2, progress=False),
        [("axes", {"nosuch": [1]}, Raises(ValueError, "nosuch")), ("axes", "signal", TypeError),
         ("layers", [9], ValueError), ("layers", np.array([-2]), Same([0])), ("n_groups", 0, ValueError),
         ("n_groups", 2.0, TypeError), ("alphas", (1.5,), ValueError), ("max_rows", 0, ValueError),
         ("tokens_or_texts", TOKS_FLOAT, TypeError), ("tokens_or_texts", TOKS_NUMPY, Same(TOKS_2)),
         *BOOL_FORMS("progress"), ("documents", [0], Raises(ValueError, "documents has 1 ids")),
         ("documents", [0.5, 1.0, 1.0, 2.0], Raises(TypeError, "documents")), ("documents", [0, 0, 1, 1], OK)],
        model=True),
    tlw.rope_frequencies: Table(
        lambda c, **k: tlw.rope_frequencies(**k), lambda c: dict(model=c["model"], layers=[0]),
        [("layers", [9], ValueError), ("layers", np.array([-2]), Same([0])), ("layers", "0", TypeError),
         ("model", "gpt2", TypeError)], model=True),
    # -------------------------------------------------------------- compare
    CMP.received_attention: Table(
        lambda c, **k: CMP.received_attention(**k), lambda c: dict(pattern=torch.softmax(_x(1, 2, 8, 8), -1).tril()),
        [("pattern", _x(8), ValueError), ("pattern", _x(1, 2, 8, 6), ValueError), ("pattern", "p", TypeError),
         *BOOL_FORMS("drop_first_key"), ("causal", "no", TypeError), ("dtype", "float64", TypeError)]),
    CMP.scale_sensitivity_rerun: Table(
        lambda c, **k: CMP.scale_sensitivity_rerun(c["model"], **k),
        lambda c: dict(tokens=c["toks"][:2], alphas=(0.5,), level=LEVEL, layers=[0], progress=False),
        [("tokens", TOKS_FLOAT, TypeError), ("tokens", TOKS_OOV, ValueError), ("tokens", TOKS_NUMPY, Same(TOKS_2)),
         ("tokens", [TEXT], Raises(ValueError, "seq_len")), ("alphas", (1.5,), ValueError),
         ("wavelet", "db99x", Raises(ValueError, "db99x")), ("level", 0, ValueError), ("level", np.int64(LEVEL), Same(LEVEL)),
         ("layers", [9], ValueError), ("layers", [-2], Same([0])), ("batch_size", 0, ValueError),
         ("seq_len", 999, ValueError), ("n_sequences", 0, ValueError), *BOOL_FORMS("progress"),
         ("documents", [0], Raises(ValueError, "documents has 1 ids")), ("documents", [0, 1], OK),
         ("documents", np.array([0, 1]), Same([0, 1]))],
        model=True),
    CMP.position_encoding_table: Table(
        lambda c, **k: CMP.position_encoding_table(**k), lambda c: dict(results={}),
        [("results", {}, OK), ("results", "x", TypeError), ("results", {"m": 3}, TypeError),
         ("results", {"m": ("rotary", "df")}, TypeError)]),
    CMP.paper_table4: Table(lambda c, **k: CMP.paper_table4(), lambda c: {}, [("_", None, OK)]),
    # -------------------------------------------------------------- ablation
    A.BandSpec: Table(
        lambda c, **k: A.BandSpec(**k), lambda c: dict(level=LEVEL),
        [*BOOL_FORMS("causal"), ("wavelet", "db99x", Raises(ValueError, "db99x")), ("level", 0, ValueError),
         *INT_FORMS("level", 3), ("mode", "wrapx", Raises(ValueError, "wrapx"))]),
    AP.resolve_bands: Table(
        lambda c, **k: AP.resolve_bands(**k), lambda c: dict(bands=["A3"], level=LEVEL),
        [("bands", [], ValueError), ("bands", ["D9"], Raises(ValueError, "D9")), ("bands", [9], ValueError),
         ("bands", [-1], Same(["D1"])), ("bands", np.array([0]), Same(["A3"])), ("bands", [1.0], TypeError),
         ("level", 0, ValueError), ("level", np.int64(LEVEL), Same(LEVEL))]),
    A.band_components: Table(
        lambda c, **k: A.band_components(**k), lambda c: dict(x=_x(2, 32, 3), level=LEVEL),
        [("x", _x(32), ValueError), ("x", _x(2, 4, 3), ValueError), ("x", "x", TypeError),
         ("x", _x(2, 32, 3).numpy(), TypeError), ("level", 0, ValueError), *BOOL_FORMS("causal"),
         ("band_wavelet", "db99x", Raises(ValueError, "db99x"))]),
    A.patch_bands: Table(
        lambda c, **k: A.patch_bands(**k), lambda c: dict(x=_x(2, 32, 3), remove=[0], level=LEVEL),
        [("remove", [9], ValueError), ("remove", [-1], Same([3])), ("remove", ["D1"], Same([3])),
         ("remove", np.array([0]), Same([0])), ("remove", [], OK), ("remove", [1.5], TypeError),
         ("method", "median", ValueError), ("reference", _x(2, 16, 3), ValueError), ("seed", "1", TypeError),
         ("x", _x(32), ValueError)]),
    AS.derangement: Table(
        lambda c, **k: AS.derangement(**k), lambda c: dict(n=4),
        [("n", 1, ValueError), ("n", 0, ValueError), *INT_FORMS("n", 4), ("seed", "1", TypeError),
         ("seed", np.int64(3), Same(3))]),
    A.band_ablation_hook: Table(
        lambda c, **k: A.band_ablation_hook(**k), lambda c: dict(layer=1, heads=0, bands=["A3"], level=LEVEL),
        [("layer", np.int64(1), Same(1)), ("layer", 1.0, TypeError), ("heads", np.array([0, 1]), Same([0, 1])),
         ("heads", torch.tensor(0), Same(0)), ("heads", [], ValueError), ("bands", [], ValueError),
         ("method", "median", ValueError), ("causal", "no", TypeError), ("level", 0, ValueError),
         ("seed", "1", TypeError), ("reference", _x(2, 32), ValueError), ("reference", _x(2, 32, 4, 16), ValueError),
         ("model", "gpt2", TypeError)],
        model=True, view=_loss_with),
    A.RopeBand: Table(
        lambda c, **k: A.RopeBand(**k), lambda c: dict(name="R0", pairs=(0, 1), wavelength_min=6.0, wavelength_max=9.0),
        [("pairs", (), ValueError), ("pairs", (-1,), ValueError), ("wavelength_min", 10.0, ValueError)]),
    A.rope_bands: Table(
        lambda c, **k: A.rope_bands(c["model"], **k), lambda c: dict(layer=0, n_bands=2),
        [("layer", 9, ValueError), ("layer", -2, Same(0)), ("layer", np.int64(0), Same(0)), ("layer", 0.0, TypeError),
         ("n_bands", 0, ValueError), ("n_bands", 99, ValueError), ("n_bands", np.int64(2), Same(2))], model=True),
    AR.resolve_rope_bands: Table(
        lambda c, **k: AR.resolve_rope_bands(c["model"], **k), lambda c: dict(layer=0, bands=["R0"], n_bands=2),
        [("bands", [], ValueError), ("bands", ["R9"], Raises(ValueError, "R9")), ("bands", [9], ValueError),
         ("bands", [-1], Same([7])), ("bands", np.array([1]), Same([1])), ("layer", 9, ValueError)],  # ints: rotary pairs
        model=True),
    AR.rope_pair_dims: Table(
        lambda c, **k: AR.rope_pair_dims(**k), lambda c: dict(pairs=[0, 1], rotary_dim=16),
        [("pairs", [8], ValueError), ("pairs", [-1], Same([7])), ("pairs", np.array([0, 1]), Same([0, 1])),
         ("rotary_dim", 15, ValueError), ("rotary_dim", 0, ValueError), *BOOL_FORMS("adjacent_pairs")]),
    AR.rope_keep_mask: Table(
        lambda c, **k: AR.rope_keep_mask(**k), lambda c: dict(n_heads=4, d_head=16, heads=[0], dims=[0, 8]),
        [("heads", [4], ValueError), ("heads", [-1], Same([3])), ("dims", [16], ValueError), ("dims", [-1], Same([15])),
         ("n_heads", 0, ValueError), ("d_head", 2.0, TypeError), ("heads", np.array([0]), Same([0]))]),
    A.rope_ablation_hook: Table(
        lambda c, **k: A.rope_ablation_hook(c["model"], **k), lambda c: dict(layer=0, heads=0, bands=["R0"]),
        [("layer", np.int64(0), Same(0)), ("layer", -2, Same(0)), ("heads", np.array([0]), Same([0])),
         ("heads", [], ValueError), ("bands", np.array([0]), Same([0])), ("on", "v", ValueError)],
        model=True, view=_loss_with),
    A.band_sweep: Table(
        lambda c, **k: A.band_sweep(c["model"], **k),
        lambda c: dict(tokens=c["toks"][:2], layers=[1], heads=[0], bands=["A3"], level=LEVEL, progress=False),
        [("tokens", TOKS_FLOAT, TypeError), ("tokens", TOKS_EMPTY, ValueError),
         ("tokens", TOKS_SHORT, Raises(ValueError, "sequences of at least 2^3 = 8 positions")),
         ("tokens", TOKS_1, OK), ("tokens", TOKS_NUMPY, Same(TOKS_2)), ("layers", np.int64(-1), Same([1])),
         ("cells_per_forward", 0, ValueError), ("cells_per_forward", 1.5, TypeError), ("cells_per_forward", "2", TypeError),
         ("cells_per_forward", np.int64(1), Same(None)),
         ("heads", torch.tensor([0]), Same([0])), ("bands", np.array([0]), Same(["A3"])),
         ("seed", np.int64(0), Same(0)), ("on_checkpoint", "f", TypeError), ("resume", "state", TypeError),
         ("documents", [0], Raises(ValueError, "documents has 1 ids")), ("documents", [0.5, 1.0], TypeError),
         ("documents", np.array([3, 4]), OK)],
        model=True),
    ASW.position_buckets: Table(
        lambda c, **k: ASW.position_buckets(**k), lambda c: dict(n=64),
        [("n", 0, ValueError), ("n", -4, ValueError), *INT_FORMS("n", 64)]),
    A.SweepAccessor: Table(
        lambda c, **k: A.SweepAccessor(**k), lambda c: dict(df=_sweep_df(c)),
        [("df", pd.DataFrame({"x": [1]}), Raises(AttributeError, "layer, head, band")), ("df", "df", TypeError)]),
    A.SweepAccessor.top: Table(
        lambda c, **k: _sweep_df(c).sweep.top(**k), lambda c: dict(n=2),
        [("n", 0, ValueError), ("n", np.int64(2), Same(2)), ("n", 1.5, TypeError), ("by", "nosuch", Raises(ValueError, "nosuch"))]),
    A.SweepAccessor.plot: Table(
        lambda c, **k: _closed_fig(_sweep_df(c).sweep.plot(**k)), lambda c: {},
        [("value", "nosuch", Raises(ValueError, "nosuch")), ("bands", ["D9"], Raises(ValueError, "D9")),
         ("bands", "A3", Same(["A3"])), ("bands", 3, TypeError)]),
    # -------------------------------------------------------------- corpus
    C.manifest: Table(lambda c, **k: C.manifest(), lambda c: {}, [("_", None, OK)]),
    C.available_genres: Table(lambda c, **k: C.available_genres(), lambda c: {}, [("_", None, OK)]),
    C.default_corpus: Table(lambda c, **k: C.default_corpus(), lambda c: {}, [("_", None, OK)]),
    C.long_corpus: Table(lambda c, **k: C.long_corpus(), lambda c: {}, [("_", None, OK)]),
    C.load_texts: Table(
        lambda c, **k: C.load_texts(**k), lambda c: dict(genres=None),
        [("genres", "nosuch", Raises(ValueError, "nosuch")), ("genres", 3, TypeError), ("genres", [], ValueError),
         ("genres", [3], TypeError)]),
    C.token_stream: Table(
        lambda c, **k: C.token_stream(**k), lambda c: dict(model_or_tokenizer=c["model"], texts=[TEXT]),
        [("texts", 3, TypeError), ("texts", [], ValueError), ("texts", [3], TypeError), ("texts", TEXT, Same([TEXT])),
         ("model_or_tokenizer", "gpt2", TypeError), ("model_or_tokenizer", None, TypeError)]),
    C.chunk_tokens: Table(
        lambda c, **k: C.chunk_tokens(**k), lambda c: dict(model_or_tokenizer=c["model"], texts=[TEXT], seq_len=16),
        [("seq_len", 0, ValueError), ("seq_len", 1, ValueError), *INT_FORMS("seq_len", 16), ("n_sequences", 0, ValueError),
         ("n_sequences", 99, ValueError), ("n_sequences", np.int64(2), Same(2)), *BOOL_FORMS("prepend_bos"),
         *BOOL_FORMS("per_document"), ("texts", [], ValueError), ("texts", [3], TypeError), ("texts", "", Raises(ValueError, "too short for one window")),
         ("model_or_tokenizer", "gpt2", TypeError)]),
    C.chunk_documents: Table(
        lambda c, **k: C.chunk_documents(**k), lambda c: dict(model_or_tokenizer=c["model"], texts=[TEXT, TEXT], seq_len=16),
        [("seq_len", 0, ValueError), ("seq_len", 1, ValueError), *INT_FORMS("seq_len", 16), ("n_sequences", 0, ValueError),
         ("n_sequences", 99, ValueError), ("n_sequences", np.int64(2), Same(2)), *BOOL_FORMS("prepend_bos"),
         *BOOL_FORMS("per_document"), ("texts", [], ValueError), ("texts", [3], TypeError),
         ("texts", "", Raises(ValueError, "too short for one window")), ("model_or_tokenizer", "gpt2", TypeError)]),
    C.induction_tokens: Table(
        lambda c, **k: C.induction_tokens(**k), lambda c: dict(n_sequences=2, half_len=8, vocab_size=97),
        [("n_sequences", 0, ValueError), *INT_FORMS("n_sequences", 2), ("half_len", 0, ValueError),
         ("vocab_size", 0, ValueError), ("vocab_size", 1, OK), ("seed", "1", TypeError), ("bos_token_id", 97, ValueError),
         ("bos_token_id", -1, ValueError), ("bos_token_id", np.int64(3), Same(3)),
         ("exclude_token_ids", range(97), ValueError), ("exclude_token_ids", 3, TypeError)]),
    C.read_text_files: Table(
        lambda c, **k: C.read_text_files(**k), lambda c: dict(paths=[c["text_file"]]),
        [("paths", "/nonexistent/x.txt", Raises(FileNotFoundError, "/nonexistent/x.txt")), ("paths", 3, TypeError),
         ("paths", [], ValueError), ("paths", Lazy(lambda c: c["binary_file"], "binary file"), Raises(ValueError, "binary")),
         ("paths", Lazy(lambda c: str(c["text_file"]), "str path"), Same(Lazy(lambda c: [c["text_file"]], "[path]")))]),
    # -------------------------------------------------------------- track
    T.Tracker: Table(
        lambda c, **k: T.Tracker(**k), lambda c: dict(probe_tokens=c["toks"][:4], metrics=dict(level=LEVEL)),
        [("probe_tokens", TOKS_FLOAT, TypeError), ("probe_tokens", TOKS_EMPTY, ValueError),
         ("probe_tokens", Lazy(lambda c: c["toks"][:4].numpy(), "numpy probe"), Same(Lazy(lambda c: c["toks"][:4], "probe"))),
         ("probe_tokens", "text", TypeError), ("every", 0, ValueError), *INT_FORMS("every", 2), ("layers", "0", TypeError),
         ("layers", [], ValueError), ("metrics", "cfg", TypeError), ("metrics", dict(level=0), Raises(ValueError, "level")),
         ("metrics", dict(signal="z"), Raises(ValueError, "signal")), ("sweep", "atp", TypeError),
         ("out", "log.txt", ValueError), ("induction", (0, 4), ValueError), ("induction", "x", TypeError),
         ("induction", (np.int64(2), 4), Same((2, 4))), ("batch_size", 0, ValueError), ("seed", "1", TypeError)],
        view=lambda c, tr: _frames(_log(tr, c))),
    T.Tracker.log: Table(
        lambda c, **k: _tracker(c, **k.pop("_init", {})).log(**k), lambda c: dict(model=c["model"], step=0),
        [("step", -1, ValueError), ("step", "0", TypeError), ("step", 1.0, TypeError), ("step", np.int64(0), Same(0)),
         ("force", "yes", TypeError), ("model", "gpt2", TypeError),
         ("_init", dict(layers=[9]), Raises(ValueError, "layers"))], model=True),
    T.Tracker.to_dataframe: Table(lambda c, **k: _log(_tracker(c), c).to_dataframe(), lambda c: {}, [("_", None, OK)],
                                  model=True),
    T.Tracker.layer_dataframe: Table(lambda c, **k: _tracker(c).layer_dataframe(), lambda c: {}, [("_empty", None, OK)]),
    T.Tracker.sweep_dataframe: Table(lambda c, **k: _tracker(c).sweep_dataframe(), lambda c: {}, [("_empty", None, OK)]),
    T.Tracker.losses: Table(lambda c, **k: _tracker(c).losses(), lambda c: {}, [("_empty", None, OK)]),
    T.TrackerCallback: Table(lambda c, **k: T.TrackerCallback(**k), lambda c: dict(tracker=_tracker(c)),
                             [("tracker", "t", TypeError), ("tracker", None, TypeError)]),
    T.track_checkpoints: Table(
        lambda c, **k: T.track_checkpoints(**k),
        lambda c: dict(load_fn=lambda s: c["model"], steps=[0], probe_tokens=c["toks"][:4], progress=False,
                       metrics=dict(level=LEVEL), induction=None),
        [("load_fn", 3, TypeError), ("steps", [], ValueError), ("steps", 5, TypeError), ("steps", ["a"], TypeError),
         ("steps", [-1], ValueError), ("steps", np.array([0]), Same([0])), *BOOL_FORMS("progress"),
         ("probe_tokens", TOKS_FLOAT, TypeError)],
        model=True, view=lambda c, tr: _frames(tr)),
    T.pythia_steps: Table(lambda c, **k: T.pythia_steps(**k), lambda c: {},
                          [("v0", False, Same(False)), *BOOL_FORMS("v0")]),
    T.checkpoint_steps: Table(lambda c, **k: T.checkpoint_steps(**k), lambda c: dict(name="EleutherAI/pythia-70m"),
                              [("name", 3, TypeError), ("name", "no/such-model", Raises(ValueError, "no/such-model"))]),
    T.revision_name: Table(lambda c, **k: T.revision_name(**k), lambda c: dict(name="EleutherAI/pythia-70m", step=1000),
                           [("name", 3, TypeError), *INT_FORMS("step", 1000), ("step", -1, ValueError)]),
    T.hub_revision_loader: Table(
        lambda c, **k: T.hub_revision_loader(**k), lambda c: dict(name="EleutherAI/pythia-70m"),
        [("name", "", TypeError), ("name", 3, TypeError), ("dtype", "float32", TypeError), ("revision", "step0", TypeError),
         *BOOL_FORMS("offline")[:2]]),
    T.tl_checkpoint_loader: Table(lambda c, **k: T.tl_checkpoint_loader(**k), lambda c: dict(name="pythia-14m"),
                                  [("name", 3, TypeError), ("name", None, TypeError)]),
    T.read_log: Table(
        lambda c, **k: T.read_log(**k), lambda c: dict(path=c["log_path"]),
        [("table", "nosuch", ValueError), ("table", 3, ValueError), ("path", 3, TypeError),
         ("path", "/nonexistent/log.csv", Raises(FileNotFoundError, "/nonexistent/log"))]),
    # -------------------------------------------------------------- inference
    INF.t_quantile: Table(lambda c, **k: INF.t_quantile(**k), lambda c: dict(p=0.975, df=9),
                          [("p", 0.0, ValueError), ("p", 1.5, ValueError), ("p", "0.9", ValueError), ("df", 0, ValueError),
                           ("df", -2.0, ValueError), ("p", 0.5, OK), ("df", 9.0, Same(9))]),
    INF.ClusterSums: Table(lambda c, **k: INF.ClusterSums(**k), lambda c: dict(n_clusters=2),
                           [("n_clusters", 0, ValueError), ("n_clusters", 2.0, TypeError), ("n_clusters", np.int64(2), Same(2))],
                           view=lambda c, cs: cs.n_clusters),
    INF.ClusterSums.add: Table(
        lambda c, **k: INF.ClusterSums(2).add(**k),
        lambda c: dict(key="x", values=torch.ones(3, 2), clusters=torch.tensor([0, 1, 1])),
        [("key", 3, TypeError), ("values", "v", TypeError), ("clusters", torch.tensor([0, 1]), ValueError),
         ("clusters", torch.tensor([0, 1, 2]), Raises(ValueError, "codes 0..1")), ("clusters", torch.zeros(3), ValueError),
         ("values", torch.tensor([[math.nan, 1.0]] * 3), OK)]),
    INF.ClusterSums.totals: Table(
        lambda c, **k: _cs().totals(**k), lambda c: dict(weights=torch.ones(1, 2)),
        [("weights", torch.ones(2), ValueError), ("weights", torch.ones(1, 3), Raises(ValueError, "weights must be [replicates, 2]")),
         ("weights", "w", TypeError)], view=lambda c, t: dict(t)),
    INF.ClusterSums.cluster_sizes: Table(lambda c, **k: _cs().cluster_sizes(**k), lambda c: dict(key="x"),
                                         [("key", "nosuch", Raises(ValueError, "nosuch"))]),
    INF.Estimate: Table(lambda c, **k: INF.resample(_cs(), lambda t: t["x"][0]), lambda c: {}, [("_", None, OK)]),
    INF.resample: Table(
        lambda c, **k: INF.resample(**k), lambda c: dict(sums=_cs(), stat=lambda t: t["x"][0] / t["x"][1]),
        [("method", "nosuch", ValueError), ("level", 95, ValueError), ("level", 1.0, ValueError), ("method", "bootstrap", OK),
         ("sums", "s", TypeError), ("stat", "f", TypeError)], view=lambda c, e: (e.value, e.se, e.low, e.high)),
    INF.coverage: Table(
        lambda c, **k: INF.coverage(**k), lambda c: dict(n_replicates=3),
        [("statistic", "median", ValueError), ("n_replicates", 0, ValueError), ("n_replicates", 3.0, TypeError),
         ("windows", (5, 2), ValueError), ("windows", [2, 5], ValueError), ("icc", 1.0, ValueError), ("method", "x", ValueError),
         ("n_documents", 1, ValueError), ("n_replicates", np.int64(3), Same(3))]),
    INF.as_clusters: Table(
        lambda c, **k: INF.as_clusters(**k), lambda c: dict(ids=[0, 1], n=2),
        [("ids", [0], ValueError), ("ids", "ab", TypeError), ("ids", [0.5, 1.0], TypeError), ("ids", [True, False], TypeError),
         ("ids", np.array([0, 1]), Same([0, 1])), ("ids", torch.tensor([0, 1]), Same([0, 1])),
         ("ids", torch.tensor([0.0, 1.0]), TypeError), ("ids", None, OK)],
        view=lambda c, r: (r[0].tolist(), r[1])),
    INF_UNITS.tokens_and_documents: Table(
        lambda c, **k: INF_UNITS.tokens_and_documents(c["model"], **k), lambda c: dict(data=c["toks"][:2], default_seq_len=16),
        [("data", TOKS_FLOAT, TypeError), ("documents", [0], Raises(ValueError, "documents has 1 ids")),
         ("data", [TEXT, TEXT], OK), ("data", TOKS_NUMPY, Same(TOKS_2)), ("seq_len", 999, ValueError),
         ("documents", np.array([3, 4]), Same([3, 4]))],
        view=lambda c, r: (r[0], r[1] and list(r[1]), r[2])),
    INF.DecayFit: Table(lambda c, **k: INF.DecayFit(torch.zeros(5), torch.tensor(0.0), torch.tensor(1.0)), lambda c: {},
                        [("_", None, OK)], view=lambda c, f: f.theta),
    INF_NULL.decay_features: Table(lambda c, **k: INF_NULL.decay_features(**k), lambda c: dict(n=8),
                              [("n", 1, ValueError), ("n", 8.0, TypeError), ("n", np.int64(8), Same(8)), ("n", "8", TypeError)]),
    INF.fit_decay_law: Table(
        lambda c, **k: INF.fit_decay_law(**k), lambda c: dict(pattern=torch.softmax(_x(2, 16, 16), -1).tril()),
        [("pattern", torch.softmax(_x(5, 5), -1), Raises(ValueError, "n >= 8")), ("pattern", "p", TypeError),
         ("pattern", _x(4, 16), ValueError), ("pattern", torch.ones(16, 16, dtype=torch.long), TypeError),
         ("pattern", _x(16), ValueError)], view=lambda c, f: (f.theta, f.sigma, f.r2)),
    INF.surrogate_patterns: Table(
        lambda c, **k: INF.surrogate_patterns(**k),
        lambda c: dict(fit=INF.DecayFit(torch.zeros(5, dtype=torch.float64), torch.tensor(0.5), torch.tensor(1.0)), n=16),
        [("n", 1, ValueError), ("n", 16.0, TypeError), ("fit", "f", TypeError), ("noise", _x(3), Raises(ValueError, "noise")),
         ("noise", _x(16), OK), ("noise", "x", TypeError),
         ("fit", INF.DecayFit(torch.zeros(4), torch.tensor(0.0), torch.tensor(1.0)), Raises(ValueError, "fit.theta"))]),
    INF.NullComparison: Table(
        lambda c, **k: INF.NullComparison(**k),
        lambda c: dict(shape=tlw.facts(c["model"]).shape, reading=MetricConfig(level=LEVEL), layers=[0], labels=[0, 1]),
        [("reading", "literal", TypeError), ("reading", MetricConfig(signal="z"), Raises(ValueError, "signal='z'")),
         ("shape", "s", TypeError), ("labels", [], ValueError), ("labels", "ab", ValueError)],
        view=lambda c, cmp: (cmp.layers, cmp.labels)),
    INF.NullComparison.update: Table(
        lambda c, **k: _cmp(c, fed=False).update(**k),
        lambda c: dict(layer=0, pattern=torch.softmax(_x(2, 4, N, N), -1).tril().float(), clusters=torch.tensor([0, 1]),
                       index=torch.tensor([0, 1])),
        [("layer", 1, Raises(ValueError, "layer 1")), ("layer", "0", ValueError), ("pattern", "p", TypeError),
         ("pattern", _x(2, 4, N, 8), ValueError), ("pattern", _x(2, 3, N, N), Raises(ValueError, "4 heads")),
         ("clusters", torch.tensor([0]), ValueError), ("index", torch.tensor([0, 1, 2]), ValueError)]),
    INF.NullComparison.commit: Table(lambda c, **k: _cmp(c, fed=False).commit(**k), lambda c: dict(n_sequences=0),
                                     [("n_sequences", -1, ValueError), ("n_sequences", 1.0, TypeError)]),
    INF.NullComparison.rollback: Table(lambda c, **k: _cmp(c, fed=False).rollback(), lambda c: {}, [("_", None, OK)]),
    INF.NullComparison.finish: Table(lambda c, **k: _cmp(c).finish(**k), lambda c: dict(batch_size=2),
                                     [("batch_size", 0, ValueError), ("progress", "no", TypeError)]),
    INF.NullComparison.metrics: Table(lambda c, **k: _cmp(c).metrics(), lambda c: {}, [("_", None, OK)]),
    INF.NullComparison.head_values: Table(
        lambda c, **k: _cmp_head_values(c, **k), lambda c: dict(kind="real", metric="spec_low"),
        [("kind", "other", ValueError), ("metric", "nosuch", Raises(ValueError, "nosuch")), ("metric", 3, ValueError)]),
    INF.NullComparison.estimate: Table(
        lambda c, **k: _cmp(c).estimate(**k), lambda c: dict(stat=lambda t: t["real|0|spectral_entropy"][0]),
        [("stat", "f", TypeError), ("method", "x", ValueError), ("level", 2.0, ValueError)],
        view=lambda c, e: (e.value, e.se)),
    INF.NullComparison.head_table: Table(
        lambda c, **k: _cmp(c).head_table(**k), lambda c: dict(metrics=("spec_low",)),
        [("metrics", "spec_low", TypeError), ("metrics", [], ValueError), ("metrics", ["nosuch"], Raises(ValueError, "nosuch")),
         ("metrics", ["rho"], OK)]),
    INF.NullComparison.beyond_decay: Table(
        lambda c, **k: _cmp(c).beyond_decay(**k), lambda c: dict(families=("bands",)),
        [("families", "bands", TypeError), ("families", ["nosuch"], Raises(ValueError, "nosuch")), ("families", [], ValueError)]),
    INF.NullComparison.layer_table: Table(
        lambda c, **k: _cmp(c).layer_table(**k), lambda c: dict(metrics=("spec_low",)),
        [("metrics", "spec_low", TypeError), ("metrics", ["nosuch"], Raises(ValueError, "nosuch"))]),
    INF.NullComparison.fit_table: Table(lambda c, **k: _cmp(c).fit_table(), lambda c: {}, [("_", None, OK)]),
    INF.measure_against_null: Table(
        lambda c, **k: INF.measure_against_null(c["model"], **k),
        lambda c: dict(tokens_or_texts=c["toks"][:4], documents=[0, 0, 1, 1], reading=MetricConfig(level=LEVEL), layers=[0],
                       progress=False),
        [("tokens_or_texts", TOKS_FLOAT, TypeError), ("documents", [0], Raises(ValueError, "documents has 1 ids")),
         ("reading", "literal", TypeError), ("layers", [9], ValueError), ("layers", [-2], Same([0])),
         ("batch_size", 0, ValueError), ("null", "no", TypeError), ("seed", "1", TypeError), *BOOL_FORMS("progress"),
         ("reading", MetricConfig(), Raises(ValueError, "tokens_or_texts")), ("tokens_or_texts", TOKS_OOV, ValueError),
         ("documents", ["a", "a", "b", "b"], Same([0, 0, 1, 1]))],
        model=True, view=lambda c, cmp: cmp.head_table(("spec_low",))),
    INF.evaluate_claims: Table(
        lambda c, **k: INF.evaluate_claims(c["model"], **k),
        lambda c: dict(tokens_or_texts=c["toks"][:4], documents=[0, 0, 1, 1], reading=MetricConfig(level=LEVEL), layers=[0],
                       progress=False),
        [("reading", "literal", TypeError), ("reading", [], ValueError), ("reading", ["x"], Raises(TypeError, "reading[0]")),
         ("multiplicity", "holm", ValueError), ("level", 95, ValueError), ("level", 0.3, ValueError),
         ("return_details", "yes", TypeError), ("batch_size", 0, ValueError), *BOOL_FORMS("progress"),
         ("reference", Lazy(lambda c: c["model"], "a reference with token ids"), Raises(ValueError, "reference_texts")),
         ("run", "/nonexistent/run", Raises(FileNotFoundError, "config.json")),
         ("documents", [0], Raises(ValueError, "documents has 1 ids"))],
        model=True),
    INF_CLAIMS.reading_label: Table(lambda c, **k: INF_CLAIMS.reading_label(**k), lambda c: dict(cfg=MetricConfig()),
                             [("cfg", "literal", TypeError), ("cfg", None, TypeError)]),
    INF.emergence_claims: Table(
        lambda c, **k: INF.emergence_claims(**k), lambda c: dict(out="/nonexistent/run", progress=False),
        [("out", "/nonexistent/run", Raises(FileNotFoundError, "config.json")), ("out", 3, TypeError),
         ("reading", "x", TypeError), ("level", 2.0, ValueError), ("n_sequences", 1, ValueError),
         ("checkpoints", "no", TypeError)]),
    # -------------------------------------------------------------- models (no hub is ever asked: every row fails first)
    MD.load: Table(lambda c, **k: MD.load(**k), lambda c: dict(name="smollm2-135m", cache_dir=c["empty_dir"]),
                   [("name", 3, TypeError), ("name", "", ValueError), ("backend", "jax", ValueError),
                    ("dtype", "int8", TypeError), ("dtype", torch.int64, TypeError), ("device", "gpu", ValueError),
                    ("device", 0, TypeError), ("device", "meta", ValueError), ("refresh", "yes", TypeError),
                    ("cache_dir", 3, TypeError)]),
    MD.load_encoder: Table(lambda c, **k: MD.load_encoder(**k), lambda c: dict(),
                           [("name", 3, TypeError), ("name", "nosuch-encoder", Raises(ValueError, "nosuch-encoder")),
                            ("device", "gpu", ValueError), ("dtype", torch.long, TypeError)]),
    MD.load_hf: Table(lambda c, **k: MD.load_hf(**k), lambda c: dict(name="smollm2-135m", cache_dir=c["empty_dir"]),
                      [("name", 3, TypeError), ("dtype", "int8", TypeError), ("device", "tpu9", ValueError),
                       ("refresh", "yes", TypeError)]),
    MD.resolve_name: Table(lambda c, **k: MD.resolve_name(**k), lambda c: dict(name="smollm2-135m"),
                           [("name", 3, TypeError), ("name", "nosuch", OK)]),
    MD.cache_path: Table(lambda c, **k: MD.cache_path(**k), lambda c: dict(name="smollm2-135m"),
                         [("name", 3, TypeError), ("cache_dir", 3, TypeError), ("name", "nosuch", Raises(ValueError, "nosuch"))]),
    MD.default_cache_root: Table(lambda c, **k: MD.default_cache_root(), lambda c: {}, [("_", None, OK)]),
    MD.tl_major_version: Table(lambda c, **k: MD.tl_major_version(), lambda c: {}, [("_", None, OK)]),
}

# "_"-named rows carry no argument of the function: the call ignores them, the case is the call
# itself (its id says which); Tracker.log's "_init" holds arguments of the Tracker it logs with.
CASES = [(obj, i) for obj, t in TABLES.items() for i in range(len(t.rows))]


def _label(value) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        arr = value.numpy() if isinstance(value, torch.Tensor) else value
        nan = " nan" if arr.dtype.kind == "f" and bool(np.isnan(arr).any()) else ""
        return f"{type(value).__name__}{list(value.shape)}{nan}"
    if isinstance(value, (Same, Raises)):
        return f"{type(value).__name__}({_label(getattr(value, 'canonical', getattr(value, 'exc', None)))})"
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        return f"{type(value).__name__}[{', '.join(_label(v) for v in value)}]"
    return f"{value!r:.30}"


def _case_id(case):
    obj, i = case
    name, value, expected = TABLES[obj].rows[i]
    return f"{obj.__qualname__}-{name}={_label(value)}-{_label(expected)}"


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def ctx(random_model, tmp_path_factory):
    toks = torch.randint(4, 97, (6, N), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        clean = float(random_model(toks[:2], return_type="loss"))
    d = tmp_path_factory.mktemp("tables")
    text_file = d / "a.txt"
    text_file.write_text(TEXT, encoding="utf-8")
    binary = d / "b.bin"
    binary.write_bytes(b"\x00\x9f\x92\x96 binary")
    log_path = d / "log.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = tlw.analyze_heads(random_model, toks[:4], level=LEVEL, progress=False, rope=False)
        report_tiny = tlw.analyze_heads(random_model, toks[:2], level=LEVEL, progress=False, rope=False)
        sweep = A.band_sweep(random_model, toks[:2], layers=[1], heads=[0, 1], level=LEVEL, progress=False)
        tr = T.Tracker(toks[:4], every=1, metrics=dict(level=LEVEL), induction=None, out=log_path)
        tr.log(random_model, 0)
    return dict(model=random_model, toks=toks, clean_loss=clean, text_file=text_file, binary_file=binary,
                empty_dir=d / "no-cache",
                report=report, report_tiny=report_tiny, sweep=sweep, log_path=log_path)


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_table(ctx, case):
    obj, i = case
    name, value, expected = TABLES[obj].rows[i]
    _run(TABLES[obj], ctx, name, value, expected)


WALKED = ["tl_wavelet", "tl_wavelet.corpus", "tl_wavelet.models", "tl_wavelet.analysis", "tl_wavelet.analysis.compare",
          "tl_wavelet.ablation", "tl_wavelet.track", "tl_wavelet.inference"]
# classes whose methods people call
METHODS_OF = [HeadReport, HeadAccumulator, T.Tracker, A.SweepAccessor, INF.NullComparison, INF.ClusterSums]


def _public_callables():
    seen = {}
    for mod_name in WALKED:
        mod = importlib.import_module(mod_name)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or not callable(obj):  # submodules are walked on their own; constants
                continue
            seen.setdefault(obj, f"{mod_name}.{name}")
    for cls in METHODS_OF:
        for name, member in vars(cls).items():
            if not name.startswith("_") and inspect.isfunction(member):
                seen.setdefault(member, f"{cls.__module__}.{cls.__qualname__}.{name}")
    return seen


def test_every_public_name_has_a_table():
    """A new public function (or method of a result class) without a table fails here."""
    missing = sorted(path for obj, path in _public_callables().items() if obj not in TABLES)
    assert not missing, f"add a bad-input table to tests/test_api_tables.py for: {missing}"
    assert all(TABLES[obj].rows for obj in TABLES)
    # modules in tl_wavelet.__all__ are walked too
    assert {m for m in tlw.__all__ if inspect.ismodule(getattr(tlw, m))} <= {w.rsplit(".", 1)[-1] for w in WALKED}
