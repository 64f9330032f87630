"""``tl-wavelet analyze --resume``: a real subprocess interrupted (SIGINT, then SIGKILL) in the
analysis and again in the band sweep, and resumed, writes the report an uninterrupted run
writes; foreign or corrupt checkpoints are refused with nothing in --out changed."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from models_for_tests import saved_tiny_model

from tl_wavelet.cli import CHECKPOINT, main

REPO = Path(__file__).resolve().parents[1]
N_SEQ, SEQ_LEN = 12, 64
TABLES = ("heads.csv", "heads_paper.csv", "layers.csv", "layers_paper.csv", "rope_usage.csv", "paper_comparison.csv")
# the interrupted chain's sweep: every cell (2 layers x 4 heads x bands A3 D3 D2 D1) verified,
# 8 per checkpoint, on 8 sequences in 4 batches (enough work per checkpoint for a signal to land)
N_CELLS, SWEEP_SEQ = 32, 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_tiny_model(tmp_path_factory.mktemp("tiny-model"), n_words=N_SEQ * SEQ_LEN, seed=0)


def _args(model_dir, out, *extra):
    return ["analyze", "--model", str(model_dir), "--out", str(out), "--text", str(model_dir / "words.txt"),
            "--seq-len", str(SEQ_LEN), "--level", "3", "--batch-size", "2", "--checkpoint-every", "1",
            "--no-sweep", "--offline", "--quiet", *extra]


def _chain_args(model_dir, out, *extra):
    a = _args(model_dir, out, "--sweep-sequences", str(SWEEP_SEQ), "--top-k", str(N_CELLS), "--drilldown-heads", "0",
              *extra)
    a.remove("--no-sweep")
    return a


@pytest.fixture(scope="module")
def reference(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(_chain_args(model_dir, out)) == 0
    assert not (out / CHECKPOINT).exists()  # a finished run leaves nothing to resume
    return out


def _sigint_as_at_a_terminal():
    # A job started in the background by a non-interactive shell (how CI runners often start
    # `bash .ci/run`) inherits SIGINT *ignored*, and Python then never raises KeyboardInterrupt:
    # every Ctrl-C of this test would be lost and the run would finish (exit 0). A user's
    # Ctrl-C at a terminal always arrives, so give the child the default disposition back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _spawn(args):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "tl_wavelet.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_at_a_terminal)


def _done(out) -> int:
    return int(torch.load(out / CHECKPOINT, weights_only=True)["analysis_done"])


def _cells(out) -> int:
    """Exact sweep cells the checkpoint holds (0 before the sweep)."""
    sweep = torch.load(out / CHECKPOINT, weights_only=True).get("sweep")
    return len(sweep["rows"]) if sweep else 0


def _interrupt_after_progress(proc, out, sig, beyond: int, timeout=240, count=_done) -> int:
    """Send ``sig`` once the checkpoint records more than ``beyond`` sequences (or ``count``'s
    unit); returns that count."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (out / CHECKPOINT).exists():
            try:
                done = count(out)
            except Exception:  # os.replace is atomic, but be safe against a reader race
                done = -1
            if done > beyond:
                proc.send_signal(sig)
                return done
        if proc.poll() is not None:
            _, err_ = proc.communicate()
            if proc.returncode == 0:
                raise _Inconclusive("the run finished before the poller saw it pass the mark")
            pytest.fail(f"the run failed (exit {proc.returncode}): {err_}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run made no progress")


def _same_tables(a: Path, b: Path, tables=TABLES):
    for name in tables:
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-9, atol=1e-12)


class _Inconclusive(Exception):
    """A signal landed too late to mean anything (the run had finished, or the kill fell
    outside the mid-way window): a race of the test's polling against a fast run, not a
    failure of --resume. The chain is then run again from scratch."""


def _expect_interrupted(proc, err):
    if proc.returncode == 0:  # finished before the Ctrl-C landed
        raise _Inconclusive("the run finished before SIGINT landed")
    assert proc.returncode == 130, err
    assert "--resume" in err


def _mid_way(lo, x, hi, what):
    if not lo < x < hi:
        raise _Inconclusive(f"{what}: {x} not strictly between {lo} and {hi}")


def _killed_resume(model_dir, out, beyond: int, total: int, count, what: str) -> int:
    """Resume, SIGKILL once the checkpoint passes ``beyond`` (no handler runs): the last
    checkpoint must survive intact, strictly mid-way. Returns its count."""
    proc = _spawn(_chain_args(model_dir, out, "--resume"))
    _interrupt_after_progress(proc, out, signal.SIGKILL, beyond=beyond, count=count)
    proc.communicate(timeout=120)
    if proc.returncode == 0:
        raise _Inconclusive(f"{what}: the run finished before the kill landed")
    assert proc.returncode == -signal.SIGKILL
    done = count(out)
    _mid_way(beyond, done, total, what)  # it must land mid-way to mean anything
    return done


def test_interrupted_then_resumed_equals_uninterrupted(model_dir, reference, tmp_path):
    races = []
    for attempt in range(4):
        try:
            return _interrupted_chain(model_dir, reference, tmp_path / f"run{attempt}")
        except _Inconclusive as e:
            races.append(str(e))
    pytest.fail(f"every attempt raced (the signals never landed mid-run): {races}")


def _interrupted_chain(model_dir, reference, out):
    n_seq = json.loads((reference / "meta.json").read_text())["tokens"]["n_sequences"]  # the words' windows
    # 1) Ctrl-C mid-way through the analysis: exit 130, a checkpoint, and the hint to resume
    proc = _spawn(_chain_args(model_dir, out))
    first = _interrupt_after_progress(proc, out, signal.SIGINT, beyond=0)
    _, err = proc.communicate(timeout=120)
    _expect_interrupted(proc, err)
    at_int = _done(out)
    assert first <= at_int
    _mid_way(0, at_int, n_seq, "Ctrl-C in the analysis")
    # 2) resumed, then killed outright (no handler runs): the last checkpoint survives intact
    _killed_resume(model_dir, out, at_int, n_seq, _done, "SIGKILL in the analysis")
    # 3) resumed: the analysis ends, the sweep starts; Ctrl-C once verified cells are saved
    proc = _spawn(_chain_args(model_dir, out, "--resume"))
    _interrupt_after_progress(proc, out, signal.SIGINT, beyond=0, count=_cells)
    _, err = proc.communicate(timeout=120)
    _expect_interrupted(proc, err)
    sweep_int = _cells(out)
    _mid_way(0, sweep_int, N_CELLS, "Ctrl-C in the sweep")
    # 4) resumed, then killed in the sweep
    sweep_kill = _killed_resume(model_dir, out, sweep_int, N_CELLS, _cells, "SIGKILL in the sweep")
    # 5) resumed to the end (with progress output): the same tables as one uninterrupted run
    proc = _spawn([a for a in _chain_args(model_dir, out, "--resume") if a != "--quiet"])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert not (out / CHECKPOINT).exists()
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]  # a killed save's leftover is swept
    _same_tables(out, reference, TABLES + ("sweep.csv",))
    # ... having run only the cells the checkpoint lacked: its exact progress bars (one per
    # group of cells; a bar counts cells x batches of 2 of the SWEEP_SEQ sequences) add up to the
    # missing cells, and no attribution pass ran again
    assert f"Resuming the band sweep: {sweep_kill} exact cells already done, attribution estimates kept." in err
    totals = [int(t) for t in re.findall(r"band_sweep \(exact\):\s+0%\|[^|]*\| 0/(\d+)", err)]
    assert sum(totals) == (N_CELLS - sweep_kill) * (SWEEP_SEQ // 2), (totals, sweep_kill)
    assert "band_sweep (atp2)" not in err
    assert "Band sweep: attribution estimates computed" not in err
    assert sum(map(int, re.findall(r"Band sweep: (\d+) more exact cells verified", err))) == N_CELLS - sweep_kill


def _snapshot(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_foreign_or_corrupt_checkpoint_refused_nothing_changed(model_dir, tmp_path, capsys, monkeypatch):
    import tl_wavelet.state as st

    full = tmp_path / "full"
    assert main(_args(model_dir, full, "--n-sequences", "4")) == 0
    # a checkpoint as an interrupted run leaves it: Ctrl-C right after the first save
    real_save = st.save_state

    def save_then_interrupt(path, state):
        real_save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(st, "save_state", save_then_interrupt)
    runs = tmp_path / "partial"
    assert main(_args(model_dir, runs, "--n-sequences", "4")) == 130
    monkeypatch.setattr(st, "save_state", real_save)
    ck = st.load_state(runs / CHECKPOINT, "tl_wavelet.analyze")
    assert ck["analysis_done"] == 2
    before = _snapshot(runs)
    capsys.readouterr()

    # another option / another corpus: refused naming what differs, nothing touched
    args = _args(model_dir, runs, "--n-sequences", "4", "--resume")
    args[args.index("--level") + 1] = "2"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "options.level: 2 now vs 3 in the checkpoint" in err and "Nothing in --out was changed" in err
    assert main(_args(model_dir, runs, "--n-sequences", "6", "--resume")) == 2
    err = capsys.readouterr().err
    assert "corpus.digest" in err and "corpus.n_sequences: 6 now vs 4" in err
    assert _snapshot(runs) == before

    # truncated checkpoint: refused, nothing touched
    data = (runs / CHECKPOINT).read_bytes()
    (runs / CHECKPOINT).write_bytes(data[: len(data) // 3])
    assert main(_args(model_dir, runs, "--n-sequences", "4", "--resume")) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert (runs / CHECKPOINT).read_bytes() == data[: len(data) // 3]

    # the intact checkpoint resumes to the uninterrupted run's tables
    real_save(runs / CHECKPOINT, ck)
    assert main(_args(model_dir, runs, "--n-sequences", "4", "--resume")) == 0
    _same_tables(runs, full)

    # --resume into a non-empty folder without a checkpoint: refused
    assert main(_args(model_dir, full, "--resume")) == 2
    assert "holds no checkpoint.pt" in capsys.readouterr().err


def test_sweep_resume_keeps_finished_cells(model_dir, tmp_path, capsys, monkeypatch):
    import tl_wavelet.state as st

    def args(out, *extra):
        a = _args(model_dir, out, "--n-sequences", "4", "--sweep-sequences", "3", "--top-k", "10", *extra)
        a.remove("--no-sweep")
        return a

    assert main(args(tmp_path / "whole")) == 0
    real_save = st.save_state
    saves = []

    def interrupt_in_sweep(path, state):  # Ctrl-C right after the first verified cells are saved
        real_save(path, state)
        saves.append(state)
        if state.get("sweep") and state["sweep"]["rows"]:
            raise KeyboardInterrupt

    monkeypatch.setattr(st, "save_state", interrupt_in_sweep)
    out = tmp_path / "run"
    assert main(args(out)) == 130
    monkeypatch.setattr(st, "save_state", real_save)
    kept = st.load_state(out / CHECKPOINT, "tl_wavelet.analyze")["sweep"]
    assert len(kept["rows"]) == 8 and kept["estimates"] is not None  # 8 of the 10 verified cells
    saves.clear()

    def record(path, state):
        real_save(path, state)
        saves.append(state)

    monkeypatch.setattr(st, "save_state", record)
    assert main(args(out, "--resume")) == 0
    # the resumed run went on from the 8 kept cells: no analysis slice, no attribution pass again
    assert [len(s["sweep"]["rows"]) for s in saves] == [10]
    _same_tables(out, tmp_path / "whole")
    pd.testing.assert_frame_equal(pd.read_csv(out / "sweep.csv"), pd.read_csv(tmp_path / "whole" / "sweep.csv"),
                                  check_exact=False, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ the library's own resume (issue 23)
class _Stop(Exception):
    pass


def test_library_stream_resumes_to_the_uninterrupted_result(planted):
    """stream(on_checkpoint=..., resume=...): interrupted after its second checkpoint, resumed, equal to one call."""
    import tl_wavelet as tlw
    from tl_wavelet.analysis import HeadAccumulator, stream

    tokens = torch.randint(4, 97, (10, 64), generator=torch.Generator().manual_seed(5))
    whole = tlw.analyze_heads(planted, tokens, level=3, batch_size=2, progress=False).to_dataframe()
    saved = []

    def keep(state):
        saved.append(torch.load(_roundtrip(state), weights_only=True))  # as a file would hold it
        if len(saved) == 2:
            raise _Stop

    acc = HeadAccumulator(planted, level=3)
    with pytest.raises(_Stop):
        stream(planted, tokens, [acc], batch_size=2, checkpoint_every=1, on_checkpoint=keep, progress=False)
    assert saved[-1]["done"] == 4
    fresh = HeadAccumulator(planted, level=3)
    stream(planted, tokens, [fresh], batch_size=2, checkpoint_every=1, resume=saved[-1], progress=False)
    got = fresh.report().to_dataframe()
    num = whole.select_dtypes("number").columns
    assert ((got[num] - whole[num]).abs().fillna(0) <= 1e-12 * whole[num].abs().fillna(0).clip(lower=1)).all().all()
    with pytest.raises(ValueError, match="tokens"):  # a state of other tokens is refused, naming what differs
        stream(planted, tokens[:8], [HeadAccumulator(planted, level=3)], batch_size=2, resume=saved[-1], progress=False)


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf
