"""Stata's %w.0g display format, checked against numbers as Stata prints them ([D] format)."""
import pytest

from multilevel.output.stata_fmt import fmt_f, fmt_g


@pytest.mark.parametrize("value,text", [
    (6.2098958, " 6.209896"), (0.0390124, " .0390124"), (19.3556134, " 19.35561"),
    (14.817513, " 14.81751"), (5.0492601, "  5.04926"), (-0.0984378, "-.0984378"),
    (25337.482, " 25337.48"), (0, "        0"), (float("nan"), "        ."),
])
def test_fmt_9g(value, text):
    assert fmt_g(value) == text


def test_fmt_10g_log_likelihood():
    assert fmt_g(-1014.92679, 10) == "-1014.9268"
    assert fmt_g(-296.520876, 10) == "-296.52088"


def test_fmt_f():
    assert fmt_f(159.1792, 9, 2) == "   159.18"
    assert fmt_f(float("nan"), 8, 2) == "       ."
