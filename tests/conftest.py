import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

from models_for_tests import boot_bridge, tiny_llama_hf, word_tokenizer  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tokenizer():
    return word_tokenizer(97)


@pytest.fixture(scope="session")
def planted_hf():
    return tiny_llama_hf(planted=True)


@pytest.fixture(scope="session")
def planted(planted_hf, tokenizer):
    """TransformerBridge over an HF Llama whose layer-0 heads attend to offsets 1, all, 6, 16."""
    return boot_bridge(planted_hf, tokenizer, "planted-llama")


def _tl_major() -> int:
    from tl_wavelet.models import tl_major_version

    return tl_major_version()


@pytest.fixture(scope="session", params=["bridge", "hooked"])
def planted_any(request, planted_hf, tokenizer, planted):
    """The planted model on each backend this TransformerLens has.

    TL 4.x has only TransformerBridge; TL 3.x has HookedTransformer too (`make test-tl3`).
    """
    if request.param == "bridge":
        return planted
    if _tl_major() >= 4:
        pytest.skip("HookedTransformer needs TransformerLens 3.x; `make test-tl3` runs this case")
    from tl_wavelet.models.load import _hooked_from_hf

    return _hooked_from_hf("planted-llama", planted_hf, tokenizer, "cpu", torch.float32)


@pytest.fixture(scope="session")
def random_model(tokenizer):
    """TransformerBridge over a randomly initialised tiny Llama with grouped-query attention."""
    return boot_bridge(tiny_llama_hf(planted=False, seed=1), tokenizer, "random-llama")


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(0)
    return torch.randint(4, 97, (6, 128), generator=g)
