"""Streaming statistics: means, standard errors and correlations over sequences.

Memory is constant in the number of sequences: each statistic keeps running sums in
float64 (float32 sums of thousands of sequences lose digits the SE depends on).

The sums live on the device of the values they are fed (the model's, so a GPU hook adds
into them without waiting for the host; the CPU where a device has no float64, e.g. MPS),
and cross to the host only when read: ``state_dict()``, and the callers' reports through
:func:`to_host`.

Clusters: ``update(values, clusters=codes, n_clusters=G)`` also keeps the sums per
cluster (the document each sequence came from; memory ``G x shape``), and the standard
errors become delete-one-cluster jackknife SEs: windows of one document are not
independent samples. With one sequence per cluster the jackknife SE of a mean is the
usual SD / sqrt(n) exactly.

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

__all__ = ["RunningMoments", "RunningCorrelation", "MIN_CORRELATION_N", "to_host", "jackknife_se"]

#: fewest points for which a correlation and its standard error are reported (else NaN)
MIN_CORRELATION_N = 4


def to_host(values: Tensor) -> Tensor:
    """The one place measured values cross to the host: a detached float64 copy on the CPU.

    Saved states, reports and tables live on the CPU in float64 whatever device and dtype
    the model runs in, so results from a GPU and a CPU run combine and compare.
    """
    return values.detach().to(device="cpu", dtype=torch.float64)


def jackknife_se(replicates: Tensor, valid: Tensor) -> Tensor:
    """Delete-one-cluster jackknife SE from leave-one-out values ``replicates [G, ...]``.

    ``valid [G, ...]``: which clusters hold data for the entry (a cluster without any
    moves nothing and is left out of G). NaN where fewer than 2 clusters hold data.

    >>> jackknife_se(torch.tensor([[2.0], [3.0]], dtype=torch.float64), torch.ones(2, 1, dtype=torch.bool))
    tensor([0.5000], dtype=torch.float64)
    """
    valid = valid & torch.isfinite(replicates)
    g = valid.sum(0).to(replicates.dtype)
    r = torch.where(valid, replicates, torch.zeros((), dtype=replicates.dtype, device=replicates.device))
    mean = r.sum(0) / g.clamp(min=1)
    dev = torch.where(valid, r - mean, torch.zeros((), dtype=r.dtype, device=r.device))
    se = ((g - 1) / g.clamp(min=1) * (dev * dev).sum(0)).sqrt()
    return torch.where(g >= 2, se, torch.full_like(se, math.nan))


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
        self.cn: Tensor | None = None  # per cluster [G, *shape], when updates name clusters
        self.cs1: Tensor | None = None
        self._fed = False  # an update has run (a host flag: checking the sums would wait on the device)

    def update(self, values: Tensor, clusters: Tensor | None = None, n_clusters: int | None = None) -> None:
        """Add one value per sequence, ``[batch, *shape]``: device-side, no host round trip.

        ``clusters`` ``[batch]`` (codes ``0..n_clusters-1``): also add them to their cluster's
        sums, and report jackknife SEs by cluster. Every update of one statistic names its
        clusters, or none does.
        """
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
        if self._fed and (clusters is None) != (self.cn is None):
            raise ValueError("clusters: these sums were kept " + ("per cluster" if self.cn is not None else "without clusters")
                             + "; every update of one statistic names its clusters, or none does.")
        self._fed = True
        self.n += ok.sum(0)
        self.s1 += v.sum(0)
        self.s2 += (v * v).sum(0)
        if clusters is not None:
            self._add_clusters(ok, v, clusters, n_clusters)

    def _add_clusters(self, ok: Tensor, v: Tensor, clusters: Tensor, n_clusters: int | None) -> None:
        if n_clusters is None:
            raise ValueError("n_clusters: pass the number of clusters with clusters=... (codes 0..n_clusters-1).")
        if clusters.ndim != 1 or clusters.shape[0] != v.shape[0] or clusters.is_floating_point():
            raise ValueError(f"clusters must be one integer code per sequence, [{v.shape[0]}], got "
                             f"{clusters.dtype} {tuple(clusters.shape)}.")
        self._cluster_sums(n_clusters, v.device)
        clusters = clusters.to(v.device)
        self.cn.index_add_(0, clusters, ok.to(torch.float64))
        self.cs1.index_add_(0, clusters, v)

    def _cluster_sums(self, g: int, device: torch.device) -> None:
        """Per-cluster sums for at least ``g`` clusters on ``device`` (grown when more are named, e.g. merged states)."""
        shape = tuple(self.n.shape)
        if self.cn is None:
            self.cn = torch.zeros((g, *shape), dtype=torch.float64, device=device)
            self.cs1 = torch.zeros_like(self.cn)
            return
        if self.cn.device != device:
            self.cn, self.cs1 = self.cn.to(device), self.cs1.to(device)
        if self.cn.shape[0] < g:  # called on every update: copy only when growing
            pad = torch.zeros((g - self.cn.shape[0], *shape), dtype=torch.float64, device=device)
            self.cn, self.cs1 = torch.cat([self.cn, pad]), torch.cat([self.cs1, pad])

    def state_dict(self) -> dict[str, Tensor | None]:
        """The running sums ``{"n", "s1", "s2"}`` (float64 on the CPU, None before the first update),
        and ``{"cn", "cs1"}`` (``[G, *shape]``) where they are kept per cluster."""
        keys = ("n", "s1", "s2") + (("cn", "cs1") if self.cn is not None else ())
        return {k: None if getattr(self, k) is None else to_host(getattr(self, k)).clone() for k in keys}

    def load_state_dict(self, sd: dict) -> None:
        """Restore sums saved by :meth:`state_dict`."""
        self.n = self.s1 = self.s2 = self.cn = self.cs1 = None
        self._fed = False
        self.merge(sd)

    def merge(self, other: "RunningMoments | dict", cluster_map: Tensor | None = None) -> "RunningMoments":
        """Add another stream's sums to these (in place); returns self.

        ``cluster_map``: where the other stream's clusters go among these (its code ``i`` is
        this one's ``cluster_map[i]``; None: the same codes), e.g. two shards that share
        documents.

        >>> a, b, ab = RunningMoments(), RunningMoments(), RunningMoments()
        >>> a.update(torch.tensor([[1.0]])); b.update(torch.tensor([[3.0]]))
        >>> ab.update(torch.tensor([[1.0], [3.0]]))
        >>> bool((a.merge(b).se == ab.se).all())
        True
        """
        sd = other.state_dict() if isinstance(other, RunningMoments) else other
        clustered = isinstance(sd, dict) and "cn" in sd
        if clustered and set(sd) != {"n", "s1", "s2", "cn", "cs1"}:
            raise ValueError(f"A clustered RunningMoments state needs the keys ['n', 's1', 's2', 'cn', 'cs1'], got {_keys(sd)}.")
        n, s1, s2 = _check_sums({k: sd[k] for k in ("n", "s1", "s2")} if clustered else sd, ("n", "s1", "s2"),
                                "RunningMoments")
        if n is None:
            return self
        cn, cs1 = _check_sums({k: sd[k] for k in ("cn", "cs1")}, ("cn", "cs1"), "RunningMoments") if clustered else (None, None)
        if clustered and (cn is None or tuple(cn.shape[1:]) != tuple(n.shape)):
            raise ValueError(f"A clustered RunningMoments state needs cn/cs1 of shape [G, {tuple(n.shape)}].")
        if self.n is None:
            self.n, self.s1, self.s2 = torch.zeros_like(n), torch.zeros_like(n), torch.zeros_like(n)
        elif n.shape != self.n.shape:
            raise ValueError(
                f"Cannot merge running moments of shape {tuple(n.shape)} into shape {tuple(self.n.shape)}: "
                "they measure different quantities."
            )
        elif clustered != (self.cn is not None) and bool((self.n > 0).any()):
            raise ValueError("Cannot merge sums kept per cluster with sums kept without clusters: measure both "
                             "with document labels, or both without.")
        dev = self.n.device
        self._fed = True
        self.n += n.to(dev)
        self.s1 += s1.to(dev)
        self.s2 += s2.to(dev)
        if clustered:
            codes = torch.arange(cn.shape[0]) if cluster_map is None else torch.as_tensor(cluster_map, dtype=torch.long)
            if codes.shape != (cn.shape[0],):
                raise ValueError(f"cluster_map must give one code per merged cluster ({cn.shape[0]}), got {tuple(codes.shape)}.")
            self._cluster_sums(int(codes.max()) + 1 if codes.numel() else 0, dev)
            codes = codes.to(dev)
            self.cn.index_add_(0, codes, cn.to(dev))
            self.cs1.index_add_(0, codes, cs1.to(dev))
        return self

    @property
    def count(self) -> Tensor:
        return self.n

    @property
    def mean(self) -> Tensor:
        return self.s1 / self.n.clamp(min=1)

    @property
    def se(self) -> Tensor:
        """Standard error of the mean: SD / sqrt(n) over sequences, NaN with fewer than 2; kept per
        cluster, the delete-one-cluster jackknife SE, NaN with fewer than 2 clusters holding data."""
        if self.cn is not None:
            left = (self.n - self.cn).clamp(min=0)
            loo = (self.s1 - self.cs1) / left.clamp(min=1)
            loo = torch.where(left > 0, loo, torch.full_like(loo, math.nan))
            se = jackknife_se(loo, self.cn > 0)
            return torch.where(torch.isinf(self.s1), torch.full_like(se, math.inf), se)
        n = self.n
        var = (self.s2 - self.s1 * self.s1 / n.clamp(min=1)) / (n - 1).clamp(min=1)
        se = var.clamp(min=0).sqrt() / n.clamp(min=1).sqrt()
        se = torch.where(torch.isinf(self.s1), torch.full_like(se, math.inf), se)
        return torch.where(n >= 2, se, torch.full_like(se, math.nan))


class PackedMoments:
    """One update for many :class:`RunningMoments`: their sums are views into one buffer.

    ``update(values)`` takes ``[batch, K]``, the members' values flattened and laid side by
    side (member i owns ``K_i = prod(shape_i)`` columns, in the order given), and adds them
    with one :meth:`RunningMoments.update` of the packed buffer: a dozen device ops per call
    whatever the number of members (the analysis hooks fold every metric of every layer of
    a forward pass at once; a separate update per metric was ~10 kernel launches each).

    The members stay ordinary RunningMoments (read, saved, merged as ever). A member whose
    sums were replaced since the last update (merged with a state holding more clusters,
    loaded, reset) is noticed by identity and the buffer is rebuilt from the members' sums.
    """

    def __init__(self, members: list[RunningMoments], shapes: list[tuple[int, ...]]):
        if len(members) != len(shapes):
            raise ValueError("members and shapes: one shape per member.")
        self.members, self.shapes = list(members), [tuple(s) for s in shapes]
        self.sizes = [math.prod(s) for s in self.shapes]
        self._packed: RunningMoments | None = None
        self._bound: list[tuple] = []  # the tensors each member was given, to notice replacements

    def _views(self, t: Tensor | None, lead: tuple[int, ...]) -> list[Tensor | None]:
        if t is None:
            return [None] * len(self.members)
        return [v.view(tuple(lead) + shape) for v, shape in zip(t.split(self.sizes, dim=-1), self.shapes)]

    def _bind(self) -> None:
        """Point every member's sums at views of the packed buffer."""
        p = self._packed
        g = () if p.cn is None else (p.cn.shape[0],)
        for m, n, s1, s2, cn, cs1 in zip(self.members, self._views(p.n, ()), self._views(p.s1, ()), self._views(p.s2, ()),
                                        self._views(p.cn, g), self._views(p.cs1, g)):
            m.n, m.s1, m.s2, m.cn, m.cs1 = n, s1, s2, cn, cs1
        self._bound = [(m.n, m.s1, m.s2, m.cn, m.cs1) for m in self.members]

    def _rebuild(self, device: torch.device) -> None:
        """A packed buffer holding every member's current sums (zeros for a member never fed)."""
        p = RunningMoments()
        z = [torch.zeros(s, dtype=torch.float64, device=device) for s in self.shapes]

        def flat(ts, lead=()):
            return torch.cat([t.to(device).reshape(*lead, -1) for t in ts], dim=-1)

        p.n = flat([m.n if m.n is not None else zi for m, zi in zip(self.members, z)])
        p.s1 = flat([m.s1 if m.s1 is not None else zi for m, zi in zip(self.members, z)])
        p.s2 = flat([m.s2 if m.s2 is not None else zi for m, zi in zip(self.members, z)])
        clustered = [m.cn is not None for m in self.members]
        if any(clustered):
            g = max(m.cn.shape[0] for m in self.members if m.cn is not None)

            def grown(t, shape):
                t = torch.zeros((g, *shape), dtype=torch.float64, device=device) if t is None else t.to(device)
                return torch.cat([t, t.new_zeros((g - t.shape[0], *shape))]) if t.shape[0] < g else t

            p.cn = flat([grown(m.cn, s) for m, s in zip(self.members, self.shapes)], (g,))
            p.cs1 = flat([grown(m.cs1, s) for m, s in zip(self.members, self.shapes)], (g,))
        p._fed = any(m._fed for m in self.members)
        self._packed = p
        self._bind()

    def update(self, values: Tensor, clusters: Tensor | None = None, n_clusters: int | None = None) -> None:
        """Add ``values`` [batch, K] (see the class); ``clusters``: as :meth:`RunningMoments.update`."""
        if values.ndim != 2 or values.shape[1] != sum(self.sizes):
            raise ValueError(f"values must be [batch, {sum(self.sizes)}] (the members side by side), got {tuple(values.shape)}.")
        dev = _sums_device(values.device)
        stale = (self._packed is None or self._packed.n.device != dev
                 or any(x is not y for b, m in zip(self._bound, self.members) for x, y in zip(b, (m.n, m.s1, m.s2, m.cn, m.cs1))))
        if stale:
            self._rebuild(dev)
        p = self._packed
        before = p.cn
        p.update(values, clusters, n_clusters)
        if p.cn is not before:  # the per-cluster sums grew (new tensors): point the members at them
            self._bind()
        for m in self.members:
            m._fed = True


class RunningCorrelation:
    """Pearson correlation of two per-sequence quantities, streamed as moments.

    Used for the paper's uncertainty measure rho = corr(H_p, H_s): one (H_p, H_s) point per
    sequence and head. ``se`` is the large-sample standard error sqrt((1 - r^2) / (n - 2)).
    Both are NaN with fewer than :data:`MIN_CORRELATION_N` = 4 points: with 2 points r is
    always +-1, with 3 it has one degree of freedom and no usable standard error.
    """

    def __init__(self) -> None:
        self._m = {k: RunningMoments() for k in ("x", "y", "xy", "xx", "yy")}

    def update(self, x: Tensor, y: Tensor, clusters: Tensor | None = None, n_clusters: int | None = None) -> None:
        """Add one (x, y) point per sequence; ``clusters``: as :meth:`RunningMoments.update` (jackknife SE by cluster)."""
        if x.shape != y.shape:
            raise ValueError(f"x and y must have one shape (one point per entry), got {tuple(x.shape)} and {tuple(y.shape)}.")
        x, y = x.detach().double(), y.detach().double()
        for key, val in (("x", x), ("y", y), ("xy", x * y), ("xx", x * x), ("yy", y * y)):
            self._m[key].update(val, clusters, n_clusters)

    def state_dict(self) -> dict[str, dict]:
        """Running sums of x, y, xy, xx, yy (see :meth:`RunningMoments.state_dict`)."""
        return {k: m.state_dict() for k, m in self._m.items()}

    def load_state_dict(self, sd: dict) -> None:
        if not isinstance(sd, dict) or set(sd) != set(self._m):
            raise ValueError(f"A RunningCorrelation state needs the keys {sorted(self._m)}, got {_keys(sd)}.")
        for k, m in self._m.items():
            m.load_state_dict(sd[k])

    def merge(self, other: "RunningCorrelation | dict", cluster_map: Tensor | None = None) -> "RunningCorrelation":
        """Add another stream's sums to these (in place); returns self (``cluster_map``: see :meth:`RunningMoments.merge`)."""
        sd = other.state_dict() if isinstance(other, RunningCorrelation) else other
        if not isinstance(sd, dict) or set(sd) != set(self._m):
            raise ValueError(f"A RunningCorrelation state needs the keys {sorted(self._m)}, got {_keys(sd)}.")
        for k, m in self._m.items():
            m.merge(sd[k], cluster_map)
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

    def replicates(self) -> Tensor | None:
        """Leave-one-cluster-out r, ``[G, *shape]`` (NaN where a cluster holds no point or what is left
        has too few); None when the sums are not kept per cluster. Aggregates of r (a mean over heads)
        get their jackknife SE from these: :func:`jackknife_se` of the aggregate of each row."""
        m = self._m
        if m["x"].cn is None:
            return None
        left = m["x"].n - m["x"].cn
        loo = pearson_from_moments(left, *((m[k].s1 - m[k].cs1) for k in ("x", "y", "xx", "yy", "xy")))
        ok = (left >= MIN_CORRELATION_N) & (m["x"].cn > 0)
        return torch.where(ok, loo, torch.full_like(loo, math.nan))

    @property
    def se(self) -> Tensor:
        """sqrt((1 - r^2) / (n - 2)) over sequences; kept per cluster, the delete-one-cluster jackknife SE of r."""
        r = self.r
        loo = self.replicates()
        if loo is not None:
            se = jackknife_se(loo, torch.isfinite(loo))
            return torch.where(torch.isnan(r), r, se)
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
