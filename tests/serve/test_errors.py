"""Bad requests of every class get a 4xx JSON answer naming the field, before any model call;
a model that fails gets a 500 with an error id and no traceback, and the server goes on."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from .serve_helpers import LIMITS, Client

DIGIT = [[0.0] * 64]


def refused(server: Client, path: str, body: object, field: str, words: str, status: int = 422):
    """POST ``body`` (an object as JSON, or bytes as they are) and check the refusal."""
    if isinstance(body, bytes):
        headers = {"Content-Type": "application/json"}
        answer = server.http.post(path, content=body, headers=headers)
    else:
        answer = server.http.post(path, json=body)
    assert answer.status_code == status, answer.text
    out = answer.json()
    assert out["field"] == field, out
    assert words in out["error"], out
    assert "Traceback" not in answer.text
    return out


def png_b64(a: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"{not json", "body", "not valid JSON"),
        (b"", "body", "needs a JSON body"),
        (b"[1, 2]", "body", ""),
        ({"run": "digits", "x": DIGIT, "kk": 1}, "kk", "kk is not a field"),
        ({"run": 3, "x": DIGIT}, "run", "run:"),
        ({"run": "digits"}, "x", "give the examples as x or png"),
        ({"run": "nope", "x": DIGIT}, "run", "no run named 'nope'"),
        ({"x": DIGIT}, "run", "give run: one of"),
        ({"run": "digits", "x": [[0.0] * 63]}, "x", "expects (64,)"),
        ({"run": "digits", "x": [[0.0] * 64, [0.0] * 63]}, "x", "rectangular"),
        ({"run": "digits", "x": [["a"] * 64]}, "x", "must hold numbers, got strings"),
        ({"run": "digits", "x": [[True] * 64]}, "x", "got true/false"),
        ({"run": "digits", "x": [[None] * 64]}, "x", "numbers"),
        ({"run": "digits", "x": []}, "x", "empty"),
        ({"run": "digits", "x": 0.5}, "x", "x:"),
        ({"run": "digits", "x": [[2.0] * 64]}, "x", "bernoulli likelihood needs [0, 1]"),
        ({"run": "digits", "x": [[1e39] * 64]}, "x", "beyond float32's range"),
        ({"run": "digits", "x": [[0.0] * 64] * 65}, "x", "at most 64 a request"),
        ({"run": "digits", "x": DIGIT, "png": ["x"]}, "png", "in one field, not x and png"),
        ({"run": "digits", "texts": ["house"]}, "texts", "does not fit run 'digits'"),
        ({"run": "digits", "wav": ["AAAA"]}, "wav", "does not fit run 'digits'"),
        ({"run": "digits", "png": ["%%%"]}, "png[0]", "not valid base64"),
        (
            {"run": "digits", "png": [base64.b64encode(b"junk").decode()]},
            "png[0]",
            "not a readable",
        ),
        ({"run": "digits", "png": [png_b64(np.zeros((9, 8), np.uint8))]}, "png[0]", "8x9 pixels"),
        ({"run": "digits", "png": [png_b64(np.zeros((8, 8), np.uint8), "JPEG")]}, "png[0]", "PNG"),
        ({"run": "digits", "x": DIGIT, "labels": 3}, "labels", "not conditional"),
        ({"run": "conditional", "x": DIGIT}, "labels", "give labels"),
        ({"run": "conditional", "x": DIGIT, "labels": 10}, "labels", "outside 0..9"),
        ({"run": "conditional", "x": DIGIT * 2, "labels": [1]}, "labels", "1 labels for 2"),
        ({"run": "text", "texts": ["much too long"]}, "texts", "at most 6"),
        ({"run": "text", "x": [[1.5] * 7]}, "x", "whole token ids"),
        ({"run": "text", "x": [[0] * 7]}, "x", "empty row"),
        ({"run": "table", "png": ["x"]}, "png", "does not fit run 'table'"),
        ({"run": "sound", "wav": [base64.b64encode(b"RIFFjunk").decode()]}, "wav[0]", "wav[0]"),
    ],
)
def test_bad_examples(server: Client, body: object, field: str, words: str) -> None:
    refused(server, "/encode", body, field, words)


def test_nan_is_refused(server: Client) -> None:
    text = '{"run": "digits", "x": [[' + ", ".join(["NaN"] * 64) + "]]}"
    refused(server, "/encode", text.encode(), "x", "NaN")


@pytest.mark.parametrize(
    ("path", "body", "field", "words"),
    [
        ("/decode", {"run": "digits"}, "z", "give the latents"),
        ("/decode", {"run": "digits", "z": [[0, 0]]}, "z", "latent_dim is 3"),
        ("/decode", {"run": "digits", "z": [[0, 0, 0]], "format": "wav"}, "format", "sound runs"),
        ("/decode", {"run": "digits", "z": [[0, 0, 0]], "format": "gif"}, "format", "format:"),
        ("/decode", {"run": "table", "z": [[0, 0]], "format": "png"}, "format", "image runs"),
        ("/decode", {"run": "text", "z": [[0, 0]], "format": "png"}, "format", "strings"),
        ("/decode", {"run": "digits", "codes": [[0]]}, "codes", "categorical latents"),
        ("/decode", {"run": "categorical", "codes": [[0, 3]]}, "codes", "0..2"),
        ("/decode", {"run": "categorical", "codes": [[0]]}, "codes", "rows of 2"),
        ("/sample", {"run": "digits", "n": 0}, "n", "at least 1"),
        ("/sample", {"run": "digits", "n": 65}, "n", "limit of 64 (its max_batch"),
        ("/sample", {"run": "digits", "n": "3"}, "n", "valid integer"),
        ("/sample", {"run": "digits", "n": 2.5}, "n", "valid integer"),
        ("/sample", {"run": "digits", "seed": -1}, "seed", "0.."),
        ("/sample", {"run": "digits", "temperature": 0}, "temperature", "above 0"),
        ("/sample", {"run": "hvae", "temperature": 0.5}, "temperature", "N(0, I) prior"),
        ("/sample", {"run": "conditional"}, "label", "give label"),
        ("/sample", {"run": "digits", "label": 1}, "label", "not conditional"),
        ("/interpolate", {"run": "categorical", "x": DIGIT * 2}, "run", "categorical"),
        ("/interpolate", {"run": "digits", "x": DIGIT * 2, "steps": 1}, "steps", "2 or more"),
        ("/interpolate", {"run": "digits", "x": DIGIT * 3}, "x", "exactly 2 ends"),
        ("/interpolate", {"run": "digits", "z": [[0, 0, 0]] * 2, "x": DIGIT}, "z", "not both"),
        (
            "/log-likelihood",
            {"run": "digits", "x": DIGIT, "k": 501},
            "k",
            "limit of 500 (its max_k",
        ),
        ("/log-likelihood", {"run": "digits", "x": DIGIT, "k": 0}, "k", "at least 1"),
        ("/reconstruct", {"run": "digits", "x": DIGIT, "format": "wav"}, "format", "sound"),
    ],
)
def test_bad_requests(server: Client, path: str, body: object, field: str, words: str) -> None:
    refused(server, path, body, field, words)


def test_unknown_paths_and_runs(server: Client) -> None:
    answer = server.http.get("/nothing-here")
    assert answer.status_code == 404 and "error" in answer.json()
    assert server.http.get("/encode").status_code == 405
    out = server.get("/runs/nope/points", status=404)
    assert out["field"] == "run" and "no run named 'nope'" in out["error"]
    out = server.get("/runs/digits/examples/270", status=404)
    assert out["field"] == "index" and "outside 0..269" in out["error"]
    assert server.get("/runs/digits/examples/x", status=422)["field"] == "index"


def test_a_body_over_the_limit_is_refused_whether_declared_or_streamed(server: Client) -> None:
    big = json.dumps({"run": "digits", "x": [[0.5] * 64] * 1000}).encode()
    assert len(big) > LIMITS.max_body_bytes
    refused(server, "/encode", big, "body", "limit of 262144 bytes", status=413)

    def chunks():  # no Content-Length: the server counts what arrives
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    answer = server.http.post(
        "/encode", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["field"] == "body"
    assert server.get("/healthz")["status"] == "ok"


def test_a_failing_model_is_a_500_with_an_error_id_and_the_server_goes_on(
    server: Client, runs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model = runs["table"].model

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a fault deep inside the decoder")

    monkeypatch.setattr(model, "decode", broken)
    answer = server.http.post("/decode", json={"run": "table", "z": [[0.0, 0.0]]})
    assert answer.status_code == 500
    out = answer.json()
    assert out["error_id"] and out["error_id"] in out["error"]
    assert "Traceback" not in answer.text and "deep inside" not in answer.text
    assert any(out["error_id"] in r.getMessage() for r in caplog.records)  # the log has it
    monkeypatch.undo()
    assert server.post("/decode", {"run": "table", "z": [[0.0, 0.0]]})["x"]
    assert server.get("/healthz")["status"] == "ok"


def test_runs_on_disk_are_left_as_they_were(runs) -> None:
    """Serving reads the committed fixture runs; it writes nothing into any run folder."""
    from .serve_helpers import FIXTURES

    for kind in ("vae", "hvae", "categorical", "text"):
        names = sorted(p.name for p in (FIXTURES / kind).iterdir())
        assert names == sorted(
            ["checkpoint.safetensors", "config.json", "metrics.jsonl", "model.safetensors"]
        )
