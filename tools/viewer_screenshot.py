"""The viewer's screenshot in the docs (docs/images/viewer.png), made as the browser tests drive the page.

    python -m tools.viewer_screenshot                 # models/best.pt on data/sample/test: after `make run`
    python -m tools.viewer_screenshot --checkpoint models/best.pt --images data/sample/test --output viewer.png

The default run's model maps the first four test images of the sample (the bundled one has two; --confidence),
each given a place on the ground first: the sample's JPEGs have none, so they become GeoTIFFs of 0.5 m pixels
(DeepGlobe's) side by side in UTM zone 33N. The viewer of that output (landcover-view's server,
tests/viewer_browser.py's headless Chromium) is photographed with the class map at 60% over the imagery and one
pixel clicked, and written as a PNG of at most 256 colours (well under 300 KB).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image

from landcover.cli import map as map_command
from landcover.io.imageio import read_rgb
from landcover.io.outputs import atomic_file
from tests.viewer_browser import browser_page, open_viewer, wait_drawn

IMAGES = 4
PIXEL = 0.5  # metres: DeepGlobe's
WEST, NORTH = 500_000.0, 5_000_000.0  # UTM zone 33N, on its central meridian
CLASS_OPACITY = 0.6


def georeferenced(images: list[Path], folder: Path) -> list[Path]:
    """Each image as a GeoTIFF in UTM 33N, side by side from west to east."""
    scenes, west = [], WEST
    for image_path in images:
        image = read_rgb(image_path)
        height, width, _ = image.shape
        scene = folder / f"{image_path.stem}.tif"
        with rasterio.open(
            scene, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", crs="EPSG:32633",
            transform=Affine(PIXEL, 0, west, 0, -PIXEL, NORTH), photometric="RGB",
        ) as dataset:  # fmt: skip
            dataset.write(np.moveaxis(image, -1, 0))
        scenes.append(scene)
        west += width * PIXEL
    return scenes


def photograph(out: Path, destination: Path) -> None:
    """The viewer of `out`, drawn and with its middle pixel clicked, as a PNG of 256 colours at `destination`."""
    from tests.viewer_browser import running_viewer

    with running_viewer(out) as url, browser_page() as page:
        open_viewer(page, url)
        page.evaluate(
            "opacity => { const slider = document.getElementById('opacity-classes'); slider.value = opacity;"
            " slider.dispatchEvent(new Event('input')); }",
            CLASS_OPACITY,
        )
        box = page.locator("#map").bounding_box()
        assert box is not None, "the map is on the page"
        page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
        page.locator("#pixel-info [data-layer=classes]").wait_for()
        wait_drawn(page)
        png = page.screenshot()
    with tempfile.TemporaryDirectory() as scratch:
        shot = Path(scratch) / "shot.png"
        shot.write_bytes(png)
        quantized = Image.open(shot).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        with atomic_file(destination) as staged:
            quantized.save(staged, format="PNG", optimize=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("models/best.pt"))
    parser.add_argument("--images", type=Path, default=Path("data/sample/test"), help="a folder of <id>_sat.jpg")
    parser.add_argument("--output", type=Path, default=Path("docs/images/viewer.png"))
    args = parser.parse_args(argv)
    images = sorted(args.images.glob("*_sat.jpg"))[:IMAGES]
    if not images:
        parser.error(f"--images {args.images}: no <id>_sat.jpg in it (make run writes data/sample/)")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "imagery").mkdir()
        scenes = georeferenced(images, folder / "imagery")
        out = folder / "out"
        map_command.main(
            ["--checkpoint", str(args.checkpoint), "--input", *map(str, scenes), "--output", str(out), "--confidence"]
        )
        photograph(out, args.output)
    print(f"viewer_screenshot: {args.output} ({args.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
