"""Trained runs behind an HTTP API, with a latent-space explorer in the browser.

``vaekit serve RUN [RUN ...]`` (or, in Python, :func:`build_app` over :class:`ServedRun`
objects, served by any ASGI server) answers ``GET /runs``, ``POST /encode``, ``/decode``,
``/sample``, ``/reconstruct``, ``/interpolate`` and ``/log-likelihood`` with JSON, and serves
the explorer page at ``/`` (plain HTML and JavaScript shipped in ``static/``: no build step, no
network). Modules: :mod:`~vaekit.serve.settings` (limits, request errors),
:mod:`~vaekit.serve.codecs` (JSON, PNG and WAV values to tensors and back),
:mod:`~vaekit.serve.served` (a run as the server holds it), :mod:`~vaekit.serve.schemas`
(request and answer bodies) and :mod:`~vaekit.serve.app` (the routes).

The server needs the ``serve`` extra (FastAPI and uvicorn): ``pip install 'vaekit[serve]'``.
This package sits at the top of vaekit, beside the command line: nothing else imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import (
    SERVE_EXTRA,
    RequestError,
    ServeMissing,
    ServeSettings,
    exposure_warning,
    is_loopback,
    require_serve,
)

__all__ = [
    "SERVE_EXTRA",
    "RequestError",
    "ServeMissing",
    "ServeSettings",
    "ServedRun",
    "build_app",
    "exposure_warning",
    "is_loopback",
    "require_serve",
]


def __getattr__(name: str) -> Any:
    if name == "build_app":
        require_serve()
        from .app import build_app

        return build_app
    if name == "ServedRun":
        from .served import ServedRun

        return ServedRun
    raise AttributeError(f"module 'vaekit.serve' has no attribute {name!r}")


if TYPE_CHECKING:
    from .app import build_app
    from .served import ServedRun
