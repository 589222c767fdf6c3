"""train: DeepLabV3+ on the training tiles, validated on the val tiles each epoch, logged with DVCLive.

Run as it is, it is one process; started by torchrun (as dvc.yaml's command does), it is one of
train.processes x train.nodes processes that train together (see stages/core/training/distributed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.data.tilestore import TileStore, read_index
from stages.core.io.errors import PipelineError, run_stage
from stages.core.io.params import DEFAULT_PARAMS, AugmentParams, ModelParams, TrainParams, load_params, read_section
from stages.core.model.ranks import die_with_launcher, ranks_from_environment
from stages.core.training.trainer import TrainingData, train


def main(argv: list[str] | None = None) -> None:
    die_with_launcher()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tiles", type=Path, help="output of the tile stage")
    parser.add_argument("encoded", type=Path, help="output of the encode stage")
    parser.add_argument("splits", type=Path, help="output of the split stage")
    parser.add_argument("models", type=Path, help="directory for best.pt and last.pt")
    parser.add_argument("--live", type=Path, default=Path("metrics/train"), help="DVCLive directory")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    model_params = read_section(params, "model", ModelParams)
    train_params = read_section(params, "train", TrainParams)
    augment_params = read_section(params, "augment", AugmentParams)

    train_tiles = read_index(args.splits / "train.csv")
    val_tiles = read_index(args.splits / "val.csv")
    if not val_tiles:
        raise PipelineError("params: split.ratios.val is 0, but training needs validation images to pick best.pt")
    store = TileStore(args.tiles, args.encoded)
    data = TrainingData(train_tiles, val_tiles, store, store.class_table(), tile_size=train_tiles[0].size)
    last = train(model_params, train_params, augment_params, data, args.models, args.live)
    if ranks_from_environment().main:  # one summary line, from rank 0
        print(
            f"train: {train_params.epochs} epochs; last epoch val mIoU (land classes) "
            f"{last['val']['miou_land']:.4f}, train {last['train']['miou_land']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)
