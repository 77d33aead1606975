"""Every endpoint on a real server, for every kind of run, against the library's own answers."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit
from vaekit.estimators import log_likelihood

from .serve_helpers import LIMITS, Client

KINDS = ["digits", "conditional", "sound", "table", "colour", "vae", "hvae", "categorical", "text"]


def label_field(run) -> dict:
    return {"labels": 3} if run.condition_dim else {}


def some(run, n: int = 3) -> torch.Tensor:
    return run.examples[:n]


def test_healthz_and_runs_describe_every_run(server: Client, runs) -> None:
    assert server.get("/healthz") == {"status": "ok", "runs": len(KINDS)}
    described = {r["name"]: r for r in server.get("/runs")["runs"]}
    assert sorted(described) == sorted(KINDS)
    digits = described["digits"]
    assert digits["model"] == "vae" and digits["media"] == "image"
    assert digits["data_shape"] == [64] and digits["image_shape"] == [1, 8, 8]
    assert digits["latent_dim"] == 3 and digits["likelihood"] == "bernoulli"
    assert digits["value_range"] == [0.0, 1.0] and digits["points"] == 270
    assert digits["metrics"]["last_epoch"]["epoch"] == 150
    plane = digits["plane"]
    kl = plane["kl_per_dim"]
    assert len(plane["dims"]) == 2 and kl[plane["dims"][0]] == max(kl)  # largest KL first
    ranges = zip(plane["low"], plane["centre"], plane["high"], strict=True)
    assert all(lo < c < hi for lo, c, hi in ranges)
    media = {name: d["media"] for name, d in described.items()}
    assert media == {"digits": "image", "conditional": "image", "sound": "audio",
                     "table": "array", "colour": "image", "vae": "image", "hvae": "image",
                     "categorical": "image", "text": "text"}  # fmt: skip
    assert described["colour"]["image_shape"] == [3, 8, 8]
    cat = described["categorical"]
    assert cat["latent"] == "categorical" and (cat["n_latents"], cat["n_categories"]) == (2, 3)
    assert cat["exact_likelihood"] and cat["plane"] is None
    assert described["conditional"]["condition_dim"] == 10
    assert described["sound"]["flip_rows"] and described["text"]["max_length"] == 6


@pytest.mark.parametrize("name", KINDS)
def test_encode_is_the_models_q(server: Client, runs, name: str) -> None:
    run = runs[name]
    x = some(run)
    out = server.post("/encode", {"run": name, "x": x.tolist(), **label_field(run)})
    kw = {"condition": 3} if run.condition_dim else {}
    with torch.no_grad():
        qz_x = run.model.encode(x, **kw)
    if run.discrete:
        expected = qz_x.probs.numpy()
        np.testing.assert_allclose(out["probs"], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.sum(out["probs"], -1), 1, atol=1e-5)
    else:
        np.testing.assert_allclose(out["mean"], qz_x.mean.numpy(), rtol=1e-5, atol=1e-6)
        logvar = np.log(qz_x.variance.numpy())
        np.testing.assert_allclose(out["logvar"], logvar, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", KINDS)
def test_decode_is_the_mean_of_p_x_given_z(server: Client, runs, name: str) -> None:
    run = runs[name]
    torch.manual_seed(1)
    if run.discrete:
        codes = [[0, 2], [1, 1]]
        out = server.post("/decode", {"run": name, "codes": codes})
        z = torch.nn.functional.one_hot(torch.tensor(codes), 3).reshape(2, -1).float()
        z_out = server.post("/decode", {"run": name, "z": z.tolist()})
        assert z_out["x"] == out["x"]
    else:
        z = torch.randn(4, run.model.config.latent_dim)
        out = server.post("/decode", {"run": name, "z": z.tolist(), **label_field(run)})
    kw = {"condition": 3} if run.condition_dim else {}
    with torch.no_grad():
        expected = run.model.decode(z, **kw).mean
    if run.kind == "text":
        assert out["texts"] == run.model.texts(expected)
    else:
        np.testing.assert_allclose(out["x"], expected.numpy(), rtol=1e-5, atol=1e-6)
        assert np.asarray(out["x"]).shape == (len(z), *run.model.config.data_shape)


@pytest.mark.parametrize("name", KINDS)
def test_sample_is_seeded_and_decodes_its_latents(server: Client, runs, name: str) -> None:
    run = runs[name]
    label = {"label": 7} if run.condition_dim else {}
    a = server.post("/sample", {"run": name, "n": 5, "seed": 11, **label})
    b = server.post("/sample", {"run": name, "n": 5, "seed": 11, **label})
    c = server.post("/sample", {"run": name, "n": 5, "seed": 12, **label})
    assert a == b and a["z"] != c["z"]
    key = "texts" if run.kind == "text" else "x"
    decoded = server.post("/decode", {"run": name, "z": a["z"], **({"labels": 7} if label else {})})
    assert decoded[key] == a[key]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        z = run.model.sample_latents(5)
    np.testing.assert_allclose(a["z"], z.numpy(), rtol=1e-6)


def test_temperature_scales_standard_normal_latents(server: Client) -> None:
    one = server.post("/sample", {"run": "digits", "n": 4, "seed": 3})
    cold = server.post("/sample", {"run": "digits", "n": 4, "seed": 3, "temperature": 0.5})
    np.testing.assert_allclose(cold["z"], 0.5 * np.asarray(one["z"]), rtol=1e-6)


@pytest.mark.parametrize("name", KINDS)
def test_reconstruct_decodes_the_posterior_mean(server: Client, runs, name: str) -> None:
    run = runs[name]
    x = some(run, 2)
    out = server.post("/reconstruct", {"run": name, "x": x.tolist(), **label_field(run)})
    kw = {"condition": 3} if run.condition_dim else {}
    with torch.no_grad():
        expected = run.model.reconstruct(x, **kw)
    if run.kind == "text":
        assert out["texts"] == run.model.texts(expected)
    else:
        np.testing.assert_allclose(out["x"], expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [k for k in KINDS if k != "categorical"])
def test_interpolate_walks_the_line_between_two_ends(server: Client, runs, name: str) -> None:
    run = runs[name]
    x = run.examples[:2] if len(run.examples) >= 2 else run.examples[[0, 0]]
    kw = label_field(run)
    out = server.post("/interpolate", {"run": name, "x": x.tolist(), "steps": 5, **kw})
    ends = server.post("/encode", {"run": name, "x": x.tolist(), **kw})["mean"]
    z = np.asarray(out["z"])
    assert z.shape == (5, run.model.config.latent_dim)
    np.testing.assert_allclose(z[0], ends[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z[-1], ends[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z[2], (z[0] + z[-1]) / 2, atol=1e-5)
    by_z = server.post("/interpolate", {"run": name, "z": ends, "steps": 5, **kw})
    by_decode = server.post("/decode", {"run": name, "z": by_z["z"], **kw})
    key = "texts" if run.kind == "text" else "x"
    assert by_z[key] == by_decode[key]


@pytest.mark.parametrize("name", KINDS)
def test_log_likelihood_is_the_libraries_estimate(server: Client, runs, name: str) -> None:
    run = runs[name]
    x = some(run, 3)
    out = server.post(
        "/log-likelihood",
        {"run": name, "x": x.tolist(), "k": 50, "seed": 4, **label_field(run)},
    )
    condition = torch.full((len(x),), 3) if run.condition_dim else None
    expected = log_likelihood(run.model, x, 50, seed=4, condition=condition)
    np.testing.assert_allclose(out["log_likelihood"], expected.numpy(), rtol=1e-6)
    assert out["k"] == 50 and all(v < 0 or run.kind == "audio" for v in out["log_likelihood"])
    if run.discrete:  # a small categorical z: p(x) by enumeration, and the estimate is close
        exact = run.model.log_likelihood_exact(x)
        np.testing.assert_allclose(out["exact"], exact.numpy(), rtol=1e-6)
        assert np.abs(np.subtract(out["exact"], out["log_likelihood"])).max() < 1.0


def test_log_likelihood_ranks_an_outlier_lowest(server: Client, runs) -> None:
    """The anomaly score: a noise image is far less likely than the test digits."""
    run = runs["digits"]
    noise = (torch.rand(1, 64, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    x = torch.cat([run.examples[:5], noise])
    scores = server.post("/log-likelihood", {"run": "digits", "x": x.tolist(), "k": 100})
    assert int(np.argmin(scores["log_likelihood"])) == 5


def png_b64(a: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_images_go_in_and_out_as_png(server: Client, runs) -> None:
    run = runs["digits"]
    pixels = np.round(run.examples[:2].numpy().reshape(2, 8, 8) * 255).astype(np.uint8)
    by_png = server.post("/encode", {"run": "digits", "png": [png_b64(p) for p in pixels]})
    by_x = server.post("/encode", {"run": "digits", "x": (pixels / 255.0).tolist()})
    np.testing.assert_allclose(by_png["mean"], by_x["mean"], rtol=1e-5, atol=1e-6)
    rgb = np.repeat(pixels[0][..., None], 3, axis=-1)  # colour made grey for a grey run
    as_rgb = server.post(
        "/encode", {"run": "digits", "png": ["data:image/png;base64," + png_b64(rgb)]}
    )
    np.testing.assert_allclose(as_rgb["mean"][0], by_png["mean"][0], rtol=1e-5, atol=1e-6)
    out = server.post("/decode", {"run": "digits", "z": [[0, 0, 0], [1, -1, 0]], "format": "png"})
    decoded = server.post("/decode", {"run": "digits", "z": [[0, 0, 0], [1, -1, 0]]})["x"]
    for text, x in zip(out["png"], decoded, strict=True):
        with Image.open(io.BytesIO(base64.b64decode(text))) as img:
            assert img.format == "PNG" and img.size == (8, 8)
            got = np.asarray(img, dtype=np.float64) / 255
        np.testing.assert_allclose(got, np.asarray(x).reshape(8, 8), atol=0.5 / 255 + 1e-6)


def test_colour_images_go_in_and_out_as_rgb_png(server: Client, runs, trained) -> None:
    files = sorted((trained.pictures / "red").glob("*.png"))[:2]
    sent = [base64.b64encode(f.read_bytes()).decode() for f in files]
    by_png = server.post("/encode", {"run": "colour", "png": sent})
    x = np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255 for f in files])
    by_x = server.post("/encode", {"run": "colour", "x": x.transpose(0, 3, 1, 2).tolist()})
    np.testing.assert_allclose(by_png["mean"], by_x["mean"], rtol=1e-5, atol=1e-6)
    grey = np.asarray(Image.open(files[0]).convert("L"))
    as_grey = server.http.post("/encode", json={"run": "colour", "png": [png_b64(grey)]})
    assert as_grey.status_code == 200  # grey made RGB for a colour run
    out = server.post("/sample", {"run": "colour", "n": 2, "format": "png"})
    with Image.open(io.BytesIO(base64.b64decode(out["png"][0]))) as img:
        assert img.mode == "RGB" and img.size == (8, 8)


def test_sound_goes_in_and_out_as_wav(server: Client, runs, trained) -> None:
    from vaekit.data.audio import examples_of, read_wav

    run = runs["sound"]
    files = [base64.b64encode((trained.wavs / f"{i}.wav").read_bytes()).decode() for i in (0, 3)]
    out = server.post("/encode", {"run": "sound", "wav": files})
    clips = torch.cat([examples_of(trained.wavs / f"{i}.wav", run.audio) for i in (0, 3)])
    expected = run.model.encode(clips).mean.detach().numpy()
    np.testing.assert_allclose(out["mean"], expected, rtol=1e-4, atol=1e-5)
    assert out["source"] == [0] * (len(clips) // 2) + [1] * (len(clips) // 2)
    wav = server.post("/sample", {"run": "sound", "n": 2, "seed": 0, "format": "wav"})["wav"]
    assert len(wav) == 2
    path = trained.wavs.parent / "sampled.wav"
    path.write_bytes(base64.b64decode(wav[0]))
    samples, rate = read_wav(path)
    assert rate == 8000 and len(samples) == run.audio.samples and np.abs(samples).max() > 0.01
    png = server.post("/sample", {"run": "sound", "n": 1, "format": "png"})["png"][0]
    with Image.open(io.BytesIO(base64.b64decode(png))) as img:
        assert img.size == (run.audio.frames, run.audio.n_mels)  # a spectrogram picture


def test_text_goes_in_and_out_as_strings(server: Client, runs) -> None:
    run = runs["text"]
    by_text = server.post("/encode", {"run": "text", "texts": ["house", "mouse"]})
    ids = run.model.ids(["house", "mouse"])
    by_ids = server.post("/encode", {"run": "text", "x": ids.tolist()})
    assert by_text == by_ids
    out = server.post("/interpolate", {"run": "text", "texts": ["house", "garden"], "steps": 4})
    assert len(out["texts"]) == 4 and all(isinstance(s, str) for s in out["texts"])
    scores = server.post("/log-likelihood", {"run": "text", "texts": ["hello"], "k": 20})
    assert scores["log_likelihood"][0] < 0


def test_explorer_points_and_examples(server: Client, runs) -> None:
    run = runs["digits"]
    pts = server.get("/runs/digits/points")
    assert len(pts["z"]) == 270 and len(pts["labels"]) == 270
    with torch.no_grad():
        means = run.model.encode(run.examples).mean
    np.testing.assert_allclose(pts["z"], means.numpy(), rtol=1e-5, atol=1e-6)
    assert pts["labels"] == run.labels.tolist()
    ex = server.get("/runs/digits/examples/4")
    assert ex["label"] == int(run.labels[4])
    np.testing.assert_allclose(ex["example"]["x"][0], run.examples[4].numpy(), atol=1e-7)
    with torch.no_grad():
        rec = run.model.reconstruct(run.examples[4:5])
    np.testing.assert_allclose(ex["reconstruction"]["x"][0], rec[0].numpy(), rtol=1e-5, atol=1e-6)
    assert "png" in server.get("/runs/digits/examples/4?format=png")["example"]
    assert server.get("/runs/text/examples/0")["example"]["texts"]
    assert server.get("/runs/categorical/points")["z"] == []
    cond = server.get("/runs/conditional/examples/0")
    assert cond["label"] == int(runs["conditional"].labels[0])


def test_two_runs_answer_under_their_own_names(server: Client, runs) -> None:
    """The same latents through two runs of the same shape give each run's own decoding."""
    z = [[0.5, -0.5]]
    a = server.post("/decode", {"run": "vae", "z": z})["x"]
    b = server.post("/decode", {"run": "hvae", "z": z})["x"]
    assert a != b
    with torch.no_grad():
        np.testing.assert_allclose(a, runs["vae"].model.decode(torch.tensor(z)).mean, rtol=1e-5)
        np.testing.assert_allclose(b, runs["hvae"].model.decode(torch.tensor(z)).mean, rtol=1e-5)


def test_the_api_is_described(server: Client) -> None:
    spec = server.get("/openapi.json")
    paths = spec["paths"]
    for path in ("/encode", "/decode", "/sample", "/reconstruct", "/interpolate",
                 "/log-likelihood", "/runs", "/healthz"):  # fmt: skip
        assert path in paths, path
    assert "k" in spec["components"]["schemas"]["LogLikelihoodRequest"]["properties"]
    assert server.http.get("/docs").status_code == 200


def test_the_limits_are_the_servers_settings(server: Client) -> None:
    z = np.zeros((LIMITS.max_batch, 3)).tolist()
    assert len(server.post("/decode", {"run": "digits", "z": z})["x"]) == LIMITS.max_batch
    out = server.post("/log-likelihood", {"run": "digits", "x": [[0.0] * 64], "k": LIMITS.max_k})
    assert math.isfinite(out["log_likelihood"][0])


def test_load_from_the_public_api(runs) -> None:
    """A served run's model is vaekit.load's, unchanged by serving."""
    path = runs["vae"].path
    fresh = vaekit.load(path)
    for (name, a), (_, b) in zip(
        fresh.state_dict().items(), runs["vae"].model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
