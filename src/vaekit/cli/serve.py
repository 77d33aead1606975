"""``vaekit serve``: trained runs behind an HTTP API, with the latent-space explorer at ``/``."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import click

from ..errors import ConfigError, VaekitError
from .run import Run

#: Megabytes of a request body the server takes by default.
BODY_MB = 8.0


def run_paths(given: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(name, folder) of each RUN argument: ``PATH`` (named after its folder) or ``NAME=PATH``;
    two runs under one name are refused."""
    out: list[tuple[str, Path]] = []
    for text in given:
        if "=" in text and not Path(text).exists():
            name, _, path = text.partition("=")
            if not name.strip() or not path.strip():
                raise ConfigError(f"RUN {text!r}: give a folder or NAME=FOLDER")
        else:
            path = text
            name = Path(text).resolve().name.removesuffix(".safetensors")
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ConfigError(
                f"run name {name!r} has characters other than letters, digits, '-', '_' and '.'; "
                "name it with NAME=FOLDER"
            )
        if name in (n for n, _ in out):
            raise ConfigError(f"two runs are named {name!r}; name them with NAME=FOLDER")
        out.append((name, Path(path)))
    return out


def data_sources(given: tuple[str, ...], names: list[str]) -> dict[str, str]:
    """Run name -> the data set whose test split gives its dots, from ``--data`` values
    ``NAME=DATA`` (or ``DATA`` alone when one run is served)."""
    out: dict[str, str] = {}
    for text in given:
        name, sep, source = text.partition("=")
        if not sep or name not in names:
            if len(names) != 1:
                raise ConfigError(
                    f"--data {text!r}: with several runs give NAME=DATA, NAME one of "
                    f"{', '.join(names)}"
                )
            name, source = names[0], text
        if not source.strip():
            raise ConfigError(f"--data {text!r} names no data set")
        out[name] = source
    return out


def test_points(folder: Path, name: str, points: int, data: str | None) -> tuple[object, object]:
    """The test split (examples, labels) of the run's data set (or of ``data``) for the
    explorer's dots, or (None, None) with a note when it cannot be read (the API works
    without it)."""
    if points == 0:
        return None, None
    try:
        x, labels, _ = Run(folder).split(data, "test")
    except VaekitError as err:
        click.echo(f"note: {name}: no dots in the explorer: {err.message}", err=True)
        return None, None
    return x, labels


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN [RUN ...]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
    help="Port (0: any free port).",
)  # fmt: skip
@click.option(
    "--token",
    envvar="VAEKIT_SERVE_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' on every request but the page's "
    "(also read from $VAEKIT_SERVE_TOKEN).",
)
@click.option(
    "--max-batch", type=click.IntRange(min=1), default=256, show_default=True,
    help="Examples, latents or draws one request may carry.",
)  # fmt: skip
@click.option(
    "--max-k", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Largest K (importance samples) of /log-likelihood.",
)  # fmt: skip
@click.option(
    "--max-body", type=click.FloatRange(min=0, min_open=True), default=BODY_MB,
    show_default=True, help="Largest request body, in MB (2**20 bytes).",
)  # fmt: skip
@click.option(
    "--points", type=click.IntRange(min=0), default=1000, show_default=True,
    help="Test examples encoded at start and drawn as the explorer's dots.",
)  # fmt: skip
@click.option(
    "--data", "data", multiple=True, metavar="[NAME=]DATA",
    help="Data set whose test split gives a run's dots (default: the run's own).",
)  # fmt: skip
@click.option("--device", default="cpu", show_default=True, help="Device of the models.")
def serve(
    runs: tuple[str, ...],
    host: str,
    port: int,
    token: str | None,
    max_batch: int,
    max_k: int,
    max_body: float,
    points: int,
    data: tuple[str, ...],
    device: str,
) -> None:
    """Serve trained runs over HTTP: a JSON API and a latent-space explorer.

    Each RUN is a run folder (served under its folder's name) or NAME=FOLDER. Endpoints:
    GET /runs, POST /encode, /decode, /sample, /reconstruct, /interpolate, /log-likelihood
    (importance-weighted log p(x) per example, an anomaly score), GET /healthz; the
    description at /openapi.json and /docs. Open http://HOST:PORT/ in a browser to drag
    through the latent space. Listens on this machine only unless --host says otherwise; then
    give --token. Needs the serve extra: pip install 'vaekit[serve]'.

    \b
    Example:
      vaekit serve runs/digits
      vaekit serve digits=runs/digits words=runs/words --port 8080 --data words=words.txt
      curl -s localhost:8000/decode -H 'Content-Type: application/json' \\
           -d '{"z": [[0, 0, 0, 0, 0, 0, 0, 0]], "format": "png"}'
    """
    from ..models import read_config
    from ..serve import ServedRun, ServeSettings, build_app, exposure_warning, require_serve
    from ..serve.server import address, listen, run

    require_serve()
    settings = ServeSettings(
        max_batch=max_batch,
        max_k=max_k,
        max_body_bytes=max(1, int(max_body * 2**20)),
        max_points=points,
        token=token,
    )
    named = run_paths(runs)
    sources = data_sources(data, [name for name, _ in named])
    for _, folder in named:  # every RUN a run before anything is loaded or bound
        read_config(folder)
    warning = exposure_warning(host, token)
    if warning:
        click.echo(f"vaekit serve: {warning}", err=True)
    sock = listen(host, port)  # before the models load: a taken port is said at once
    try:
        served = []
        for name, folder in named:
            x, labels = test_points(folder, name, points, sources.get(name))
            served.append(
                ServedRun.open(folder, name, device=device, examples=x, labels=labels,
                               max_points=points)
            )  # fmt: skip
        app = build_app(served, settings)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("vaekit serve: %(message)s"))
        logging.getLogger("vaekit.serve").addHandler(handler)
        for r in served:
            click.echo(f"serving {r.name}: {r.model.kind} model of {r.media_name} examples, "
                       f"{int(r.model.config.latent_dim)} latent dims, "
                       f"{0 if r.points is None else len(r.points)} dots")  # fmt: skip
        url = address(sock)
        click.echo(f"listening on {url}/ (explorer at /, API at {url}/docs); Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn has shut down cleanly by then
            run(app, sock)
        click.echo("vaekit serve: stopped")
    finally:
        sock.close()
