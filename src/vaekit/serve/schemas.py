"""The JSON bodies of the server's requests and answers (pydantic models; /openapi.json is made
from them). Unknown fields are refused, so a misspelt one is named rather than ignored.

Examples go in as exactly one of ``x`` (numbers, (N, *data_shape) or flat (N, D); token ids for
a text run), ``png`` (base64 PNG files, image runs), ``wav`` (base64 WAV files, sound runs) or
``texts`` (strings, text runs). Numbers are checked by :mod:`vaekit.serve.codecs`, not here, so
that a message can say which value is wrong and why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: How decoded examples come back: numbers, PNG files (image runs) or WAV files (sound runs).
Format = Literal["array", "png", "wav"]

RUN = Field(None, description="The run to use, as GET /runs names it (may be left out when one "
            "run is served).")  # fmt: skip
LABELS = Field(
    None,
    description="Conditional runs: one class label for every example, or one per example.",
)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    run: str | None = RUN


class Examples(Request):
    x: list[Any] | None = Field(
        None, description="Examples as numbers, (N, *data_shape) or (N, D); token ids for text."
    )
    png: list[str] | None = Field(None, description="Images as base64 PNG files.")
    wav: list[str] | None = Field(None, description="Sound as base64 WAV files.")
    texts: list[str] | None = Field(None, description="Strings (text runs).")
    labels: int | list[int] | None = LABELS


class EncodeRequest(Examples):
    pass


class DecodeRequest(Request):
    z: list[Any] | None = Field(None, description="Latents (N, latent_dim).")
    codes: list[Any] | None = Field(
        None, description="Categorical runs: each latent's value (N, n_latents)."
    )
    labels: int | list[int] | None = LABELS
    format: Format = "array"


class SampleRequest(Request):
    n: int = Field(16, description="How many draws.")
    seed: int = Field(0, description="Random seed: the same seed gives the same draws.")
    label: int | None = Field(None, description="Conditional runs: the class to draw.")
    temperature: float | None = Field(
        None, description="Scales z ~ N(0, I) (runs with a standard normal prior)."
    )
    format: Format = "array"


class ReconstructRequest(Examples):
    format: Format = "array"


class InterpolateRequest(Examples):
    z: list[Any] | None = Field(None, description="The two ends as latents (2, latent_dim).")
    steps: int = Field(8, description="Points on the line, ends included (2 or more).")
    format: Format = "array"


class LogLikelihoodRequest(Examples):
    k: int = Field(100, description="Importance samples per example.")
    seed: int = Field(0, description="Random seed of the samples.")


class Error(BaseModel):
    error: str = Field(description="What is wrong, in one line.")
    field: str | None = Field(None, description="The field of the request at fault.")
    error_id: str | None = Field(None, description="500 only: the id of the server's log entry.")


class Decoded(BaseModel):
    """Decoded examples: numbers (``x``), and per ``format`` PNG or WAV files; strings for a
    text run."""

    run: str
    x: list[Any] | None = Field(None, description="E[x|z] (N, *data_shape).")
    png: list[str] | None = None
    wav: list[str] | None = None
    texts: list[str] | None = None
    z: list[Any] | None = Field(None, description="The latents decoded.")


class Encoded(BaseModel):
    run: str
    mean: list[Any] | None = Field(None, description="E[z|x] (N, latent_dim).")
    logvar: list[Any] | None = Field(None, description="log Var[z|x] (N, latent_dim).")
    probs: list[Any] | None = Field(
        None, description="Categorical latents: q(z_l = c | x) (N, n_latents, n_categories)."
    )
    source: list[int] | None = Field(None, description="WAV input: the file of each clip.")


class LogLikelihood(BaseModel):
    run: str
    log_likelihood: list[float] = Field(description="log p(x) in nats per example.")
    k: int
    exact: list[float] | None = Field(None, description="Exact log p(x), where enumerable.")
    bits_per_dim: list[float] | None = None
    source: list[int] | None = None


class Health(BaseModel):
    status: str
    runs: int
