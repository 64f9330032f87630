"""Band ablation hooks against independent truths: TransformerLens's own hooks and closed forms."""
from __future__ import annotations

import math

import pytest
import torch
from einops import einsum, repeat

from tl_wavelet.ablation import band_ablation_hook, band_components, patch_bands, rope_ablation_hook, rope_bands
from tl_wavelet.ablation.positional import resolve_bands
from tl_wavelet.ablation.rope_pairs import rope_pair_dims
from tl_wavelet.ablation.spec import derangement

LAYER = 1


def _no_hooks_left(model) -> bool:
    return all(len(hp._forward_hooks) == 0 for hp in model.hook_dict.values())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _cache(model, tokens, names, fwd_hooks=()):
    """Activations at ``names`` with ``fwd_hooks`` applied (TransformerLens's own hook chain)."""
    got = {}

    def grab(name):  # keyed by the name we asked for: the bridge may report an alias
        def fn(t, hook):
            got[name] = t.detach().clone()

        return fn

    with torch.no_grad():
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=list(fwd_hooks) + [(n, grab(n)) for n in names])
    return got


# ------------------------------------------------------------------ the core, closed forms
@pytest.mark.parametrize("causal", [True, False])
def test_components_rebuild_the_signal(causal):
    x = torch.randn(3, 64, 2, 5, dtype=torch.float64)
    comps = band_components(x, causal=causal, band_wavelet="db2" if not causal else "haar", level=3)
    assert comps.shape == (4, 3, 64, 2, 5)
    assert _rel(comps.sum(0), x) < 1e-12
    assert patch_bands(x, [], causal=causal, level=3) is x  # removing nothing is the identity


def test_patch_bands_formula_and_methods():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, 3, generator=g, dtype=torch.float64)
    ref = torch.randn(6, 32, 3, generator=g, dtype=torch.float64)
    comps = band_components(x, level=3)
    rc = band_components(ref, level=3)
    y = patch_bands(x, [0, 3], level=3)
    assert torch.allclose(y, x - comps[0] - comps[3])
    y = patch_bands(x, [1], level=3, method="mean")
    assert torch.allclose(y, x - comps[1] + comps[1].mean(0, keepdim=True))
    y = patch_bands(x, [1], level=3, method="mean", reference=ref)
    assert torch.allclose(y, x - comps[1] + rc[1].mean(0, keepdim=True))
    src = torch.tensor([5, 0, 2, 2])
    y = patch_bands(x, [2], level=3, method="resample", reference=ref, source_index=src)
    assert torch.allclose(y, x - comps[2] + rc[2][src])
    perm = derangement(4, seed=3)
    y = patch_bands(x, [2], level=3, method="resample", seed=3)
    assert torch.allclose(y, x - comps[2] + comps[2][perm])
    assert (perm != torch.arange(4)).all()
    # every band: zero -> 0, mean -> the mean signal, resample -> the source sequence itself
    assert patch_bands(x, range(4), level=3).abs().max() < 1e-12
    assert torch.allclose(patch_bands(x, range(4), level=3, method="mean", reference=ref), ref.mean(0).expand_as(x))
    assert torch.allclose(patch_bands(x, range(4), level=3, method="resample", reference=ref, source_index=src), ref[src])


def test_band_names_and_errors():
    assert resolve_bands(None, 2) == [0, 1, 2]
    assert resolve_bands(["D1", "A2"], 2) == [0, 2]
    with pytest.raises(ValueError, match=r"Unknown band 'D6' at level 5: valid bands are \['A5', 'D5'"):
        resolve_bands(["D6"], 5)
    with pytest.raises(ValueError, match="Unknown method 'median'"):
        band_ablation_hook(0, 0, ["A5"], method="median")
    with pytest.raises(ValueError, match="at least 2\\^5 = 32 positions"):
        band_components(torch.zeros(1, 16, 2), level=5)
    with pytest.raises(ValueError, match="level <= "):
        band_components(torch.zeros(1, 16, 2), causal=False, band_wavelet="db2", level=5)
    with pytest.raises(ValueError, match="at least 2 sequences"):
        patch_bands(torch.zeros(1, 32, 2), [0], level=3, method="resample")
    with pytest.raises(ValueError, match="every dim but the batch"):
        patch_bands(torch.zeros(2, 32, 2), [0], level=3, method="mean", reference=torch.zeros(2, 64, 2))


# ------------------------------------------------------------------ on a real TransformerLens model
@pytest.mark.parametrize("causal", [True, False])
def test_no_band_is_identity(random_model, tokens, causal):
    z_name = f"blocks.{LAYER}.attn.hook_z"
    clean = random_model(tokens[:2], return_type="logits").detach()
    with pytest.raises(ValueError, match="bands is empty"):  # a hook that patches nothing is refused
        band_ablation_hook(LAYER, None, [], causal=causal, band_wavelet="db2", level=4)
    identity = (f"blocks.{LAYER}.attn.hook_z", lambda z, hook: patch_bands(z, [], causal=causal, band_wavelet="db2", level=4))
    patched = random_model.run_with_hooks(tokens[:2], return_type="logits", fwd_hooks=[identity]).detach()
    assert _rel(patched, clean) < 1e-6
    # and the decomposition it would remove from sums back to the head output
    z = _cache(random_model, tokens[:2], [z_name])[z_name]
    comps = band_components(z, causal=causal, band_wavelet="db2", level=4)
    assert _rel(comps.sum(0), z) < 1e-6


@pytest.mark.parametrize("causal", [True, False])
def test_every_band_equals_zero_ablating_the_head(planted_any, tokens, causal):
    model = planted_any
    z_name = f"blocks.{LAYER}.attn.hook_z"

    def zero_head(z, hook):  # the independent truth: TransformerLens-style head zero-ablation
        z = z.clone()
        z[:, :, 2] = 0
        return z

    truth = model.run_with_hooks(tokens[:3], return_type="logits", fwd_hooks=[(z_name, zero_head)]).detach()
    clean = model(tokens[:3], return_type="logits").detach()
    hook = band_ablation_hook(LAYER, 2, None, causal=causal, band_wavelet="haar", level=5)
    got = model.run_with_hooks(tokens[:3], return_type="logits", fwd_hooks=[hook]).detach()
    assert _rel(got, truth) < 1e-5
    assert _rel(clean, truth) > 1e-3  # the head matters, so the comparison has teeth
    assert _no_hooks_left(model)


def test_mean_and_resample_of_every_band_match_activation_patching(random_model, tokens):
    z_name = f"blocks.{LAYER}.attn.hook_z"
    toks, ref_toks = tokens[:3], tokens[3:6]
    ref_z = _cache(random_model, ref_toks, [z_name])[z_name]

    def mean_head(z, hook):
        z = z.clone()
        z[:, :, 1] = ref_z[:, :, 1].mean(0)
        return z

    def resample_head(z, hook):
        z = z.clone()
        z[:, :, 1] = ref_z[src, :, 1]
        return z

    src = torch.tensor([2, 0, 1])
    for method, truth_fn, extra in [("mean", mean_head, {}), ("resample", resample_head, {"source_index": src})]:
        truth = random_model.run_with_hooks(toks, return_type="logits", fwd_hooks=[(z_name, truth_fn)]).detach()
        hook = band_ablation_hook(LAYER, 1, None, method=method, reference=ref_z, level=5, **extra)
        got = random_model.run_with_hooks(toks, return_type="logits", fwd_hooks=[hook]).detach()
        assert _rel(got, truth) < 1e-5, method


def _future_changed(tokens, t):
    other = tokens.clone()
    g = torch.Generator().manual_seed(1)
    other[:, t + 1:] = torch.randint(4, 97, other[:, t + 1:].shape, generator=g)
    return other


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_causal_mode_never_sees_the_future(random_model, tokens, method):
    t = 70
    z_name = f"blocks.{LAYER}.attn.hook_z"
    hook = band_ablation_hook(LAYER, [0, 3], ["A5", "D2"], method=method, causal=True, level=5)
    a = _cache(random_model, tokens[:4], [z_name], [hook])[z_name]
    b = _cache(random_model, _future_changed(tokens[:4], t), [z_name], [hook])[z_name]
    assert torch.equal(a[:, : t + 1], b[:, : t + 1]) or (a[:, : t + 1] - b[:, : t + 1]).abs().max() < 1e-6
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-3  # the future did change


def test_dwt_mode_leaks_the_future(random_model, tokens):
    """Why causal=True is the default: the DWT's two-sided filters carry later tokens back."""
    t = 70
    z_name = f"blocks.{LAYER}.attn.hook_z"
    hook = band_ablation_hook(LAYER, [0, 3], ["A5"], causal=False, band_wavelet="db2", level=5)
    clean_a = _cache(random_model, tokens[:4], [z_name])[z_name]
    clean_b = _cache(random_model, _future_changed(tokens[:4], t), [z_name])[z_name]
    assert (clean_a[:, : t + 1] - clean_b[:, : t + 1]).abs().max() < 1e-6  # the model itself is causal
    a = _cache(random_model, tokens[:4], [z_name], [hook])[z_name]
    b = _cache(random_model, _future_changed(tokens[:4], t), [z_name], [hook])[z_name]
    assert (a[:, : t + 1] - b[:, : t + 1]).abs().max() > 1e-4


def test_bad_head_raises_and_hooks_are_removed(random_model, tokens):
    clean = random_model(tokens[:1], return_type="logits").detach()
    with pytest.raises(ValueError, match="head 7 is out of range: layer 1 has 4 heads"):
        random_model.run_with_hooks(tokens[:1], fwd_hooks=[band_ablation_hook(LAYER, 7, ["A5"])])
    assert _no_hooks_left(random_model)
    assert torch.equal(random_model(tokens[:1], return_type="logits").detach(), clean)


# ------------------------------------------------------------------ RoPE pair patching
def _scores(model, tokens, hooks, layer=0):
    names = [f"blocks.{layer}.attn.hook_{k}" for k in ("rot_q", "rot_k", "attn_scores", "pattern")]
    got = _cache(model, tokens, names, hooks)
    return [got[n] for n in names]


def _manual_scores(rot_q, rot_k, n_heads, keep_q=None, keep_k=None):
    """Scores recomputed from rotated q and k: q.k / sqrt(d_head), grouped keys repeated."""
    if keep_q is not None:
        rot_q = rot_q * keep_q
    if keep_k is not None:
        rot_k = rot_k * keep_k
    group = n_heads // rot_k.shape[2]
    k = repeat(rot_k, "b p kv d -> b p (kv g) d", g=group)
    return einsum(rot_q, k, "b q h d, b k h d -> b h q k") / math.sqrt(rot_q.shape[-1])


def _causal_mask(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


def test_rope_bands_table(random_model):
    table = rope_bands(random_model, 0, n_bands=4)
    assert [b.name for b in table] == ["R0", "R1", "R2", "R3"]
    assert sorted(p for b in table for p in b.pairs) == list(range(8))
    assert all(a.wavelength_max <= b.wavelength_min for a, b in zip(table, table[1:]))
    assert table[0].label.startswith("R0 (λ 6.28-") and table[0].label.endswith(" tok)")
    assert rope_pair_dims([0, 3], rotary_dim=16) == [0, 3, 8, 11]
    assert rope_pair_dims([1], rotary_dim=16, adjacent_pairs=True) == [2, 3]
    with pytest.raises(ValueError, match=r"Unknown RoPE band 'R9'.*R0 \(λ"):
        rope_ablation_hook(random_model, 0, 0, ["R9"])
    with pytest.raises(ValueError, match="pairs 0..7"):
        rope_ablation_hook(random_model, 0, 0, [8])
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        rope_ablation_hook(random_model, 5, 0, ["R0"])


@pytest.mark.parametrize("bands", [[3], ["R3"], [0, 5]])
def test_rope_q_pair_removal_matches_manual_scores(random_model, tokens, bands):
    toks = tokens[:2, :40]
    rot_q, rot_k, clean_scores, _ = _scores(random_model, toks, [])
    mask = _causal_mask(toks.shape[1])
    manual_clean = _manual_scores(rot_q, rot_k, 4)
    assert torch.allclose(manual_clean[..., mask], clean_scores[..., mask], atol=1e-5)  # the scale is right

    heads = [1, 2]
    pairs = {"R3": [6, 7]}.get(bands[0], bands) if isinstance(bands[0], str) else bands
    keep = torch.ones(4, 16)
    for h in heads:
        keep[h, rope_pair_dims(pairs, 16)] = 0
    truth = _manual_scores(rot_q, rot_k, 4, keep_q=keep)
    _, _, got, _ = _scores(random_model, toks, rope_ablation_hook(random_model, 0, heads, bands, on="q"))
    assert torch.allclose(got[..., mask], truth[..., mask], atol=1e-5)
    assert torch.allclose(got[:, [0, 3]][..., mask], clean_scores[:, [0, 3]][..., mask])  # other heads untouched
    assert (got[:, heads][..., mask] - clean_scores[:, heads][..., mask]).abs().max() > 1e-4


def test_rope_k_patching_needs_whole_groups(random_model, tokens):
    toks = tokens[:2, :40]
    rot_q, rot_k, _, _ = _scores(random_model, toks, [])
    with pytest.raises(ValueError, match="serves query heads \\[2, 3\\]"):
        rope_ablation_hook(random_model, 0, [0, 1, 2], ["R0"], on="k")
    keep_k = torch.ones(2, 16)
    keep_k[1, rope_pair_dims([0, 1], 16)] = 0
    truth = _manual_scores(rot_q, rot_k, 4, keep_k=keep_k)
    _, _, got, _ = _scores(random_model, toks, rope_ablation_hook(random_model, 0, [2, 3], ["R0"], on="k"))
    mask = _causal_mask(toks.shape[1])
    assert torch.allclose(got[..., mask], truth[..., mask], atol=1e-5)


def test_removing_every_pair_flattens_the_pattern(planted, tokens):
    toks = tokens[:2, :48]
    _, _, scores, pattern = _scores(planted, toks, rope_ablation_hook(planted, 0, 0, None))
    mask = _causal_mask(toks.shape[1])
    assert scores[:, 0][:, mask].abs().max() < 1e-6
    uniform = mask / mask.sum(-1, keepdim=True)
    assert torch.allclose(pattern[:, 0], uniform.expand_as(pattern[:, 0]), atol=1e-6)
    _, _, clean_scores, clean_pattern = _scores(planted, toks, [])
    assert (clean_pattern[:, 0] - uniform).abs().max() > 0.5  # head 0 was a sharp previous-token head


def test_rope_on_a_model_without_rotary_raises(tokenizer):
    from models_for_tests import boot_bridge
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    gpt = boot_bridge(hf, tokenizer, "tiny-gpt2")
    with pytest.raises(ValueError, match="needs a rotary \\(RoPE\\) model.*target='z'"):
        rope_ablation_hook(gpt, 0, 0, ["R0"])
