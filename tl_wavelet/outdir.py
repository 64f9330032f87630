"""The output folder of one CLI run: checked, claimed, and replaced in one step or not at all.

Every ``tl-wavelet`` command that writes into ``--out`` goes through :func:`claim` before
any model is loaded, so a folder it cannot use is refused in seconds, not after the run:

- **writable**: the folder (and any missing parents) is created and a lock file written in
  it; a path under a file, a read-only or immutable folder is one clear error.
- **claimed**: the lock file ``.tl-wavelet.lock`` is held with ``flock`` for the whole
  run and names the holder (pid, host, command). A second run into the same folder is
  refused while the first one lives; the kernel drops the lock when its process ends,
  however it ends, so a crashed or killed run never leaves the folder stuck.
- **replaced as a whole** (``--force`` into an occupied folder): the run writes into a
  staging folder beside ``--out``; :meth:`OutDir.commit` carries the user's own files
  (those no run of this command writes) over and then exchanges the two folders in one
  ``renameat2(RENAME_EXCHANGE)`` (two renames where that is unsupported). At every moment
  one complete report sits under ``--out`` or its backup; if the exchange fails, the
  earlier report is as it was and the new one stays complete in the staging folder,
  which the error names. An unfinished staging folder (error, Ctrl-C) is removed.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["LOCK", "OutDir", "OutError", "SwapError", "claim"]

LOCK = ".tl-wavelet.lock"
# names of the folders beside --out: staging of a --force run, and the old folder in a fallback swap
_STAGING, _BACKUP = "tl-wavelet-new-", "tl-wavelet-old-"


class OutError(Exception):
    """--out cannot be used (a usage error: the CLI exits 2); nothing was changed."""


class SwapError(Exception):
    """A finished --force run could not be put in place; both reports are complete and named."""


# ------------------------------------------------------------------ the lock
class _Lock:
    """An ``flock`` held on ``path`` for as long as this object lives (the kernel drops it on exit)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def take(cls, path: Path, command: str) -> "_Lock":
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            _flock_or_pid_check(path, fd)
            # the previous holder may have removed the file after we opened it: hold the live one
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": command}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        return cls(path, fd)

    def release(self) -> None:
        if self.fd < 0:
            return
        try:  # remove the file only if it is still ours (a swap may have moved it)
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1


def _flock_or_pid_check(path: Path, fd: int) -> None:
    """Hold ``flock`` on ``fd``, or raise _Busy with the holder; where there is no flock, check the pid."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: the pid check stands in
        _refuse_if_alive(path, fd)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _Busy(_holder(path)) from None
    except OSError as e:  # a filesystem without flock: the pid check stands in
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            os.close(fd)
            raise
        _refuse_if_alive(path, fd)


class _Busy(Exception):
    def __init__(self, holder: dict) -> None:
        self.holder = holder


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _refuse_if_alive(path: Path, fd: int) -> None:
    """Without flock: refuse a lock whose holder runs on this host; a dead pid is stale."""
    h = _holder(path)
    if h.get("host") == socket.gethostname() and isinstance(h.get("pid"), int) and h["pid"] != os.getpid():
        try:
            os.kill(h["pid"], 0)
        except ProcessLookupError:
            return
        except PermissionError:  # alive, owned by someone else
            pass
        os.close(fd)
        raise _Busy(h)


def _busy_message(out: Path, h: dict) -> str:
    who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
    cmd = f": {h['command']}" if h.get("command") else ""
    return (f"--out {str(out)!r} is in use by another tl-wavelet run ({who}{cmd}). Wait for it to finish, "
            "or choose another --out.")


# ------------------------------------------------------------------ the folder
class OutDir:
    """``--out`` held by this run. ``work`` is where it writes: ``final``, or a staging folder."""

    def __init__(self, final: Path, created: list[Path], lock: _Lock, command: str) -> None:
        self.final, self.work, self.command = final, final, command
        self._created, self._locks = created, [lock]
        self._complete = False
        self.leftovers: list[Path] = []

    @property
    def staged(self) -> bool:
        return self.work != self.final

    @property
    def complete(self) -> bool:
        """Whether the run's files in ``work`` are to be kept (finished, or :meth:`keep` called)."""
        return self._complete

    def keep(self) -> None:
        """Keep ``work`` on release although the run did not finish (e.g. logs of finished sub-runs)."""
        self._complete = True

    def _stage(self, ours: Callable[[str], bool]) -> None:
        """--force into an occupied folder: write beside it, in a folder only this run knows."""
        if Path.cwd() == self.final or self.final in Path.cwd().parents:
            raise OutError(f"--force replaces the folder {str(self.final)!r} as a whole, and this shell is inside it: "
                           "run from another folder, or choose a new --out.")
        if os.path.ismount(self.final):
            raise OutError(f"--force replaces --out {str(self.final)!r} as a whole, but it is a mount point: "
                           "choose a folder inside it as --out.")
        try:
            self.work = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.{_STAGING}", dir=self.final.parent))
        except OSError as e:
            raise OutError(
                f"--force writes the new report beside --out, in {str(self.final.parent)!r}, which is not writable "
                f"({e.strerror}): choose a new --out instead, or make that folder writable."
            ) from None
        self._locks.append(_Lock.take(self.work / LOCK, self.command))
        self._ours = ours

    def commit(self) -> Path | None:
        """Put a finished staged run in place of ``final``; returns a backup left behind, or None.

        Raises :class:`SwapError` when the swap cannot be made: the earlier report is then
        unchanged and the new one complete in ``work``, never deleted.
        """
        self._complete = True
        if not self.staged:
            return None
        carried = self._carry()
        try:
            backup = _exchange(self.final, self.work)
        except BaseException as e:  # Ctrl-C included: the user's files go back where they were
            self._uncarry(carried)
            if not isinstance(e, OSError):
                raise
            raise SwapError(
                f"the new report could not be put in place of {str(self.final)!r} ({e.strerror}): the earlier report "
                f"there is unchanged, and the new one is complete in {str(self.work)!r}; move its files over yourself."
            ) from None
        # the locks moved with their folders: the staging one now guards --out
        self._locks[0].path, self._locks[1].path = backup / LOCK, self.final / LOCK
        self.work = self.final
        self._locks[0].release()
        try:
            shutil.rmtree(backup)
        except OSError:
            return backup
        return None

    def _carry(self) -> list[str]:
        """Move the user's own entries of ``final`` into ``work`` (undone on failure); their names."""
        moved: list[str] = []
        entry = None
        try:
            for entry in sorted(self.final.iterdir()):
                if entry.name == LOCK or self._ours(entry.name) or (self.work / entry.name).exists():
                    continue
                os.rename(entry, self.work / entry.name)
                moved.append(entry.name)
        except BaseException as e:  # Ctrl-C included: undo, so the earlier folder is whole again
            self._uncarry(moved)
            if not isinstance(e, OSError):
                raise
            raise SwapError(
                f"{str(entry)!r} (not a report file) could not be carried into the new report's folder "
                f"({e.strerror}): the earlier report in {str(self.final)!r} is unchanged, and the new one is "
                f"complete in {str(self.work)!r}; move its files over yourself."
            ) from None
        return moved

    def _uncarry(self, names: list[str]) -> None:
        for name in names:
            os.rename(self.work / name, self.final / name)

    def release(self) -> None:
        """Unlock; drop an unfinished staging folder and the folders this claim created, if empty."""
        if self.staged and not self._complete:
            shutil.rmtree(self.work, ignore_errors=True)  # incomplete: the earlier report is the only one
        for lock in reversed(self._locks):
            lock.release()
        for d in reversed(self._created):
            try:
                d.rmdir()  # only if empty: a failed run leaves no folder behind, a resumable one keeps its checkpoint
            except OSError:
                break


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]


# ------------------------------------------------------------------ the swap
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux >= 3.15); False where the system lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # e.g. NFS: no atomic exchange
        return False
    raise OSError(err, os.strerror(err), str(a))


def _exchange(final: Path, staging: Path) -> Path:
    """``staging`` becomes ``final``; returns where the old ``final`` now is."""
    if _renameat2_exchange(final, staging):
        return staging
    return _swap_by_renames(final, staging)


def _swap_by_renames(final: Path, staging: Path) -> Path:
    """The exchange in two renames, where the system has no atomic one (e.g. NFS); undone if the second fails."""
    backup = final.parent / f".{final.name}.{_BACKUP}{os.getpid()}-{time.time_ns()}"
    os.rename(final, backup)  # from here the old report is complete at backup ...
    try:
        os.rename(staging, final)  # ... and from here the new one at final
    except OSError:
        os.rename(backup, final)
        raise
    return backup


# ------------------------------------------------------------------ claiming
def _create(final: Path) -> list[Path]:
    """Create ``final`` and its missing parents; the folders this call made, outermost first."""
    missing = []
    p = final
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise OutError(f"--out {str(final)!r} cannot be created: {str(p)!r} is a file, not a folder. "
                       "Choose a folder path.")
    made: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # another process made it first: not ours to remove
            continue
        except OSError as e:
            _remove_created(made)
            raise OutError(f"--out {str(final)!r} cannot be created ({e.strerror}: {str(d)!r}): "
                           "choose a folder you can write to.") from None
        made.append(d)
    return made


def _leftovers(final: Path) -> list[Path]:
    """Staging or backup folders of earlier --force runs of ``final`` that no run holds."""
    out = []
    for p in final.parent.glob(f".{final.name}.tl-wavelet-*"):
        if p.is_dir() and (p.name.startswith(f".{final.name}.{_STAGING}") or p.name.startswith(f".{final.name}.{_BACKUP}")):
            try:
                _Lock.take(p / LOCK, "probe").release()
            except (_Busy, OSError):
                continue  # a live run's staging folder
            out.append(p)
    return out


def claim(out: str | os.PathLike, *, force: bool, ours: Callable[[str], bool], resume_file: str | None = None,
          resume: bool = False, in_place: bool = False, command: str | None = None) -> OutDir:
    """Check, create and lock ``--out`` for one run; with ``force`` into an occupied folder, stage.

    ``ours(name)``: whether an entry of ``--out`` is one this command writes (replaced by a
    --force run; every other entry is the user's and is kept). ``resume_file``: the file an
    interrupted run leaves (None when the command cannot resume); with ``resume`` (``--resume``)
    its presence means "continue in place".
    ``in_place``: the run works on what the folder holds (e.g. rebuilds a report from its
    logs): the folder must exist and is only locked.
    Raises :class:`OutError` (nothing changed) when the folder cannot be used.
    """
    final = Path(out).expanduser().resolve()  # a symlinked --out: work on the folder it points to
    if final.exists() and not final.is_dir():
        raise OutError(f"--out {str(final)!r} exists and is a file, not a folder: choose a folder path.")
    if in_place and not final.is_dir():
        raise OutError(f"--out {str(final)!r} does not exist: name the folder of an earlier run.")
    created = _create(final)
    command = command or _command()
    try:
        lock = _Lock.take(final / LOCK, command)
    except _Busy as e:
        _remove_created(created)
        raise OutError(_busy_message(final, e.holder)) from None
    except OSError as e:
        _remove_created(created)
        raise OutError(f"--out {str(final)!r} is not writable ({e.strerror}): choose a folder you can write to, "
                       "or change its permissions.") from None
    od = OutDir(final, created, lock, command)
    try:
        od.leftovers = _leftovers(final)
        if not in_place:
            _decide(od, force, ours, resume_file, resume)
    except BaseException:
        od.release()
        raise
    return od


def _remove_created(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            break


def _decide(od: OutDir, force: bool, ours: Callable[[str], bool], resume_file: str | None, resume: bool) -> None:
    """Under the lock: write in place (new, empty, or resuming), or stage a --force run."""
    resumable = resume_file is not None and (od.final / resume_file).exists()
    if resume and resumable:
        return  # resuming in place: the checkpoint and the files written so far stay
    if not any(p.name != LOCK for p in od.final.iterdir()):
        return
    if force:
        od._stage(ours)
        return
    if resume:
        raise OutError(f"--resume: --out {str(od.final)!r} holds no {resume_file} to resume from (and is not empty): "
                       "rerun without --resume into a new folder, or add --force to start over there.")
    if resumable:
        raise OutError(f"--out {str(od.final)!r} holds {resume_file} from an interrupted run: add --resume to "
                       "continue it, or --force to start over there (the files there are replaced only once the new "
                       "run has finished), or choose a new folder.")
    raise OutError(f"--out {str(od.final)!r} exists and is not empty: choose a new folder, or pass --force to write "
                   "into it (earlier report files there are replaced only once the new run has finished).")
