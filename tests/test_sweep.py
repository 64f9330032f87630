"""band_sweep against independent truths: one TransformerLens run_with_hooks per ablation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tl_wavelet.ablation import band_ablation_hook, band_sweep, rope_ablation_hook
from tl_wavelet.ablation.spec import derangement
from tl_wavelet.ablation.sweep import position_buckets
from tl_wavelet.adapter import LayerRunner as _Runner
from tl_wavelet.adapter import hf_layer_list as _hf_layer_list
from tl_wavelet.adapter import model_shape


@pytest.fixture
def toks(tokens):
    return tokens[:3, :64]


def _loop_truth(model, toks, hook, valid=None):
    """What a user computes: per-token losses from run_with_hooks, minus the clean ones."""
    with torch.no_grad():
        clean = model(toks, return_type="loss", loss_per_token=True).double()
        abl = model.run_with_hooks(toks, return_type="loss", loss_per_token=True, fwd_hooks=hook).double()
    d = abl - clean
    if valid is None:
        valid = torch.ones_like(d, dtype=torch.bool)
    per_seq = (d * valid).sum(1) / valid.sum(1)
    out = {
        "delta_loss": float((d * valid).sum() / valid.sum()),
        "se": float(per_seq.std(unbiased=True) / math.sqrt(len(per_seq))),
        "n_tokens": int(valid.sum()),
    }
    for lo, hi in position_buckets(toks.shape[1]):
        v = valid[:, lo:hi + 1]
        out[f"delta_loss_pos_{lo}_{hi}"] = float((d[:, lo:hi + 1] * v).sum() / v.sum())
    return out


def _row(df, layer, head, band):
    r = df[(df["layer"] == layer) & (df["head"] == head) & (df["band"] == band)]
    assert len(r) == 1
    return r.iloc[0]


def _check(row, truth, tol=2e-5):
    for k, v in truth.items():
        assert row[k] == pytest.approx(v, abs=tol, rel=1e-3), k


def test_position_buckets():
    # issue 24.9: the last bucket ends at the last predicting position n - 2, not at the dyadic edge
    assert position_buckets(64) == [(0, 15), (16, 62)]
    assert position_buckets(128) == [(0, 15), (16, 63), (64, 126)]
    assert position_buckets(300) == [(0, 15), (16, 63), (64, 255), (256, 298)]
    assert position_buckets(17) == [(0, 15)] and position_buckets(2) == [(0, 0)]
    for n in range(2, 600):  # a partition of 0..n-2, whatever the length
        b = position_buckets(n)
        assert b[0][0] == 0 and b[-1][1] == n - 2 and all(x[1] + 1 == y[0] for x, y in zip(b, b[1:]))


@pytest.mark.parametrize("batch_size", [1, 3, 9])  # 9 rows: 3 ablations stacked per forward
def test_exact_sweep_equals_the_user_loop(random_model, toks, batch_size):
    df = band_sweep(random_model, toks, layers=[0, 1], heads=[1, 2], bands=["A5", "D1", "D3"],
                    progress=False, batch_size=batch_size)
    assert len(df) == 2 * 2 * 3 and {"layer", "head", "band", "delta_loss", "se", "n_tokens"} <= set(df.columns)
    assert df.attrs["skipped_early_layers"]
    for L, h, b in [(0, 1, "A5"), (1, 2, "D1"), (1, 1, "D3")]:
        _check(_row(df, L, h, b), _loop_truth(random_model, toks, [band_ablation_hook(L, h, [b])]))


def test_exact_sweep_on_each_backend(planted_any, toks):
    df = band_sweep(planted_any, toks, layers=[1], heads=[0], bands=["A5", "D2"], progress=False)
    for b in ["A5", "D2"]:
        _check(_row(df, 1, 0, b), _loop_truth(planted_any, toks, [band_ablation_hook(1, 0, [b])]))


@pytest.mark.parametrize("method", ["mean", "resample"])
def test_mean_and_resample_sweeps(random_model, toks, tokens, method):
    z_name = "blocks.1.attn.hook_z"
    # the batch itself as the reference
    with torch.no_grad():
        _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n == z_name)
    src = derangement(3, seed=5) if method == "resample" else None
    hook = band_ablation_hook(1, 2, ["A5"], method=method, reference=cache[z_name], source_index=src)
    df = band_sweep(random_model, toks, layers=1, heads=2, bands=["A5"], method=method, seed=5, progress=False)
    _check(_row(df, 1, 2, "A5"), _loop_truth(random_model, toks, [hook]))
    # other sequences as the reference
    ref = tokens[3:6, :64]
    with torch.no_grad():
        _, rcache = random_model.run_with_cache(ref, names_filter=lambda n: n == z_name)
    src = torch.randint(3, (3,), generator=torch.Generator().manual_seed(5)) if method == "resample" else None
    hook = band_ablation_hook(1, 2, ["A5"], method=method, reference=rcache[z_name], source_index=src)
    df = band_sweep(random_model, toks, layers=1, heads=2, bands=["A5"], method=method, seed=5,
                    reference=ref, progress=False)
    _check(_row(df, 1, 2, "A5"), _loop_truth(random_model, toks, [hook]))


def test_rope_sweep_equals_the_user_loop(random_model, toks):
    df = band_sweep(random_model, toks, target="rope", layers=[0, 1], heads=[0, 3], progress=False, batch_size=6)
    assert sorted(df.band.unique()) == ["R0", "R1", "R2", "R3"]
    for L, h, b in [(0, 0, "R0"), (1, 3, "R3")]:
        _check(_row(df, L, h, b), _loop_truth(random_model, toks, rope_ablation_hook(random_model, L, h, [b])), tol=1e-6)


def test_padding_is_masked(random_model, toks):
    mask = torch.ones_like(toks)
    mask[0, 40:] = 0
    mask[2, 50:] = 0
    valid = (mask[:, 1:] & mask[:, :-1]).bool()
    df = band_sweep(random_model, toks, layers=1, heads=0, bands=["D1"], attention_mask=mask, progress=False)
    _check(_row(df, 1, 0, "D1"), _loop_truth(random_model, toks, [band_ablation_hook(1, 0, ["D1"])], valid))
    assert df.n_tokens.iloc[0] == int(valid.sum())


def test_atp_is_the_first_order_term(random_model, toks):
    """AtP estimate = d/d eps of the loss when eps times the band is removed (finite difference)."""
    df = band_sweep(random_model, toks, layers=[0, 1], heads=[1], bands=["A5", "D1"], attribution="atp", progress=False)
    eps = 1e-2

    def scaled(L, b, s):
        name, fn = band_ablation_hook(L, 1, [b])

        def g(z, hook):
            return z + s * (fn(z, hook) - z)

        return [(name, g)]

    for L, b in [(0, "A5"), (1, "D1")]:
        with torch.no_grad():
            up = random_model.run_with_hooks(toks, return_type="loss", fwd_hooks=scaled(L, b, eps)).double()
            dn = random_model.run_with_hooks(toks, return_type="loss", fwd_hooks=scaled(L, b, -eps)).double()
        fd = float(up - dn) / (2 * eps)
        assert _row(df, L, 1, b).estimate == pytest.approx(fd, rel=2e-2, abs=2e-6)


@pytest.mark.parametrize("target", ["z", "rope"])
def test_atp2_adds_the_gauss_newton_term(random_model, toks, target):
    """atp2 - atp = 0.5 d'Gd / n_tokens, with the Gauss-Newton quadratic form computed
    independently: logit JVPs by central differences, then sum_t Var_{p_t}(J_t d)."""
    bands = ["A5", "D1"] if target == "z" else ["R0", "R3"]
    kw = dict(target=target, layers=[0, 1], heads=[1], bands=bands, progress=False)
    atp = band_sweep(random_model, toks, attribution="atp", **kw)
    atp2 = band_sweep(random_model, toks, attribution="atp2", fisher_samples=256, **kw)
    assert atp2.attrs["fisher_samples"] == 256 and atp2.attrs["attribution"] == "atp2"
    assert all(p.requires_grad for p in random_model.parameters())  # weights handed back trainable
    assert band_sweep(random_model, toks, attribution="atp2", **kw).attrs["fisher_samples"] == 11  # ceil(32 / 3)
    n_tok = toks.shape[0] * (toks.shape[1] - 1)
    eps = 1e-2
    with torch.no_grad():
        p = torch.softmax(random_model(toks, return_type="logits").double()[:, :-1], -1)
    for L, b in [(0, bands[0]), (1, bands[1])]:
        if target == "z":
            ((name, fn),) = [band_ablation_hook(L, 1, [b])]
        else:
            ((name, fn),) = rope_ablation_hook(random_model, L, 1, [b])

        def scaled(s):
            return [(name, lambda x, hook: x + s * (fn(x, hook) - x))]  # noqa: B023 (run in this iteration)

        with torch.no_grad():
            up = random_model.run_with_hooks(toks, return_type="logits", fwd_hooks=scaled(eps)).double()
            dn = random_model.run_with_hooks(toks, return_type="logits", fwd_hooks=scaled(-eps)).double()
        jd = (up - dn)[:, :-1] / (2 * eps)
        quad = float(((p * jd**2).sum(-1) - (p * jd).sum(-1) ** 2).sum())
        assert quad > 0
        got = _row(atp2, L, 1, b).estimate - _row(atp, L, 1, b).estimate
        assert got == pytest.approx(quad / (2 * n_tok), rel=0.2)


def test_ig_is_complete_for_a_single_node(random_model, toks):
    """With one swept (layer, head, band) the IG path is that ablation: estimates sum to the exact effect."""
    kw = dict(layers=1, heads=2, bands=["A5"], progress=False)
    exact = band_sweep(random_model, toks, **kw).delta_loss.iloc[0]
    ig = band_sweep(random_model, toks, attribution="ig", ig_steps=16, **kw).estimate.iloc[0]
    assert ig == pytest.approx(exact, rel=2e-2)


def test_verify_top_k(random_model, toks):
    kw = dict(layers=[0, 1], heads=[0, 2], bands=["A5", "D1"], progress=False)
    exact = band_sweep(random_model, toks, **kw)
    df = band_sweep(random_model, toks, attribution=True, verify_top_k=3, **kw)
    assert df.verified.sum() == 3 and df.estimate.notna().all()
    assert df[~df.verified].delta_loss.isna().all()
    top = df.reindex(df.estimate.abs().sort_values(ascending=False).index).head(3)
    assert top.verified.all()
    for r in df[df.verified].itertuples():
        assert r.delta_loss == pytest.approx(_row(exact, r.layer, r.head, r.band).delta_loss, abs=1e-7)


def test_bad_input_names_the_fix(random_model, toks, tokenizer):
    with pytest.raises(ValueError, match=r"Unknown band 'D7'.*\['A5', 'D5', 'D4', 'D3', 'D2', 'D1'\]"):
        band_sweep(random_model, toks, bands=["D7"], progress=False)
    with pytest.raises(ValueError, match="head 4 is out of range"):
        band_sweep(random_model, toks, heads=[4], progress=False)
    with pytest.raises(ValueError, match="layer 2 is out of range"):
        band_sweep(random_model, toks, layers=[2], progress=False)
    with pytest.raises(ValueError, match="at least 2\\^7 = 128 positions"):
        band_sweep(random_model, toks, level=7, progress=False)
    with pytest.raises(ValueError, match="different lengths \\[40, 64\\].*attention_mask"):
        band_sweep(random_model, [toks[0], toks[1, :40]], progress=False)
    mask = torch.ones_like(toks)
    mask[0, :5] = 0
    with pytest.raises(ValueError, match="right-padded"):
        band_sweep(random_model, toks, attention_mask=mask, progress=False)
    with pytest.raises(ValueError, match="fisher_samples must be >= 1"):
        band_sweep(random_model, toks, attribution="atp2", fisher_samples=0, progress=False)
    with pytest.raises(ValueError, match="attribution must be True, False or one of"):
        band_sweep(random_model, toks, attribution="atp3", progress=False)
    with pytest.raises(ValueError, match="pass attribution=True"):
        band_sweep(random_model, toks, verify_top_k=3, progress=False)
    with pytest.raises(ValueError, match="Unknown RoPE band 'A5'"):
        band_sweep(random_model, toks, target="rope", bands=["A5"], progress=False)
    from models_for_tests import boot_bridge
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt = boot_bridge(GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval(),
                      tokenizer, "tiny-gpt2")
    with pytest.raises(ValueError, match="needs a rotary \\(RoPE\\) model"):
        band_sweep(gpt, toks, target="rope", progress=False)


def test_model_unchanged_after_an_error_mid_run(random_model, toks):
    shape = model_shape(random_model)
    layer_list = _hf_layer_list(random_model)
    before = list(layer_list)
    clean = random_model(toks, return_type="logits").detach()
    runner = _Runner(random_model, shape)
    with torch.no_grad():
        _, cache = random_model.run_with_cache(toks, names_filter=lambda n: n == "blocks.1.hook_resid_pre")

    def boom(z, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runner.logits_from(1, cache["blocks.1.hook_resid_pre"], toks, [("blocks.1.attn.hook_z", boom)])
    assert all(a is b for a, b in zip(layer_list, before))
    assert all(len(hp._forward_hooks) == 0 for hp in random_model.hook_dict.values())
    assert torch.equal(random_model(toks, return_type="logits").detach(), clean)


# ------------------------------------------------------------------ stacked exact cells (issue 20)
@pytest.mark.parametrize("kw", [dict(), dict(method="mean"), dict(method="resample"), dict(causal=False),
                                dict(target="rope", n_rope_bands=2)],
                         ids=["zero", "mean", "resample", "dwt", "rope"])
def test_stacked_cells_equal_one_at_a_time(planted_any, kw):
    """Many cells in one patched forward give what one forward per cell gives."""
    toks = torch.randint(4, 97, (3, 64), generator=torch.Generator().manual_seed(7))
    common = dict(layers=[0, 1], heads=[0, 1, 3], level=3, progress=False, batch_size=3, **kw)
    one = band_sweep(planted_any, toks, cells_per_forward=1, **common)
    many = band_sweep(planted_any, toks, cells_per_forward=5, **common)
    auto = band_sweep(planted_any, toks, **common)
    num = [c for c in one.columns if c.startswith("delta_loss") or c == "se"]
    for other in (many, auto):
        assert (one[["layer", "head", "band"]] == other[["layer", "head", "band"]]).all().all()
        assert np.allclose(one[num], other[num], rtol=1e-6, atol=1e-9, equal_nan=True)
    # and each equals its own run_with_hooks (the one-at-a-time truth), for a few cells
    if kw.get("target") != "rope" and kw.get("method", "zero") == "zero" and kw.get("causal", True):
        with torch.no_grad():
            clean = float(planted_any(toks, return_type="loss"))
        for _, r in many.head(4).iterrows():
            hook = band_ablation_hook(int(r.layer), [int(r["head"])], [r.band], level=3)
            with torch.no_grad():
                ablated = float(planted_any.run_with_hooks(toks, return_type="loss", fwd_hooks=[hook]))
            assert ablated - clean == pytest.approx(r.delta_loss, rel=1e-4, abs=1e-6)


def test_atp2_progress_counts_gradient_passes(random_model, capsys):
    """The bar moves with every gradient pass (it stood at 0/1 for minutes on SmolLM2 in `make demo`)."""
    toks = torch.randint(4, 97, (2, 32), generator=torch.Generator().manual_seed(2))
    band_sweep(random_model, toks, layers=[1], heads=[0], level=3, attribution="atp2", fisher_samples=3,
               batch_size=1, progress=True)
    err = capsys.readouterr().err
    assert "band_sweep (atp2)" in err and "8/8" in err  # 2 batches x (1 gradient + 3 sampled passes)
