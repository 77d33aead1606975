"""The command line under ``torchrun``: each process joins the run's process group before the
command runs and leaves it afterwards; only rank 0 prints to stdout (every process still reports
its own errors on stderr)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from torch import nn

from ..dist import current, finish, launched, local_device, start


@contextlib.contextmanager
def joined() -> Iterator[None]:
    """Around a command: under torchrun, in the process group (and quiet on stdout but for rank
    0); otherwise nothing happens."""
    if not launched():
        yield
        return
    group = start(local_device())
    try:
        if group.main:
            yield
        else:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                yield
    finally:
        finish()


def placed(model: nn.Module) -> nn.Module:
    """``model`` on this process's device: its own GPU under torchrun, the first GPU in a plain
    process, where CUDA is available; else the CPU."""
    return model.to(local_device())


def description() -> str | None:
    """``world_size=2 backend=gloo`` under torchrun, else None."""
    return current().describe() if launched() else None
