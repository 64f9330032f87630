"""tl_wavelet.outdir on a real filesystem: the lock, the staging folder and both swaps.

The CLI's use of it (real processes) is in tests/test_issue24.py; these call the module
directly. Locks are real ``flock`` locks: two claims in one process conflict as two
processes do (a flock belongs to an open file description, not to a process).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tl_wavelet.outdir import LOCK, OutError, SwapError, _swap_by_renames, claim


def _ours(name: str) -> bool:
    return name.startswith("report")


def _report(d: Path, tag: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "report.html").write_text(tag)
    (d / "report.csv").write_text(tag)


def test_claim_creates_locks_and_releases(tmp_path):
    out = tmp_path / "a" / "b"
    od = claim(out, force=False, ours=_ours, command="test")
    assert od.final == out.resolve() and od.work == od.final and not od.staged
    holder = json.loads((out / LOCK).read_text())
    assert holder["pid"] == os.getpid() and holder["command"] == "test"
    with pytest.raises(OutError, match=f"in use by another tl-wavelet run \\(pid {os.getpid()}"):
        claim(out, force=True, ours=_ours)
    od.release()
    assert not (tmp_path / "a").exists()  # a claim that wrote nothing leaves no folder behind
    od = claim(out, force=False, ours=_ours)
    (out / "kept.txt").write_text("x")
    od.release()
    assert sorted(p.name for p in out.iterdir()) == ["kept.txt"]


def test_a_stale_lock_file_is_taken_over(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": 999_999_999, "host": "elsewhere"}))  # left by a killed run
    od = claim(out, force=False, ours=_ours)  # the lock file alone does not make the folder occupied
    assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    od.release()


def test_force_stages_beside_and_swaps_in_one_step(tmp_path):
    out = tmp_path / "o"
    _report(out, "old")
    (out / "mine.txt").write_text("user")
    (out / "sub").mkdir()
    with pytest.raises(OutError, match="not empty"):
        claim(out, force=False, ours=_ours)
    od = claim(out, force=True, ours=_ours)
    assert od.staged and od.work.parent == tmp_path and od.work.name.startswith(".o.tl-wavelet-new-")
    _report(od.work, "new")
    assert (out / "report.html").read_text() == "old"  # untouched until the commit
    assert od.commit() is None
    od.release()
    assert (out / "report.html").read_text() == "new" and (out / "mine.txt").read_text() == "user"
    assert (out / "sub").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_an_unfinished_staging_folder_is_dropped_and_the_earlier_report_kept(tmp_path):
    out = tmp_path / "o"
    _report(out, "old")
    od = claim(out, force=True, ours=_ours)
    _report(od.work, "half")
    od.release()  # no commit: an error or Ctrl-C
    assert (out / "report.html").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_two_rename_fallback_swaps_and_undoes(tmp_path):
    final, staging = tmp_path / "o", tmp_path / ".o.new"
    _report(final, "old")
    _report(staging, "new")
    backup = _swap_by_renames(final, staging)
    assert (final / "report.html").read_text() == "new" and (backup / "report.html").read_text() == "old"
    assert not staging.exists()
    if shutil.which("chattr") is None:
        pytest.skip("chattr not installed: cannot make the second rename fail")
    _report(staging, "newer")
    if subprocess.run(["chattr", "+i", str(staging)], capture_output=True).returncode != 0:
        pytest.skip("the immutable flag cannot be set here")
    try:  # an immutable folder cannot be renamed: the second rename fails, the first is undone
        with pytest.raises(OSError):
            _swap_by_renames(final, staging)
        assert (final / "report.html").read_text() == "new" and (staging / "report.html").read_text() == "newer"
        assert sorted(p.name for p in tmp_path.iterdir() if "old" in p.name) == [backup.name]
    finally:
        subprocess.run(["chattr", "-R", "-i", str(tmp_path)], capture_output=True)


def test_leftover_staging_folders_are_named(tmp_path):
    out = tmp_path / "o"
    _report(out, "old")
    left = tmp_path / ".o.tl-wavelet-new-abc123"
    _report(left, "from a killed --force run")
    od = claim(out, force=True, ours=_ours)
    assert od.leftovers == [left]  # named for the user, never deleted
    od.release()
    assert left.is_dir()


def test_swap_error_keeps_both(tmp_path):
    out = tmp_path / "o"
    _report(out, "old")
    (out / "mine.txt").write_text("user")
    od = claim(out, force=True, ours=_ours)
    _report(od.work, "new")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(out / "mine.txt")],
                                                        capture_output=True).returncode != 0:
        od.release()
        pytest.skip("the immutable flag cannot be set here")
    try:
        with pytest.raises(SwapError, match="unchanged"):
            od.commit()
        od.release()
        assert (out / "report.html").read_text() == "old" and (out / "mine.txt").read_text() == "user"
        assert (od.work / "report.html").read_text() == "new"  # kept, not deleted
    finally:
        subprocess.run(["chattr", "-R", "-i", str(tmp_path)], capture_output=True)


def test_in_place_needs_the_folder(tmp_path):
    with pytest.raises(OutError, match="does not exist"):
        claim(tmp_path / "none", force=False, ours=_ours, in_place=True)
    _report(tmp_path / "o", "x")
    od = claim(tmp_path / "o", force=False, ours=_ours, in_place=True)  # occupied: fine in place
    assert not od.staged
    od.release()


def test_a_checkpoint_left_by_an_interrupted_run_points_to_resume(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"state")
    with pytest.raises(OutError, match="holds checkpoint.pt from an interrupted run: add --resume"):
        claim(out, force=False, ours=_ours, resume_file="checkpoint.pt")
    od = claim(out, force=False, ours=_ours, resume_file="checkpoint.pt", resume=True)  # continues in place
    assert not od.staged
    od.release()
    (out / "checkpoint.pt").unlink()
    (out / "report.html").write_text("x")
    with pytest.raises(OutError, match="--resume: .* holds no checkpoint.pt to resume from"):
        claim(out, force=False, ours=_ours, resume_file="checkpoint.pt", resume=True)
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
