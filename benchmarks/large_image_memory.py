"""Peak memory of the tile stage and of read_rgb on one large image (default 15000x15000, 225 MP).

Writes a synthetic JPEG and its colour mask into a scratch folder under /tmp (about 0.1 GB; the
tiles take about 2 GB more), runs each measurement in a fresh process that reports its own peak
RSS, and deletes everything afterwards. --repo measures another checkout of this project (e.g. an
older commit), with Pillow's decompression-bomb limit lifted there so it can read the image at all.

    .venv/bin/python -m benchmarks.large_image_memory [--side 15000] [--tile 512] [--repo PATH]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from benchmarks.common import REPO, benchmark_parser, params, run_for_json

MIN_FREE_BYTES = 8 << 30

# Runs in the child, in the measured checkout, which may be one without this package: it therefore reads
# its own peak RSS (VmHWM, as benchmarks.common.peak_rss_kb does) instead of importing anything from here.
CHILD = """
import json, re, sys, time
from pathlib import Path
from PIL import Image
lift_limit, what, args = sys.argv[1] == "lift", sys.argv[2], sys.argv[3:]
if lift_limit:
    Image.MAX_IMAGE_PIXELS = None  # an older checkout has no limit of its own and would refuse the image
start = time.perf_counter()
if what == "tile":
    from stages import tile
    tile.main(args)
else:
    from landcover.io.imageio import read_rgb
    array = read_rgb(args[0])
seconds = time.perf_counter() - start
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024)}))
"""


def write_pair(folder: Path, side: int) -> None:
    """A smooth, textured JPEG (so it compresses like a photo) and a mask of DeepGlobe colours in bands."""
    folder.mkdir(parents=True)
    rows = np.arange(side, dtype=np.uint32)[:, None]
    columns = np.arange(side, dtype=np.uint32)[None, :]
    image = np.empty((side, side, 3), dtype=np.uint8)
    for top in range(0, side, 1000):  # in blocks of rows: full-size uint32 temporaries would be 0.9 GB each
        block = rows[top : top + 1000]
        for channel, step in enumerate((3, 5, 7)):
            image[top : top + 1000, :, channel] = ((block * step + columns * (channel + 1)) // 64) % 256
    Image.fromarray(image).save(folder / "1_sat.jpg", quality=90)
    del image
    colours = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0)], dtype=np.uint8)
    mask = colours[(rows[:, 0] * 4 // side)][:, None, :].repeat(side, axis=1)
    Image.fromarray(mask).save(folder / "1_mask.png")


def measure(repo: Path, *args: str) -> dict:
    """CHILD in a fresh process working in `repo`: "read" an image, or "tile" with the tile stage's arguments."""
    lift = "lift" if repo.resolve() != REPO else "keep"  # this checkout must read the image under its own limit
    return run_for_json([sys.executable, "-c", CHILD, lift, *args], f"{args[0]} in {repo}", cwd=repo)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.large_image_memory", __doc__)
    parser.add_argument("--side", type=int, default=15000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose stages are measured")
    args = parser.parse_args(argv)
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < MIN_FREE_BYTES:
        raise SystemExit(f"only {free / 2**30:.1f} GiB free in {tempfile.gettempdir()}; need {MIN_FREE_BYTES >> 30}")

    with tempfile.TemporaryDirectory(prefix="landcover-large-") as scratch:
        work = Path(scratch)
        write_pair(work / "raw", args.side)
        tile_params = params()
        tile_params["tile"] = {"size": args.tile, "stride": args.tile}
        (work / "params.yaml").write_text(yaml.safe_dump(tile_params))
        jpeg_mb = (work / "raw" / "1_sat.jpg").stat().st_size >> 20
        results = {
            "image": f"{args.side}x{args.side} ({args.side**2 / 1e6:.0f} MP), JPEG {jpeg_mb} MB",
            "repo": str(args.repo),
            "read_rgb": measure(args.repo, "read", str(work / "raw" / "1_sat.jpg")),
            "tile_stage": measure(
                args.repo, "tile", str(work / "raw"), str(work / "tiles"), "--params", str(work / "params.yaml")
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
