"""Compatibility suite: every architecture x backend, each feature against an independent truth.

Tiny random-weight HF models of each architecture (tests/compat_models.py) are saved to a
temporary directory with a word-level tokenizer and loaded with
``tl_wavelet.models.load(dir, backend=...)``: the TransformerBridge on TransformerLens 4.x
(``make test``), the HookedTransformer on TransformerLens 3.x (``make test-tl3``). The
truths are the HF model itself: its logits, its rotary module's ``inv_freq``, its eager
``output_attentions``; hand computations from hook_z and q/k; and a planted GPT-NeoX.
``docs/build_compatibility.py`` runs this file and turns its results into
docs/compatibility.md.
"""
from __future__ import annotations

import math

import pytest
import torch
from compat_models import ARCHS, NON_ROTARY, ROTARY, save_tiny
from models_for_tests import word_tokenizer

import tl_wavelet as tlw
from tl_wavelet.ablation import band_ablation_hook, rope_ablation_hook
from tl_wavelet.ablation.rope_pairs import rope_pair_dims
from tl_wavelet.analysis import MetricConfig, layer_metrics
from tl_wavelet.models import tl_major_version
from tl_wavelet.rope import apply_rope, rotary_hooks

TL_MAJOR = tl_major_version()
BACKEND = "bridge" if TL_MAJOR >= 4 else "hooked"
# What TransformerLens 3's HookedTransformer cannot hold: load() must say so.
HOOKED_UNSUPPORTED = {"stablelm": "StableLmForCausalLM", "bert": "BertLMHeadModel"}
LEVEL = 3
SEQ = 64


def _hook_count(model) -> int:
    return sum(len(hp._forward_hooks) for hp in model.hook_dict.values())


_BASELINE: dict[int, int] = {}  # some bridges (BERT) keep hooks of their own


def _no_hooks_left(model) -> bool:
    return _hook_count(model) == _BASELINE.get(id(model), 0)


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer(97)


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(0)
    return torch.randint(4, 97, (2, SEQ), generator=g)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tok):
    """arch -> (directory, HF model), built once per module."""
    cache = {}

    def get(arch):
        if arch not in cache:
            d = tmp_path_factory.mktemp(f"compat-{arch}")
            cache[arch] = (d, save_tiny(arch, d, tok))
        return cache[arch]

    return get


@pytest.fixture(scope="module")
def loaded(saved):
    """arch -> (TransformerLens model on this env's backend, HF model); skips what TL cannot hold."""
    cache = {}

    def get(arch):
        if arch not in cache:
            d, hf = saved(arch)
            if BACKEND == "hooked" and arch in HOOKED_UNSUPPORTED:
                cache[arch] = None
            else:
                model = tlw.models.load(d, backend=BACKEND)
                _BASELINE[id(model)] = _hook_count(model)
                cache[arch] = (model, hf)
        if cache[arch] is None:
            pytest.skip(f"unsupported: TransformerLens {TL_MAJOR}.x HookedTransformer has no {HOOKED_UNSUPPORTED[arch]}")
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", list(ARCHS))
def test_load_logits_equal_hf(arch, saved, loaded, tokens, record_property):
    d, hf = saved(arch)
    if BACKEND == "hooked" and arch in HOOKED_UNSUPPORTED:
        with pytest.raises(NotImplementedError, match=f"{HOOKED_UNSUPPORTED[arch]}.*backend='bridge'"):
            tlw.models.load(d, backend="hooked")
        record_property("outcome", "unsupported")  # for docs/compatibility.md
        return
    model, _ = loaded(arch)  # tlw.models.load(dir, backend=BACKEND)
    with torch.no_grad():
        ours = model(tokens)
        ref = hf(tokens).logits
    torch.testing.assert_close(ours, ref, atol=2e-4 * max(1.0, float(ref.abs().max())), rtol=0)


def _hf_inv_freq(arch: str, hf) -> dict[int, torch.Tensor]:
    """Per layer: the HF model's own rotary frequencies (its rotary module's buffers)."""
    n_layers = hf.config.num_hidden_layers if hasattr(hf.config, "num_hidden_layers") else hf.config.n_layer
    buffers = dict(hf.named_buffers())
    if arch == "gptj":
        # GPT-J's create_sinusoidal_positions: base 10000 over rotary_dim, by definition
        r = hf.config.rotary_dim
        inv = 1.0 / 10000 ** (torch.arange(0, r, 2, dtype=torch.float64) / r)
        return {L: inv for L in range(n_layers)}
    if arch == "gemma3":
        types = hf.config.layer_types
        return {L: buffers[f"model.rotary_emb.{types[L]}_inv_freq"].double() for L in range(n_layers)}
    (inv,) = [b for k, b in buffers.items() if k.endswith("rotary_emb.inv_freq")]
    return {L: inv.double() for L in range(n_layers)}


@pytest.mark.parametrize("arch", ROTARY)
def test_rope_frequencies_equal_hf_inv_freq(arch, loaded):
    model, hf = loaded(arch)
    meta = tlw.rope_frequencies(model)
    truth = _hf_inv_freq(arch, hf)
    assert sorted(meta) == sorted(truth)
    for L, m in meta.items():
        torch.testing.assert_close(m["inv_freq"].double().cpu(), truth[L], rtol=1e-5, atol=1e-9)
        assert m["rotary_dim"] == 2 * truth[L].numel()
        assert m["adjacent_pairs"] == (arch == "gptj")  # GPT-J rotates (2i, 2i+1), the rest split halves
    if arch == "gemma3":  # per-layer-type bases really differ
        assert not torch.allclose(meta[0]["inv_freq"], meta[1]["inv_freq"])
    assert _no_hooks_left(model)


def _log_pattern_centred(p: torch.Tensor) -> torch.Tensor:
    """Row-centred log attention on the causal part (0 elsewhere): softmax's normaliser drops out."""
    n = p.shape[-1]
    keep = torch.ones(n, n, dtype=torch.bool).tril()
    lp = torch.where(keep, p.double().clamp(min=1e-300).log(), 0.0)
    return torch.where(keep, lp - lp.sum(-1, keepdim=True) / keep.sum(-1, keepdim=True), 0.0)


def _centred(s: torch.Tensor) -> torch.Tensor:
    n = s.shape[-1]
    keep = torch.ones(n, n, dtype=torch.bool).tril()
    s = torch.where(keep, s.double(), 0.0)
    return torch.where(keep, s - s.sum(-1, keepdim=True) / keep.sum(-1, keepdim=True), 0.0)


@pytest.mark.parametrize("arch", ROTARY)
def test_rope_ablation_equals_scores_recomputed_from_qk(arch, loaded, tokens, record_property):
    """Zeroing rotary pairs of one head's q == that head's scores recomputed by hand from q/k."""
    model, hf = loaded(arch)
    layer, head = 1, 1
    meta = tlw.rope_frequencies(model)[layer]
    q_kind, k_kind = rotary_hooks(model)
    record_property("rope_hooks", f"{q_kind}/{k_kind}")  # for docs/compatibility.md
    x = tokens[:1, :16]
    names = [f"blocks.{layer}.attn.hook_{k}" for k in (q_kind, k_kind, "pattern")]
    _, clean = model.run_with_cache(x, names_filter=lambda n: n in names)
    q, k, p_clean = (clean[n].double() for n in names)
    pairs = [0, meta["inv_freq"].numel() - 1]  # the fastest and the slowest pair
    hooks = rope_ablation_hook(model, layer, heads=[head], bands=pairs)
    assert [n for n, _ in hooks] == [f"blocks.{layer}.attn.hook_{q_kind}"]
    with model.hooks(fwd_hooks=hooks):
        _, abl = model.run_with_cache(x, names_filter=lambda n: n == names[2])
    p_abl = abl[names[2]].double()
    assert _no_hooks_left(model)

    def scores(qq):
        if q_kind == "q":  # pre-rotation activations: rotate them by hand
            qq = apply_rope(qq, meta["inv_freq"], meta["adjacent_pairs"])
            kk = apply_rope(k, meta["inv_freq"], meta["adjacent_pairs"])
        else:
            kk = k
        kk = kk.repeat_interleave(qq.shape[2] // kk.shape[2], dim=2)
        return torch.einsum("bqd,bkd->bqk", qq[:, :, head], kk[:, :, head])

    q_abl = q.clone()
    q_abl[:, :, head, rope_pair_dims(pairs, meta["rotary_dim"], meta["adjacent_pairs"])] = 0
    s_clean, s_abl = _centred(scores(q)), _centred(scores(q_abl))
    l_clean, l_abl = _log_pattern_centred(p_clean[:, head]), _log_pattern_centred(p_abl[:, head])
    c = float((l_clean * s_clean).sum() / (s_clean * s_clean).sum())  # the model's score scale
    assert c > 0
    assert float((l_clean - c * s_clean).norm() / l_clean.norm()) < 1e-3
    assert float((l_abl - c * s_abl).norm() / l_abl.norm()) < 1e-3
    assert float((l_abl - l_clean).norm() / l_clean.norm()) > 1e-2  # the ablation did something
    others = [h for h in range(p_clean.shape[1]) if h != head]
    torch.testing.assert_close(p_abl[:, others], p_clean[:, others])


@pytest.mark.filterwarnings("ignore:rho:RuntimeWarning")  # 2 sequences: rho is NaN, not the point here
@pytest.mark.parametrize("arch", list(ARCHS))
def test_streamed_patterns_and_metrics_equal_hf_attentions(arch, loaded, tokens):
    """hook_pattern == HF eager output_attentions; analyze_heads == metrics of the HF attentions."""
    model, hf = loaded(arch)
    got = {}

    def grab(L):
        def fn(t, hook):
            got[L] = t.detach()
        return fn

    n_layers = model.cfg.n_layers
    with model.hooks(fwd_hooks=[(f"blocks.{L}.attn.hook_pattern", grab(L)) for L in range(n_layers)]):
        model(tokens, return_type=None)
    with torch.no_grad():
        att = hf(tokens, output_attentions=True).attentions
    for L in range(n_layers):
        torch.testing.assert_close(got[L], att[L], atol=1e-5, rtol=1e-4)
    report = tlw.analyze_heads(model, tokens, level=LEVEL, progress=False)
    df = report.to_dataframe()
    cfg = MetricConfig(level=LEVEL)
    for L in range(n_layers):
        e = layer_metrics(att[L], cfg)["band_energy"].mean(0)
        shares = (e / e.sum(-1, keepdim=True)).numpy()
        rows = df[df["layer"] == L].sort_values("head")
        torch.testing.assert_close(torch.tensor(rows[report.labels].to_numpy()), torch.tensor(shares),
                                   rtol=1e-4, atol=1e-6)
    if arch in ROTARY:
        usage = report.rope_usage()
        assert usage[["q_energy", "k_energy"]].notna().all().all()
        assert (usage["q_energy"] > 0).any()
    else:
        assert report.rope is None
    assert _no_hooks_left(model)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_band_ablation_of_every_band_is_zeroing_hook_z(arch, loaded, tokens):
    model, _ = loaded(arch)
    layer, head = 0, 2
    x = tokens[:2, :32]

    def zero_head(z, hook):
        z = z.clone()
        z[:, :, head] = 0
        return z

    with torch.no_grad():
        by_hand = model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero_head)])
        ours = model.run_with_hooks(x, fwd_hooks=[band_ablation_hook(layer, [head], None, level=LEVEL)])
        clean = model(x)
    scale = float(by_hand.abs().max())
    torch.testing.assert_close(ours, by_hand, atol=1e-4 * scale, rtol=0)
    assert float((clean - by_hand).abs().max()) > 1e-3 * scale  # zeroing the head matters
    assert _no_hooks_left(model)


@pytest.mark.parametrize("arch", NON_ROTARY)
def test_rope_features_name_the_position_encoding(arch, loaded, tokens):
    model, _ = loaded(arch)
    encoding = {"gpt2": "learned absolute", "bert": "learned absolute", "bloom": "ALiBi"}[arch]
    for call in (lambda: tlw.rope_frequencies(model),
                 lambda: rope_ablation_hook(model, 0, heads=0, bands=None),
                 lambda: rotary_hooks(model),
                 lambda: tlw.analyze_heads(model, tokens, level=LEVEL, rope=True, progress=False)):
        with pytest.raises(ValueError, match=encoding):
            call()
    assert _no_hooks_left(model)


# ------------------------------------------------------------------ planted GPT-NeoX

NEOX_OFFSETS = {0: 1, 1: None, 2: 6, 3: 16}  # head -> attended offset; None = uniform


def planted_neox(d_head=64, rotary_pct=0.25, n_heads=4, sharpness=60.0, base=10000.0):
    """A GPT-NeoX (parallel attention, rotary on 25 % of each head) with planted layer-0 heads.

    Every embedding has one large coordinate, so LayerNorm's output has a near-constant
    direction that W_Q/W_K read. Keys are B(1, 0) in each rotary pair, the query of head
    h is A(cos k_h theta_i, -sin k_h theta_i): the RoPE score A B sum_i cos((d - k_h) theta_i)
    peaks at offset k_h (q = 0: uniform attention). The non-rotary dims stay 0.
    """
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    d_model = n_heads * d_head
    cfg = GPTNeoXConfig(vocab_size=97, hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=2,
                        num_attention_heads=n_heads, max_position_embeddings=512, rotary_pct=rotary_pct,
                        rotary_emb_base=base, tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = GPTNeoXForCausalLM(cfg).eval()
    r = int(d_head * rotary_pct)
    half = r // 2
    theta = base ** (-torch.arange(half, dtype=torch.float64) * 2 / r)
    with torch.no_grad():
        emb = hf.gpt_neox.embed_in.weight
        emb[:, 0] = 8.0
        emb[:, 1:] *= 0.05
        attn = hf.gpt_neox.layers[0].attention
        ln = hf.gpt_neox.layers[0].input_layernorm
        ln.weight.fill_(1.0)
        ln.bias.zero_()
        w = attn.query_key_value.weight.view(n_heads, 3, d_head, d_model)
        attn.query_key_value.bias.zero_()
        w[:, :2] = 0
        unit = 1.0 / math.sqrt(d_model)  # LayerNorm's coordinate 0 is about sqrt(d_model)
        scale = math.sqrt(sharpness * math.sqrt(d_head) / half)
        for h in range(n_heads):
            w[h, 1, :half, 0] = scale * unit
            k_h = NEOX_OFFSETS.get(h)
            if k_h is not None:
                q = torch.cat([torch.cos(k_h * theta), -torch.sin(k_h * theta)]) * scale * unit
                w[h, 0, :r, 0] = q.to(w.dtype)
    hf.config.architectures = ["GPTNeoXForCausalLM"]
    return hf


def test_planted_gpt_neox_partial_rotary_heads_land_at_their_scale(tmp_path, tok):
    hf = planted_neox()
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = tlw.models.load(tmp_path, backend=BACKEND)
    assert tlw.rope_frequencies(model)[0]["rotary_dim"] == 16
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, 97, (4, 128), generator=g)
    report = tlw.analyze_heads(model, x, layers=[0], level=5, progress=False)
    df = report.to_dataframe().set_index("head")
    assert df.loc[0, "dominant_band"] == "D1"  # previous-token head at the finest scale
    assert df.loc[1, "dominant_band"] == "A5"  # uniform head at the coarsest
    assert df.loc[1, "scale_tokens"] == df["scale_tokens"].max()
    assert df.loc[0, "scale_tokens"] == df["scale_tokens"].min()
    for head in (2, 3):
        k = NEOX_OFFSETS[head]
        assert abs(math.log2(df.loc[head, "scale_tokens"] / k)) < 1, (head, df.loc[head, "scale_tokens"])
    # RoPE usage: only the rotary dims of the planted queries carry energy
    usage = report.rope_usage()
    assert (usage[usage["head"] == 1]["q_energy"] < 1e-6).all()
    assert (usage[usage["head"] == 0]["q_energy"] > 1).all()
    assert _no_hooks_left(model)


# ------------------------------------------------------------------ bad input

def test_olmo2_with_grouped_kv_heads(tmp_path, tok, tokens):
    """TL 3 converts OLMo-2 without grouped-query attention: refused, naming the bridge; the bridge holds it."""
    import transformers

    cfg = transformers.Olmo2Config(**dict(ARCHS["olmo2"][2], num_key_value_heads=2))
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = transformers.Olmo2ForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    if BACKEND == "hooked":
        with pytest.raises(NotImplementedError, match="OLMo-2.*key/value heads.*backend='bridge'"):
            tlw.models.load(tmp_path, backend="hooked")
        return
    model = tlw.models.load(tmp_path, backend="bridge")
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-4, rtol=0)


def test_unverifiable_rotation_is_refused(loaded):
    """The q/k substitution is checked: a wrong pair layout does not reproduce the attention."""
    from tl_wavelet.rope import _score_mismatch

    model, _ = loaded("gpt_neox")
    meta = tlw.rope_frequencies(model)[0]
    names = [f"blocks.0.attn.hook_{k}" for k in ("q", "k", "pattern")]
    _, cache = model.run_with_cache(torch.arange(4, 20)[None], names_filter=lambda n: n in names)
    acts = dict(zip(("q", "k", "pattern"), (cache[n] for n in names)))
    assert _score_mismatch(acts, meta) < 1e-3
    assert _score_mismatch(acts, dict(meta, adjacent_pairs=not meta["adjacent_pairs"])) > 1e-2
    assert _score_mismatch(acts, dict(meta, inv_freq=meta["inv_freq"] * 1.5)) > 1e-2


@pytest.mark.skipif(TL_MAJOR < 4, reason="boot_native is a TransformerBridge (TL >= 4) constructor")
def test_boot_native_model_says_how_to_load(tokens):
    from transformer_lens.model_bridge import TransformerBridge

    try:
        from transformer_lens.config import TransformerBridgeConfig
    except ImportError:  # pragma: no cover - layout of other 4.x releases
        pytest.skip("TransformerBridgeConfig not importable here")
    cfg = TransformerBridgeConfig(d_model=64, d_head=16, n_heads=4, n_layers=2, n_ctx=128, d_vocab=97,
                                  d_mlp=128, act_fn="gelu", positional_embedding_type="rotary",
                                  normalization_type="LN")
    model = TransformerBridge.boot_native(cfg)
    with pytest.raises(ValueError, match="boot_transformers|tl_wavelet.models.load"):
        rotary_hooks(model)
    assert _no_hooks_left(model)


@pytest.mark.parametrize("arch", ["gpt_neox", "gptj"])
def test_rope_band_sweep_equals_pairs_zeroed_by_hand(arch, loaded, tokens):
    """band_sweep(target='rope') on few-pair partial-rotary heads == the loss with those dims zeroed by hand."""
    model, _ = loaded(arch)
    meta = tlw.rope_frequencies(model)[0]
    q_kind, _ = rotary_hooks(model)
    x = tokens[:2, :32]
    df = tlw.band_sweep(model, x, target="rope", layers=[0], heads=[0], progress=False)
    n_pairs = meta["inv_freq"].numel()
    assert len(df) == min(4, n_pairs)  # one band per pair here: 2 (GPT-NeoX) / 4 (GPT-J) pairs
    r = meta["rotary_dim"]
    with torch.no_grad():
        clean = float(model(x, return_type="loss"))
        for _, row in df.iterrows():
            pair = int(row["band"][1:])  # R_i holds pair i: wavelengths grow with the index
            dims = [2 * pair, 2 * pair + 1] if arch == "gptj" else [pair, pair + r // 2]  # GPT-J: adjacent

            def zero(q, hook, dims=dims):
                q = q.clone()
                q[:, :, 0, dims] = 0
                return q

            ablated = float(model.run_with_hooks(x, return_type="loss", fwd_hooks=[(f"blocks.0.attn.hook_{q_kind}", zero)]))
            assert row["delta_loss"] == pytest.approx(ablated - clean, rel=1e-3, abs=1e-6)
    assert _no_hooks_left(model)
