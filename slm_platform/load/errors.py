"""The loader's errors: what ``load_drop`` raises (each names the file or the drop)."""

from __future__ import annotations


class LoadError(Exception):
    """A file could not be loaded at all (unreadable, bad header, malformed CSV). Names the file."""


class ReconciliationError(LoadError):
    """A batch's counts do not add up (read != loaded + unchanged + quarantined): a loader bug, never kept."""


class RefusedFilesError(LoadError):
    """A drop held files that are not canonical: each has a failed batch row; the others were loaded."""
