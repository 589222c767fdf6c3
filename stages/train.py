"""train: DeepLabV3+ on the training tiles, validated on the val tiles each epoch, logged with DVCLive."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.errors import PipelineError, run_stage
from stages.core.palette import ClassTable
from stages.core.params import (DEFAULT_PARAMS, AugmentParams, ModelParams, TrainParams, load_params,
                                read_section)
from stages.core.tiling import read_index
from stages.core.training import TrainingData, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tiles", type=Path, help="output of the tile stage")
    parser.add_argument("encoded", type=Path, help="output of the encode stage")
    parser.add_argument("splits", type=Path, help="output of the split stage")
    parser.add_argument("models", type=Path, help="directory for best.pt and last.pt")
    parser.add_argument("--live", type=Path, default=Path("metrics/train"), help="DVCLive directory")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    model = read_section(params, "model", ModelParams)
    training = read_section(params, "train", TrainParams)
    augment = read_section(params, "augment", AugmentParams)

    train_tiles = read_index(args.splits / "train.csv")
    val_tiles = read_index(args.splits / "val.csv")
    if not val_tiles:
        raise PipelineError("params: split.ratios.val is 0, but training needs validation images to pick best.pt")
    data = TrainingData(train_tiles, val_tiles, args.tiles / "images", args.encoded / "masks",
                        ClassTable.from_csv(args.tiles / "class_dict.csv"), tile_size=train_tiles[0].size)
    last = train(model, training, augment, data, args.models, args.live)
    print(f"train: {training.epochs} epochs; last epoch val mIoU (land classes) {last['val']['miou_land']:.4f}, "
          f"train {last['train']['miou_land']:.4f}")


if __name__ == "__main__":
    run_stage(main)
