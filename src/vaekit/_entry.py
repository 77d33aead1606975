"""The ``vaekit`` command's entry point: Ctrl-C while torch and the rest are still being imported
is one line and exit status 130, as it is once the command runs."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("vaekit: interrupted\n")
        raise SystemExit(130) from None
    run()
