"""R's ``^`` inside ``I()`` is a power (Python's ``^`` is exclusive or)."""
import numpy as np

import multilevel as ml

from .conftest import load_data


def test_power_inside_I_is_a_power():
    o = load_data("orthodont.csv")
    a = ml.mixed("distance ~ age + I(age^2) + (1 | subject)", data=o)
    b = ml.mixed("distance ~ age + age2 + (1 | subject)", data=o.assign(age2=o.age ** 2))
    np.testing.assert_array_equal(a.design.X, b.design.X)
    assert a.loglik == b.loglik
