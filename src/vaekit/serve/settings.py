"""The server's limits and its one kind of request error.

A :class:`ServeSettings` holds the limits every request is checked against before a model is
called; a :class:`RequestError` is a bad request, naming the field of the request body (or the
query) at fault and the HTTP status it answers with.
"""

from __future__ import annotations

import importlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from ..config import check_settings, non_negative_int, positive_int
from ..errors import ConfigError, VaekitError

#: Hosts that only this machine can reach.
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


class RequestError(VaekitError):
    """A request the server refuses: ``field`` names what is wrong (a field of the JSON body,
    ``"body"`` for the body as a whole, ``"authorization"`` for the token), ``status`` is the
    HTTP status of the answer (422 unless said otherwise)."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class ServeSettings:
    """Limits of a server; each request is checked against them before any model call.

    max_batch: examples (or latents, draws, interpolation steps) one request may carry.
    max_k: importance samples per example that /log-likelihood may ask for.
    max_body_bytes: bytes of a request body (a larger body is refused with 413, whether it says
    its length or streams). max_points: test-set examples encoded at start for the explorer's
    dots. token: when set, every API request must carry ``Authorization: Bearer <token>``.
    """

    max_batch: int = 256
    max_k: int = 1000
    max_body_bytes: int = 8 * 2**20
    max_points: int = 1000
    token: str | None = None

    def __post_init__(self) -> None:
        check_settings(
            self,
            {
                "max_batch": positive_int,
                "max_k": positive_int,
                "max_body_bytes": positive_int,
                "max_points": non_negative_int,
            },
        )
        if self.token is not None and (not self.token.strip() or self.token != self.token.strip()):
            raise ConfigError(
                f"token must be a non-empty string without spaces at its ends, got {self.token!r}"
            )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning to print when the server listens beyond this machine without a token, else
    None."""
    if is_loopback(host) or token:
        return None
    return (
        f"warning: listening on {host}, reachable from other machines, with no authentication: "
        "anyone who can reach it can use the models; give --token (or VAEKIT_SERVE_TOKEN) to "
        "require Authorization: Bearer <token>"
    )


#: The line that says how to install what the server needs.
SERVE_EXTRA = "vaekit serve needs FastAPI and uvicorn: pip install 'vaekit[serve]'"


class ServeMissing(VaekitError):
    """FastAPI or uvicorn (the ``serve`` extra) is not installed."""


def require_serve() -> Any:
    """The ``uvicorn`` module, after checking that FastAPI imports too; a
    :class:`ServeMissing` saying which extra to install when either is missing."""
    try:
        importlib.import_module("fastapi")
        return importlib.import_module("uvicorn")
    except ImportError:
        raise ServeMissing(SERVE_EXTRA) from None
