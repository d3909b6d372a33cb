"""Independent reference implementations, written apart from the warehouse code and used only by the tests
and benchmarks to check its figures."""
