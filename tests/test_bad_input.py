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
from tl_wavelet.corpus import chunk_documents, chunk_tokens
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
        return float(random_model(toks[:2], return_type="loss"))


def _unchanged(model, toks, clean_loss):
    assert _hook_counts(model) == 0
    with torch.no_grad():
        assert float(model(toks[:2], return_type="loss")) == pytest.approx(clean_loss, rel=0, abs=1e-6)


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


_ids = st.integers(-3, 12)
_token_values = st.one_of(
    _ids, st.lists(_ids, max_size=4), st.lists(st.lists(_ids, min_size=0, max_size=3), max_size=3),
    st.floats(allow_nan=True), st.text(max_size=3), st.none(), st.booleans(),
    st.lists(st.one_of(_ids, st.floats(), st.text(max_size=2)), max_size=3),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_token_values)
def test_token_ids_property_correct_or_clear(value):
    """Any value: the ids as a [batch, pos] tensor within the vocabulary, or a clear error naming the argument."""
    try:
        got = V.as_token_ids(value, "tokens", vocab_size=10)
    except (ValueError, TypeError) as e:
        assert str(e).startswith("tokens"), str(e)
        return
    rows = [value] if all(isinstance(v, int) and not isinstance(v, bool) for v in value) else value
    assert got.dtype == torch.long and got.tolist() == [list(r) for r in rows]
    assert int(got.min()) >= 0 and int(got.max()) < 10


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
    assert torch.equal(chunk_tokens(random_model, docs, 16), t)  # chunk_tokens cuts per document by default
    joined = chunk_tokens(random_model, docs, 16, per_document=False)  # the old joined stream, on request
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


# ------------------------------------------------------------------ ablation entry points
SWEEP = dict(level=LEVEL, layers=[1], heads=[0], progress=False)


def _sweep(model, tokens, **kw):
    from tl_wavelet.ablation import band_sweep

    return band_sweep(model, tokens, **{**SWEEP, **kw})


def test_issue14_point1_causal_no_is_refused(random_model, toks, clean_loss):
    with pytest.raises(TypeError, match="causal must be True or False, got 'no'"):
        tlw.band_ablation_hook(1, [0], ["A3"], causal="no", level=LEVEL)
    with pytest.raises(TypeError, match="causal"):
        _sweep(random_model, toks[:2], causal="no")
    with pytest.raises(TypeError, match="progress"):
        _sweep(random_model, toks[:2], progress="no")
    _unchanged(random_model, toks, clean_loss)


def test_issue14_point3_mean_over_one_sequence_is_nan_with_a_warning(random_model, toks, clean_loss):
    with pytest.warns(RuntimeWarning, match="method='mean' .* undefined with 1 sample.*at least 2"):
        df = _sweep(random_model, toks[:1], method="mean", bands=["A3"])
    assert df["delta_loss"].isna().all() and df["se"].isna().all()
    with pytest.warns(RuntimeWarning, match="method='mean'"):
        est = _sweep(random_model, toks[:1], method="mean", bands=["A3"], attribution="atp")
    assert est["estimate"].isna().all()
    # with a reference of other sequences the mean is defined (and not ~0)
    with pytest.warns(RuntimeWarning, match="se .* at least 2"):  # one swept sequence: no standard error
        ref = _sweep(random_model, toks[:1], method="mean", bands=["A3"], reference=toks[2:5])
    assert ref["delta_loss"].notna().all() and abs(float(ref["delta_loss"].iloc[0])) > 1e-5
    with pytest.raises(ValueError, match="resample needs at least 2 sequences"):
        _sweep(random_model, toks[:1], method="resample", bands=["A3"])
    _unchanged(random_model, toks, clean_loss)


def test_issue14_point3_atp2_with_too_few_draws_is_nan_with_a_warning(random_model, toks):
    with pytest.warns(RuntimeWarning, match="atp2's curvature .* at least 4"):
        df = _sweep(random_model, toks[:2], attribution="atp2", fisher_samples=1, bands=["A3"])
    assert df["estimate"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ok = _sweep(random_model, toks[:2], attribution="atp2", fisher_samples=2, bands=["A3"])
    assert ok["estimate"].notna().all()


def _tiny_bert(tokenizer):
    from models_for_tests import boot_bridge
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    hf = BertForMaskedLM(BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=64,
                                    attn_implementation="eager")).eval()
    hf.config.architectures = ["BertForMaskedLM"]
    return boot_bridge(hf, tokenizer, "tiny-bert")


def test_issue14_point5_loss_functions_refuse_a_bidirectional_encoder(tokenizer, toks):
    """A BERT has no next-token loss: band_sweep refuses it (analyze_heads still measures its attention)."""
    from tl_wavelet.adapter import is_causal

    bert = _tiny_bert(tokenizer)
    assert not is_causal(bert)
    before = _hook_counts(bert)
    with pytest.raises(ValueError, match="band_sweep measures the change of next-token loss.*bidirectional"):
        _sweep(bert, toks[:2], heads=None)
    assert _hook_counts(bert) == before
    report = _analyze(bert, toks[:4], layers=[0])
    assert report.to_dataframe()["spectral_entropy"].notna().all()


@pytest.mark.parametrize("bands", [[], ["D9"], [4], [-5], [1.0], "A5"])
def test_issue14_point8_bad_bands_are_clear(random_model, toks, clean_loss, bands):
    with pytest.raises((ValueError, TypeError), match="bands|band"):
        _sweep(random_model, toks[:2], bands=bands)
    with pytest.raises((ValueError, TypeError), match="bands|band"):
        tlw.band_ablation_hook(1, 0, bands, level=LEVEL)
    _unchanged(random_model, toks, clean_loss)


def test_issue14_point8_negative_band_index_counts_from_the_end(random_model, toks):
    a = _sweep(random_model, toks[:2], bands=[-1])
    b = _sweep(random_model, toks[:2], bands=["D1"])
    assert list(a["band"]) == ["D1"] and np.allclose(a["delta_loss"], b["delta_loss"])


def test_issue14_point11_hook_layer_and_heads_checked_against_the_model(random_model, toks, clean_loss):
    name, _ = tlw.band_ablation_hook(-1, np.int64(0), ["A3"], level=LEVEL, model=random_model)
    assert name == "blocks.1.attn.hook_z"
    with pytest.raises(ValueError, match="needs the model: pass model="):
        tlw.band_ablation_hook(-1, 0, ["A3"], level=LEVEL)
    with pytest.raises(ValueError, match="layer: layer 99 is out of range"):
        tlw.band_ablation_hook(99, 0, ["A3"], level=LEVEL, model=random_model)
    with pytest.raises(ValueError, match="heads: head 4 is out of range"):
        tlw.band_ablation_hook(1, [4], ["A3"], level=LEVEL, model=random_model)
    # the same patch through numpy heads, a negative layer, or plain ints
    with torch.no_grad():
        a = random_model.run_with_hooks(toks[:2], return_type="loss", fwd_hooks=[
            tlw.band_ablation_hook(-1, np.array([0, 1]), ["A3"], level=LEVEL, model=random_model)])
        b = random_model.run_with_hooks(toks[:2], return_type="loss", fwd_hooks=[
            tlw.band_ablation_hook(1, [0, 1], ["A3"], level=LEVEL)])
    assert float(a) == float(b)
    hooks = tlw.rope_ablation_hook(random_model, -1, np.int64(0), ["R0"])
    assert [n for n, _ in hooks] == ["blocks.1.attn.hook_rot_q"]
    _unchanged(random_model, toks, clean_loss)


def test_issue14_point11_band_sweep_takes_every_token_form(random_model, toks):
    want = _sweep(random_model, toks[:2], bands=["A3"])
    for form in (toks[:2].numpy(), toks[:2].tolist()):
        got = _sweep(random_model, form, bands=["A3"])
        np.testing.assert_allclose(got["delta_loss"], want["delta_loss"], rtol=1e-9)
    text = [" ".join(f"w{i}" for i in range(5, 5 + N - 1)), " ".join(f"w{i}" for i in range(40, 40 + N - 1))]
    from_text = _sweep(random_model, text, bands=["A3"], seq_len=N)
    assert from_text.attrs["n_sequences"] == 2 and from_text.attrs["seq_len"] == N


@pytest.mark.parametrize("bad", [10**6, -5])
def test_issue14_point10_band_sweep_out_of_vocab(random_model, toks, clean_loss, bad):
    t = toks[:2].clone()
    t[0, 3] = bad
    with pytest.raises(ValueError, match="tokens holds ids outside the vocabulary"):
        _sweep(random_model, t)
    with pytest.raises(ValueError, match="reference holds ids outside the vocabulary"):
        _sweep(random_model, toks[:2], method="mean", reference=t)
    _unchanged(random_model, toks, clean_loss)


_BAD_SWEEP = [
    ("layers", [], ValueError), ("layers", [2], ValueError), ("layers", 0.5, TypeError),
    ("heads", [4], ValueError), ("heads", [-5], ValueError), ("heads", "0", TypeError), ("heads", [], ValueError),
    ("method", "median", ValueError), ("target", "q", ValueError), ("batch_size", 0, ValueError),
    ("batch_size", 1.5, TypeError), ("attribution", "atp3", ValueError), ("attribution", 1, ValueError),
    ("verify_top_k", -1, ValueError), ("verify_top_k", 2.0, TypeError), ("level", 0, ValueError),
    ("level", 6, ValueError), ("level", "3", TypeError), ("band_wavelet", "db99x", ValueError), ("mode", "wrap", ValueError),
    ("n_rope_bands", 0, ValueError), ("ig_steps", 0, ValueError), ("fisher_samples", 0, ValueError),
    ("fisher_samples", 1.5, TypeError), ("seed", "1", TypeError), ("attention_mask", [[1, 0, 1]], ValueError),
    ("attention_mask", "all", TypeError), ("reference", "x" * 3, ValueError), ("seq_len", 0, ValueError),
    ("seq_len", 999, ValueError),
]


@pytest.mark.parametrize("name, value, exc", _BAD_SWEEP, ids=[f"{n}={v!r}" for n, v, _ in _BAD_SWEEP])
def test_band_sweep_bad_values(random_model, toks, clean_loss, name, value, exc):
    kw = {name: value}
    if name in ("verify_top_k", "ig_steps", "fisher_samples"):
        kw["attribution"] = {"ig_steps": "ig", "fisher_samples": "atp2"}.get(name, "atp")
    if name == "reference":
        kw["method"] = "mean"
    with pytest.raises(exc) as e:
        _sweep(random_model, toks[:2], **kw)
    msg = str(e.value)
    assert name in msg or (name in ("band_wavelet", "mode") and str(value) in msg), msg
    _unchanged(random_model, toks, clean_loss)


_BAD_ROPE = [("layer", 5, ValueError), ("layer", 1.0, TypeError), ("heads", [9], ValueError), ("bands", [], ValueError),
             ("bands", ["R9"], ValueError), ("bands", [99], ValueError), ("on", "v", ValueError),
             ("n_bands", 0, ValueError), ("n_bands", 99, ValueError), ("n_bands", 2.0, TypeError)]


@pytest.mark.parametrize("name, value, exc", _BAD_ROPE, ids=[f"{n}={v!r}" for n, v, _ in _BAD_ROPE])
def test_rope_ablation_hook_bad_values(random_model, toks, clean_loss, name, value, exc):
    kw = {"layer": 0, "heads": 0, "bands": ["R0"], name: value}
    with pytest.raises(exc, match=name if name != "bands" else "band"):
        tlw.rope_ablation_hook(random_model, **kw)
    _unchanged(random_model, toks, clean_loss)


def test_both_backends_take_the_same_forms_and_refuse_the_same_values(planted_any, toks):
    """TL 4 bridge and (under `make test-tl3`) TL 3 HookedTransformer: same rules."""
    from tl_wavelet.adapter import is_causal

    model = planted_any
    assert is_causal(model)
    name, _ = tlw.band_ablation_hook(-1, np.int64(0), ["A3"], level=LEVEL, model=model)
    assert name == "blocks.1.attn.hook_z"
    with pytest.raises(ValueError, match="tokens_or_texts holds ids outside the vocabulary"):
        tlw.analyze_heads(model, toks + 1000, level=LEVEL, progress=False)
    with pytest.raises(ValueError, match="layers: layer 2 is out of range"):
        tlw.analyze_heads(model, toks, layers=[2], level=LEVEL, progress=False)
    df = _sweep(model, toks[:2].numpy(), bands=[-1])
    assert list(df["band"]) == ["D1"] and df["delta_loss"].notna().all()
    assert _hook_counts(model) == 0


def test_a_bert_made_causal_is_not_refused(tokenizer):
    """BertLMHeadModel(is_decoder=True) has a next-token loss: only bidirectional models are refused."""
    from models_for_tests import boot_bridge
    from transformers import BertConfig, BertLMHeadModel

    from tl_wavelet.adapter import is_causal

    torch.manual_seed(0)
    hf = BertLMHeadModel(BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, max_position_embeddings=64, is_decoder=True,
                                    attn_implementation="eager")).eval()
    assert is_causal(boot_bridge(hf, tokenizer, "tiny-causal-bert"))


# ------------------------------------------------------------------ session 2: the remaining entry points
def test_scale_sensitivity_rerun_takes_text_like_every_entry_point(random_model, toks):
    """Text, ids, seq_len and n_sequences mean what they mean in analyze_heads (as_tokens)."""
    from tl_wavelet.analysis.compare import scale_sensitivity_rerun

    kw = dict(alphas=(0.5,), level=LEVEL, layers=[1], progress=False)
    docs = [" ".join(f"w{5 + (i * 7 + d) % 90}" for i in range(70)) for d in range(2)]
    via_text = scale_sensitivity_rerun(random_model, docs, seq_len=N, n_sequences=3, **kw)
    ids = chunk_tokens(random_model, docs, N, n_sequences=3)
    pd_testing = pytest.importorskip("pandas").testing
    # text carries each window's document (the unit of the standard errors); ids carry it in documents=
    ids_docs, documents = chunk_documents(random_model, docs, N, n_sequences=3)
    assert torch.equal(ids_docs, ids)
    pd_testing.assert_frame_equal(via_text, scale_sensitivity_rerun(random_model, ids, documents=documents, **kw))
    # ids: seq_len keeps a prefix, n_sequences the first rows
    pd_testing.assert_frame_equal(scale_sensitivity_rerun(random_model, toks.numpy(), seq_len=24, n_sequences=2, **kw),
                                  scale_sensitivity_rerun(random_model, toks[:2, :24], **kw))
    with pytest.raises(ValueError, match="is text: pass seq_len"):
        scale_sensitivity_rerun(random_model, docs, **kw)
    with pytest.raises(ValueError, match="n_sequences=9 but tokens holds 6"):
        scale_sensitivity_rerun(random_model, toks, n_sequences=9, **kw)
    assert _hook_counts(random_model) == 0


def test_tracker_warns_once_about_a_small_probe_not_at_every_log(random_model, toks):
    from tl_wavelet.track import Tracker

    with pytest.warns(RuntimeWarning, match="rho and rho_se .* need at least 4 probe sequences") as rec:
        tracker = Tracker(toks[:3], every=1, metrics=dict(level=LEVEL), induction=None)
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    with warnings.catch_warnings(record=True) as logs:
        warnings.simplefilter("always")
        for step in range(3):
            tracker.log(random_model, step)
    assert [str(w.message) for w in logs if issubclass(w.category, RuntimeWarning)] == []
    layers = tracker.layer_dataframe()
    assert len(layers) == 3 * 2 and layers["rho"].isna().all()  # undefined at 3 sequences: NaN, not +-1
    assert tracker.to_dataframe()["spectral_entropy_se"].notna().all()  # SEs are defined at 3
    with pytest.warns(RuntimeWarning, match=r"standard errors \(columns \*_se\) need at least 2"):
        Tracker(toks[:1], metrics=dict(level=LEVEL))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        enough = Tracker(toks[:4], every=1, metrics=dict(level=LEVEL), induction=None)
        enough.log(random_model, 0)
    assert enough.layer_dataframe()["rho"].notna().all()
    assert _hook_counts(random_model) == 0


def test_issue14_point11_layer_past_the_end_without_model(random_model, toks, clean_loss):
    """Without model= the layer count is unknown and our hook never runs: TransformerLens 4 refuses
    the hook name (KeyError), TL 3.9's bridge silently skips it (documented: pass model=); with
    model= (and in tl_wavelet's own callers) it is our ValueError."""
    from tl_wavelet.models import tl_major_version

    hook = tlw.band_ablation_hook(99, 0, ["A3"], level=LEVEL)
    if tl_major_version() >= 4:
        with pytest.raises(KeyError, match="blocks.99.attn.hook_z"):
            with random_model.hooks(fwd_hooks=[hook]):
                random_model(toks[:2], return_type="loss")
    else:  # the silent no-op docs/inputs.md warns about: the clean loss, nothing patched
        with torch.no_grad(), random_model.hooks(fwd_hooks=[hook]):
            assert float(random_model(toks[:2], return_type="loss")) == pytest.approx(clean_loss, abs=1e-6)
    _unchanged(random_model, toks, clean_loss)
    with pytest.raises(ValueError, match=r"layer: layer 99 is out of range; there are 2 \(0..1"):
        tlw.band_ablation_hook(99, 0, ["A3"], level=LEVEL, model=random_model)
    with pytest.raises(ValueError, match="layers: layer 99 is out of range"):
        _sweep(random_model, toks[:2], layers=[99])
    from tl_wavelet.view import compare_heads

    with pytest.raises(ValueError, match="layer: layer 99 is out of range"):
        compare_heads(random_model, toks[0, :16], [(99, 0)])
    _unchanged(random_model, toks, clean_loss)
