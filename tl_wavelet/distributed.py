"""Data-parallel helpers on ``torch.distributed``: shards, reductions, argument checks, errors.

tl_wavelet does not start processes: launch with ``torchrun`` (or SLURM + torchrun) and
call ``torch.distributed.init_process_group`` (the CLI does it when it sees torchrun's
environment). When a process group is initialised, ``analyze_heads`` / ``analysis.stream``
shard batches of sequences and ``band_sweep`` shards its exact cells and attribution
batches across ranks, and every rank returns the same result (see docs/scaling.md).

Three rules keep a distributed run from hanging or silently mixing data:

- every rank checks, with one ``all_gather`` of a few short digests, that it was called with
  the same arguments as the others (:func:`check_same_arguments`);
- work that may raise runs inside :func:`run_collectively`: ranks exchange an ok/error
  status before any reduction, so a rank that raises makes every rank raise with that
  rank's error instead of waiting forever in a collective;
- a rank that dies outright (killed, out of memory) is handled by torchrun, which stops the
  other ranks, and by the process group's timeout (``init_process`` sets one).

Without an initialised process group every function here is the single-process identity
(rank 0 of 1), so callers need no second code path.
"""
from __future__ import annotations

import datetime
import math
import os
import traceback
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "is_distributed",
    "rank",
    "world_size",
    "shard_range",
    "batch_ranges",
    "all_gather_objects",
    "check_same_arguments",
    "run_collectively",
    "init_process",
    "RankError",
    "split_evenly",
]

T = TypeVar("T")

#: default process-group timeout of :func:`init_process` (seconds); override with the
#: environment variable TL_WAVELET_DIST_TIMEOUT
DEFAULT_TIMEOUT_S = 1800


class RankError(RuntimeError):
    """Raised on every rank when another rank's part of a collective step failed."""


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def shard_range(n: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous share of ``n`` items: the first ``n % world`` ranks get one more.

    >>> [list(shard_range(7, r, 3)) for r in range(3)]
    [[0, 1, 2], [3, 4], [5, 6]]
    >>> list(shard_range(2, 2, 3))    # more ranks than items: an empty share
    []
    """
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def batch_ranges(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[tuple[int, int]]:
    """``(start, stop)`` of the batches of ``n`` sequences that rank ``rank`` runs.

    The batches are those of a single-process run (``0:b, b:2b, ...``), dealt out in
    contiguous blocks, so every sequence meets the same batch neighbours as in one process
    and the per-sequence values are the same forwards, not merely close.

    >>> batch_ranges(7, 2, rank=1, world=2)
    [(4, 6), (6, 7)]
    """
    starts = list(range(0, n, batch_size))
    return [(starts[i], min(starts[i] + batch_size, n)) for i in shard_range(len(starts), rank, world)]


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def check_same_arguments(what: str, arguments: dict[str, Any]) -> None:
    """Refuse to go on when the ranks were called with different arguments.

    ``arguments`` maps names to short descriptions or digests (e.g. a token digest from
    :func:`tl_wavelet.state.tensor_digest`); one ``all_gather`` of these few strings.
    Raises ValueError on every rank, naming the arguments and ranks that differ.
    """
    if not is_distributed():
        return
    mine = {k: repr(v) for k, v in arguments.items()}
    every = all_gather_objects(mine)
    diff = []
    for k in sorted(set().union(*every)):
        vals = [a.get(k, "<missing>") for a in every]
        if len(set(vals)) > 1:
            diff.append(f"{k}: " + ", ".join(f"rank {r} {v}" for r, v in enumerate(vals)))
    if diff:
        raise ValueError(
            f"{what} was called with different arguments on different ranks; every rank must pass the same "
            "tokens and options (load the same data on every rank, shard nothing by hand):\n  " + "\n  ".join(diff)
        )


def run_collectively(fn: Callable[[], T], what: str) -> list[T]:
    """Run ``fn()`` on every rank and gather the results in rank order, failing together.

    A rank whose ``fn`` raises still takes part in the status exchange: every rank then
    raises (the failing rank its own exception, the others a :class:`RankError` quoting
    it), so no rank waits in a later collective for a rank that has given up.
    """
    if not is_distributed():
        return [fn()]
    err: BaseException | None = None
    try:
        result, status = fn(), None
    except Exception as e:  # Ctrl-C (KeyboardInterrupt) reaches every rank by itself
        err, result = e, None
        status = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exception(e)[-3:])
    # one exchange carries the status and the result: no rank enters a second collective
    # after another has failed
    every = all_gather_objects((status, result))
    if err is not None:
        raise err
    failed = [(r, s) for r, (s, _) in enumerate(every) if s is not None]
    if failed:
        r, s = failed[0]
        raise RankError(f"{what} failed on rank {r} of {len(every)}: {s.strip()}")
    return [res for _, res in every]


def init_process(backend: str | None = None, timeout_s: float | None = None) -> bool:
    """Initialise the default process group from torchrun's environment, if there is one.

    Returns True when a process group with more than one rank is now initialised. The
    backend is NCCL when CUDA is available, else gloo; ``timeout_s`` (default
    ``TL_WAVELET_DIST_TIMEOUT`` or 1800 s) bounds how long a collective waits for a rank.
    """
    if dist.is_initialized():
        return is_distributed()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    if timeout_s is None:
        timeout_s = float(os.environ.get("TL_WAVELET_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"The distributed timeout must be a positive number of seconds, got {timeout_s!r}.")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return is_distributed()


def split_evenly(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Items ``rank, rank + world, ...``: strided, so costly and cheap items mix on every rank.

    >>> split_evenly(list("abcdefg"), 1, 3)
    ['b', 'e']
    """
    return list(items[rank::world])
