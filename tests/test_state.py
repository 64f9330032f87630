"""Mergeable, serialisable analysis state: shards merged == one pass; foreign states refused."""
import io

import pytest
import torch
from models_for_tests import state_sums

from tl_wavelet.analysis import HeadAccumulator, stream
from tl_wavelet.state import load_state, save_state
from tl_wavelet.stats import RunningCorrelation, RunningMoments


def _assert_same_sums(a, b, rtol=1e-10):
    sa, sb = state_sums(a), state_sums(b)
    assert sa.keys() == sb.keys() and len(sa) > 50
    for k in sa:
        x, y = sa[k], sb[k]
        both_inf = torch.isinf(x) & torch.isinf(y) & (x == y)
        err = ((x - y).abs() / y.abs().clamp_min(1e-300))[~both_inf]
        assert x.dtype == torch.float64 and (err.numel() == 0 or float(err.max()) <= rtol), k


def test_moments_merge_matches_one_stream():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g)
    x[3, 1] = float("nan")  # left out of its entry's count, in the shard as in the whole
    y = torch.randn(30, 4, generator=g)
    whole, whole_r = RunningMoments(), RunningCorrelation()
    whole.update(x)
    whole_r.update(x, y)
    parts, parts_r = RunningMoments(), RunningCorrelation()
    for sl in (slice(0, 7), slice(7, 19), slice(19, 30)):
        p, pr = RunningMoments(), RunningCorrelation()
        p.update(x[sl])
        pr.update(x[sl], y[sl])
        parts.merge(p)
        parts_r.merge(pr.state_dict())
    # independent truth: numpy-free closed forms over all 30 values
    ok = ~torch.isnan(x)
    ref_mean = torch.where(ok, x, 0).double().sum(0) / ok.sum(0)
    torch.testing.assert_close(parts.mean, ref_mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(parts.se, whole.se, rtol=1e-10, atol=0)
    torch.testing.assert_close(parts_r.r, whole_r.r, rtol=1e-10, atol=0, equal_nan=True)
    ref_r = torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]).double())[0, 1]
    torch.testing.assert_close(parts_r.r[0], ref_r, rtol=1e-10, atol=0)
    empty = RunningMoments()
    empty.merge(RunningMoments())
    assert empty.n is None
    with pytest.raises(ValueError, match="shape"):
        parts.merge({"n": torch.zeros(3, dtype=torch.float64), "s1": torch.zeros(3, dtype=torch.float64),
                     "s2": torch.zeros(3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="keys"):
        parts.merge({"n": None})


def test_three_shards_merged_equal_one_pass(random_model):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(4, 97, (9, 64), generator=g)
    kw = dict(level=3, signal="pattern_rows")
    whole = HeadAccumulator(random_model, **kw)
    stream(random_model, tokens, [whole], batch_size=3, progress=False)
    merged = HeadAccumulator(random_model, **kw)
    for start in (0, 3, 6):  # shards on batch boundaries: the same forwards, summed apart
        part = HeadAccumulator(random_model, **kw)
        stream(random_model, tokens[start:start + 3], [part], batch_size=3, progress=False)
        buf = io.BytesIO()
        torch.save(part.state_dict(), buf)  # through a file, as a shard from another process
        buf.seek(0)
        merged.merge(torch.load(buf, weights_only=True))
    _assert_same_sums(merged.state_dict(), whole.state_dict())
    a, b = merged.report().to_dataframe(), whole.report().to_dataframe()
    assert merged.n_sequences == 9 and a.shape == b.shape
    num = a.select_dtypes("number").columns
    torch.testing.assert_close(torch.tensor(a[num].to_numpy()), torch.tensor(b[num].to_numpy()),
                               rtol=1e-6, atol=1e-9, equal_nan=True)
    # load_state_dict replaces; a fresh accumulator restored from the state reports the same
    again = HeadAccumulator(random_model, **kw)
    again.load_state_dict(merged.state_dict())
    _assert_same_sums(again.state_dict(), merged.state_dict(), rtol=0)


def test_foreign_state_refused_with_what_differs(random_model, planted):
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(4, 97, (2, 32), generator=g)
    acc = HeadAccumulator(random_model, level=3)
    stream(random_model, tokens, [acc], progress=False)
    sd = acc.state_dict()
    with pytest.raises(ValueError, match=r"config\.level: 4 here vs 3"):
        HeadAccumulator(random_model, level=4).merge(sd)
    with pytest.raises(ValueError, match=r"layers"):
        HeadAccumulator(random_model, level=3, layers=[1]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"model\.weights"):
        HeadAccumulator(planted, level=3).merge(acc)
    short = HeadAccumulator(random_model, level=3)
    stream(random_model, torch.randint(4, 97, (2, 40), generator=g), [short], progress=False)
    with pytest.raises(ValueError, match="40 and 32|32 and 40"):
        short.merge(sd)
    with pytest.raises(ValueError, match="not a HeadAccumulator state"):
        acc.merge({"layers": {}})


def test_state_file_atomic_and_corruption_refused(tmp_path, random_model):
    acc = HeadAccumulator(random_model, level=3)
    path = save_state(tmp_path / "s.pt", {"kind": "test", "acc": acc.state_dict()})
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary left behind
    assert load_state(path, "test")["acc"]["fingerprint"] == acc.fingerprint
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_state(tmp_path / "cut.pt", "test")
    (tmp_path / "junk.pt").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_state(tmp_path / "junk.pt", "test")
    with pytest.raises(ValueError, match="not a other state"):
        load_state(path, "other")


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_band_sweep_resumes_keeping_finished_cells(random_model):
    from tl_wavelet.ablation import band_sweep

    g = torch.Generator().manual_seed(5)
    tokens = torch.randint(4, 97, (3, 32), generator=g)
    kw = dict(layers=[1], heads=[0, 1, 2], level=2, batch_size=3, progress=False)  # 9 cells
    calls = []

    def counted(**extra):  # forwards that reach layer 1's hook_z: clean passes + patched cells
        calls.clear()
        with random_model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", lambda t, hook: calls.append(1))]):
            return band_sweep(random_model, tokens, **kw, **extra)

    plain = counted()
    n_plain = len(calls)  # a clean pass, the runner's self-check, 9 patched cells
    states = []
    full = counted(on_checkpoint=states.append)
    pd_equal(full, plain)
    assert [len(s["rows"]) for s in states] == [8, 9]  # a checkpoint after each group of 8 cells
    resumed = counted(resume=_roundtrip(states[0]))
    assert len(calls) == n_plain - 8  # only the missing cell ran
    pd_equal(resumed, plain)
    assert resumed.attrs["clean_loss"] == plain.attrs["clean_loss"]

    # attribution: the estimates of an interrupted run are kept, the verified cells rerun
    states.clear()
    est = counted(attribution="atp", verify_top_k=2, on_checkpoint=states.append)
    n_est = len(calls)
    assert states[0]["estimates"] is not None and not states[0]["rows"]
    again = counted(attribution="atp", verify_top_k=2, resume=_roundtrip(states[0]))
    assert len(calls) == n_est - 1  # the same, less the attribution's gradient pass
    pd_equal(again, est)

    with pytest.raises(ValueError, match="tokens"):
        band_sweep(random_model, tokens.flip(0), **kw, resume=states[0] | {"kind": "tl_wavelet.band_sweep"})
    with pytest.raises(ValueError, match="options"):
        band_sweep(random_model, tokens, **{**kw, "level": 3}, resume=_roundtrip(states[0]))


def pd_equal(a, b):
    import pandas as pd

    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)


class _CtrlCWhilePickled:
    """Sends this process a SIGINT while torch.save pickles it (a Ctrl-C landing mid-write)."""

    def __reduce__(self):
        import signal

        signal.raise_signal(signal.SIGINT)
        return (int, (7,))


def test_ctrl_c_while_a_state_is_written_lands_after_the_file(tmp_path):
    # Unheld, the KeyboardInterrupt raised inside torch.save's writer came out as a
    # RuntimeError ("unexpected pos ..."), so the CLI exited 1, not 130 with its --resume hint
    # (seen in CI: tests/test_resume.py). Held, the file is written whole, then the interrupt lands.
    path = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"x": torch.arange(3), "late": _CtrlCWhilePickled()})
    back = torch.load(path, weights_only=False)
    assert back["late"] == 7 and torch.equal(back["x"], torch.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left
