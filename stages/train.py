"""train: DeepLabV3+ on the training tiles, validated on the val tiles each epoch, logged with DVCLive.

Run as it is, it is one process; started by torchrun (as dvc.yaml's command does), it is one of
train.processes x train.nodes processes that train together (see landcover/training/distributed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.scaling import BAND_STATISTICS, BandScaling, read_band_statistics, scaling_from_params
from landcover.data.tilestore import TileRecord, TileStore, read_index
from landcover.io.errors import PipelineError, run_stage
from landcover.io.params import (
    DEFAULT_PARAMS,
    AugmentParams,
    DataParams,
    ModelParams,
    TrainParams,
    load_params,
    read_section,
)
from landcover.model.ranks import die_with_launcher, ranks_from_environment
from landcover.training.components import check_train_options
from landcover.training.trainer import TrainingData, train


def training_scaling(data_params: DataParams, store: TileStore, first: TileRecord, splits: Path) -> BandScaling:
    """The scaling the model trains with: data.bands and data.scaling for the tiles' type (read from the first
    training tile), with the training split's band statistics where the split stage wrote them."""
    tile = store.read_image(first)
    channels = tile.shape[2] if tile.ndim == 3 else 1
    if channels != len(data_params.bands):
        raise PipelineError(
            f"params: data.bands lists {len(data_params.bands)} bands, but the tiles of {first.image_id} have "
            f"{channels}"
        )
    statistics_path = splits / BAND_STATISTICS
    statistics = read_band_statistics(statistics_path, data_params.bands) if statistics_path.is_file() else None
    return scaling_from_params(data_params, str(tile.dtype), statistics)


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
    data_params = read_section(params, "data", DataParams)
    check_train_options(train_params, data_params)  # before any tile is read or anything built

    train_tiles = read_index(args.splits / "train.csv")
    val_tiles = read_index(args.splits / "val.csv")
    if not val_tiles:
        raise PipelineError("params: split.ratios.val is 0, but training needs validation images to pick best.pt")
    store = TileStore(args.tiles, args.encoded)
    scaling = training_scaling(data_params, store, train_tiles[0], args.splits)
    data = TrainingData(train_tiles, val_tiles, store, store.class_table(), train_tiles[0].size, scaling)
    last = train(model_params, train_params, augment_params, data, args.models, args.live)
    if ranks_from_environment().main:  # one summary line, from rank 0
        print(
            f"train: {train_params.epochs} epochs; last epoch val mIoU (land classes) "
            f"{last['val']['miou_land']:.4f}, train {last['train']['miou_land']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)
