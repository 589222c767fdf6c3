"""Peak memory of the tile stage and of read_rgb on one large image (default 15000x15000, 225 MP).

Writes a synthetic JPEG and its colour mask into a scratch folder under /tmp (about 0.1 GB; the
tiles take about 2 GB more), runs each measurement in a fresh process that reports its own peak
RSS, and deletes everything afterwards. --repo measures another checkout of this project (e.g. an
older commit), with Pillow's decompression-bomb limit lifted there so it can read the image at all.

    .venv/bin/python benchmarks/large_image_memory.py [--side 15000] [--tile 512] [--repo PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MIN_FREE_BYTES = 8 << 30

# Runs in the child, in the measured checkout. VmHWM, not ru_maxrss: on Linux ru_maxrss survives
# exec, so a child would report its parent's peak.
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
    from stages.core.io.imageio import read_rgb
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
    lift = "lift" if repo.resolve() != REPO else "keep"  # this checkout must read the image under its own limit
    result = subprocess.run([sys.executable, "-c", CHILD, lift, *args], cwd=repo, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{args[0]} failed in {repo}:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=15000)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose stages are measured")
    args = parser.parse_args()
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < MIN_FREE_BYTES:
        raise SystemExit(f"only {free / 2**30:.1f} GiB free in {tempfile.gettempdir()}; need {MIN_FREE_BYTES >> 30}")

    with tempfile.TemporaryDirectory(prefix="landcover-large-") as scratch:
        work = Path(scratch)
        write_pair(work / "raw", args.side)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["tile"] = {"size": args.tile, "stride": args.tile}
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        results = {
            "image": f"{args.side}x{args.side} ({args.side**2 / 1e6:.0f} MP), JPEG {(work / 'raw' / '1_sat.jpg').stat().st_size >> 20} MB",
            "repo": str(args.repo),
            "read_rgb": measure(args.repo, "read", str(work / "raw" / "1_sat.jpg")),
            "tile_stage": measure(
                args.repo, "tile", str(work / "raw"), str(work / "tiles"), "--params", str(work / "params.yaml")
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
