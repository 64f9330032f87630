"""tl_wavelet.view: one head on one text, checked against the model's own runs."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import tl_wavelet as tlw
from tl_wavelet.ablation import band_ablation_hook, band_components
from tl_wavelet.transforms import band_labels

TEXT = " ".join(f"w{4 + (7 * i) % 90}" for i in range(40))  # about 50 tokens


def _no_hooks(model) -> bool:
    return all(len(hp._forward_hooks) == 0 for hp in model.hook_dict.values())


@pytest.fixture(scope="module")
def view(random_model):
    return tlw.view.head(random_model, TEXT, layer=1, head=3, ablate=True)


def test_band_attention_sums_to_the_attention_row(random_model, view):
    toks = random_model.to_tokens(TEXT)
    _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n in ("blocks.1.attn.hook_pattern", "blocks.1.attn.hook_v", "blocks.1.attn.hook_z"))
    a = cache["blocks.1.attn.hook_pattern"][0, 3]
    torch.testing.assert_close(view.attention, a)
    torch.testing.assert_close(view.band_attention.sum(0), a, atol=1e-6, rtol=0)
    # each band reads with A_b: A_b @ v is the ablation's band component of hook_z (GQA: head 3 -> kv head 1)
    v = cache["blocks.1.attn.hook_v"][0, :, 3 // 2].double()
    comps = band_components(cache["blocks.1.attn.hook_z"].double(), level=5)[:, 0, :, 3]
    torch.testing.assert_close(view.band_attention.double() @ v, comps, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(view.z_bands.double(), comps, atol=1e-5, rtol=1e-4)
    df = view.to_dataframe()
    assert len(df) == toks.shape[1] and df["token"].tolist() == random_model.to_str_tokens(toks[0])
    shares = df[[f"attn_{b}" for b in band_labels(5)]].to_numpy()
    np.testing.assert_allclose(shares.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(df["z_norm_D1"], comps[-1].norm(dim=-1).numpy(), rtol=1e-4)


def test_per_token_loss_change_equals_run_with_hooks(random_model, view):
    toks = random_model.to_tokens(TEXT)
    clean = random_model(toks, return_type="loss", loss_per_token=True)[0].detach().double()
    df = view.to_dataframe()
    np.testing.assert_allclose(df["loss"].to_numpy()[:-1], clean.numpy(), atol=2e-5)
    for b in ("A5", "D3", "D1"):
        hook = band_ablation_hook(1, 3, [b], level=5)
        by_hand = random_model.run_with_hooks(toks, fwd_hooks=[hook], return_type="loss", loss_per_token=True)[0].detach().double()
        np.testing.assert_allclose(df[f"delta_loss_{b}"].to_numpy()[:-1], (by_hand - clean).numpy(), atol=5e-5)
        assert np.isnan(df[f"delta_loss_{b}"].iloc[-1])  # the last token predicts nothing
    assert _no_hooks(random_model)


# a network load: <script src=http..>, <link href=http..>, import ... from "http..", url(http..)
_NETWORK = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|from\s*["']\s*(?:https?:)?//|import\(\s*["']\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""", re.I)


def test_circuitsvis_html_loads_nothing_from_the_network(view, random_model):
    import circuitsvis

    s = view.html()
    assert "CircuitsVis.render(" in s and "ColoredTokensMulti" in s and "AttentionHeads" in s
    assert not _NETWORK.search(s), _NETWORK.search(s).group(0)
    assert "unpkg.com" not in s
    # the check can fail: CircuitsVis's own CDN rendering is caught by it
    cdn = str(circuitsvis.tokens.colored_tokens(["a", "b"], [0.1, 0.2]))
    assert _NETWORK.search(cdn)
    # the bundle is inlined once, however many widgets
    assert s.count("var CircuitsVis") <= 1 and len(s) < 2 * 1_400_000
    vs = tlw.view.compare_heads(random_model, TEXT, [(0, 1), (1, 3)])
    h = vs._repr_html_()
    assert not _NETWORK.search(h) and h.count("CircuitsVis.render(") == 2


def test_compare_heads_matches_single_views(random_model, view):
    vs = tlw.view.compare_heads(random_model, TEXT, [(1, 3), (0, 0)])
    assert len(vs) == 2
    torch.testing.assert_close(vs[0].band_attention, view.band_attention)
    df = vs.to_dataframe()
    n = len(view.tokens)
    assert df.groupby(["layer", "head"]).size().to_dict() == {(0, 0): n, (1, 3): n}
    wide = vs.wide("attn_{band}")
    np.testing.assert_allclose(wide["L1H3 attn_A5"], view.table["attn_A5"])


def test_bad_input_is_refused_and_leaves_no_hooks(random_model, tokenizer):
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        tlw.view.head(random_model, TEXT, layer=2, head=0)
    with pytest.raises(ValueError, match="head 4 is out of range"):
        tlw.view.head(random_model, TEXT, layer=0, head=4)
    with pytest.raises(ValueError, match=r"Unknown band 'D6' at level 5"):
        tlw.view.head(random_model, TEXT, layer=0, head=0, bands=["D6"], ablate=True)
    with pytest.raises(ValueError, match=r"level 6 needs at least 2\^6 = 64 tokens"):
        tlw.view.head(random_model, TEXT, layer=0, head=0, level=6)
    with pytest.raises(TypeError, match="string or a token tensor"):
        tlw.view.head(random_model, 123, layer=0, head=0)
    with pytest.raises(TypeError, match=r"\(layer, head\) pairs"):
        tlw.view.compare_heads(random_model, TEXT, [1, 3])
    n_ctx = random_model.cfg.n_ctx
    long = " ".join(["w5"] * (n_ctx + 10))
    with pytest.raises(ValueError, match=f"longer than the model's context \\({n_ctx}\\)"):
        tlw.view.head(random_model, long, layer=0, head=0, truncate=False)
    with pytest.warns(UserWarning, match=f"keeping the first {n_ctx}"):
        v = tlw.view.head(random_model, long, layer=0, head=0)
    assert len(v.tokens) == n_ctx
    assert _no_hooks(random_model)
    # a short text gets a shallower decomposition instead of an error
    assert tlw.view.head(random_model, "w5 w6 w7 w8 w9", layer=0, head=0).labels == ["A2", "D2", "D1"]


def test_non_rotary_model_works(tokenizer):
    # positional bands need no RoPE: a GPT-2 (learned absolute positions) is drilled down the same way
    from models_for_tests import boot_bridge
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt = boot_bridge(GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval(),
                      tokenizer, "tiny-gpt2")
    v = tlw.view.head(gpt, TEXT, layer=0, head=1, bands=["A5"], ablate=True)
    torch.testing.assert_close(v.band_attention.sum(0), v.attention, atol=1e-6, rtol=0)
    assert "delta_loss_A5" in v.table and "delta_loss_D1" not in v.table
    assert _no_hooks(gpt)
