"""predict: whole-image class maps of the test split, by sliding window.

    python -m stages.predict --checkpoint models/best.pt --tiles data/tiles \\
        --split data/splits/test.csv --output data/predictions

Each test image (or, where the split stage cut scenes into blocks, each test block, named as a tile:
<id>_y<row>_x<column>) gets <id>.png (class indices) and <id>_colour.png (the class colours). Started by
torchrun with several processes, each maps its share of the images into one output that appears
whole or not at all (docs/multi-gpu.md). With predict.int8 true the ONNX runtimes run the export
stage's int8 model where it passed its gate, else the fp32 model (or torch, on a CPU with native bf16,
under predict.runtime auto), and the summary line says why; predict.int8 required stops there
(landcover/inference/runtimes.py, docs/model-artifact.md). Mapping other imagery (GeoTIFFs of any size, areas,
polygons) is the mapping command's: landcover-map (docs/mapping.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from landcover.data.tilestore import Region, RegionRows, TileStore, split_regions
from landcover.inference.class_maps import write_class_maps
from landcover.inference.runtimes import check_predict_options, choose_runtime, run_label, runtime_probabilities
from landcover.io.errors import run_stage
from landcover.io.params import DEFAULT_PARAMS, PredictParams, load_params, read_section
from landcover.model.devices import choose_device
from landcover.model.ranks import (
    die_with_launcher,
    process_group,
    rank_device,
    ranks_from_environment,
    shared_atomic_dir,
)

MOVED = "--input moved to the mapping command: landcover-map --checkpoint MODEL --input FILES --output DIR"


def region_images(store: TileStore, regions: list[Region]) -> Iterator[tuple[str, RegionRows]]:
    """Each region's image, read a strip at a time (a scene's GeoTIFF of any size in bounded memory)."""
    for region in regions:
        with store.region_rows(region) as rows:
            yield region.name, rows


def main(argv: list[str] | None = None) -> None:
    die_with_launcher()  # started by torchrun: end with it, however it ends
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--tiles", type=Path, required=True, help="the tile stage's output")
    parser.add_argument("--split", type=Path, required=True, help="a split's tile list, e.g. data/splits/test.csv")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    parser.add_argument(
        "--export",
        type=Path,
        default=Path("models/export"),
        help="the export stage's folder: its ONNX models, for the ONNX runtimes (exported from --checkpoint)",
    )
    if "--input" in (sys.argv[1:] if argv is None else argv):
        parser.error(MOVED)
    args = parser.parse_args(argv)
    predict_params = read_section(load_params(args.params), "predict", PredictParams)
    check_predict_options(predict_params)
    ranks = ranks_from_environment()
    with process_group(ranks):
        device = rank_device(choose_device("auto"), ranks, "predict.processes")
        runtime = choose_runtime(predict_params, device, args.checkpoint, None, args.export, ranks.threads)
        probability_fn = runtime_probabilities(runtime, predict_params)
        regions = split_regions(args.split)  # whole images, or blocks of scenes
        mine = set(ranks.share([region.name for region in regions]))  # regions r, r + W, ... of the split
        regions = [region for region in regions if region.name in mine]
        store = TileStore(args.tiles)
        # the output appears whole or not at all, written by every rank
        with shared_atomic_dir(args.output, ranks) as staging:
            images = region_images(store, regions)
            done = write_class_maps(
                staging, images, len(mine), probability_fn, runtime.interface.table, predict_params, progress=ranks.main
            )
        if ranks.several:
            print(f"predict{ranks.label}: predicted {' '.join(done)}")
    print(f"predict{ranks.label}: {len(mine)} images -> {args.output} ({run_label(predict_params, runtime)})")


if __name__ == "__main__":
    run_stage(main)
