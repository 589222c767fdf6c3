"""evaluate: score whole stitched predictions against whole ground-truth masks of the test split.

One confusion matrix over every pixel of the split (ignored pixels left out): the headline is
mIoU over the land classes, the class table's headline classes (DeepGlobe's: all but `unknown`, the
challenge metric). The headline scores go to metrics/test.json, the per-class ones, each class's mapped area
against its true area and the counts to metrics/test_details.json. Each test region (image, or block of a scene)
keeps its own confusion matrix too (metrics/confusion_per_image.json): the bootstrap over regions gives each
headline score's 95% interval, its bounds in metrics/test_low.json and metrics/test_high.json (keyed as test.json,
so that `dvc metrics show` prints them as two more rows of its columns) and how they were made in
metrics/test_intervals.json, each class IoU's interval (the details), and `landcover-compare` compares two
experiments region by region.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from landcover.data.tilestore import Region, TileStore, split_regions
from landcover.evaluation.intervals import score_intervals, write_region_confusions
from landcover.evaluation.metrics import area_bias, confusion_matrix, scores, split_headline, write_confusion_csv
from landcover.io.errors import PipelineError, run_stage
from landcover.io.imageio import read_index_png
from landcover.io.outputs import atomic_file, write_json
from landcover.io.params import DEFAULT_PARAMS, EvaluateParams, load_params, read_section

CONFUSION_ROWS = 1024  # rows of a region counted at a time


def arguments(argv: list[str] | None) -> argparse.Namespace:
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
        help="per-class IoU and Dice with their intervals, frequency-weighted IoU, class areas, pixel and image counts",
    )
    parser.add_argument("--confusion", type=Path, default=Path("metrics/confusion.csv"))
    parser.add_argument(
        "--low", type=Path, default=Path("metrics/test_low.json"), help="the intervals' lower bounds (a DVC metric)"
    )
    parser.add_argument(
        "--high", type=Path, default=Path("metrics/test_high.json"), help="the intervals' upper bounds (a DVC metric)"
    )
    parser.add_argument(
        "--intervals",
        type=Path,
        default=Path("metrics/test_intervals.json"),
        help="how the intervals were made (level, method, resamples, seed, test images) and how far to trust them",
    )
    parser.add_argument(
        "--per-image",
        type=Path,
        default=Path("metrics/confusion_per_image.json"),
        help="each test image's (or block's) confusion matrix, for the intervals and landcover-compare",
    )
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    return parser.parse_args(argv)


def region_confusions(store: TileStore, regions: list[Region], predictions: Path, classes: int) -> dict:
    """Each region's confusion matrix by its name, its prediction checked against its ground truth's size."""
    per_region = {}
    for region in regions:
        truth = store.region_class_mask(region)
        path = predictions / f"{region.name}.png"
        prediction = read_index_png(path)
        if prediction.shape != truth.shape:
            raise PipelineError(
                f"{path}: prediction is {prediction.shape[1]}x{prediction.shape[0]}, "
                f"ground truth {truth.shape[1]}x{truth.shape[0]}"
            )
        confusion = np.zeros((classes, classes), dtype=np.int64)
        for top in range(0, truth.shape[0], CONFUSION_ROWS):  # bounded temporaries for a scene of any size
            rows = slice(top, top + CONFUSION_ROWS)
            confusion += confusion_matrix(truth[rows], prediction[rows], classes)
        per_region[region.name] = confusion
    return per_region


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    evaluate = read_section(load_params(args.params), "evaluate", EvaluateParams)
    store = TileStore(args.tiles, args.encoded)
    table = store.class_table()
    regions = split_regions(args.split)  # whole images, or blocks of scenes
    image_count = len(regions)
    if not image_count:
        raise PipelineError(f"{args.split}: no test images to evaluate; set split.ratios.test above 0")
    per_region = region_confusions(store, regions, args.predictions, len(table))
    confusion = np.sum(list(per_region.values()), axis=0)

    report = scores(confusion, table)
    headline, details = split_headline(report)
    unit = "images" if all(region.whole for region in regions) else "blocks"
    intervals = score_intervals(np.array(list(per_region.values())), table, evaluate.seed, evaluate.bootstrap, unit)
    class_intervals, low, high = (intervals.pop(key) for key in ("iou", "low", "high"))
    write_json(args.metrics, headline)
    write_json(args.low, low)
    write_json(args.high, high)
    write_json(args.intervals, intervals)
    write_json(
        args.details,
        {"images": image_count, **details, "iou_intervals": class_intervals, "areas": area_bias(confusion, table)},
    )
    with atomic_file(args.confusion) as staging:
        write_confusion_csv(staging, confusion, table.names)
    with atomic_file(args.per_image) as staging:
        write_region_confusions(staging, per_region, table)
    print(
        f"evaluate: {image_count} test images; mIoU (land classes) {report['miou_land']:.4f}, "
        f"mIoU {report['miou']:.4f}, mean Dice {report['mean_dice']:.4f}, "
        f"pixel accuracy {report['pixel_accuracy']:.4f}; 95% interval of mIoU (land classes) "
        f"{_interval(low['miou_land'], high['miou_land'])} ({intervals['trust']})"
    )


def _interval(low: float | None, high: float | None) -> str:
    return "none (no resample has a score)" if low is None else f"{low:.4f} to {high:.4f}"


if __name__ == "__main__":
    run_stage(main)
