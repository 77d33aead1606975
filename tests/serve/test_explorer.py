"""The explorer page in a real browser (Playwright driving Debian's chromium, headless): drag
through the latent plane and the decoded digit changes to the model's decoding of the new point;
click a dot and its reconstruction appears; interpolate between two dots; reseed the samples;
switch to a text run, a categorical one and a sound run. A screenshot is kept as an artifact
(and, with VAEKIT_UPDATE_SCREENSHOT=1, written to docs/images/serve-explorer.png for the README).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.serve import ServeSettings, build_app
from vaekit.serve.server import Background

from .serve_helpers import Client

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs playwright (pip install playwright)"
)

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "serve-explorer.png"
#: The decoded digit's 8 x 8 pixels as drawn: the grey level at the centre of each tile.
TILES = """() => {
  const c = document.getElementById(ID), ctx = c.getContext("2d"), s = c.width / 8, out = [];
  for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++)
    out.push(ctx.getImageData(Math.floor((x + 0.5) * s), Math.floor((y + 0.5) * s), 1, 1).data[0]);
  return out;
}"""


def chromium() -> str:
    path = os.environ.get("VAEKIT_CHROMIUM") or shutil.which("chromium")
    path = path or shutil.which("chromium-browser")
    if not path:
        pytest.skip(
            "chromium is not installed (apt-get install chromium); the browser test needs it"
        )
    return path


def tiles(page, canvas: str) -> np.ndarray:
    return np.asarray(page.evaluate(TILES.replace("ID", repr(canvas))), dtype=np.float64)


def as_drawn(x: list) -> np.ndarray:
    """An example's values in [0, 1] as the page draws them: grey levels 0..255."""
    return np.round(np.clip(np.asarray(x, dtype=np.float64).reshape(64), 0, 1) * 255)


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(headless=True, executable_path=path)
        except sync_api.Error as err:
            pytest.skip(f"chromium at {path} does not start: {str(err).splitlines()[0]}")
        yield b
        b.close()


def test_drag_click_interpolate_and_sample_in_the_browser(browser, runs, tmp_path) -> None:
    served = [runs[name] for name in ("digits", "text", "categorical", "sound")]
    app = build_app(served, ServeSettings())
    with Background(app) as server:
        api = Client(server.url)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(server.url + "/")
        page.wait_for_function("window.explorer && explorer.ready && explorer.decodes > 0")
        before = tiles(page, "decoded")
        z0 = page.evaluate("explorer.z.slice()")
        np.testing.assert_allclose(
            before, as_drawn(api.post("/decode", {"run": "digits", "z": [z0]})["x"]), atol=1
        )

        # drag the point across the plane: the decoded digit follows it
        box = page.locator("#plane").bounding_box()
        decodes = page.evaluate("explorer.decodes")
        page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.75 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.25 * box["height"], steps=12)
        page.mouse.up()
        page.wait_for_function(
            f"explorer.decodes > {decodes} && !explorer.busy && !explorer.pending"
        )
        after = tiles(page, "decoded")
        z1 = page.evaluate("explorer.z.slice()")
        dims = page.evaluate("explorer.dims")
        assert z1[dims[0]] > z0[dims[0]] and z1[dims[1]] > z0[dims[1]]  # right and up
        assert np.abs(after - before).max() > 20, "the decoded image did not change"
        np.testing.assert_allclose(
            after, as_drawn(api.post("/decode", {"run": "digits", "z": [z1]})["x"]), atol=1
        )

        # click a dot: its example and reconstruction appear
        dots = np.asarray(api.get("/runs/digits/points")["z"])[:, dims[0]]
        for end, index in enumerate((int(np.argmin(dots)), int(np.argmax(dots)))):
            spot = page.evaluate(f"explorer.dotPosition({index})")
            page.mouse.click(spot["x"], spot["y"])
            page.wait_for_function(f"explorer.shownExample === {index}")
            shown = page.evaluate("explorer.shownExample")
            ex = api.get(f"/runs/digits/examples/{shown}")
            np.testing.assert_allclose(tiles(page, "example"), as_drawn(ex["example"]["x"]), atol=1)
            rec = tiles(page, "reconstruction")
            np.testing.assert_allclose(rec, as_drawn(ex["reconstruction"]["x"]), atol=1)
            assert rec.std() > 10  # a digit, not a blank canvas
            page.click("#set-a" if end == 0 else "#set-b")
        page.wait_for_function("document.querySelectorAll('#interpolation canvas').length === 10")

        # the sample grid, and a new one on reseed
        page.wait_for_function("document.querySelectorAll('#samples canvas').length === 16")
        seed = page.text_content("#seed")
        page.click("#reseed")
        page.wait_for_function(f"document.getElementById('seed').textContent !== {seed!r}")

        page.wait_for_timeout(300)
        artifact = tmp_path / "serve-explorer.png"
        page.screenshot(path=str(artifact), full_page=True)
        assert artifact.stat().st_size > 10_000
        if os.environ.get("VAEKIT_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(artifact, SCREENSHOT)

        # a text run: decoded strings
        page.select_option("#run", "text")
        page.wait_for_function(
            "!document.getElementById('decoded-text').hidden && "
            "document.getElementById('decoded-text').textContent.length > 0"
        )
        # a categorical run: a value per latent instead of a plane
        page.select_option("#run", "categorical")
        page.wait_for_function("!document.getElementById('codes').hidden")
        assert page.locator("#plane").is_hidden()
        decodes = page.evaluate("explorer.decodes")
        page.select_option("#codes select >> nth=1", "2")
        page.wait_for_function(
            f"explorer.decodes > {decodes} && !explorer.busy && !explorer.pending"
        )
        codes = page.evaluate("explorer.codes")
        assert codes == [0, 2]
        want = api.post("/decode", {"run": "categorical", "codes": [codes]})["x"]
        np.testing.assert_allclose(tiles(page, "decoded"), as_drawn(want), atol=1)
        # a sound run: spectrograms, and a play button that fetches the point as a WAV file
        page.select_option("#run", "sound")
        page.wait_for_function("!document.getElementById('play-decoded').hidden")
        page.click("#play-decoded")
        page.wait_for_function(
            "document.getElementById('player').src.startsWith('data:audio/wav;base64,')"
        )
        assert not errors, errors
        page.close()
    torch.manual_seed(0)


def test_the_page_sends_the_token_it_is_given(browser, runs) -> None:
    """With a token, the page takes it from #token=... or asks for it after a 401."""
    app = build_app([runs["digits"]], ServeSettings(token="page-token"))
    with Background(app) as server:
        page = browser.new_page()
        page.goto(server.url + "/#token=page-token")
        page.wait_for_function("window.explorer && explorer.ready && explorer.decodes > 0")
        assert "token" not in page.url  # taken out of the address
        page.close()
        page = browser.new_page()  # a new tab: no token kept
        page.goto(server.url + "/")
        page.wait_for_selector("#token-form", state="visible")
        page.fill("#token", "page-token")
        page.click("#token-form button")
        page.wait_for_function("window.explorer && explorer.ready && explorer.decodes > 0")
        page.close()
