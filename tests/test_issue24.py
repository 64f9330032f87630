"""Issue 24: nothing half-done. One regression test per finding (2-10; 1 is the accumulators').

The CLI cases run real ``python -m tl_wavelet.cli`` processes on a tiny model saved as a
local HuggingFace folder: two runs started at once, a run paused (SIGSTOP) or killed
(SIGKILL) while it holds --out, folders made unwritable with the filesystem's immutable
flag (``chattr +i``, which binds root too; a plain chmod does not), and truncated or
foreign checkpoint files. No mocks.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from models_for_tests import saved_tiny_model

import tl_wavelet as tlw
from tl_wavelet.ablation import band_ablation_hook, band_sweep
from tl_wavelet.cli import CHECKPOINT, main
from tl_wavelet.corpus import chunk_tokens, token_stream

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 64
LOCK = ".tl-wavelet.lock"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_tiny_model(tmp_path_factory.mktemp("tiny-model"), n_words=16 * SEQ_LEN, seed=0)


def _analyze(model_dir, out, *extra):
    return ["analyze", "--model", str(model_dir), "--out", str(out), "--text", str(model_dir / "words.txt"),
            "--seq-len", str(SEQ_LEN), "--level", "3", "--batch-size", "2", "--no-sweep", "--offline", *extra]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def _spawn(args):
    return subprocess.Popen([sys.executable, "-m", "tl_wavelet.cli", *args], cwd=REPO, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(args, timeout=300):
    p = subprocess.run([sys.executable, "-m", "tl_wavelet.cli", *args], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def _snapshot(d: Path) -> dict:
    """Every entry under ``d`` (hidden ones too) -> its bytes (None for a folder)."""
    return {str(p.relative_to(d)): (None if p.is_dir() else p.read_bytes()) for p in sorted(d.rglob("*"))}


def _one_clear_line(rc, err, *needles, rc_expected=2):
    assert rc == rc_expected, err
    assert "Traceback" not in err and err.startswith("tl-wavelet: error: "), err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)


@contextmanager
def immutable(root: Path, *paths: Path):
    """``chattr +i`` on ``paths``; every flag under ``root`` is cleared afterwards, wherever the files went."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: no immutable flag to make a folder unwritable for root")
    try:
        for p in paths:
            r = subprocess.run(["chattr", "+i", str(p)], capture_output=True, text=True)
            if r.returncode != 0:
                pytest.skip(f"this filesystem or user cannot set the immutable flag: {r.stderr.strip()}")
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(root)], capture_output=True)


def _wait_for_lock(proc, out: Path, timeout=120) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            holder = json.loads((out / LOCK).read_text())
            if holder.get("pid") == proc.pid:
                return holder
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it held --out: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the run never took the lock on --out")


# ------------------------------------------------------------------ 2. ablate="no"
@pytest.mark.parametrize("name", ["ablate", "truncate"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_point2_view_refuses_truthy_non_bools(random_model, name, value):
    toks = torch.arange(4, 36)
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        tlw.view.head(random_model, toks, layer=0, head=0, **{name: value})
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        tlw.view.compare_heads(random_model, toks, [(0, 0)], **{name: value})
    assert all(len(hp._forward_hooks) == 0 for hp in random_model.hook_dict.values())


# ------------------------------------------------------------------ 3. --force swaps as one step
def test_point3_force_over_a_report_with_an_unreplaceable_file_swaps_whole(model_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(_analyze(model_dir, out, "--n-sequences", "8", "--quiet")) == 0
    (out / "notes.txt").write_text("mine")
    old_page = (out / "report.html").read_bytes()
    with immutable(tmp_path, out / "report.html"):  # one file of the earlier report cannot be replaced in place
        rc, stdout, err = _run(_analyze(model_dir, out, "--n-sequences", "16", "--quiet", "--force"))
        assert rc == 0 and "Traceback" not in err, err
        # one complete report in --out: the new one, every file of it, the user's file carried over
        meta = json.loads((out / "meta.json").read_text())
        assert meta["tokens"]["n_sequences"] == 16
        assert pd.read_csv(out / "heads.csv")["n_sequences"].eq(16).all()
        assert (out / "report.html").read_bytes() != old_page and "16" in (out / "report.html").read_text()
        assert (out / "notes.txt").read_text() == "mine"
        # the earlier report's file that could not be removed is kept aside, and named
        backups = [p for p in tmp_path.iterdir() if p.name != "rep"]
        assert len(backups) == 1 and str(backups[0]) in err and "warning" in err
        assert (backups[0] / "report.html").read_bytes() == old_page
    assert str(out / "report.html") in stdout


def test_point3_a_swap_that_cannot_be_made_keeps_both_reports_complete(model_dir, tmp_path):
    out = tmp_path / "rep"
    assert main(_analyze(model_dir, out, "--n-sequences", "8", "--quiet")) == 0
    (out / "notes.txt").write_text("mine")
    with immutable(tmp_path, out / "notes.txt"):  # the user's file cannot be carried into the new folder
        before = _snapshot(out)
        rc, _, err = _run(_analyze(model_dir, out, "--n-sequences", "16", "--quiet", "--force"))
        _one_clear_line(rc, err, "unchanged", "notes.txt", rc_expected=1)
        assert _snapshot(out) == before  # the earlier report, as it was
        staged = [p for p in tmp_path.iterdir() if p.name != "rep"]
        assert len(staged) == 1 and str(staged[0]) in err  # the new report: kept, complete, and named
        assert json.loads((staged[0] / "meta.json").read_text())["tokens"]["n_sequences"] == 16
        assert pd.read_csv(staged[0] / "heads.csv")["n_sequences"].eq(16).all()
        assert (staged[0] / "report.html").read_text().rstrip().endswith("</html>")


def test_point3_multiverse_force_replaces_its_files_and_keeps_the_users(model_dir, tmp_path, capsys):
    out = tmp_path / "mv"
    args = ["multiverse", "--model", str(model_dir), "--out", str(out), "--text", str(model_dir / "words.txt"),
            "--seq-len", "32", "--n-sequences", "4", "--axis", "signal=last_row", "--axis", "wavelet=haar",
            "--axis", "level=2", "--axis", "padding=none", "--quiet"]
    assert main(args) == 0
    (out / "notes.txt").write_text("mine")
    (out / "spec_stale.png").write_bytes(b"an earlier run's figure")
    before = pd.read_csv(out / "multiverse.csv")
    # a --force run that fails (here at the model load) leaves the earlier files as they were
    snap = _snapshot(out)
    bad = list(args)
    bad[bad.index("--model") + 1] = str(tmp_path / "no-such-model")
    assert main(bad + ["--force"]) == 2 and "no-such-model" in capsys.readouterr().err
    assert _snapshot(out) == snap and sorted(p.name for p in tmp_path.iterdir()) == ["mv"]
    assert main(args + ["--force", "--n-sequences", "6"]) == 0
    assert pd.read_csv(out / "multiverse.csv")["n_sequences"].eq(6).all() and before["n_sequences"].eq(4).all()
    assert (out / "notes.txt").read_text() == "mine" and not (out / "spec_stale.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mv"]  # no staging or backup folder left


# ------------------------------------------------------------------ 4. one run per --out
def test_point4_two_runs_started_at_once_one_writes_the_other_is_refused(model_dir, tmp_path):
    out = tmp_path / "new"
    procs = [_spawn(_analyze(model_dir, out, "--quiet")) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    rcs = sorted(r[0] for r in results)
    assert rcs == [0, 2], results
    won = next(r for r in results if r[0] == 0)
    lost = next(r for r in results if r[0] == 2)
    assert str(out / "report.html") in won[1]
    assert "in use by another tl-wavelet run" in lost[2] or "not empty" in lost[2], lost[2]
    assert str(out / "report.html") not in lost[1]
    assert "Traceback" not in lost[2]
    assert not (out / LOCK).exists() and len(pd.read_csv(out / "heads.csv"))


def test_point4_a_live_run_holds_out_and_a_killed_one_does_not(model_dir, tmp_path):
    out = tmp_path / "held"
    a = _spawn(_analyze(model_dir, out, "--quiet"))
    holder = _wait_for_lock(a, out)
    os.kill(a.pid, signal.SIGSTOP)  # alive but not moving: a long run
    try:
        rc, _, err = _run(_analyze(model_dir, out, "--quiet", "--force"))
        _one_clear_line(rc, err, "in use by another tl-wavelet run", f"pid {a.pid}", str(out))
        assert holder["host"] and "analyze" in holder["command"]
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.wait(timeout=300) == 0, a.communicate()
    # a run killed while it holds --out (no handler runs, its lock file stays) does not block the next one
    out2 = tmp_path / "killed"
    b = _spawn(_analyze(model_dir, out2, "--quiet"))
    _wait_for_lock(b, out2)
    b.kill()
    b.wait(timeout=60)
    assert (out2 / LOCK).exists()
    rc, stdout, err = _run(_analyze(model_dir, out2, "--quiet", "--resume"))
    assert rc == 0 and str(out2 / "report.html") in stdout, err
    assert not (out2 / LOCK).exists()


# ------------------------------------------------------------------ 5. unwritable --out, found first
def _commands(model_dir, out):
    words = str(model_dir / "words.txt")
    return {
        "analyze": _analyze(model_dir, out),
        "multiverse": ["multiverse", "--model", str(model_dir), "--out", str(out), "--text", words, "--seq-len", "32",
                       "--offline"],
        "compare": ["compare", "--models", str(model_dir), "--encoder", "none", "--out", str(out), "--seq-len", "32",
                    "--n-sequences", "2"],
        "emergence": ["emergence", "--ci", "--out", str(out), "--data", "synthetic", "--positions", "rope",
                      "--workers", "1"],
    }


@pytest.mark.parametrize("command", ["analyze", "multiverse", "compare", "emergence"])
def test_point5_unwritable_out_is_refused_before_any_model_is_loaded(model_dir, tmp_path, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [  # (--out, what the message must say)
        (ro, "is not writable"),  # an existing folder nobody may write to
        (ro / "sub" / "out", "cannot be created"),  # missing folders under it
        (tmp_path / "afile" / "out", "is a file, not a folder"),  # a path through a regular file
    ]
    with immutable(tmp_path, ro):
        for out, needle in cases:
            t0 = time.time()
            rc, _, err = _run(_commands(model_dir, out)[command])
            _one_clear_line(rc, err, "--out", needle)
            assert "Loading" not in err and time.time() - t0 < 60
        assert not any(ro.iterdir())


def test_point5_force_needs_a_writable_parent_and_says_so_first(model_dir, tmp_path):
    parent = tmp_path / "p"
    out = parent / "rep"
    assert main(_analyze(model_dir, out, "--n-sequences", "4", "--quiet")) == 0
    before = _snapshot(parent)
    with immutable(tmp_path, parent):  # --out itself is writable; the staging folder beside it cannot be made
        rc, _, err = _run(_analyze(model_dir, out, "--force"))
        _one_clear_line(rc, err, "--force", str(parent), "not writable")
        assert "Loading" not in err
    assert _snapshot(parent) == before


# ------------------------------------------------------------------ 6. unreadable checkpoints
def _bad_checkpoints(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"kind": "tl_wavelet.analyze", "x": torch.ones(1000)}, good)
    data = good.read_bytes()
    from fractions import Fraction

    torch.save({"kind": "tl_wavelet.analyze", "x": Fraction(1, 3)}, tmp_path / "objects.pt")  # not tensors only
    return {
        "text": b"hello world\n",  # KeyError: 101 from torch's unpickler
        "empty": b"",  # EOFError without a message: IndexError while building ours
        "random": np.random.default_rng(0).bytes(5000),  # torch's message advises weights_only=False
        "truncated": data[: len(data) // 3],
        "objects": (tmp_path / "objects.pt").read_bytes(),
    }


def test_point6_every_unreadable_checkpoint_is_one_line_and_nothing_changes(model_dir, tmp_path):
    for kind, data in _bad_checkpoints(tmp_path).items():
        out = tmp_path / kind
        out.mkdir()
        (out / CHECKPOINT).write_bytes(data)
        (out / "heads.csv").write_text("an interim report\n")
        (out / f".{CHECKPOINT}.tmp-12345").write_bytes(b"a save cut short")  # stays until a resume is accepted
        before = _snapshot(out)
        rc, _, err = _run(_analyze(model_dir, out, "--resume"))
        _one_clear_line(rc, err, str(out / CHECKPOINT), "Nothing in --out was changed", "delete that file",
                        "--force")
        assert "weights_only" not in err and "Loading" not in err, (kind, err)
        assert _snapshot(out) == before, kind
    folder = tmp_path / "folder"
    (folder / CHECKPOINT).mkdir(parents=True)
    rc, _, err = _run(_analyze(model_dir, folder, "--resume"))
    _one_clear_line(rc, err, "is a folder", str(folder / CHECKPOINT))


def test_point6_load_state_names_the_file_and_never_passes_on_torchs_advice(tmp_path):
    from tl_wavelet.state import StateFileError, load_state

    expect = {"text": "not a file torch.save writes", "empty": "empty (0 bytes)", "random": "not a file torch.save",
              "truncated": "not a file torch.save writes", "objects": "objects other than tensors"}
    for kind, data in _bad_checkpoints(tmp_path).items():
        p = tmp_path / f"{kind}.ckpt"
        p.write_bytes(data)
        with pytest.raises(StateFileError) as e:
            load_state(p, "tl_wavelet.analyze")
        msg = str(e.value)
        assert str(p) in msg and expect[kind] in msg and "weights_only" not in msg and "\n" not in msg, (kind, msg)
        assert isinstance(e.value, ValueError)


# ------------------------------------------------------------------ 7. a model without a tokenizer
@pytest.fixture(scope="module")
def no_tokenizer_model():
    """A model built from a config alone: TL 3 HookedTransformer(cfg), TL 4 TransformerBridge.boot_native(cfg)."""
    from tl_wavelet.models import tl_major_version

    cfg = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_vocab=50, act_fn="gelu",
               positional_embedding_type="rotary", normalization_type="LN", seed=0)
    if tl_major_version() >= 4:
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_native(cfg)
    else:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        model = HookedTransformer(HookedTransformerConfig(**cfg))
    assert model.tokenizer is None
    return model.eval()


def test_point7_view_on_a_model_without_tokenizer(no_tokenizer_model):
    m = no_tokenizer_model
    with pytest.raises(ValueError, match="text is a string, but the model has no tokenizer"):
        tlw.view.head(m, "w5 w6 w7", layer=0, head=1)
    toks = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(0))
    v = tlw.view.head(m, toks, layer=1, head=2, bands=["D1"], ablate=True, level=5)  # token ids work, shown as ids
    df = v.to_dataframe()
    assert df["token"].tolist() == [f"[{int(t)}]" for t in toks]
    with torch.no_grad():  # truth: the model's own per-token loss, and run_with_hooks with the ablation hook
        clean = m(toks[None], return_type="loss", loss_per_token=True)[0].double()
        abl = m.run_with_hooks(toks[None], return_type="loss", loss_per_token=True,
                               fwd_hooks=[band_ablation_hook(1, 2, ["D1"], level=5)])[0].double()
    np.testing.assert_allclose(df["loss"].to_numpy()[:-1], clean.numpy(), atol=2e-5)
    np.testing.assert_allclose(df["delta_loss_D1"].to_numpy()[:-1], (abl - clean).numpy(), atol=5e-5)
    with pytest.raises(ValueError, match="outside the model's vocabulary 0..49"):
        tlw.view.head(m, toks + 40, layer=0, head=0)
    assert all(len(hp._forward_hooks) == 0 for hp in m.hook_dict.values())


# ------------------------------------------------------------------ 8. text streams
class _CountingTokenizer:
    """The real word tokenizer, counting the characters it is asked to tokenise."""

    def __init__(self, tok):
        self._tok, self.chars = tok, 0

    def __call__(self, text, **kw):
        self.chars += len(text)
        return self._tok(text, **kw)

    def encode(self, text, **kw):
        return self._tok.encode(text, **kw)

    def __getattr__(self, name):
        return getattr(self._tok, name)


def test_point8_only_the_text_the_windows_need_is_tokenised(tokenizer):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in rng.integers(4, 97, 300_000)]
    big = " ".join(words)  # about 1.2 MB, 300k tokens
    docs = [" ".join(words[i:i + 5000]) for i in range(0, 60_000, 5000)]
    for texts, per_document in ((big, True), (docs, True), (docs, False), ([big], True)):
        counting = _CountingTokenizer(tokenizer)
        got = chunk_tokens(counting, texts, 128, n_sequences=4, per_document=per_document)
        assert counting.chars < 64_000, (type(texts), per_document, counting.chars)
        # truth: the windows of the whole tokenisation
        assert torch.equal(got, chunk_tokens(tokenizer, texts, 128, per_document=per_document)[:4])
    # a text without whitespace ahead of the cut is tokenised whole, and still right
    glued = "w5" * 10 + " " + " ".join(words[:3000])
    assert torch.equal(chunk_tokens(tokenizer, glued, 64, n_sequences=2), chunk_tokens(tokenizer, glued, 64)[:2])
    assert token_stream(tokenizer, docs[:2]) == token_stream(tokenizer, docs[0]) + [2] + token_stream(tokenizer, docs[1])


@pytest.mark.real_model
def test_point8_prefix_tokenisation_equals_the_whole_on_real_tokenizers():
    from tl_wavelet.corpus import default_corpus
    from tl_wavelet.models import load_hf

    text = "\n\n".join(default_corpus())  # prose, dialogue, code: newlines, indentation, punctuation
    for name in ("smollm2-135m", "gemma3-270m"):
        _, tok = load_hf(name)
        for seq_len in (64, 256):
            whole = chunk_tokens(tok, text, seq_len)
            for n in (1, 5, 20):  # cuts at different places of the text
                assert torch.equal(chunk_tokens(tok, text, seq_len, n_sequences=n), whole[:n]), (name, seq_len, n)


# ------------------------------------------------------------------ 9. defaults that fit the data
def test_point9_multiverse_default_axes_fit_128_tokens(random_model, tokens):
    toks = tokens[:4, :128]
    fixed = {"signal": ["last_row"], "first_key": ["kept"], "dc": ["removed"], "window": ["none"],
             "padding": ["none"], "correlation": ["sequences"]}  # wavelet and level left at their defaults
    with pytest.warns(UserWarning, match=r"wavelet=db4 level=5 \(level 5 of db4 needs sequences of at least 224"):
        df = tlw.multiverse(random_model, toks, fixed, layers=[0], n_groups=2, progress=False)
    wav = df[df["wavelet"].notna()]
    pairs = set(zip(wav["wavelet"], wav["level"].astype(str)))
    assert ("db4", "5") not in pairs and {("db2", "5"), ("haar", "5"), ("db4", "max"), ("db2", "max")} <= pairs
    assert set(wav[(wav["wavelet"] == "db4")]["level_used"]) == {4}
    # the kept readings are those of a call asking for them alone
    alone = tlw.multiverse(random_model, toks, {**fixed, "wavelet": ["db2"], "level": [5]}, layers=[0], n_groups=2,
                           progress=False)
    mine = wav[(wav["wavelet"] == "db2") & (wav["level"].astype(str) == "5")].set_index(["metric", "reading"])["value"]
    theirs = alone[alone["wavelet"].notna()].set_index(["metric", "reading"])["value"]
    pd.testing.assert_series_equal(mine.sort_index(), theirs.sort_index(), rtol=1e-12)
    # what you ask for yourself is refused, naming the fix
    with pytest.raises(ValueError, match="level 5 of db4 needs sequences of at least 224"):
        tlw.multiverse(random_model, toks, {**fixed, "wavelet": ["db4"], "level": [5]}, layers=[0], progress=False)


def test_point9_sweep_bucket_names_follow_the_real_length(random_model, tokens):
    toks = tokens[:2, :128]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        df = band_sweep(random_model, toks, layers=[1], heads=[0], bands=["A3"], level=3, progress=False)
    cols = [c for c in df.columns if c.startswith("delta_loss_pos_")]
    assert cols == ["delta_loss_pos_0_15", "delta_loss_pos_16_63", "delta_loss_pos_64_126"]
    with torch.no_grad():  # truth: the per-token loss change at predicting positions 64..126
        clean = random_model(toks, return_type="loss", loss_per_token=True).double()
        abl = random_model.run_with_hooks(toks, return_type="loss", loss_per_token=True,
                                          fwd_hooks=[band_ablation_hook(1, 0, ["A3"], level=3)]).double()
    assert (abl - clean).shape[1] == 127
    assert math.isclose(float(df["delta_loss_pos_64_126"].iloc[0]), float((abl - clean)[:, 64:].mean()),
                        rel_tol=1e-3, abs_tol=2e-5)


# ------------------------------------------------------------------ 10. the docs' list-of-strings example
def test_point10_list_of_short_strings_says_how_many_tokens_they_have(random_model):
    with pytest.raises(ValueError) as e:
        tlw.analyze_heads(random_model, ["first document ...", "second ..."], seq_len=128, progress=False)
    msg = str(e.value)
    assert "0 tokens" not in msg and "longest has 3 tokens" in msg and "each of the 2 texts" in msg, msg
    assert "seq_len <= 4" in msg and "per_document=False" in msg
    # and the example docs/inputs.md now shows runs: documents long enough for a window each
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        docs = tlw.corpus.default_corpus()
        report = tlw.analyze_heads(random_model, docs, seq_len=128, n_sequences=8, progress=False)
    assert report.n_sequences == 8


def test_point3_emergence_force_replaces_the_experiment_and_keeps_the_users_files(tmp_path, capsys):
    out = tmp_path / "em"
    out.mkdir()
    (out / "report.html").write_text("an earlier experiment")
    (out / "runs").mkdir()
    (out / "runs" / "old_seed0.csv").write_text("an earlier run's log")
    (out / "notes.txt").write_text("mine")
    args = ["emergence", "--ci", "--out", str(out), "--steps", "4", "--every", "2", "--seeds", "0", "--positions",
            "rope", "--data", "synthetic", "--workers", "1", "--quiet"]
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # occupied: refused, untouched
    assert (out / "report.html").read_text() == "an earlier experiment"
    assert main(args + ["--force"]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "rope_seed0.csv", "rope_seed0_layers.csv", "rope_seed0_multiverse.csv"]
    assert "an earlier experiment" not in (out / "report.html").read_text()
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["em"]
    assert json.loads((out / "config.json").read_text())["steps"] == 4


def _sigint_as_at_a_terminal():
    # a child started from a background job inherits SIGINT ignored (see tests/test_resume.py)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_point3_emergence_force_interrupted_keeps_the_earlier_experiment_and_the_new_logs(tmp_path):
    out = tmp_path / "em"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "old_seed0.csv").write_text("an earlier run's log")
    (out / "report.html").write_text("an earlier experiment")
    before = _snapshot(out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tl_wavelet.cli", "emergence", "--ci", "--out", str(out), "--force", "--steps", "2000",
         "--every", "10", "--seeds", "0", "--positions", "rope", "--data", "synthetic", "--workers", "1", "--quiet"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_as_at_a_terminal)
    t0 = time.time()
    while not any(p.stat().st_size for p in tmp_path.rglob("rope_seed0.csv")):  # the new run has logged
        assert proc.poll() is None and time.time() - t0 < 240, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert _snapshot(out) == before  # the earlier experiment, as it was
    staged = [p for p in tmp_path.iterdir() if p.name != "em"]
    assert len(staged) == 1 and str(staged[0] / "runs") in err and "unchanged" in err
    assert (staged[0] / "runs" / "rope_seed0.csv").stat().st_size  # the finished steps' log, kept and named
