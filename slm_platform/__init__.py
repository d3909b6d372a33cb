"""Service-level management platform: shared code for the DAGs, the CLI and the tests."""

__version__ = "0.1.0"
