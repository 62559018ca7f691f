"""The Python examples of the documentation site run as written (from the repository root),
and the output they show is what the code prints now.

The numbers in those outputs are checked against Stata and lme4 elsewhere
(tests/test_output.py, tests/test_lme4_summary.py); here the pages are kept
in step with the code.  The site itself is built with ``mkdocs build --strict``
by ``.ci/run``.
"""
from __future__ import annotations

import pytest

from tests.docs_pages import ROOT, run_page, shown_outputs

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

PAGES = ["index.md", "getting-started.md", "stata-users.md", "lme4-users.md", "output.md"]


@pytest.fixture(scope="module")
def getting_started():
    return run_page("getting-started.md")


def test_getting_started_runs_and_shows_current_output(getting_started):
    ns = getting_started
    stata, lme4 = shown_outputs("getting-started.md")
    assert str(ns["res"]) == stata
    assert str(ns["res"].summary(style="lme4")) + "\n" == lme4
    assert len(ns["blups"]) == 48


def test_lme4_page_shows_current_output():
    ns = run_page("lme4-users.md")
    (shown,) = shown_outputs("lme4-users.md")
    assert str(ns["fm1"].summary(style="lme4")) + "\n" == shown


@pytest.mark.parametrize("name", [p for p in PAGES if p not in ("getting-started.md", "lme4-users.md")])
def test_page_examples_run(name):
    run_page(name)


def test_site_navigation_lists_every_page():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if p not in nav] == []
