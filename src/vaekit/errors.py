"""Typed errors. Each message is one line that names the offending value and what to do.

What to do is said in the library's terms: settings by their names (``image_size``,
``fast="off"``) and, where the fix is an action on a run folder, a :class:`Remedy` that a front end
words its own way. The command line turns any :class:`VaekitError` into one line on stderr and exit
status 2, with setting names as its flags and remedies as commands to type.
"""

from __future__ import annotations

from typing import NamedTuple


class Remedy(NamedTuple):
    """An action on a run folder that fixes an error: ``action`` is one of :data:`REMEDIES`."""

    action: str
    run: str


#: How the library words each remedy ({run}: the run folder).
REMEDIES = {
    "resume": "continue it with vaekit.fit(model, data, out={run!r}, resume=True)",
    "rewrite": "resuming it with vaekit.fit(..., out={run!r}, resume=True) writes it again",
    "restart": "start the run again with vaekit.fit(model, data, out={run!r})",
}


class VaekitError(Exception):
    """Base class of every error vaekit raises on bad input.

    ``remedy``: the action that fixes it, when it is one on a run folder; ``str(err)`` is the
    message followed by the remedy in the library's words, ``err.message`` the message alone.
    """

    def __init__(self, message: str = "", *, remedy: Remedy | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        if self.remedy is None:
            return self.message
        return f"{self.message}; {REMEDIES[self.remedy.action].format(run=self.remedy.run)}"


class ConfigError(VaekitError, ValueError):
    """A setting is unknown, of the wrong type, or out of range."""


class DataError(VaekitError, ValueError):
    """Data is missing, unreadable, empty, non-finite, or outside the likelihood's support."""


class CheckpointError(VaekitError):
    """A run folder or checkpoint is missing, corrupt, or from a newer format."""


class RunBusy(CheckpointError):
    """Another process is writing the run folder (see :mod:`vaekit.lock`)."""
