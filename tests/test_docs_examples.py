"""The Python examples in docs/mixed.md run as written (from the repository root)."""
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).parent.parent


def test_mixed_page_examples_run():
    text = (ROOT / "docs" / "mixed.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for block in blocks:
            exec(compile(block, "docs/mixed.md", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
    assert abs(namespace["res"].nobs - namespace["pig_w"].w.sum()) == 0
