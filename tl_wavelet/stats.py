"""Streaming statistics: means, standard errors and correlations over sequences.

Memory is constant in the number of sequences: each statistic keeps running sums in
float64 (float32 sums of thousands of sequences lose digits the SE depends on).

The sums live on the device of the values they are fed (the model's, so a GPU hook adds
into them without waiting for the host; the CPU where a device has no float64, e.g. MPS),
and cross to the host only when read: ``state_dict()``, and the callers' reports through
:func:`to_host`.

Sums merge: ``a.merge(b)`` gives the statistics of both streams (up to float64 rounding),
so shards of a corpus can be measured apart (other processes, other ranks, an earlier
interrupted run) and combined; ``state_dict()`` / ``load_state_dict()`` save and restore
them (plain tensors, loadable with ``torch.load(..., weights_only=True)``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .metrics import pearson_from_moments

__all__ = ["RunningMoments", "RunningCorrelation", "MIN_CORRELATION_N", "to_host"]

#: fewest points for which a correlation and its standard error are reported (else NaN)
MIN_CORRELATION_N = 4


def to_host(values: Tensor) -> Tensor:
    """The one place measured values cross to the host: a detached float64 copy on the CPU.

    Saved states, reports and tables live on the CPU in float64 whatever device and dtype
    the model runs in, so results from a GPU and a CPU run combine and compare.
    """
    return values.detach().to(device="cpu", dtype=torch.float64)


def _sums_device(device: torch.device) -> torch.device:
    """Where running sums of values on ``device`` are kept: there, unless it has no float64."""
    return torch.device("cpu") if device.type == "mps" else device


class RunningMoments:
    """Mean and standard error of a per-sequence quantity, one value per sequence.

    ``update(values)`` takes ``[batch, *shape]``; sequences whose value is NaN (a metric
    undefined for that sequence, e.g. a head with zero energy) are left out of that
    entry's count rather than poisoning the mean.

    >>> m = RunningMoments()
    >>> m.update(torch.tensor([[1.0], [3.0]]))
    >>> m.mean, m.se
    (tensor([2.], dtype=torch.float64), tensor([1.], dtype=torch.float64))
    """

    def __init__(self) -> None:
        self.n: Tensor | None = None
        self.s1: Tensor | None = None
        self.s2: Tensor | None = None

    def update(self, values: Tensor) -> None:
        """Add one value per sequence, ``[batch, *shape]``: device-side, no host round trip."""
        if self.n is not None and tuple(values.shape[1:]) != tuple(self.n.shape):
            raise ValueError(
                f"values must be [batch, {', '.join(map(str, self.n.shape))}] like the earlier updates, got "
                f"{tuple(values.shape)}."
            )
        dev = _sums_device(values.device)
        v = values.detach().to(device=dev, dtype=torch.float64)
        ok = ~torch.isnan(v)
        v = torch.where(ok, v, torch.zeros((), dtype=v.dtype, device=dev))
        if self.n is None:
            self.n = torch.zeros(v.shape[1:], dtype=torch.float64, device=dev)
            self.s1 = torch.zeros_like(self.n)
            self.s2 = torch.zeros_like(self.n)
        elif self.n.device != dev:  # e.g. a merged saved state (CPU) now fed from a GPU
            self.n, self.s1, self.s2 = (t.to(dev) for t in (self.n, self.s1, self.s2))
        self.n += ok.sum(0)
        self.s1 += v.sum(0)
        self.s2 += (v * v).sum(0)

    def state_dict(self) -> dict[str, Tensor | None]:
        """The running sums ``{"n", "s1", "s2"}`` (float64 on the CPU, None before the first update)."""
        return {k: None if getattr(self, k) is None else to_host(getattr(self, k)).clone() for k in ("n", "s1", "s2")}

    def load_state_dict(self, sd: dict) -> None:
        """Restore sums saved by :meth:`state_dict`."""
        vals = _check_sums(sd, ("n", "s1", "s2"), "RunningMoments")
        self.n, self.s1, self.s2 = vals

    def merge(self, other: "RunningMoments | dict") -> "RunningMoments":
        """Add another stream's sums to these (in place); returns self.

        >>> a, b, ab = RunningMoments(), RunningMoments(), RunningMoments()
        >>> a.update(torch.tensor([[1.0]])); b.update(torch.tensor([[3.0]]))
        >>> ab.update(torch.tensor([[1.0], [3.0]]))
        >>> bool((a.merge(b).se == ab.se).all())
        True
        """
        sd = other.state_dict() if isinstance(other, RunningMoments) else other
        n, s1, s2 = _check_sums(sd, ("n", "s1", "s2"), "RunningMoments")
        if n is None:
            return self
        if self.n is None:
            self.n, self.s1, self.s2 = n.clone(), s1.clone(), s2.clone()
            return self
        if n.shape != self.n.shape:
            raise ValueError(
                f"Cannot merge running moments of shape {tuple(n.shape)} into shape {tuple(self.n.shape)}: "
                "they measure different quantities."
            )
        self.n += n.to(self.n.device)
        self.s1 += s1.to(self.n.device)
        self.s2 += s2.to(self.n.device)
        return self

    @property
    def count(self) -> Tensor:
        return self.n

    @property
    def mean(self) -> Tensor:
        return self.s1 / self.n.clamp(min=1)

    @property
    def se(self) -> Tensor:
        """Standard error of the mean (sample SD / sqrt(n)); NaN with fewer than 2 sequences."""
        n = self.n
        var = (self.s2 - self.s1 * self.s1 / n.clamp(min=1)) / (n - 1).clamp(min=1)
        se = var.clamp(min=0).sqrt() / n.clamp(min=1).sqrt()
        se = torch.where(torch.isinf(self.s1), torch.full_like(se, math.inf), se)
        return torch.where(n >= 2, se, torch.full_like(se, math.nan))


class RunningCorrelation:
    """Pearson correlation of two per-sequence quantities, streamed as moments.

    Used for the paper's uncertainty measure rho = corr(H_p, H_s): one (H_p, H_s) point per
    sequence and head. ``se`` is the large-sample standard error sqrt((1 - r^2) / (n - 2)).
    Both are NaN with fewer than :data:`MIN_CORRELATION_N` = 4 points: with 2 points r is
    always +-1, with 3 it has one degree of freedom and no usable standard error.
    """

    def __init__(self) -> None:
        self._m = {k: RunningMoments() for k in ("x", "y", "xy", "xx", "yy")}

    def update(self, x: Tensor, y: Tensor) -> None:
        if x.shape != y.shape:
            raise ValueError(f"x and y must have one shape (one point per entry), got {tuple(x.shape)} and {tuple(y.shape)}.")
        x, y = x.detach().double(), y.detach().double()
        for key, val in (("x", x), ("y", y), ("xy", x * y), ("xx", x * x), ("yy", y * y)):
            self._m[key].update(val)

    def state_dict(self) -> dict[str, dict]:
        """Running sums of x, y, xy, xx, yy (see :meth:`RunningMoments.state_dict`)."""
        return {k: m.state_dict() for k, m in self._m.items()}

    def load_state_dict(self, sd: dict) -> None:
        if not isinstance(sd, dict) or set(sd) != set(self._m):
            raise ValueError(f"A RunningCorrelation state needs the keys {sorted(self._m)}, got {_keys(sd)}.")
        for k, m in self._m.items():
            m.load_state_dict(sd[k])

    def merge(self, other: "RunningCorrelation | dict") -> "RunningCorrelation":
        """Add another stream's sums to these (in place); returns self."""
        sd = other.state_dict() if isinstance(other, RunningCorrelation) else other
        if not isinstance(sd, dict) or set(sd) != set(self._m):
            raise ValueError(f"A RunningCorrelation state needs the keys {sorted(self._m)}, got {_keys(sd)}.")
        for k, m in self._m.items():
            m.merge(sd[k])
        return self

    @property
    def count(self) -> Tensor:
        return self._m["x"].n

    @property
    def r(self) -> Tensor:
        """Pearson r per entry; NaN where it is undefined (a constant variable, n < 2)."""
        m = self._m
        r = pearson_from_moments(
            self.count, m["x"].s1, m["y"].s1, m["xx"].s1, m["yy"].s1, m["xy"].s1
        )
        return torch.where(self.count >= MIN_CORRELATION_N, r, torch.full_like(r, math.nan))

    @property
    def se(self) -> Tensor:
        r = self.r
        n = self.count
        return ((1 - r * r).clamp(min=0) / (n - 2).clamp(min=1)).sqrt()  # NaN where r is


def _keys(sd) -> str:
    return repr(sorted(sd)) if isinstance(sd, dict) else type(sd).__name__


def _check_sums(sd, keys: tuple[str, ...], what: str) -> list[Tensor | None]:
    """The sums of a saved state, checked: float64 tensors of one shape, or all None."""
    if not isinstance(sd, dict) or set(sd) != set(keys):
        raise ValueError(f"A {what} state needs the keys {list(keys)}, got {_keys(sd)}.")
    vals = [sd[k] for k in keys]
    if all(v is None for v in vals):
        return vals
    if not all(isinstance(v, Tensor) and v.dtype == torch.float64 for v in vals):
        raise ValueError(f"A {what} state holds float64 tensors (or None), got {[type(v).__name__ for v in vals]}.")
    if len({tuple(v.shape) for v in vals}) != 1:
        raise ValueError(f"A {what} state's sums differ in shape: {[tuple(v.shape) for v in vals]}.")
    return [v.detach().to("cpu") for v in vals]
