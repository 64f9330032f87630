"""Bad input over the public API (issue 14): a correct result or a ValueError/TypeError that
names the argument, never an IndexError/RuntimeError from inside torch, and the model left as
it was (no hooks, same loss). One regression test per numbered point of the issue.

Tiny random-weight models from conftest; the sequences are short (32 tokens, level 3) so
the whole file stays within about a minute.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tl_wavelet as tlw
from tl_wavelet import validate as V
from tl_wavelet.adapter import as_tokens, model_shape, resolve_heads, resolve_layers
from tl_wavelet.analysis import HeadAccumulator, MetricConfig
from tl_wavelet.corpus import chunk_tokens
from tl_wavelet.stats import RunningCorrelation, RunningMoments

N = 32  # positions: db2 needs 24 at levels 1..3 with alphas (0.5, 0.25)
LEVEL = 3


def _hook_counts(model):
    return sum(len(hp._forward_hooks) for hp in model.hook_dict.values())


@pytest.fixture(scope="module")
def toks():
    g = torch.Generator().manual_seed(3)
    return torch.randint(4, 97, (6, N), generator=g)


@pytest.fixture(scope="module")
def clean_loss(random_model, toks):
    with torch.no_grad():
        return float(random_model(toks, return_type="loss"))


def _unchanged(model, toks, clean_loss):
    assert _hook_counts(model) == 0
    with torch.no_grad():
        assert float(model(toks, return_type="loss")) == pytest.approx(clean_loss, rel=0, abs=1e-6)


def _analyze(model, tokens, **kw):
    kw = {"level": LEVEL, "progress": False, "rope": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small-sample NaN warnings, tested separately
        return tlw.analyze_heads(model, tokens, **kw)


def _same_report(a, b):
    da, db = a.to_dataframe(), b.to_dataframe()
    assert list(da.columns) == list(db.columns)
    np.testing.assert_allclose(da.select_dtypes("number").to_numpy(float), db.select_dtypes("number").to_numpy(float),
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ the validation layer itself
@pytest.mark.parametrize("value", ["no", "yes", 1, 0, None, 1.0, [True]])
def test_bools_are_bools(value):
    with pytest.raises(TypeError, match="causal must be True or False"):
        V.check_bool(value, "causal")


@pytest.mark.parametrize("value", [np.int64(2), np.int32(2), torch.tensor(2), 2])
def test_ints_accept_numpy_and_torch_scalars(value):
    assert V.check_int(value, "level") == 2 and type(V.check_int(value, "level")) is int


@pytest.mark.parametrize("value", [True, 2.0, "2", None, torch.tensor([2]), torch.tensor(2.0), np.float64(2)])
def test_ints_refuse_bools_floats_and_arrays(value):
    with pytest.raises(TypeError, match="level must be an int"):
        V.check_int(value, "level")


@pytest.mark.parametrize(
    "value, expect",
    [(1, [1]), (-1, [3]), ([0, -1, 0], [0, 3]), ((2,), [2]), (range(2), [0, 1]), (np.array([1, 2]), [1, 2]),
     (np.int64(0), [0]), (torch.tensor([3, -4]), [0, 3]), (torch.tensor(1), [1]), (None, [0, 1, 2, 3])],
)
def test_index_lists_in_every_form_negative_from_the_end(value, expect):
    assert V.check_indices(value, "heads", 4) == expect


@pytest.mark.parametrize("value, exc", [([], ValueError), ([4], ValueError), ([-5], ValueError), ([1.0], TypeError),
                                        ("0", TypeError), ([True], TypeError), (np.array([0.5]), TypeError),
                                        (torch.tensor([[0, 1]]), TypeError)])
def test_bad_index_lists_name_the_argument(value, exc):
    with pytest.raises(exc, match="heads"):
        V.check_indices(value, "heads", 4)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(-10, 10), st.lists(st.integers(-10, 10), max_size=4), st.floats(), st.text(max_size=3),
                 st.booleans(), st.none()))
def test_indices_property_correct_or_clear(value):
    """Any value: the Python-indexing answer, or a ValueError/TypeError naming the argument."""
    try:
        got = V.check_indices(value, "layers", 5)
    except (ValueError, TypeError) as e:
        assert "layers" in str(e)
        return
    items = list(range(5)) if value is None else ([value] if isinstance(value, int) else value)
    assert got == sorted({list(range(5))[i] for i in items})


# ------------------------------------------------------------------ 1. bools are bools (analysis side)
@pytest.mark.parametrize("name", ["paper", "progress", "drop_first_key", "rope"])
@pytest.mark.parametrize("value", ["no", 1])
def test_issue14_point1_truthy_values_refused(random_model, toks, clean_loss, name, value):
    with pytest.raises(TypeError, match=name):
        tlw.analyze_heads(random_model, toks, level=LEVEL, **{name: value, **({} if name == "progress" else {"progress": False})})
    _unchanged(random_model, toks, clean_loss)


# ------------------------------------------------------------------ 2. small samples
def test_issue14_point2_rho_with_two_sequences_is_nan_with_a_warning(random_model, toks):
    with pytest.warns(RuntimeWarning, match="rho .* undefined with 2 sample.*at least 4"):
        report = tlw.analyze_heads(random_model, toks[:2], level=LEVEL, progress=False)
    df = report.to_dataframe()
    assert df["rho"].isna().all() and df["rho_se"].isna().all()
    assert report.layer_summary()["rho"].isna().all()
    # with 4 sequences rho is defined for heads whose entropies vary
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no small-sample warning at n = 4
        four = tlw.analyze_heads(random_model, toks[:4], level=LEVEL, progress=False).to_dataframe()
    assert four["rho"].notna().any()


def test_issue14_point2_se_with_one_sequence_is_nan_with_a_warning(random_model, toks):
    with pytest.warns(RuntimeWarning, match="standard errors .* at least 2"):
        df = tlw.analyze_heads(random_model, toks[:1], level=LEVEL, progress=False).to_dataframe()
    assert df["spectral_entropy_se"].isna().all() and df["spectral_entropy"].notna().all()


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_running_correlation_matches_numpy_from_4_points_and_is_nan_below(n):
    g = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, 3, generator=g, dtype=torch.float64), torch.randn(n, 3, generator=g, dtype=torch.float64)
    rc = RunningCorrelation()
    rc.update(x, y)
    if n < 4:
        assert rc.r.isnan().all() and rc.se.isnan().all()
    else:
        want = [np.corrcoef(x[:, j], y[:, j])[0, 1] for j in range(3)]
        np.testing.assert_allclose(rc.r.numpy(), want, rtol=1e-10)
        np.testing.assert_allclose(rc.se.numpy(), np.sqrt((1 - np.square(want)) / (n - 2)), rtol=1e-10)


def test_running_stats_refuse_mismatched_shapes():
    m = RunningMoments()
    m.update(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="values must be"):
        m.update(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x and y"):
        RunningCorrelation().update(torch.zeros(2, 3), torch.zeros(2, 1))


# ------------------------------------------------------------------ 4. drop_first_key with z
def test_issue14_point4_drop_first_key_with_z_is_refused(random_model, toks, clean_loss):
    with pytest.raises(ValueError, match="drop_first_key"):
        MetricConfig(signal="z", drop_first_key=True)
    with pytest.raises(ValueError, match="drop_first_key"):
        tlw.analyze_heads(random_model, toks, signal="z", drop_first_key=True, level=LEVEL, progress=False)
    _unchanged(random_model, toks, clean_loss)
    # where it applies it changes the numbers
    a = _analyze(random_model, toks, drop_first_key=True, layers=[0]).to_dataframe()
    b = _analyze(random_model, toks, drop_first_key=False, layers=[0]).to_dataframe()
    assert not np.allclose(a["spectral_entropy"], b["spectral_entropy"])


# ------------------------------------------------------------------ 6. seq_len with token ids
def test_issue14_point6_seq_len_is_respected_for_ids_or_refused(random_model, toks, clean_loss):
    cut = _analyze(random_model, toks, seq_len=24, layers=[1])
    assert cut.seq_len == 24
    _same_report(cut, _analyze(random_model, toks[:, :24], layers=[1]))
    with pytest.raises(ValueError, match="seq_len=64 is longer"):
        tlw.analyze_heads(random_model, toks, seq_len=64, level=LEVEL, progress=False)
    _unchanged(random_model, toks, clean_loss)


# ------------------------------------------------------------------ 7 and 13. level hints that work
def _hint(cfg, n):
    try:
        cfg.check_length(n)
    except ValueError as e:
        return str(e)
    return None


@pytest.mark.parametrize("wavelet", ["db2", "haar", "db4"])
def test_issue14_point7_every_suggested_level_then_works(random_model, wavelet):
    """For many lengths: the length check agrees with what the metrics accept, and the level
    (or wavelet) it suggests then runs, alpha truncation included."""
    import re

    g = torch.Generator().manual_seed(0)
    for n in (4, 8, 16, 20, 31, 40):
        t = torch.randint(4, 97, (1, n), generator=g)
        for level in (1, 4):
            cfg = MetricConfig(wavelet=wavelet, level=level)
            msg = _hint(cfg, n)
            if msg is None:
                _analyze(random_model, t, wavelet=wavelet, level=level, layers=[0])  # must run
                continue
            with pytest.raises(ValueError, match=f"at least {cfg.min_length()} positions"):
                tlw.analyze_heads(random_model, t, wavelet=wavelet, level=level, layers=[0], progress=False)
            m = re.search(r"level=(\d+) fits", msg)
            h = re.search(r"wavelet='haar' with level=(\d+) fits", msg)
            if m and not h:
                _analyze(random_model, t, wavelet=wavelet, level=int(m.group(1)), layers=[0])
            if h:
                _analyze(random_model, t, wavelet="haar", level=int(h.group(1)), layers=[0])
            if not m and not h:
                assert "no level" in msg
                # and indeed none works
                for L in range(1, level + 1):
                    assert _hint(MetricConfig(wavelet=wavelet, level=L), n) is not None


def test_issue14_point13_haar_needs_fewer_tokens(random_model):
    assert MetricConfig(wavelet="haar", level=5).min_length() == 32  # 2^5, not db2's 96
    assert MetricConfig(wavelet="db2", level=5).min_length() == 96
    g = torch.Generator().manual_seed(1)
    t = torch.randint(4, 97, (2, 32), generator=g)
    _analyze(random_model, t, wavelet="haar", level=5, layers=[0])
    with pytest.raises(ValueError, match="at least 32 positions"):
        tlw.analyze_heads(random_model, t[:, :31], wavelet="haar", level=5, progress=False)


def test_issue14_point7_level_one_on_four_tokens_says_no_level_fits(random_model):
    t = torch.randint(4, 97, (2, 4))
    with pytest.raises(ValueError) as e:
        tlw.analyze_heads(random_model, t, level=1, progress=False)
    assert "level=1 fits" not in str(e.value) and "no level" in str(e.value)


def test_one_resolve_level_rule_for_transforms_and_metrics():
    from tl_wavelet.metrics import wavelet_entropy

    x = torch.randn(50, dtype=torch.float64)
    for fn in (lambda L: tlw.wavedec(x, "db2", level=L), lambda L: wavelet_entropy(x, "db2", L)):
        with pytest.raises(ValueError, match="db2 at level 5 needs at least 96 positions, got 50.*level <= 4"):
            fn(5)
        fn(4)  # the suggested level works
        with pytest.raises(TypeError, match="level must be an int"):
            fn(2.0)


# ------------------------------------------------------------------ 9. one accumulator, two lengths
def test_issue14_point9_accumulator_refuses_a_second_length_and_keeps_its_sums(random_model, toks):
    acc = HeadAccumulator(random_model, level=LEVEL, rope=False)
    with random_model.hooks(fwd_hooks=acc.hooks()):
        random_model(toks, return_type=None)
    with pytest.raises(ValueError, match="measured sequences of 32 positions and now got 28"):
        with random_model.hooks(fwd_hooks=acc.hooks()):
            random_model(toks[:, :28], return_type=None)
    assert _hook_counts(random_model) == 0
    _same_report(acc.report(), _analyze(random_model, toks))


# ------------------------------------------------------------------ 10. ids outside the vocabulary, empty input
@pytest.mark.parametrize("bad", [10**6, -5, 97])
def test_issue14_point10_out_of_vocab_ids(random_model, toks, clean_loss, bad):
    t = toks.clone()
    t[1, 5] = bad
    with pytest.raises(ValueError, match=r"tokens_or_texts holds ids outside the vocabulary 0\.\.96"):
        tlw.analyze_heads(random_model, t, level=LEVEL, progress=False)
    _unchanged(random_model, toks, clean_loss)


@pytest.mark.parametrize("empty", [lambda t: t[:0], lambda t: t[:, :0], lambda t: [], lambda t: np.zeros((0, 5), int)])
def test_issue14_point10_empty_tokens(random_model, toks, clean_loss, empty):
    with pytest.raises(ValueError, match="tokens_or_texts is empty"):
        tlw.analyze_heads(random_model, empty(toks), level=LEVEL, progress=False)
    _unchanged(random_model, toks, clean_loss)


# ------------------------------------------------------------------ 11. one set of input forms
def test_issue14_point11_every_token_form_gives_the_same_report(random_model, toks):
    want = _analyze(random_model, toks[:4], layers=[1], rope=True)
    for form in (toks[:4].numpy(), toks[:4].tolist(), [np.asarray(r) for r in toks[:4].tolist()]):
        _same_report(_analyze(random_model, form, layers=[1], rope=True), want)
    for layers in (np.array([1]), np.int64(-1), torch.tensor([1]), range(1, 2)):
        _same_report(_analyze(random_model, toks[:4], layers=layers, rope=True), want)
    one = _analyze(random_model, toks[0].tolist(), layers=[1])  # a list of ids: one sequence
    assert one.n_sequences == 1


@pytest.mark.parametrize("bad, exc", [("float", TypeError), ("ragged", ValueError), ("3d", ValueError),
                                      ("bool", TypeError), ("dict", TypeError), ("mixed", TypeError)])
def test_issue14_point11_bad_token_forms_name_the_argument(random_model, toks, clean_loss, bad, exc):
    value = {"float": toks.float(), "ragged": [[5, 6, 7], [5, 6]], "3d": toks[None], "bool": toks > 50,
             "dict": {"input_ids": toks}, "mixed": ["text", [5, 6]]}[bad]
    with pytest.raises(exc, match="tokens_or_texts"):
        tlw.analyze_heads(random_model, value, level=LEVEL, progress=False)
    _unchanged(random_model, toks, clean_loss)


def test_resolve_layers_and_heads_accept_numpy_and_negatives(random_model):
    shape = model_shape(random_model)
    assert resolve_layers(shape, np.array([-1, 0])) == [0, 1]
    assert resolve_heads(shape, np.int64(-1)) == [3]
    with pytest.raises(ValueError, match="layers: layer 2 is out of range"):
        resolve_layers(shape, [2])


# ------------------------------------------------------------------ 13. documents and padding
def test_issue14_point13_windows_never_cross_two_texts(random_model):
    docs = [" ".join(["w5"] * 40), " ".join(["w6"] * 25), " ".join(["w7"] * 70)]
    t = as_tokens(random_model, docs, seq_len=16)
    body = t[:, 1:]
    assert all(len(set(row.tolist())) == 1 for row in body)  # each window holds one document's words
    assert [int(r[0]) for r in body].count(5) == 40 // 15 and [int(r[0]) for r in body].count(7) == 70 // 15
    joined = chunk_tokens(random_model, docs, 16)  # chunk_tokens itself keeps the joined stream
    assert any(len(set(row.tolist())) > 1 for row in joined[:, 1:])
    report = _analyze(random_model, docs, seq_len=N, layers=[0])
    assert report.n_sequences == 40 // (N - 1) + 25 // (N - 1) + 70 // (N - 1)


def test_issue14_point13_attention_mask_cuts_to_the_shortest_real_length(random_model, toks):
    mask = torch.ones_like(toks)
    mask[0, 28:] = 0
    mask[3, 30:] = 0
    padded = toks.clone()
    padded[mask == 0] = 1
    with pytest.warns(UserWarning, match="cut to 28 positions"):
        got = tlw.analyze_heads(random_model, padded, attention_mask=mask, level=LEVEL, progress=False, rope=False)
    _same_report(got, _analyze(random_model, toks[:, :28]))
    left = mask.flip(-1)
    with pytest.raises(ValueError, match="attention_mask must be right-padded"):
        tlw.analyze_heads(random_model, padded, attention_mask=left, level=LEVEL, progress=False)
    with pytest.raises(ValueError, match="attention_mask must have the tokens' shape"):
        tlw.analyze_heads(random_model, padded, attention_mask=mask[:, :5], level=LEVEL, progress=False)


# ------------------------------------------------------------------ the table: analysis entry points
_BAD_ANALYZE = [
    ("layers", [], ValueError), ("layers", [2], ValueError), ("layers", [-3], ValueError), ("layers", 1.5, TypeError),
    ("layers", "0", TypeError), ("layers", [True], TypeError), ("layers", np.array([0.0]), TypeError),
    ("level", 0, ValueError), ("level", 2.0, TypeError), ("level", "3", TypeError), ("level", True, TypeError),
    ("level", 9, ValueError), ("batch_size", 0, ValueError), ("batch_size", 2.5, TypeError),
    ("batch_size", True, TypeError), ("signal", "rows", ValueError), ("signal", None, ValueError),
    ("wavelet", "db2x", ValueError), ("wavelet", 3, TypeError), ("seq_len", 0, ValueError),
    ("seq_len", "32", TypeError), ("n_sequences", 0, ValueError), ("n_sequences", 99, ValueError),
    ("n_sequences", 1.0, TypeError), ("paper", "no", TypeError), ("rope", "yes", TypeError),
]


@pytest.mark.parametrize("name, value, exc", _BAD_ANALYZE, ids=[f"{n}={v!r}" for n, v, _ in _BAD_ANALYZE])
def test_analyze_heads_bad_values(random_model, toks, clean_loss, name, value, exc):
    kw = {"level": LEVEL, "progress": False, name: value}
    with pytest.raises(exc) as e:
        tlw.analyze_heads(random_model, toks, **kw)
    msg = str(e.value)
    assert name in msg or (name == "wavelet" and "db2x" in msg), msg
    _unchanged(random_model, toks, clean_loss)


@pytest.mark.parametrize("name, value, exc", [("layers", [5], ValueError), ("rope", 1, TypeError),
                                              ("level", np.float32(3), TypeError), ("max_rows", 0, ValueError),
                                              ("alphas", (0.5, 1.5), ValueError), ("drop_first_key", "False", TypeError)])
def test_head_accumulator_bad_values(random_model, name, value, exc):
    with pytest.raises(exc, match=name):
        HeadAccumulator(random_model, **{name: value})
    assert _hook_counts(random_model) == 0


def test_numpy_scalars_are_accepted_by_the_config(random_model, toks):
    acc = HeadAccumulator(random_model, level=np.int64(LEVEL), layers=np.array([0]))
    assert acc.config.level == LEVEL and type(acc.config.level) is int and acc.layers == [0]


def test_nan_activations_give_a_clear_error(random_model, toks):
    """A NaN pattern (a broken model) is reported by the metrics, not as an index error."""
    from tl_wavelet.analysis.hooks import layer_metrics

    pattern = torch.full((1, 4, N, N), math.nan)
    with pytest.raises(ValueError, match="NaN"):
        layer_metrics(pattern, MetricConfig(level=LEVEL))
