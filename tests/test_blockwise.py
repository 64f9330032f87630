"""The blockwise path (issue 21): head signals from queries and keys, a block of queries at a time.

Truth: the pattern path on the same model (hook_pattern of its own eager attention), on every
architecture of the compatibility suite at 512 tokens; planted heads at 4096 tokens whose
attended offsets are known by construction. With the model's output computed eagerly
(``BASE_ATTENTION = "eager"``) the two paths see the same forward, so they agree to float64
rounding of the reductions; with SDPA (the default) the forward itself differs by float32
rounding, which the tolerance below allows (1e-5 of each column's scale).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from compat_models import ARCHS, tiny_hf
from models_for_tests import plant_heads, word_tokenizer

import tl_wavelet as tlw
from tl_wavelet.analysis import blockwise as B
from tl_wavelet.models import tl_major_version

needs_bridge = pytest.mark.skipif(tl_major_version() < 4, reason="the blockwise path runs a TransformerBridge's HF forward")

N = 512
# every architecture of the compatibility suite, plus Gemma-2 with its attention soft-capping on
CASES = [a for a in ARCHS if a not in ("bert",)] + ["gemma2-softcap"]
UNSUPPORTED = {"bloom": "ALiBi"}  # attention the blockwise rows do not reproduce: refused, patterns used


def _metric_columns(df):
    return [c for c in df.select_dtypes("number").columns if not c.endswith("_se") and c != "reconstruction_error"]


def _assert_same(a, b, rtol):
    cols = _metric_columns(a)
    scale = a[cols].abs().max().clip(lower=1e-30)
    err = ((a[cols] - b[cols]).abs() / scale).max()
    assert (err.fillna(0) <= rtol).all(), f"worst {err.idxmax()}: {err.max():.3g}"
    assert (a["dominant_band"] == b["dominant_band"]).all()


@pytest.fixture(scope="module")
def tokenizer_97():
    return word_tokenizer(97)


_MODELS: dict = {}


def _bridge(name, tokenizer, tmp_path_factory):
    if name not in _MODELS:
        arch = "gemma2" if name == "gemma2-softcap" else name
        longer = {k: 1024 for k in ("max_position_embeddings", "n_positions") if k in ARCHS[arch][2]}
        hf = tiny_hf(arch, **longer, **({"attn_logit_softcapping": 30.0} if name == "gemma2-softcap" else {}))
        d = tmp_path_factory.mktemp(f"bw-{name}")
        hf.save_pretrained(d)
        tokenizer.save_pretrained(d)
        _MODELS[name] = tlw.models.load(str(d))
    return _MODELS[name]


@needs_bridge
@pytest.mark.parametrize("name", CASES)
def test_blockwise_equals_patterns_on_every_architecture(name, tokenizer_97, tmp_path_factory, monkeypatch):
    model = _bridge(name, tokenizer_97, tmp_path_factory)
    f = tlw.facts(model)
    tokens = torch.randint(4, 97, (2, N), generator=torch.Generator().manual_seed(1))
    kw = dict(level=5, progress=False, rope=f.shape.rotary)
    why = B.check_against_patterns(f)
    if name in UNSUPPORTED:
        assert why is not None
        with pytest.raises(ValueError, match="attention='blockwise' is not available here"):
            tlw.analyze_heads(model, tokens, attention="blockwise", **kw)
        with pytest.warns(UserWarning, match="measures from attention patterns"):
            report = tlw.analyze_heads(model, torch.randint(4, 97, (2, 1024)), attention="auto", **kw)
        assert report.attention == "patterns"
        return
    assert why is None, why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rho undefined at 2 sequences
        want = tlw.analyze_heads(model, tokens, attention="patterns", **kw)
        got = tlw.analyze_heads(model, tokens, attention="blockwise", block_size=100, **kw)
        monkeypatch.setattr(B, "BASE_ATTENTION", "eager")
        exact = tlw.analyze_heads(model, tokens, attention="blockwise", block_size=100, **kw)
    assert (want.attention, got.attention) == ("patterns", "blockwise")
    _assert_same(want.to_dataframe(), got.to_dataframe(), rtol=1e-5)
    # the same forward: left is float32 rounding (each block's rows are summed in float32, the
    # pattern path sums every row in float64; RoPE usage read after the rotation, not before it)
    _assert_same(want.to_dataframe(), exact.to_dataframe(), rtol=5e-6)


@needs_bridge
@pytest.mark.parametrize("kw", [dict(signal="pattern_rows"), dict(signal="last_row"), dict(signal="received"),
                                dict(signal="z"), dict(drop_first_key=True), dict(paper=True),
                                dict(signal="pattern_rows", drop_first_key=True)],
                         ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_every_signal_and_reading(kw, tokenizer_97, tmp_path_factory, monkeypatch):
    model = _bridge("llama", tokenizer_97, tmp_path_factory)
    tokens = torch.randint(4, 97, (4, 256), generator=torch.Generator().manual_seed(2))
    monkeypatch.setattr(B, "BASE_ATTENTION", "eager")
    want = tlw.analyze_heads(model, tokens, attention="patterns", level=4, progress=False, **kw)
    got = tlw.analyze_heads(model, tokens, attention="blockwise", block_size=37, level=4, progress=False, **kw)
    _assert_same(want.to_dataframe(), got.to_dataframe(), rtol=5e-6)  # float32 block sums: ~1e-7 .. 1e-6


@needs_bridge
def test_default_and_paper_in_one_pass(tokenizer_97, tmp_path_factory):
    """stream feeds several accumulators from one pass over each layer's query blocks."""
    from tl_wavelet.analysis import HeadAccumulator, stream

    model = _bridge("qwen3", tokenizer_97, tmp_path_factory)
    tokens = torch.randint(4, 97, (4, 256), generator=torch.Generator().manual_seed(3))
    both = [HeadAccumulator(model, level=4), HeadAccumulator(model, level=4, paper=True)]
    stream(model, tokens, both, attention="blockwise", progress=False)
    for acc, paper in zip(both, (False, True)):
        alone = tlw.analyze_heads(model, tokens, attention="blockwise", level=4, paper=paper, progress=False)
        _assert_same(alone.to_dataframe(), acc.report().to_dataframe(), rtol=1e-12)


@needs_bridge
def test_model_comes_back_unchanged(tokenizer_97, tmp_path_factory):
    """The bridge's attention components and the HF attention implementation are restored, also on error."""
    model = _bridge("llama", tokenizer_97, tmp_path_factory)
    hf = model.original_model
    before = [type(m).__name__ for m in hf.modules()]
    impl = hf.config._attn_implementation
    tokens = torch.randint(4, 97, (2, 64))
    with torch.no_grad():
        clean = model(tokens, return_type="logits")
    tlw.analyze_heads(model, tokens, attention="blockwise", level=3, progress=False)
    acc = tlw.HeadAccumulator(model, level=3)
    acc.seq_len = 32  # a length mismatch raised from inside the blockwise forward
    with pytest.raises(ValueError, match="measured sequences of 32 positions"):
        tlw.analysis.stream(model, tokens, [acc], attention="blockwise", progress=False)
    assert [type(m).__name__ for m in hf.modules()] == before and hf.config._attn_implementation == impl
    fired = []
    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", lambda t, hook: fired.append(1))]):
        again = model(tokens, return_type="logits")
    assert fired and torch.equal(clean, again)


def test_hooked_transformer_has_no_blockwise_path(planted_any):
    tokens = torch.randint(4, 97, (2, 64))
    if tlw.facts(planted_any).backend != "hooked":
        pytest.skip("TransformerLens 3's HookedTransformer: make test-tl3")
    with pytest.raises(ValueError, match="has no Hugging Face forward"):
        tlw.analyze_heads(planted_any, tokens, attention="blockwise", level=3, progress=False)


@needs_bridge
def test_bad_attention_argument(planted):
    with pytest.raises(ValueError, match="attention"):
        tlw.analyze_heads(planted, torch.randint(4, 97, (2, 64)), attention="flash", level=3, progress=False)
    with pytest.raises(ValueError, match="block_size"):
        tlw.analyze_heads(planted, torch.randint(4, 97, (2, 64)), attention="blockwise", block_size=0, level=3,
                          progress=False)


# ------------------------------------------------------------------ planted heads at 4096 tokens
LONG_OFFSETS = {0: 1, 1: 6, 2: 16, 3: 300, 4: 2000}  # head -> attended offset


@pytest.fixture(scope="module")
def long_planted(tokenizer_97):
    from models_for_tests import boot_bridge
    from transformers import LlamaConfig, LlamaForCausalLM

    head_dim, theta = 128, 1e6  # 64 rotary pairs: no aliasing of the planted offsets within 4096 positions
    cfg = LlamaConfig(vocab_size=97, hidden_size=320, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=5, num_key_value_heads=1, head_dim=head_dim, max_position_embeddings=8192,
                      rope_theta=theta, attn_implementation="eager", tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    plant_heads(hf, LONG_OFFSETS, rope_theta=theta, head_dim=head_dim, sharpness=400.0)
    return boot_bridge(hf, tokenizer_97, "long-planted")


@needs_bridge
def test_planted_heads_land_in_their_bands_at_4096_tokens(long_planted):
    """Offsets 1, 6, 16, 300 and 2000 in D1, D3, D5, D9 and (beyond 2^10 = 1024) A10, measured blockwise."""
    tokens = torch.randint(4, 97, (1, 4096), generator=torch.Generator().manual_seed(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one sequence: no standard errors
        report = tlw.analyze_heads(long_planted, tokens, level=10, progress=False)
    assert report.attention == "blockwise"  # "auto" at 4096 tokens
    df = report.to_dataframe()
    want = {h: ("A10" if d >= 1024 else f"D{math.floor(math.log2(d)) + 1}") for h, d in LONG_OFFSETS.items()}
    assert dict(zip(df["head"], df["dominant_band"])) == want
    # and the characteristic scale follows the offset
    assert np.all(np.diff(df.sort_values("head")["scale_tokens"].to_numpy()) > 0)


@needs_bridge
def test_cli_analyze_at_4096_tokens(tmp_path):
    """`--seq-len 4096 --level 10` just works: blockwise analysis, a sweep on the first 1024 tokens."""
    import json
    import random

    import pandas as pd
    from models_for_tests import tiny_llama_hf

    from tl_wavelet.cli import main

    d = tmp_path / "model"
    tiny_llama_hf(planted=True, n_ctx=8192).save_pretrained(d)
    word_tokenizer(97).save_pretrained(d)
    r = random.Random(0)
    (d / "words.txt").write_text(" ".join(f"w{r.randrange(4, 97)}" for _ in range(8300)), encoding="utf-8")
    rc = main(["analyze", "--model", str(d), "--text", str(d / "words.txt"), "--seq-len", "4096", "--level", "10",
               "--sweep-sequences", "2", "--sweep-layers", "0", "--top-k", "2", "--drilldown-heads", "0",
               "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["attention"] == "blockwise" and meta["tokens"]["seq_len"] == 4096
    heads = pd.read_csv(tmp_path / "out" / "heads.csv")
    assert {"A10", "D10", "D1"} <= set(heads.columns)
    planted = heads[heads.layer == 0].set_index("head")["dominant_band"]
    assert (planted[0], planted[2], planted[3]) == ("D1", "D3", "D5")  # offsets 1, 6, 16
