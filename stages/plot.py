"""plot: learning curves, per-class IoU, confusion matrix, test examples and the reliability diagram (the
calibration stage's bins) in plots/model, and
metrics/summary.json with mIoU and mean Dice on train and validation at the epoch best.pt was saved
at (to set beside the test scores of metrics/test.json, which come from best.pt)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from landcover.data.tilestore import TileStore, group_by_image, read_index, whole_images
from landcover.evaluation.metrics import read_confusion_csv
from landcover.evaluation.model_plots import (
    plot_class_iou,
    plot_confusion,
    plot_curves,
    plot_examples,
    plot_reliability,
)
from landcover.io.errors import run_stage
from landcover.io.imageio import read_index_png
from landcover.io.outputs import atomic_dir, write_json
from landcover.model.checkpoint import read_history

EXAMPLES = 3  # test images shown in plots/model/examples.png


def summary(best_history: list[dict]) -> dict:
    """mIoU (land classes) and mean Dice on train and validation at the epoch best.pt was saved at.

    `best_history` is best.pt's history, which ends at that epoch. The scores are defined as the
    test scores of metrics/test.json are (pooled over the split's pixels, each pixel once), and
    rounded as DVCLive logs them: `dvc metrics show` sets both files side by side.
    """
    record = best_history[-1]
    return {
        "best_epoch": len(best_history),
        **{
            split: {
                name: None if record[split][name] is None else round(record[split][name], 6)
                for name in ("miou_land", "mean_dice")
            }
            for split in ("train", "val")
        },
    }


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="directory for the pictures (replaced if present)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("models/last.pt"),
        help="the train stage's last checkpoint (the whole training history)",
    )
    parser.add_argument(
        "--best",
        type=Path,
        default=Path("models/best.pt"),
        help="the train stage's best checkpoint (the history up to its epoch)",
    )
    parser.add_argument("--test", type=Path, default=Path("metrics/test.json"))
    parser.add_argument("--test-details", type=Path, default=Path("metrics/test_details.json"))
    parser.add_argument("--confusion", type=Path, default=Path("metrics/confusion.csv"))
    parser.add_argument("--predictions", type=Path, default=Path("data/predictions"))
    parser.add_argument("--tiles", type=Path, default=Path("data/tiles"))
    parser.add_argument("--encoded", type=Path, default=Path("data/encoded"))
    parser.add_argument("--split", type=Path, default=Path("data/splits/test.csv"))
    parser.add_argument("--summary", type=Path, default=Path("metrics/summary.json"))
    parser.add_argument(
        "--calibration",
        type=Path,
        default=Path("metrics/calibration_details.json"),
        help="the calibration stage's details: the reliability bins before and after the temperature",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)

    store = TileStore(args.tiles, args.encoded)
    table = store.class_table()
    history = read_history(args.checkpoint)
    test_scores = {**json.loads(args.test.read_text()), **json.loads(args.test_details.read_text())}
    confusion, names = read_confusion_csv(args.confusion)
    records = read_index(args.split)
    shown_ids = list(group_by_image(records))[:EXAMPLES]
    shown = [record for record in records if record.image_id in shown_ids]
    examples = [
        (image_id, image, truth, read_index_png(args.predictions / f"{image_id}.png"))
        for (image_id, image), (_, truth) in zip(
            whole_images(shown, store.whole_image), whole_images(shown, store.whole_class_mask)
        )
    ]
    with atomic_dir(args.out) as staging:
        plot_curves(history, staging / "curves.png")
        plot_class_iou(test_scores, staging / "class_iou.png")
        plot_confusion(confusion, names, staging / "confusion.png")
        plot_examples(examples, table, staging / "examples.png")
        plot_reliability(json.loads(args.calibration.read_text()), staging / "reliability.png")
    write_json(args.summary, summary(read_history(args.best)))
    print(f"plot: 5 pictures in {args.out}, summary in {args.summary}")


if __name__ == "__main__":
    run_stage(main)
