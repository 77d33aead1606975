"""The HTTP API over served runs, and the explorer page: :func:`build_app`.

Every request is checked before a model is called (its token, its body's size, then each field:
shape, dtype, value range for the likelihood, the batch and K limits of
:class:`~vaekit.serve.settings.ServeSettings`). A bad request is a 4xx answer
``{"error": ..., "field": ...}``; a failure inside a model is a 500 answer with an ``error_id``
that the server's log carries beside the traceback, and the server goes on serving. Model calls
run in a pool of threads, each under its run's lock, so the event loop (``/healthz``) never waits.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__, viz
from ..errors import DataError, VaekitError
from ..media import examples as checked_examples
from .codecs import (
    check_count,
    check_rows,
    check_seed,
    finite_number,
    listed,
    numbers,
    png_examples,
    png_strings,
    wav_examples,
    wav_strings,
)
from .schemas import (
    Decoded,
    DecodeRequest,
    Encoded,
    EncodeRequest,
    Error,
    Examples,
    Format,
    Health,
    InterpolateRequest,
    LogLikelihood,
    LogLikelihoodRequest,
    ReconstructRequest,
    SampleRequest,
)
from .served import ServedRun
from .settings import RequestError, ServeSettings

log = logging.getLogger("vaekit.serve")

#: Paths anyone may fetch without the token: the page and its files (no data in them).
PAGE, PAGE_FILES = "/", "/static/"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (401, 404, 413, 422, 500)
}


def error_body(message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"error": message, "field": field, **extra}


class Guard:
    """ASGI middleware in front of the app: the bearer token (when set) on every path but the
    page's, and the body size limit, on the ``Content-Length`` a request declares and on the
    bytes it streams."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit, seen = self.settings.max_body_bytes, 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, self.too_large())
            return message

        await self.app(scope, counted, send)

    def too_large(self) -> str:
        return (
            f"the request body is over this server's limit of {self.settings.max_body_bytes} "
            "bytes (its max_body_bytes setting); send fewer examples a request"
        )

    def refusal(self, path: str, headers: dict[str, str]) -> JSONResponse | None:
        token = self.settings.token
        public = path == PAGE or path.startswith(PAGE_FILES)
        if token and not public:
            given = headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                value.strip().encode(), token.encode()
            ):
                what = "a wrong token" if given else "no Authorization header"
                return JSONResponse(
                    error_body(f"this server needs Authorization: Bearer <token>; got {what}",
                               "authorization"),
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return JSONResponse(error_body("Content-Length is not a number", "body"), 400)
            if int(length) > self.settings.max_body_bytes:
                return JSONResponse(error_body(self.too_large(), "body"), 413)
        return None


def _field(loc: tuple[Any, ...]) -> str:
    """The request field a validation error's location names: ``x``, ``labels``, ``body``."""
    parts = [p for p in loc if p not in ("body", "path", "query")]
    if not parts or isinstance(parts[0], int):
        return "body"
    return str(parts[0])


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = tuple(first.get("loc", ()))
    field = _field(loc)
    if first.get("type") == "json_invalid":
        message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', '')})"
    elif first.get("type") == "missing" and field == "body":
        message = "the request needs a JSON body"
    elif first.get("type") == "extra_forbidden":
        message = f"{field} is not a field of this request"
    else:
        message = f"{field}: {first.get('msg', 'invalid value')}"
    return JSONResponse(error_body(message, field), status_code=422)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    field = "body" if exc.status_code == 413 else None
    return JSONResponse(error_body(detail, field), exc.status_code, headers=exc.headers)


def internal_error(exc: BaseException) -> JSONResponse:
    """A 500 answer naming an error id that the log carries with the traceback."""
    error_id = secrets.token_hex(6)
    log.error("error %s: %s", error_id, exc, exc_info=exc)
    return JSONResponse(
        error_body(f"the model failed on this request (error id {error_id})", None,
                   error_id=error_id),
        status_code=500,
    )  # fmt: skip


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    return internal_error(exc)


async def answer(work: Callable[[], dict[str, Any]]) -> JSONResponse:
    """``work()`` run in the thread pool, as a JSON answer: a bad request is 4xx, anything else
    that goes wrong a 500 with an error id."""
    try:
        return JSONResponse(await run_in_threadpool(work))
    except RequestError as err:
        return JSONResponse(error_body(err.message, err.field), err.status)
    except VaekitError as err:
        return JSONResponse(error_body(err.message), 422)
    except Exception as exc:
        return internal_error(exc)


class Runs:
    """The served runs by name, and how a request's fields become a model's inputs."""

    def __init__(self, runs: list[ServedRun], settings: ServeSettings) -> None:
        self.by_name = {r.name: r for r in runs}
        self.settings = settings

    def get(self, name: str | None, *, in_path: bool = False) -> ServedRun:
        if name is None:
            if len(self.by_name) == 1:
                return next(iter(self.by_name.values()))
            raise RequestError("run", f"give run: one of {', '.join(self.by_name)}")
        if name not in self.by_name:
            raise RequestError(
                "run",
                f"no run named {name!r}; this server serves {', '.join(self.by_name)}",
                404 if in_path else 422,
            )
        return self.by_name[name]

    def examples(self, run: ServedRun, req: Examples) -> tuple[torch.Tensor, list[int] | None]:
        """The examples of a request (exactly one of x, png, wav, texts), checked."""
        fields = {"x": True, "png": run.image_shape is not None and run.kind is None,
                  "wav": run.kind == "audio", "texts": run.kind == "text"}  # fmt: skip
        given = [f for f in fields if getattr(req, f) is not None]
        usable = " or ".join(f for f, ok in fields.items() if ok)
        if not given:
            raise RequestError("x", f"give the examples as {usable}")
        if len(given) > 1:
            raise RequestError(
                given[1], f"give the examples in one field, not {' and '.join(given)}"
            )
        field = given[0]
        if not fields[field]:
            raise RequestError(
                field, f"{field} does not fit run {run.name!r} ({run.media_name}); give {usable}"
            )
        value, limit = getattr(req, field), self.settings.max_batch
        if field == "x":
            a = torch.from_numpy(numbers(value, "x"))
            check_rows("x", len(a), limit, "examples")
            if run.kind == "text":
                return run.token_ids(a), None
            return self.checked(run, a, "x"), None
        check_rows(field, len(value), limit, "examples")
        if not value:
            raise RequestError(field, f"{field} is empty; give at least one example")
        if field == "texts":
            try:
                return run.model.ids(value, "texts"), None
            except DataError as err:
                raise RequestError("texts", err.message) from None
        if field == "wav":
            x, sources = wav_examples(value, "wav", run.audio)
            check_rows("wav", len(x), limit, "clips")
            return self.checked(run, x, "wav"), sources
        return self.checked(run, png_examples(value, "png", run.image_shape), "png"), None

    @staticmethod
    def checked(run: ServedRun, x: torch.Tensor, field: str) -> torch.Tensor:
        try:
            return checked_examples(run.model, x, field)
        except DataError as err:
            raise RequestError(field, err.message) from None

    def decoded(self, run: ServedRun, x: torch.Tensor, fmt: str) -> dict[str, Any]:
        """Examples (N, *data_shape) as an answer: numbers, PNG or WAV files, or strings."""
        if run.kind == "text":
            if fmt != "array":
                raise RequestError("format", f"a text run answers with strings; drop format={fmt}")
            return {"texts": run.model.texts(x)}
        if fmt == "array":
            return {"x": listed(x)}
        if fmt == "wav":
            if run.kind != "audio":
                raise RequestError("format", f"format=wav is for sound runs; {run.name!r} is not")
            return {"wav": wav_strings(x, run.audio)}
        if run.image_shape is None:
            raise RequestError("format", f"format=png is for image runs; {run.name!r} is not")
        pictures = x.flip(-2) if run.kind == "audio" else x
        value_range = (0.0, 1.0) if run.value_range else None  # else each batch's own range
        images = viz.to_images(pictures, run.image_shape, value_range)
        return {"png": png_strings(images)}


def build_app(runs: list[ServedRun], settings: ServeSettings | None = None) -> ASGIApp:
    """The ASGI application serving ``runs`` (each under its name) with ``settings``' limits.

    Endpoints: ``GET /healthz``, ``GET /runs``, ``GET /runs/{name}/points``,
    ``GET /runs/{name}/examples/{index}``, ``POST /encode``, ``/decode``, ``/sample``,
    ``/reconstruct``, ``/interpolate`` and ``/log-likelihood``; the explorer page at ``/``;
    ``/openapi.json`` and ``/docs``.
    """
    settings = settings or ServeSettings()
    names = [r.name for r in runs]
    if not runs or len(set(names)) != len(names):
        raise ValueError(f"give one or more runs with different names, got {names}")
    app = FastAPI(
        title="vaekit",
        version=__version__,
        description="A trained VAE behind an HTTP API: encode, decode, sample, reconstruct, "
        "interpolate and importance-weighted log p(x) per example.",
        responses=ERRORS,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    served = Runs(runs, settings)
    _pages(app)
    _info_routes(app, served)
    _model_routes(app, served)
    return Guard(app, settings)


def _pages(app: FastAPI) -> None:
    static = resources.files("vaekit.serve") / "static"

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")


def _info_routes(app: FastAPI, served: Runs) -> None:
    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        """Whether the server answers (on the event loop: a busy model does not delay it)."""
        return {"status": "ok", "runs": len(served.by_name)}

    @app.get("/runs")
    async def runs() -> JSONResponse:
        """Every served run: model kind, media, data shape, latent size, likelihood, prior,
        condition size, the explorer's plane and the run's last metrics."""
        return JSONResponse({"runs": [r.describe() for r in served.by_name.values()]})

    @app.get("/runs/{name}/points")
    async def points(name: str) -> JSONResponse:
        """E[z|x] of the run's test examples (the explorer's dots) and their labels."""
        run = _path_run(served, name)
        if isinstance(run, JSONResponse):
            return run
        z = run.points
        labels = None if run.labels is None else run.labels.tolist()
        return JSONResponse({"run": run.name, "z": [] if z is None else listed(z),
                             "labels": labels, "plane": run.plane})  # fmt: skip

    @app.get("/runs/{name}/examples/{index}")
    async def example(name: str, index: int, format: Format = "array") -> JSONResponse:
        """Test example ``index`` of the run: its label, E[z|x], and the example and its
        reconstruction as numbers, PNG or WAV files, or strings (``format``)."""
        run = _path_run(served, name)
        if isinstance(run, JSONResponse):
            return run

        def work() -> dict[str, Any]:
            out = run.example(index)
            return {
                "run": run.name,
                "index": index,
                "label": out["label"],
                "z": listed(out["z"]),
                "example": served.decoded(run, out["x"], format),
                "reconstruction": served.decoded(run, out["reconstruction"], format),
            }

        return await answer(work)


def _path_run(served: Runs, name: str) -> ServedRun | JSONResponse:
    try:
        return served.get(name, in_path=True)
    except RequestError as err:
        return JSONResponse(error_body(err.message, err.field), err.status)


def _model_routes(app: FastAPI, served: Runs) -> None:
    settings = served.settings

    @app.post("/encode", response_model=Encoded)
    async def encode(req: EncodeRequest) -> JSONResponse:
        """q(z|x) of examples: mean and log-variance, or category probabilities."""

        def work() -> dict[str, Any]:
            run = served.get(req.run)
            x, sources = served.examples(run, req)
            out = run.encode(x, run.conditions(req.labels, len(x)))
            return {"run": run.name, **{k: listed(v) for k, v in out.items()},
                    **({"source": sources} if sources else {})}  # fmt: skip

        return await answer(work)

    @app.post("/decode", response_model=Decoded)
    async def decode(req: DecodeRequest) -> JSONResponse:
        """E[x|z] for latents z (categorical runs: z one-hot, or each latent's value as codes)."""

        def work() -> dict[str, Any]:
            run = served.get(req.run)
            if (req.z is None) == (req.codes is None):
                raise RequestError("z", "give the latents as z (or, categorical runs, codes)")
            if req.z is not None:
                z = run.latents(torch.from_numpy(numbers(req.z, "z")))
            else:
                z = run.codes(torch.from_numpy(numbers(req.codes, "codes")))
            check_rows("z" if req.z is not None else "codes", len(z), settings.max_batch)
            x = run.decode(z, run.conditions(req.labels, len(z)))
            return {"run": run.name, **served.decoded(run, x, req.format)}

        return await answer(work)

    @app.post("/sample", response_model=Decoded)
    async def sample(req: SampleRequest) -> JSONResponse:
        """``n`` draws: z ~ p(z) under ``seed`` and E[x|z]."""

        def work() -> dict[str, Any]:
            run = served.get(req.run)
            n = check_count(req.n, "n", settings.max_batch, "max_batch")
            seed = check_seed(req.seed)
            if req.temperature is not None:
                finite_number(req.temperature, "temperature")
            cond = run.conditions(req.label, n, "label")
            out = run.sample(n, seed, cond, req.temperature)
            return {"run": run.name, "z": listed(out["z"]),
                    **served.decoded(run, out["x"], req.format)}  # fmt: skip

        return await answer(work)

    @app.post("/reconstruct", response_model=Decoded)
    async def reconstruct(req: ReconstructRequest) -> JSONResponse:
        """E[x|z] at z = E[z|x] (the most probable z for categorical latents)."""

        def work() -> dict[str, Any]:
            run = served.get(req.run)
            x, _ = served.examples(run, req)
            out = run.reconstruct(x, run.conditions(req.labels, len(x)))
            return {"run": run.name, "z": listed(out["z"]),
                    **served.decoded(run, out["x"], req.format)}  # fmt: skip

        return await answer(work)

    _interpolate_route(app, served)

    @app.post("/log-likelihood", response_model=LogLikelihood)
    async def log_likelihood(req: LogLikelihoodRequest) -> JSONResponse:
        """Importance-weighted log p(x) per example in nats, from k samples (an anomaly score:
        low means unlikely under the model); the exact value too where z can be enumerated."""

        def work() -> dict[str, Any]:
            run = served.get(req.run)
            k = check_count(req.k, "k", settings.max_k, "max_k")
            seed = check_seed(req.seed)
            x, sources = served.examples(run, req)
            cond = run.conditions(req.labels, len(x))
            out = run.log_likelihood(x, k, seed, cond)
            return {"run": run.name, "k": k,
                    **{key: [float(v) for v in value] for key, value in out.items()},
                    **({"source": sources} if sources else {})}  # fmt: skip

        return await answer(work)


def _interpolate_route(app: FastAPI, served: Runs) -> None:
    @app.post("/interpolate", response_model=Decoded)
    async def interpolate(req: InterpolateRequest) -> JSONResponse:
        """E[x|z] at ``steps`` points on the line between two latents: given as z, or the
        means E[z|x] of two examples."""

        def work() -> dict[str, Any]:
            run = served.get(req.run)
            if run.discrete:
                raise RequestError(
                    "run", "interpolate walks a continuous latent space; this run's is categorical"
                )
            steps = check_count(req.steps, "steps", served.settings.max_batch, "max_batch")
            if steps < 2:
                raise RequestError("steps", f"steps must be 2 or more, got {steps}")
            if req.z is not None:
                if any(getattr(req, f) is not None for f in ("x", "png", "wav", "texts")):
                    raise RequestError("z", "give the ends as z or as two examples, not both")
                ends = run.latents(torch.from_numpy(numbers(req.z, "z")))
                field = "z"
            else:
                ends, _ = served.examples(run, req)
                field = next(f for f in ("x", "png", "wav", "texts") if getattr(req, f))
            if len(ends) != 2:
                raise RequestError(field, f"{field} must give exactly 2 ends, got {len(ends)}")
            labels = req.labels
            if isinstance(labels, list) and len(labels) == 2 and labels[0] != labels[1]:
                raise RequestError("labels", "give one label for the whole line")
            label = labels[0] if isinstance(labels, list) else labels
            cond = run.conditions(label, 2)
            if field != "z":
                ends = run.encode_ends(ends, cond)
            out = run.interpolate(ends, steps, None if cond is None else cond[0])
            return {"run": run.name, "z": listed(out["z"]),
                    **served.decoded(run, out["x"], req.format)}  # fmt: skip

        return await answer(work)
