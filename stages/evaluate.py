"""evaluate: score whole stitched predictions against whole ground-truth masks of the test split.

One confusion matrix over every pixel of the split (ignored pixels left out): the headline is
mIoU over the land classes (`unknown` excluded), the DeepGlobe challenge metric.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError, run_stage
from stages.core.imageio import read_index_png
from stages.core.metrics import confusion_matrix, scores, write_confusion_csv
from stages.core.outputs import atomic_file, write_json
from stages.core.palette import ClassTable
from stages.core.tiling import group_by_image, read_index, stitch_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("predictions", type=Path, help="output of the predict stage")
    parser.add_argument("tiles", type=Path, help="output of the tile stage (class table)")
    parser.add_argument("encoded", type=Path, help="output of the encode stage (ground truth)")
    parser.add_argument("split", type=Path, help="the scored split's tile list, e.g. data/splits/test.csv")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/test.json"))
    parser.add_argument("--confusion", type=Path, default=Path("metrics/confusion.csv"))
    args = parser.parse_args(argv)

    table = ClassTable.from_csv(args.tiles / "class_dict.csv")
    images = group_by_image(read_index(args.split))
    if not images:
        raise PipelineError(f"{args.split}: no test images to evaluate; set split.ratios.test above 0")
    confusion = np.zeros((len(table), len(table)), dtype=np.int64)
    for image_id, records in images.items():
        truth = stitch_files(records, args.encoded / "masks", read_index_png)
        prediction = read_index_png(args.predictions / f"{image_id}.png")
        if prediction.shape != truth.shape:
            raise PipelineError(f"{args.predictions / f'{image_id}.png'}: prediction is {prediction.shape[1]}x"
                                f"{prediction.shape[0]}, ground truth {truth.shape[1]}x{truth.shape[0]}")
        confusion += confusion_matrix(truth, prediction, len(table))

    report = {"images": len(images), **scores(confusion, table.names)}
    write_json(args.metrics, report)
    with atomic_file(args.confusion) as staging:
        write_confusion_csv(staging, confusion, table.names)
    print(f"evaluate: {len(images)} test images; mIoU (land classes) {report['miou_land']:.4f}, "
          f"mIoU {report['miou']:.4f}, mean Dice {report['mean_dice']:.4f}, "
          f"pixel accuracy {report['pixel_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)
