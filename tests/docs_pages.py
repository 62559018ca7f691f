"""Run the Python blocks of a documentation page and read the output it shows."""
from __future__ import annotations

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).parent.parent


def fenced(name: str, language: str) -> list[str]:
    """The fenced blocks of a page in ``language`` (``""``: plain blocks, i.e. printed output)."""
    blocks, current, lang = [], None, ""
    for line in (ROOT / "docs" / name).read_text().splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                if lang == language:
                    blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def run_page(name: str) -> dict:
    """Execute the page's Python blocks in order from the repository root; their namespace."""
    blocks = fenced(name, "python")
    assert blocks, name
    namespace: dict = {}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for block in blocks:
            exec(compile(block, f"docs/{name}", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    return namespace


def shown_outputs(name: str) -> list[str]:
    return fenced(name, "")
