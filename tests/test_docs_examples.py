"""The Python examples in docs/mixed.md run as written (from the repository root)."""
from tests.docs_pages import fenced, run_page


def test_mixed_page_examples_run():
    assert len(fenced("mixed.md", "python")) >= 5
    namespace = run_page("mixed.md")
    assert abs(namespace["res"].nobs - namespace["pig_w"].w.sum()) == 0
