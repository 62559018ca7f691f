"""Linear-algebra kernels on blocked matrices."""
