"""A forward pass counts whole or not at all: accumulators commit per pass (issue 24, finding 1).

Before: a HeadAccumulator inside ``model.hooks(...)`` whose forward failed on the 2nd of 3
batches (a user's hook raised between layer 0 and layer 1) kept layer 0's half of that batch:
layer 0 counted 12 sequences, layer 1 8, the report said 8, and layer 0's numbers were off.
Truth: a clean accumulator fed only the batches whose passes completed.
"""
from __future__ import annotations

import pytest
import torch

import tl_wavelet as tlw
from tl_wavelet.analysis import HeadAccumulator, stream
from tl_wavelet.analysis.multiverse import MultiverseAccumulator

AXES = {"signal": ["offset_profile"], "wavelet": ["db2"], "level": [3]}


class Boom(Exception):
    pass


def _failing_hook(fail_on: int):
    calls = {"n": 0}

    def fn(t, hook):
        calls["n"] += 1
        if calls["n"] == fail_on:
            raise Boom("a user's hook failed")

    return ("blocks.1.attn.hook_q", fn)  # fires after layer 0's pattern, before layer 1's


def _frames(acc):
    return acc.report().to_dataframe()


@pytest.fixture
def batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(4, 97, (4, 64), generator=g) for _ in range(3)]


def test_failed_pass_inside_model_hooks_leaves_no_trace(planted, batches):
    acc = HeadAccumulator(planted, layers=[0, 1], level=3)
    user = _failing_hook(fail_on=2)
    with pytest.warns(RuntimeWarning, match=r"fed layer\(s\) \[0\] of \[0, 1\] and then stopped"):
        for i, toks in enumerate(batches):
            with planted.hooks(fwd_hooks=acc.hooks() + [user]), torch.no_grad():
                try:
                    planted(toks, return_type=None)
                except Boom:
                    assert i == 1
    clean = HeadAccumulator(planted, layers=[0, 1], level=3)
    for toks in (batches[0], batches[2]):
        with planted.hooks(fwd_hooks=clean.hooks()), torch.no_grad():
            planted(toks, return_type=None)
    assert acc.n_sequences == clean.n_sequences == 8
    assert {L: s.n_seen for L, s in acc._state.items()} == {0: 8, 1: 8}
    got, want = _frames(acc), _frames(clean)
    num = want.select_dtypes("number").columns
    assert (got[num].fillna(-1) == want[num].fillna(-1)).all().all()


def test_failed_last_pass_is_dropped_at_report(planted, batches):
    acc = HeadAccumulator(planted, layers=[0, 1], level=3)
    with planted.hooks(fwd_hooks=acc.hooks()), torch.no_grad():
        planted(batches[0], return_type=None)
    with planted.hooks(fwd_hooks=acc.hooks() + [_failing_hook(1)]), torch.no_grad(), pytest.raises(Boom):
        planted(batches[1], return_type=None)
    with pytest.warns(RuntimeWarning, match="left out"):
        report = acc.report()
    assert report.n_sequences == 4 and {s.n_seen for s in acc._state.values()} == {4}


def test_stream_rolls_back_a_failed_batch(planted, batches):
    acc = HeadAccumulator(planted, layers=[0, 1], level=3)
    stream(planted, batches[0], [acc], progress=False)
    before = acc.state_dict()
    with planted.hooks(fwd_hooks=[_failing_hook(1)]), pytest.raises(Boom):
        stream(planted, batches[1], [acc], progress=False)
    after = acc.state_dict()  # no warning: the error was raised, the pass rolled back
    assert after["layers"][0]["n_seen"] == after["layers"][1]["n_seen"] == 4
    for L in (0, 1):
        for key, m in before["layers"][L]["moments"].items():
            assert torch.equal(m["s1"], after["layers"][L]["moments"][key]["s1"])


def test_multiverse_commits_per_pass(planted, batches):
    acc = MultiverseAccumulator(planted, AXES, layers=[0, 1], n_groups=2)
    user = _failing_hook(fail_on=2)
    with pytest.warns(RuntimeWarning, match="stopped"):
        for toks in batches:
            with planted.hooks(fwd_hooks=acc.hooks() + [user]), torch.no_grad():
                try:
                    planted(toks, return_type=None)
                except Boom:
                    pass
    assert acc._seen == {0: 8, 1: 8}


def test_manual_feeding_is_immediate(planted, batches):
    """add() / update() fold at once: the caller drives them layer by layer."""
    acc = HeadAccumulator(planted, layers=[0, 1], level=3, rope=False)
    _, cache = planted.run_with_cache(batches[0], names_filter=lambda n: n.endswith("hook_pattern"))
    acc.add(0, cache["blocks.0.attn.hook_pattern"])
    assert acc._state[0].n_seen == 4 and acc._state[1].n_seen == 0
    ref = tlw.analyze_heads(planted, batches[0], layers=[0, 1], level=3, rope=False, progress=False)
    acc.add(1, cache["blocks.1.attn.hook_pattern"])
    got, want = _frames(acc), ref.to_dataframe()
    num = want.select_dtypes("number").columns
    assert ((got[num] - want[num]).abs().fillna(0) <= 1e-12).all().all()


def test_nonfinite_activations_are_reported_not_silent(planted, batches):
    """A NaN pattern (a float16 overflow, say) cannot be checked inside a hook without waiting on the
    device: it is counted there and report() says how many sequences and which layers."""
    def poison(p, hook):
        p = p.clone()
        p[0, 0, 5, 0] = float("nan")  # one sequence of layer 0
        return p

    acc = HeadAccumulator(planted, layers=[0, 1], level=3)
    with planted.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", poison)] + acc.hooks()), torch.no_grad():
        planted(batches[0], return_type=None)
    # the NaN flows on into layer 1 for that sequence: one sequence, two layers
    with pytest.warns(RuntimeWarning, match=r"Non-finite \(NaN/inf\) activations in 2 \(sequence, layer\) pair\(s\), layers \[0, 1\]"):
        df = acc.report().to_dataframe()
    assert df["A3"].notna().all()  # the other three sequences carry every mean
