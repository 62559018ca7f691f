"""examples/pig.ipynb runs from start to end in a fresh kernel (nbclient; no network).

Checked against outside references: Stata's printed log likelihood for the pig
model, and the ICC of R's reference computation
(tests/references/postestimation/lme4_refs.json).
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = pathlib.Path(__file__).parent.parent
ICC = json.loads((ROOT / "tests" / "references" / "postestimation" / "lme4_refs.json").read_text())["pig_ri_ml"]["icc"]


def text_of(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.fixture(scope="module")
def executed():
    nb = nbformat.read(ROOT / "examples" / "pig.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "examples")}})
    client.execute()           # raises CellExecutionError on any error
    return nb


def test_notebook_runs_and_shows_the_analysis(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    outputs = "\n".join(text_of(c) for c in code)
    assert "Log likelihood = -1014.9268" in outputs                 # Stata's printed pig fit
    icc_line = re.search(r"^ +id \|(.*)$", outputs, flags=re.M).group(1).split()
    assert [float(v) for v in icc_line] == pytest.approx([ICC[k] for k in ("icc", "se", "lower", "upper")],
                                                         abs=1e-6)
    assert "Likelihood-ratio test" in outputs and "(Intercept)" in outputs
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 6                                         # the six plots


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(ROOT / "examples" / "pig.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
