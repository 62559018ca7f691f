"""Design building: group codes."""
import numpy as np
import pytest


@pytest.mark.parametrize("values", [np.array([12, 3, 3, 7, -2]), np.arange(10**6, 10**6 + 5)[::-1],
                                    np.array([2**62, -2**62, 0]), np.array([5, 1, 2], dtype=np.uint64),
                                    np.array([True, False, True]), np.array([], dtype=int),
                                    np.array([7, 3, 7], dtype=np.int8)])
def test_integer_group_codes_equal_numpy_unique(values):
    from multilevel.design.random import _integer_codes

    uniques, codes = _integer_codes(values)
    ref_uniques, ref_codes = np.unique(values, return_inverse=True)
    assert uniques.dtype == ref_uniques.dtype
    np.testing.assert_array_equal(uniques, ref_uniques)
    np.testing.assert_array_equal(codes, ref_codes)
