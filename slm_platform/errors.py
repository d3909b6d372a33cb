"""Errors the CLI turns into a message that says what to do, not a traceback."""


class StackError(RuntimeError):
    """A problem with the local stack that the operator can fix (message says how)."""
