"""Running the app on uvicorn: in the foreground (``vaekit serve``) or in a thread of one's own
process (a notebook, a test), on a socket bound first so that port 0 means a free port.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from ..errors import ConfigError
from .settings import require_serve


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: a free port), ready for uvicorn. A host that
    cannot be bound is a :class:`ConfigError` naming it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise ConfigError(
            f"host {host!r} is not a known name or address ({err.strerror})"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {err.strerror or err}; choose another host or port"
        ) from None
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def _server(app: Any, log_level: str) -> Any:
    uvicorn = require_serve()
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)


def run(app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl-C, SIGTERM), then shut down cleanly."""
    _server(app, log_level).run(sockets=[sock])


class Background:
    """``app`` served from a thread of this process on ``host``:``port`` (0: a free port) while
    the ``with`` block runs; ``url`` is where. For notebooks and tests."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        self.sock = listen(host, port)
        self.url = address(self.sock)
        self.server = _server(app, log_level)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Background:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread stopped before it started")
            self.thread.join(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()
