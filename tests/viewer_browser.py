"""The viewer's page in a real browser: landcover-view's server on a free port in a thread, and Debian's Chromium
driven by Playwright (which downloads no browser: it is pointed at the system's), headless, with WebGL drawn in
software by SwiftShader, as MapLibre needs WebGL and there is no GPU here. Used by tests/test_viewer.py and by
tools/viewer_screenshot.py, which makes the documentation's screenshot the same way."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from tests.browser import find_browser

# No network here, no GPU: WebGL through SwiftShader (ANGLE's software renderer), and none of Chromium's calls home.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)
VIEWPORT = {"width": 1100, "height": 700}
DRAW_TIMEOUT_MS = 90_000  # software WebGL on a busy machine: first draw of every layer


@contextmanager
def running_viewer(folder: Path, labelling=None) -> Iterator[str]:
    """The viewer of `folder` served on a free port of 127.0.0.1 while inside: its URL."""
    from landcover.viewer.outputs import open_output
    from landcover.viewer.server import Viewer, ViewerServer

    server = ViewerServer(Viewer(open_output(folder), labelling), 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def browser_page(viewport: dict[str, int] = VIEWPORT) -> Iterator:
    """A Playwright page of the system's headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = find_browser()
    if executable is None:
        raise FileNotFoundError("no Chromium: install Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(FLAGS), headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport["width"], "height": viewport["height"]})
            yield page
        finally:
            browser.close()


def open_viewer(page, url: str) -> None:
    """Load the viewer at `url` and wait until the map has drawn every tile it shows."""
    page.goto(url)
    wait_drawn(page)


def wait_drawn(page) -> None:
    """Until the map is idle: its style loaded and every visible tile drawn (viewer.js sets body's data-idle)."""
    page.wait_for_function("document.body.dataset.idle === 'true'", timeout=DRAW_TIMEOUT_MS)


def map_pixels(page) -> np.ndarray:
    """A screenshot of the map's area (not the panel) as an RGB array."""
    png = page.locator("#map").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def project(page, lon: float, lat: float) -> tuple[float, float]:
    """The page coordinates (x, y) of a place on the map."""
    point = page.evaluate(
        "([lon, lat]) => { const p = window.landcoverViewer.map.project([lon, lat]);"
        " const box = document.getElementById('map').getBoundingClientRect();"
        " return [p.x + box.left, p.y + box.top]; }",
        [lon, lat],
    )
    return float(point[0]), float(point[1])
