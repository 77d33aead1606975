"""Typed errors. Each message is one line that names the offending value and what to do.

The command line turns any :class:`VaekitError` into that line on stderr and exit status 2.
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class of every error vaekit raises on bad input."""


class ConfigError(VaekitError, ValueError):
    """A setting is unknown, of the wrong type, or out of range."""


class DataError(VaekitError, ValueError):
    """Data is missing, unreadable, empty, non-finite, or outside the likelihood's support."""


class CheckpointError(VaekitError):
    """A run folder or checkpoint is missing, corrupt, or from a newer format."""
