"""evaluate: score whole stitched predictions against whole ground-truth masks of the test split.

One confusion matrix over every pixel of the split (ignored pixels left out): the headline is
mIoU over the land classes, the class table's headline classes (DeepGlobe's: all but `unknown`, the
challenge metric). The headline scores go to metrics/test.json, the per-class ones and the counts to
metrics/test_details.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from landcover.data.tilestore import TileStore, split_regions
from landcover.evaluation.metrics import confusion_matrix, scores, split_headline, write_confusion_csv
from landcover.io.errors import PipelineError, run_stage
from landcover.io.imageio import read_index_png
from landcover.io.outputs import atomic_file, write_json

CONFUSION_ROWS = 1024  # rows of a region counted at a time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("predictions", type=Path, help="output of the predict stage")
    parser.add_argument("tiles", type=Path, help="output of the tile stage (class table)")
    parser.add_argument("encoded", type=Path, help="output of the encode stage (ground truth)")
    parser.add_argument("split", type=Path, help="the scored split's tile list, e.g. data/splits/test.csv")
    parser.add_argument(
        "--metrics", type=Path, default=Path("metrics/test.json"), help="headline scores (a DVC metric)"
    )
    parser.add_argument(
        "--details",
        type=Path,
        default=Path("metrics/test_details.json"),
        help="per-class IoU and Dice, frequency-weighted IoU, pixel and image counts",
    )
    parser.add_argument("--confusion", type=Path, default=Path("metrics/confusion.csv"))
    args = parser.parse_args(argv)

    store = TileStore(args.tiles, args.encoded)
    table = store.class_table()
    regions = split_regions(args.split)  # whole images, or blocks of scenes
    image_count = len(regions)
    if not image_count:
        raise PipelineError(f"{args.split}: no test images to evaluate; set split.ratios.test above 0")
    confusion = np.zeros((len(table), len(table)), dtype=np.int64)
    for region in regions:
        truth = store.region_class_mask(region)
        path = args.predictions / f"{region.name}.png"
        prediction = read_index_png(path)
        if prediction.shape != truth.shape:
            raise PipelineError(
                f"{path}: prediction is {prediction.shape[1]}x{prediction.shape[0]}, "
                f"ground truth {truth.shape[1]}x{truth.shape[0]}"
            )
        for top in range(0, truth.shape[0], CONFUSION_ROWS):  # bounded temporaries for a scene of any size
            rows = slice(top, top + CONFUSION_ROWS)
            confusion += confusion_matrix(truth[rows], prediction[rows], len(table))

    report = scores(confusion, table)
    headline, details = split_headline(report)
    write_json(args.metrics, headline)
    write_json(args.details, {"images": image_count, **details})
    with atomic_file(args.confusion) as staging:
        write_confusion_csv(staging, confusion, table.names)
    print(
        f"evaluate: {image_count} test images; mIoU (land classes) {report['miou_land']:.4f}, "
        f"mIoU {report['miou']:.4f}, mean Dice {report['mean_dice']:.4f}, "
        f"pixel accuracy {report['pixel_accuracy']:.4f}"
    )


if __name__ == "__main__":
    run_stage(main)
