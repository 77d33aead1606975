"""The server as a whole: the token, a busy model that does not hold up /healthz, concurrent
requests that each get their own answer, and ``vaekit serve`` as a process of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

from vaekit.serve import ServeSettings, build_app, exposure_warning, is_loopback
from vaekit.serve.server import Background

from .serve_helpers import FIXTURES, Client, run_cli

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def guarded(runs) -> Client:
    """A server of two runs that needs the token."""
    app = build_app([runs["digits"], runs["text"]], ServeSettings(token=TOKEN))
    with Background(app) as background:
        yield Client(background.url)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/runs"), ("GET", "/openapi.json"), ("GET", "/docs"),
     ("GET", "/runs/digits/points"), ("POST", "/decode"), ("POST", "/log-likelihood")],
)  # fmt: skip
def test_every_api_path_needs_the_token(guarded: Client, method: str, path: str) -> None:
    body = {"/decode": {"run": "digits", "z": [[0, 0, 0]]},
            "/log-likelihood": {"run": "digits", "x": [[0] * 64], "k": 2}}.get(path)  # fmt: skip
    for headers, what in [
        ({}, "no Authorization header"),
        ({"Authorization": "Bearer wrong"}, "a wrong token"),
        ({"Authorization": f"Basic {TOKEN}"}, "a wrong token"),
    ]:
        answer = guarded.http.request(method, path, json=body, headers=headers)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json()["field"] == "authorization" and what in answer.json()["error"]
    answer = guarded.http.request(
        method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200, answer.text


def test_the_page_is_public_and_the_api_behind_it_is_not(guarded: Client) -> None:
    """The page and its files hold no data; the runs they show need the token."""
    for path in ("/", "/static/explorer.js", "/static/explorer.css"):
        assert guarded.http.get(path).status_code == 200, path
    assert "Bearer" in guarded.http.get("/static/explorer.js").text
    assert guarded.http.get("/runs").status_code == 401
    authed = Client(guarded.url, token=TOKEN)
    names = [r["name"] for r in authed.get("/runs")["runs"]]
    assert names == ["digits", "text"]


def test_healthz_answers_while_a_model_is_busy(server: Client, runs) -> None:
    """A request waiting for a model (its lock held here) does not hold up /healthz."""
    run = runs["digits"]
    with ThreadPoolExecutor(1) as pool:
        with run.lock:
            pending = pool.submit(server.post, "/decode", {"run": "digits", "z": [[0, 0, 0]]})
            for _ in range(3):
                assert server.get("/healthz")["status"] == "ok"
                assert server.get("/runs")["runs"]  # nor anything else that needs no model
            assert not pending.done()
        assert len(pending.result(timeout=60)["x"]) == 1


def test_concurrent_requests_each_get_their_own_answer(server: Client, runs) -> None:
    """Many clients at once, over two runs: every answer is the one for its own request."""
    torch.manual_seed(5)
    jobs = []
    for i in range(48):
        name = ("digits", "vae")[i % 2]
        width = runs[name].model.config.latent_dim
        jobs.append((name, torch.randn(1 + i % 4, width)))
    expected = []
    for name, z in jobs:
        with torch.no_grad():
            expected.append(runs[name].model.decode(z).mean.numpy())

    def ask(job: tuple[str, torch.Tensor]) -> list:
        name, z = job
        return server.post("/decode", {"run": name, "z": z.tolist()})["x"]

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, jobs))
    for got, want in zip(answers, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_exposure_is_judged_by_the_host() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.8.0.1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("0.0.0.0", "t") is None
    assert "--token" in (exposure_warning("0.0.0.0", None) or "")


# -- the command ---------------------------------------------------------------------------------


def test_vaekit_serve_runs_until_interrupted(trained) -> None:
    """Two runs, a token from the environment, limits from flags; Ctrl-C stops it cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaekit", "serve", str(trained.digits), f"words={FIXTURES / 'text'}",
         "--port", "0", "--data", f"words={FIXTURES / 'words.txt'}", "--max-k", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "VAEKIT_SERVE_TOKEN": TOKEN},
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("listening on "):
                break
        url = re.search(r"http://127\.0\.0\.1:\d+", lines[-1]).group(0)
        assert any("serving digits: vae model of image examples, 3 latent dims, 270 dots" in ln
                   for ln in lines), lines  # fmt: skip
        assert httpx.get(url + "/runs").status_code == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
            names = [r["name"] for r in http.get("/runs").json()["runs"]]
            assert names == ["digits", "words"]
            answer = http.post("/log-likelihood", json={"run": "words", "texts": ["horse"],
                                                         "k": 21})  # fmt: skip
            assert answer.status_code == 422 and answer.json()["field"] == "k"
            words = http.post("/log-likelihood", json={"run": "words", "texts": ["horse"]})
            assert words.status_code == 422  # the default k=100 is above --max-k 20
            assert http.get("/runs/words/points").json()["z"]  # dots from --data
            assert http.get("/").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "vaekit serve: stopped" in out and "Traceback" not in err


def test_vaekit_serve_warns_of_a_public_host_and_names_a_bad_one(trained, capsys) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the warning, then one line
    code, _, err = run_cli(capsys, "serve", trained.digits, "--host", "192.0.2.1", "--port", "0")
    assert code == 2
    assert "no authentication" in err and "--token" in err
    assert "vaekit: error: cannot listen on 192.0.2.1:0" in err and "Traceback" not in err
    assert err.count("\n") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere"], "run folder 'nowhere' does not exist"),
        (["a="], "give a folder or NAME=FOLDER"),
        (["{d}", "{d}"], "two runs are named 'digits'"),
        (["{d}", "--max-batch", "0"], "--max-batch"),
        (["{d}", "--token", " x"], "token must be a non-empty string"),
        (["{d}", "--data", "other=x.csv", "{t}"], "NAME one of"),
        (["{d}", "--port", "70000"], "--port"),
    ],
)
def test_vaekit_serve_refuses_bad_arguments_in_one_line(trained, capsys, args, message) -> None:
    text = str(FIXTURES / "text")
    args = [a.format(d=trained.digits, t=text) for a in args]
    code, out, err = run_cli(capsys, "serve", *args)
    assert code == 2, (out, err)
    assert message in err and err.startswith("vaekit: error: ") and err.count("\n") == 1, err


def test_a_missing_extra_is_named(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without FastAPI the command says which extra to install."""
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi fails
    code, _, err = run_cli(capsys, "serve", FIXTURES / "vae")
    assert code == 2
    assert err.strip() == (
        "vaekit: error: vaekit serve needs FastAPI and uvicorn: pip install 'vaekit[serve]'"
    )


def test_threads_do_not_share_the_global_generator_while_sampling(server: Client) -> None:
    """Seeded samples from two runs at once equal those drawn one at a time."""
    alone = [server.post("/sample", {"run": name, "n": 8, "seed": 9})["z"]
             for name in ("digits", "vae")]  # fmt: skip
    barrier = threading.Barrier(8)

    def draw(i: int) -> list:
        barrier.wait()
        return server.post("/sample", {"run": ("digits", "vae")[i % 2], "n": 8, "seed": 9})["z"]

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(draw, range(8)))
    for i, z in enumerate(together):
        assert z == alone[i % 2]
