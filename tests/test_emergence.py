"""The emergence experiment's parts: the synthetic language, the three decoders, a trained
head that finds the planted offset, and the CI-sized end-to-end run with its report.

Truths: the generator's definition (copies at planted distances), HF's own forward for the
position variants, and the planted offset itself for the trained head.
"""
from __future__ import annotations

import math

import pytest
import torch

from tl_wavelet.emergence import (
    CI_CONFIG,
    DecoderConfig,
    EmergenceConfig,
    build_decoder,
    experiment_tokens,
    load_checkpoint,
    planted_band,
    synthetic_language,
    train_run,
)
from tl_wavelet.track import read_log


def test_synthetic_language_copies_at_planted_distances():
    x = synthetic_language(64, 128, vocab=64, distances=(1, 4, 16), noise=0.2, repeat_prob=0.0, seed=3)
    assert x.shape == (64, 128) and x.min() >= 0 and x.max() < 64
    # with 3 distances and 20 % noise, each distance explains about 0.8/3 + chance of positions
    for d in (1, 4, 16):
        agree = (x[:, 32:] == x[:, 32 - d : -d]).float().mean().item()
        assert 0.8 / 3 < agree < 0.8 / 3 + 0.15, (d, agree)
    # an unplanted distance agrees only by chance (and via chains of planted copies)
    assert (x[:, 32:] == x[:, 32 - 7 : -7]).float().mean().item() < 0.15
    assert torch.equal(x, synthetic_language(64, 128, vocab=64, distances=(1, 4, 16), noise=0.2, repeat_prob=0.0, seed=3))


def test_synthetic_language_repeats_spans():
    x = synthetic_language(32, 128, noise=1.0, repeat_prob=1.0, repeat_len=24, seed=0)
    # pure noise plus one copied span of 24 tokens per sequence: find it
    for row in x:
        hits = sum(bool((row[u : u + 24] == row[s : s + 24]).all()) for s in range(0, 64) for u in range(64, 105))
        assert hits >= 1


def test_bad_generator_input():
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        synthetic_language(2, 0)
    with pytest.raises(ValueError, match="distances must be positive"):
        synthetic_language(2, 8, distances=(0,))


def test_position_variants_differ_only_in_position():
    cfg = DecoderConfig(n_layers=1, n_ctx=32)
    x = torch.randint(0, 64, (1, 16))
    perm = torch.cat([x[:, :1], x[:, 1:-1].flip(1), x[:, -1:]], 1)  # same last token, others reordered
    out = {}
    for kind in ("rope", "nope", "absolute"):
        m = build_decoder(kind, cfg, seed=0).eval()
        with torch.no_grad():
            out[kind] = m(input_ids=x).logits
            # NoPE: the last position's output is invariant to reordering the earlier tokens
            if kind == "nope":
                last = m(input_ids=perm).logits[0, -1]
                torch.testing.assert_close(last, out[kind][0, -1], rtol=1e-4, atol=1e-5)
    # same seed, same shared weights: the first position (no other token to see) is the same
    # for rope and nope (rotation of a single q/k pair cancels in q.k at offset 0)
    torch.testing.assert_close(out["rope"][0, 0], out["nope"][0, 0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out["absolute"][0, 0], out["nope"][0, 0])
    with pytest.raises(ValueError, match="position must be one of"):
        build_decoder("alibi", cfg)


@pytest.mark.emergence
def test_one_layer_model_finds_the_planted_offset():
    """A 1-layer RoPE model trained on offset-8 copy data ends with a head whose scale is within 2x of 8."""
    cfg = EmergenceConfig(positions=("rope",), seeds=(0,), steps=200, every=100, probe_sequences=8, level=4,
                          distances=(8,), noise=0.1, repeat_prob=0.0, lr=1e-2,
                          decoder=DecoderConfig(n_layers=1, n_ctx=64))
    tr = train_run("rope", 0, cfg)
    df = tr.to_dataframe()
    start, end = df[df.step == 0], df[df.step == cfg.steps]
    off = (end["scale_tokens"] / 8).map(lambda r: abs(math.log2(r)))
    assert off.min() < 1, end[["head", "scale_tokens", "dominant_band"]]
    # at initialisation no head is there (attention is near uniform: scale ~ 35 tokens)
    assert (start["scale_tokens"] / 8).map(lambda r: abs(math.log2(r))).min() > 1
    # the query before the copy attends 7 back: band D3 (offsets 4..7) gains energy
    assert planted_band(8, 4, 64) == "D3"
    assert end["D3"].max() > 3 * start["D3"].max()
    losses = tr.losses()
    assert losses["probe_loss"].iloc[-1] < losses["probe_loss"].iloc[0] - 1.0


@pytest.mark.emergence
def test_ci_run_writes_report_and_checkpoints(tmp_path):
    """The CI-sized experiment end to end through the CLI: report, CSVs, reloadable checkpoints."""
    from tl_wavelet.cli import main

    out = tmp_path / "em"
    rc = main(["emergence", "--ci", "--out", str(out), "--steps", "60", "--every", "30", "--quiet"])
    assert rc == 0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6
    for name in ("heads.csv", "layers.csv", "specialisation.csv", "timing.csv", "answers.csv", "summary.md"):
        assert (out / name).exists(), name
    import pandas as pd

    heads = pd.read_csv(out / "heads.csv")
    assert set(heads["position"]) == {"rope", "nope", "absolute"} and sorted(heads["step"].unique()) == [0, 30, 60]
    # checkpoints reload to the very model the tracker saw at that step
    from tl_wavelet.track import track_checkpoints

    log = read_log(out / "runs" / "absolute_seed0.csv")
    probe = experiment_tokens(CI_CONFIG, CI_CONFIG.probe_sequences, seed=999_000)
    tr = track_checkpoints(lambda s: load_checkpoint(out, "absolute", 0, s), [60], probe,
                           metrics=dict(level=CI_CONFIG.level), induction=(CI_CONFIG.probe_sequences, 64), progress=False)
    pd.testing.assert_frame_equal(tr.to_dataframe(), log[log.step == 60].reset_index(drop=True),
                                  check_exact=False, rtol=1e-5)
    # --report-only rebuilds the same answers from the tracker logs on disk
    answers = pd.read_csv(out / "answers.csv")
    assert main(["emergence", "--out", str(out), "--report-only", "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "answers.csv"), answers)
    # an occupied --out is refused without --force
    assert main(["emergence", "--ci", "--out", str(out), "--quiet"]) == 2
    assert main(["emergence", "--ci", "--out", str(tmp_path / "x"), "--steps", "0", "--quiet"]) == 2


def test_planted_band():
    # attention offset d - 1; truth: the dyadic ranges D_j = [2^(j-1), 2^j), offset 0 in D1
    assert [planted_band(d, 5) for d in (1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64)] == [
        "D1", "D1", "D2", "D2", "D3", "D3", "D4", "D4", "D5", "D5", "A5", "A5"]


_TINY = EmergenceConfig(positions=("rope", "nope"), seeds=(0,), steps=20, every=10, probe_sequences=4, level=4,
                        n_checkpoints=2, multiverse_sequences=8, distances=(1, 4, 16),
                        decoder=DecoderConfig(n_layers=1, n_ctx=64))


@pytest.mark.emergence
def test_workers_give_the_sequential_results(tmp_path):
    """Two worker processes produce exactly the rows of the sequential run (each run seeded on its own)."""
    import dataclasses

    import pandas as pd

    from tl_wavelet.emergence import run_emergence

    seq = run_emergence(tmp_path / "w1", dataclasses.replace(_TINY, workers=1), progress=False)
    par = run_emergence(tmp_path / "w2", dataclasses.replace(_TINY, workers=2), progress=False)
    for k in ("heads", "layers", "multiverse", "answers", "english_answers", "multiverse_summary"):
        pd.testing.assert_frame_equal(seq[k], par[k], check_exact=True)
    assert set(par["heads"]["data"]) == {"synthetic", "english"}
    # per-run logs and checkpoints are written the same way from the workers
    for name in ("rope_seed0", "english_nope_seed0"):
        a, b = read_log(tmp_path / "w1" / "runs" / f"{name}.csv"), read_log(tmp_path / "w2" / "runs" / f"{name}.csv")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert (tmp_path / "w2" / "checkpoints" / name / "step20.pt").exists()
    # an English checkpoint reloads (byte vocabulary) to the model the tracker saw
    from tl_wavelet.track import track_checkpoints

    probe = experiment_tokens(_TINY, _TINY.probe_sequences, seed=999_000, data="english", split="probe")
    tr = track_checkpoints(lambda s: load_checkpoint(tmp_path / "w2", "nope", 0, s, data="english"), [20], probe,
                           metrics=dict(level=4), induction=(4, 32), progress=False)
    log = read_log(tmp_path / "w2" / "runs" / "english_nope_seed0.csv")
    pd.testing.assert_frame_equal(tr.to_dataframe(), log[log.step == 20].reset_index(drop=True), check_exact=False, rtol=1e-5)


@pytest.mark.emergence
def test_a_failing_worker_run_is_named(tmp_path):
    import dataclasses

    from tl_wavelet.emergence import run_emergence

    out = tmp_path / "em"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "nope_seed0.csv").write_text("taken\n")  # the tracker refuses to append to it
    cfg = dataclasses.replace(_TINY, data=("synthetic",), steps=2, every=1, multiverse_sequences=0, workers=2)
    with pytest.raises(RuntimeError, match="emergence run nope_seed0 failed in a worker process: ValueError: .*already exists"):
        run_emergence(out, cfg, progress=False)


def test_english_bytes_are_held_out_text():
    from tl_wavelet.corpus import default_corpus
    from tl_wavelet.emergence import english_bytes

    docs = [t.encode("utf-8") for t in default_corpus()]
    train = english_bytes(16, 64, seed=0)
    probe = english_bytes(16, 64, split="probe", seed=0)
    assert train.shape == probe.shape == (16, 64) and int(train.max()) < 256
    assert torch.equal(train, english_bytes(16, 64, seed=0))
    # truth: each window is a substring of one document, from its first 90 % (train) or last 10 % (probe)
    for windows, in_train in ((train, True), (probe, False)):
        for w in windows:
            b = bytes(w.tolist())
            hits = [(d, d.find(b)) for d in docs if b in d]
            assert hits, b
            d, at = hits[0]
            cut = int(len(d) * 0.9)
            assert (at + 64 <= cut) if in_train else (at >= cut)
    with pytest.raises(ValueError, match="split must be"):
        english_bytes(2, 8, split="test")
    with pytest.raises(ValueError, match="unknown data set 'german'"):
        EmergenceConfig(data=("german",))
    with pytest.raises(ValueError, match="workers must be a positive int"):
        EmergenceConfig(workers=0)


def test_multiverse_pass_equals_tl_multiverse_on_the_bridge(tokenizer):
    """The HF-pattern multiverse of a decoder equals tlw.multiverse run through TransformerBridge hooks."""
    import pandas as pd
    from models_for_tests import boot_bridge

    import tl_wavelet as tlw
    from tl_wavelet.emergence import MULTIVERSE_AXES, multiverse_pass

    hf = build_decoder("rope", DecoderConfig(n_layers=1, n_ctx=64, vocab=97), seed=2).eval()
    tokens = torch.randint(4, 97, (8, 64), generator=torch.Generator().manual_seed(0))
    mine = multiverse_pass(hf, tokens, n_groups=4)
    ref = tlw.multiverse(boot_bridge(hf, tokenizer, "mv-hf"), tokens, axes=dict(MULTIVERSE_AXES), n_groups=4,
                         progress=False)
    assert len(mine) == len(ref) > 50
    pd.testing.assert_frame_equal(mine, ref, check_exact=False, rtol=1e-4, atol=1e-6)
