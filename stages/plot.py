"""plot: learning curves, per-class IoU, confusion matrix and test examples in plots/model,
and metrics/summary.json with the final IoU and Dice loss on train, validation and test side by side."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages.core.errors import run_stage
from stages.core.imageio import read_index_png, read_rgb
from stages.core.metrics import read_confusion_csv
from stages.core.model_plots import (plot_class_iou, plot_confusion, plot_curves, plot_examples,
                                     read_live_series)
from stages.core.outputs import atomic_dir, write_json
from stages.core.palette import ClassTable
from stages.core.tiling import group_by_image, read_index, stitch_files

EXAMPLES = 3  # test images shown in plots/model/examples.png


def summary(live_dir: Path, test_scores: dict) -> dict:
    """Final mIoU (land classes) and Dice loss per split.

    Train and validation Dice loss are the soft Dice loss of the last epoch; test has hard
    predictions only, so its Dice loss is 1 - mean Dice.
    """
    result = {split: {name: read_live_series(live_dir, split, name)[1][-1] for name in ("miou_land", "dice_loss")}
              for split in ("train", "val")}
    result["test"] = {"miou_land": test_scores["miou_land"], "dice_loss": 1 - test_scores["mean_dice"]}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="directory for the pictures (replaced if present)")
    parser.add_argument("--live", type=Path, default=Path("metrics/train"), help="DVCLive directory of train")
    parser.add_argument("--test", type=Path, default=Path("metrics/test.json"))
    parser.add_argument("--confusion", type=Path, default=Path("metrics/confusion.csv"))
    parser.add_argument("--predictions", type=Path, default=Path("data/predictions"))
    parser.add_argument("--tiles", type=Path, default=Path("data/tiles"))
    parser.add_argument("--encoded", type=Path, default=Path("data/encoded"))
    parser.add_argument("--split", type=Path, default=Path("data/splits/test.csv"))
    parser.add_argument("--summary", type=Path, default=Path("metrics/summary.json"))
    args = parser.parse_args(argv)

    table = ClassTable.from_csv(args.tiles / "class_dict.csv")
    test_scores = json.loads(args.test.read_text())
    confusion, names = read_confusion_csv(args.confusion)
    images = list(group_by_image(read_index(args.split)).items())[:EXAMPLES]
    examples = [(image_id, stitch_files(records, args.tiles / "images", read_rgb),
                 stitch_files(records, args.encoded / "masks", read_index_png),
                 read_index_png(args.predictions / f"{image_id}.png")) for image_id, records in images]
    with atomic_dir(args.out) as staging:
        plot_curves(args.live, staging / "curves.png")
        plot_class_iou(test_scores, staging / "class_iou.png")
        plot_confusion(confusion, names, staging / "confusion.png")
        plot_examples(examples, table, staging / "examples.png")
    write_json(args.summary, summary(args.live, test_scores))
    print(f"plot: 4 pictures in {args.out}, summary in {args.summary}")


if __name__ == "__main__":
    run_stage(main)
