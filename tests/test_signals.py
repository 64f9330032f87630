"""Tests for tl_wavelet.signals: offset re-indexing of causal attention patterns.

Truth: explicit Python loops over (q, d) on small patterns, and closed forms for a
previous-token head and uniform causal attention.
"""
import pytest
import torch

from tl_wavelet.signals import offset_aligned_rows, offset_profile, prefix_offset_profiles


def _random_causal(*shape, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(*shape, n, n, generator=g, dtype=torch.float64)
    scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
    return scores.softmax(-1)


def _loop_rows(p, drop):
    n = p.shape[-1]
    rows = torch.zeros_like(p)
    for q in range(n):
        row = p[..., q, :].clone()
        if drop:
            row[..., 0] = 0
            s = row.sum(-1, keepdim=True)
            row = torch.where(s > 0, row / torch.where(s > 0, s, torch.ones_like(s)), row)
        for d in range(q + 1):
            if drop and q - d == 0:
                continue
            rows[..., q, d] = row[..., q - d]
    return rows


@pytest.mark.parametrize("drop", [False, True])
def test_aligned_rows_match_loop(drop):
    p = _random_causal(2, 3, n=7)
    rows, lengths = offset_aligned_rows(p, drop_first_key=drop)
    torch.testing.assert_close(rows, _loop_rows(p, drop))
    assert lengths.tolist() == [q + 1 - int(drop) for q in range(7)]
    # each row is a probability distribution over its valid offsets
    expected = torch.ones(2, 3, 7, dtype=torch.float64)
    if drop:
        expected[..., 0] = 0
    torch.testing.assert_close(rows.sum(-1), expected)


def test_aligned_rows_ignore_upper_triangle():
    p = _random_causal(n=5)
    garbage = p + torch.ones(5, 5).triu(1) * 7.0  # junk above the diagonal must not leak
    torch.testing.assert_close(offset_aligned_rows(garbage)[0], offset_aligned_rows(p)[0])


def test_drop_first_key_pure_sink_row_stays_zero():
    n = 4
    p = torch.zeros(n, n)
    p[:, 0] = 1.0  # every query attends only to the sink
    rows, lengths = offset_aligned_rows(p, drop_first_key=True)
    assert torch.isfinite(rows).all()
    assert rows.abs().sum() == 0
    assert lengths.tolist() == [0, 1, 2, 3]


def test_profile_previous_token_head():
    n = 6
    p = torch.zeros(n, n)
    p[0, 0] = 1
    p[torch.arange(1, n), torch.arange(0, n - 1)] = 1
    r = offset_profile(p)
    expected = torch.zeros(n)
    expected[0] = 1 / n  # only query 0 puts mass on itself, averaged over n queries
    expected[1] = 1.0
    torch.testing.assert_close(r, expected)


def test_profile_uniform_causal_closed_form():
    n = 9
    p = torch.tril(torch.ones(n, n, dtype=torch.float64))
    p = p / p.sum(-1, keepdim=True)
    r = offset_profile(p)
    expected = torch.tensor([sum(1 / (q + 1) for q in range(d, n)) / (n - d) for d in range(n)],
                            dtype=torch.float64)
    torch.testing.assert_close(r, expected)
    # row-stochastic identity: sum_d (n - d) r(d) = n
    torch.testing.assert_close((r * torch.arange(n, 0, -1)).sum(), torch.tensor(float(n),
                                                                               dtype=torch.float64))


@pytest.mark.parametrize("drop", [False, True])
def test_profile_matches_loop_mean(drop):
    p = _random_causal(3, n=8, seed=1)
    r = offset_profile(p, drop_first_key=drop)
    rows = _loop_rows(p, drop)
    n = 8
    for d in range(n):
        qs = [q for q in range(n) if q - d >= int(drop)]
        want = rows[:, qs, d].mean(-1) if qs else torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(r[:, d], want)


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("given", [False, True])
def test_prefix_profiles_are_the_cut_sequences_profiles(drop, given):
    # The hooks' one-pass profiles of the causal prefixes (scale sensitivity's cut sequences)
    # against the loop mean of each cut pattern on its own. A strong first key (a sink) makes
    # the unmasked gather's spill, which the one-pass sums take off, large.
    n = 24
    p = _random_causal(2, 3, n=n, seed=4).clone()
    p[..., 0] += 3.0
    p = p / p.sum(-1, keepdim=True)
    aligned = offset_aligned_rows(p, drop)[0] if given else None
    got = prefix_offset_profiles(p, drop, [n, 12, 6], aligned=aligned)
    assert sorted(got) == [6, 12, n]
    for m, prof in got.items():
        assert prof.dtype == torch.float64 and prof.shape == (2, 3, m)
        rows = _loop_rows(p[..., :m, :m], drop)
        for d in range(m):
            qs = [q for q in range(m) if q - d >= int(drop)]
            want = rows[..., qs, d].mean(-1) if qs else torch.zeros(2, 3, dtype=torch.float64)
            torch.testing.assert_close(prof[..., d], want, rtol=1e-12, atol=1e-14)


def test_bad_patterns_raise():
    with pytest.raises(ValueError, match="square"):
        offset_profile(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., q, k\]"):
        offset_aligned_rows(torch.zeros(5))
    with pytest.raises(TypeError, match="floating"):
        offset_profile(torch.zeros(3, 3, dtype=torch.long))
