"""tl_wavelet.track: the tracker measures the model being trained, in place, and leaves it as it was.

Truths: analyze_heads on a deep copy of the model taken at the logged step (on HF models,
through a TransformerBridge booted from that copy: TL's own hooks vs HF's returned
attentions), the model's own parameters/gradients/modes before the log, and the tracker's
in-memory frame for the reloaded file.
"""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from models_for_tests import boot_bridge, tiny_llama_hf

import tl_wavelet as tlw
from tl_wavelet.track import Tracker, read_log, track_checkpoints

EXTRA = ["step", "probe_loss", "induction_loss"]


def _probe(n=4, pos=64, seed=0):
    return torch.randint(4, 97, (n, pos), generator=torch.Generator().manual_seed(seed))


def _train_step(model, backend, opt, g):
    b = torch.randint(4, 97, (4, 64), generator=g)
    if backend == "hf":
        loss = model(input_ids=b, labels=b).loss
    else:
        loss = model(b, return_type="loss")
    loss.backward()


def _state(model):
    return (
        [p.detach().clone() for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
    )


def _assert_same_state(before, model):
    w, g, rg, modes = before
    now = _state(model)
    assert all(torch.equal(a, b) for a, b in zip(w, now[0])), "weights changed"
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(g, now[1])), "grads changed"
    assert rg == now[2], "requires_grad changed"
    assert modes == now[3], "train/eval modes changed"


def _model(backend, tokenizer):
    hf = tiny_llama_hf(planted=False, seed=3)
    if backend == "hf":
        return hf
    if backend == "bridge":
        return boot_bridge(hf, tokenizer, "track-llama")
    from tl_wavelet.models import tl_major_version

    if tl_major_version() >= 4:
        pytest.skip("HookedTransformer needs TransformerLens 3.x; `make test-tl3` runs this case")
    from tl_wavelet.models.load import _hooked_from_hf

    return _hooked_from_hf("track-llama", hf, tokenizer, "cpu", torch.float32)


def _copy_for_analysis(model, backend, tokenizer):
    if backend == "hf":
        return boot_bridge(copy.deepcopy(model).eval(), tokenizer, "track-copy")
    if backend == "bridge":
        return boot_bridge(copy.deepcopy(model.original_model).eval(), tokenizer, "track-copy")
    return copy.deepcopy(model).eval()


@pytest.mark.parametrize("backend", ["hf", "bridge", "hooked"])
def test_rows_equal_analyze_heads_on_a_copy_and_model_untouched(backend, tokenizer, tmp_path):
    model = _model(backend, tokenizer)
    model.train()
    # a mixed mode a naive model.train(was_training) restore would lose
    next(m for m in model.modules() if m is not model).eval()
    probe = _probe()
    tr = Tracker(probe, every=2, metrics=dict(level=4), out=tmp_path / "log.csv", batch_size=2)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    g = torch.Generator().manual_seed(1)
    snapshot = None
    for step in range(4):
        _train_step(model, backend, opt, g)
        before = _state(model)
        logged = tr.log(model, step)
        assert logged == (step % 2 == 0)
        _assert_same_state(before, model)
        if step == 2:
            snapshot = _copy_for_analysis(model, backend, tokenizer)
        opt.step()
        opt.zero_grad()
    df = tr.to_dataframe()
    assert sorted(df["step"].unique()) == [0, 2]
    # every backend measures RoPE usage (HF: from q_proj/k_proj, before the rotation)
    ref = tlw.analyze_heads(snapshot, probe, level=4, batch_size=2, progress=False).to_dataframe()
    assert {"rope_wavelength", "rope_positional_share"} <= set(df.columns)
    mine = df[df.step == 2].drop(columns=EXTRA).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, ref, check_exact=False, rtol=1e-5, atol=1e-7)
    # the probe loss is the copy's own loss on the probe
    with torch.no_grad():
        ref_loss = snapshot(probe, return_type="loss").item()
    assert df[df.step == 2]["probe_loss"].iloc[0] == pytest.approx(ref_loss, rel=1e-5)
    pd.testing.assert_frame_equal(read_log(tmp_path / "log.csv"), df)
    pd.testing.assert_frame_equal(read_log(tmp_path / "log.csv", "layers"), tr.layer_dataframe())


def test_induction_loss_is_the_second_half_loss(tokenizer):
    """Independent truth: TL's own per-token loss on the repeated sequence."""
    bridge = boot_bridge(tiny_llama_hf(planted=False, seed=5), tokenizer, "ind")
    tr = Tracker(_probe(), every=1, metrics=dict(level=4), induction=(3, 32), seed=7)
    tr.log(bridge, 0)
    toks = tr._induction_tokens
    assert toks.shape == (3, 64) and torch.equal(toks[:, :32], toks[:, 32:])
    with torch.no_grad():
        per_tok = bridge(toks, return_type="loss", loss_per_token=True)
    assert tr.losses()["induction_loss"].iloc[0] == pytest.approx(per_tok[:, 32:].mean().item(), rel=1e-5)


def test_jsonl_and_sweep_reload(tokenizer, tmp_path):
    bridge = boot_bridge(tiny_llama_hf(planted=False, seed=2), tokenizer, "sweep")
    bridge.train()
    params = list(bridge.parameters())
    for p in params:
        p.grad = torch.full_like(p, 0.5)  # a training step's pending gradient
    before = _state(bridge)
    tr = Tracker(_probe(2), every=1, layers=[1], metrics=dict(level=4), sweep=dict(heads=[0, 1]),
                 out=tmp_path / "t.jsonl", induction=None)
    tr.log(bridge, 0)
    tr.log(bridge, 1)
    _assert_same_state(before, bridge)
    sw = tr.sweep_dataframe()
    assert set(sw["step"]) == {0, 1} and set(sw["layer"]) == {1} and set(sw["head"]) == {0, 1}
    pd.testing.assert_frame_equal(read_log(tmp_path / "t.jsonl"), tr.to_dataframe())
    pd.testing.assert_frame_equal(read_log(tmp_path / "t.jsonl", "sweep"), sw)
    assert tr.to_dataframe()["induction_loss"].isna().all()


def test_track_checkpoints_equals_logging_in_the_loop(tmp_path):
    hf = tiny_llama_hf(planted=False, seed=4)
    probe = _probe(2)
    live = Tracker(probe, every=1, metrics=dict(level=4))
    opt = torch.optim.SGD(hf.parameters(), 0.5)
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        live.log(hf, step)
        hf.save_pretrained(tmp_path / f"step{step}")
        _train_step(hf, "hf", opt, g)
        opt.step()
        opt.zero_grad()
    from transformers import AutoModelForCausalLM

    def load(s):
        return AutoModelForCausalLM.from_pretrained(tmp_path / f"step{s}", attn_implementation="eager")

    tr = track_checkpoints(load, [0, 1, 2], probe, metrics=dict(level=4), progress=False)
    pd.testing.assert_frame_equal(tr.to_dataframe(), live.to_dataframe(), check_exact=False, rtol=1e-5)


def test_trainer_callback_logs_every_steps(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from tl_wavelet.track import TrackerCallback

    hf = tiny_llama_hf(planted=False, seed=6)
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": t, "labels": t} for t in torch.randint(4, 97, (16, 64), generator=g)]
    tr = Tracker(_probe(2), every=2, metrics=dict(level=4))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    transformers.Trainer(model=hf, args=args, train_dataset=data, callbacks=[TrackerCallback(tr)]).train()
    assert sorted(tr.losses()["step"]) == [0, 2, 4]
    assert hf.training  # Trainer's mode survives the probes


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("every, exc, message", [(0, ValueError, "every must be >= 1"), (-5, ValueError, "every must be >= 1"),
                                                 (1.5, TypeError, "every must be an int"),
                                                 (True, TypeError, "every must be an int"),
                                                 ("50", TypeError, "every must be an int")])
def test_every_must_be_a_positive_int(every, exc, message):
    with pytest.raises(exc, match=message):
        Tracker(_probe(), every=every)


def test_bad_inputs_leave_the_model_alone(tokenizer, tmp_path):
    hf = tiny_llama_hf(planted=False, n_ctx=32)
    hf.train()
    before = _state(hf)
    with pytest.raises(ValueError, match="context is 32"):
        Tracker(_probe(pos=64), every=1, metrics=dict(level=3)).log(hf, 0)
    with pytest.raises(ValueError, match="induction"):
        Tracker(_probe(pos=32), every=1, metrics=dict(level=3), induction=(2, 20)).log(hf, 0)
    _assert_same_state(before, hf)
    # sdpa attention returns no patterns
    sdpa = tiny_llama_hf(planted=False)
    sdpa.config._attn_implementation = "sdpa"
    sdpa.train()
    before = _state(sdpa)
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        Tracker(_probe(), every=1, metrics=dict(level=4)).log(sdpa, 0)
    _assert_same_state(before, sdpa)
    with pytest.raises(TypeError, match="TransformerLens model .* or a Hugging Face"):
        Tracker(_probe(), every=1, metrics=dict(level=4)).log(torch.nn.Linear(3, 3), 0)
    with pytest.raises(ValueError, match="sweep= needs a TransformerLens model"):
        Tracker(_probe(), every=1, metrics=dict(level=4), sweep={}).log(sdpa.set_attn_implementation("eager") or sdpa, 0)
    with pytest.raises(TypeError, match="probe_tokens must be an integer tensor"):
        Tracker(torch.rand(2, 64))
    with pytest.raises(ValueError, match="needs sequences of at least"):
        Tracker(_probe(pos=8), metrics=dict(level=5))


def test_unwritable_or_existing_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="not writable"):
        Tracker(_probe(), metrics=dict(level=4), out=blocker / "sub" / "log.csv")
    existing = tmp_path / "a.csv"
    existing.write_text("step\n0\n")
    with pytest.raises(ValueError, match="already exists"):
        Tracker(_probe(), metrics=dict(level=4), out=existing)
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        Tracker(_probe(), metrics=dict(level=4), out=tmp_path / "log.parquet")


def test_hf_rope_usage_equals_the_bridge_on_the_emergence_decoder(tokenizer):
    """RoPE usage read from an HF model's q/k projections equals the bridge's hook_rot_q/hook_rot_k route."""
    from tl_wavelet.emergence import DecoderConfig, build_decoder

    hf = build_decoder("rope", DecoderConfig(n_layers=2, n_ctx=64, vocab=97), seed=1)
    probe = _probe()
    a = Tracker(probe, every=1, metrics=dict(level=4), rope=True)
    a.log(hf, 0)
    # (transformers installs its own output-capturing hooks on the first output_attentions call)
    ours = [f for m in hf.modules() for f in m._forward_hooks.values() if f.__module__.startswith("tl_wavelet")]
    assert not ours, "tl_wavelet hooks left on the model"
    b = Tracker(probe, every=1, metrics=dict(level=4))
    b.log(boot_bridge(hf, tokenizer, "rope-hf"), 0)
    pd.testing.assert_frame_equal(a.to_dataframe(), b.to_dataframe(), check_exact=False, rtol=1e-4, atol=1e-6)
    assert a.to_dataframe()["rope_positional_share"].notna().all()
    # NoPE: no rotary frequencies, so no RoPE columns; rope=True says why
    nope = build_decoder("nope", DecoderConfig(n_layers=1, n_ctx=64, vocab=97), seed=1)
    t = Tracker(probe, every=1, metrics=dict(level=4))
    t.log(nope, 0)
    assert "rope_wavelength" not in t.to_dataframe().columns
    with pytest.raises(ValueError, match="has no RoPE"):
        Tracker(probe, every=1, metrics=dict(level=4), rope=True).log(nope, 0)


def test_hf_rope_usage_refused_where_the_pairing_is_unknown():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=1,
                                             intermediate_size=128, vocab_size=97, max_position_embeddings=128,
                                             attn_implementation="eager"))
    probe = _probe()
    with pytest.raises(ValueError, match="model_type 'gpt_neox'.*TransformerBridge.boot_transformers"):
        Tracker(probe, every=1, metrics=dict(level=4), rope=True).log(neox, 0)
    t = Tracker(probe, every=1, metrics=dict(level=4))
    with pytest.warns(UserWarning, match="no RoPE-usage columns"):
        t.log(neox, 0)
    assert "rope_wavelength" not in t.to_dataframe().columns and len(t.to_dataframe()) == 4


def test_checkpoint_series_match_transformerlens():
    """Pythia's published steps equal TransformerLens's own labels (TL 3 and TL 4 keep them in different modules)."""
    from tl_wavelet.track import checkpoint_steps, pythia_steps, revision_name

    labels, kind = checkpoint_steps("EleutherAI/pythia-70m")
    assert kind == "step" and labels == pythia_steps()
    assert checkpoint_steps("EleutherAI/pythia-70m-v0")[0] == pythia_steps(v0=True)
    crfm, _ = checkpoint_steps("stanford-crfm/alias-gpt2-small-x21")
    assert crfm[:3] == [0, 10, 20] and crfm[-1] == 400_000
    assert revision_name("stanford-crfm/alias-gpt2-small-x21", 10) == "checkpoint-10"
    with pytest.raises(ValueError, match="not checkpointed"):
        checkpoint_steps("gpt2")


def test_hub_revision_loader_fails_fast_offline(monkeypatch, tmp_path):
    """No hub and no cached copy: a clear error naming model and revision (local_files_only: no retries)."""
    from tl_wavelet.track import hub_revision_loader

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    load = hub_revision_loader("EleutherAI/pythia-14m")
    with pytest.raises(OSError, match=r"'EleutherAI/pythia-14m' at revision 'step1000'.*HF_HUB_OFFLINE"):
        load(1000)
    with pytest.raises(TypeError, match="hub model name"):
        hub_revision_loader(None)


def test_tl_checkpoint_loader_uses_transformerlens_or_says_what_to_use(monkeypatch, tmp_path):
    """TL 3: from_pretrained(checkpoint_value=step) offline fails naming model and step; TL 4: points to the HF loader."""
    from tl_wavelet.models import tl_major_version
    from tl_wavelet.track import tl_checkpoint_loader

    with pytest.raises(TypeError, match="name"):
        tl_checkpoint_loader(3)
    if tl_major_version() >= 4:
        with pytest.raises(ImportError, match=r"hub_revision_loader\('pythia-14m'\)"):
            tl_checkpoint_loader("pythia-14m")
        return
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    load = tl_checkpoint_loader("pythia-14m")
    with pytest.raises(OSError, match=r"'pythia-14m' at checkpoint step 1000"):
        load(1000)
    with pytest.raises(ValueError, match="step"):
        load(-1)


@pytest.mark.parametrize("arch", ["Qwen3", "Olmo2"])
def test_hf_rope_usage_after_qk_norms_equals_the_bridge(arch, tokenizer):
    """Qwen3 (per-head q/k norm) and OLMo-2 (flat q/k norm): read after the norms, as the bridge's hook_rot_q sees them."""
    import transformers

    cfg_cls, model_cls = getattr(transformers, f"{arch}Config"), getattr(transformers, f"{arch}ForCausalLM")
    torch.manual_seed(0)
    hf = model_cls(cfg_cls(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                           attn_implementation="eager"))
    with torch.no_grad():  # norms that are not the identity: reading before them would differ
        for n, p in hf.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    hf.config.architectures = [type(hf).__name__]
    hf.eval()
    probe = _probe()
    a = Tracker(probe, every=1, metrics=dict(level=4), rope=True)
    a.log(hf, 0)
    b = Tracker(probe, every=1, metrics=dict(level=4))
    b.log(boot_bridge(hf, tokenizer, f"{arch}-hf"), 0)
    cols = ["rope_wavelength", "rope_positional_share"]
    pd.testing.assert_frame_equal(a.to_dataframe()[cols], b.to_dataframe()[cols], check_exact=False, rtol=1e-4)


def test_track_checkpoints_measures_rope_usage_of_every_hf_checkpoint():
    """Each checkpoint is a new model: its rows (RoPE usage included) equal a fresh tracker's log of it."""
    from tl_wavelet.emergence import DecoderConfig, build_decoder

    dec = DecoderConfig(n_layers=1, n_ctx=64, vocab=97)
    probe = _probe()
    tr = track_checkpoints(lambda s: build_decoder("rope", dec, seed=s).eval(), [0, 1, 2], probe,
                           metrics=dict(level=4), progress=False)
    df = tr.to_dataframe()
    for s in (0, 1, 2):
        one = Tracker(probe, every=1, metrics=dict(level=4))
        one.log(build_decoder("rope", dec, seed=s).eval(), s)
        pd.testing.assert_frame_equal(df[df.step == s].reset_index(drop=True), one.to_dataframe(), check_exact=False,
                                      rtol=1e-5)
    assert df.groupby("step")["rope_wavelength"].mean().nunique() == 3  # three different models
