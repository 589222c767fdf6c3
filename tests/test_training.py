"""Training is reproducible to the byte, resumes exactly, and stops on a non-finite loss."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from stages import encode, sample, split, tile
from stages.core.errors import PipelineError
from stages.core.palette import IGNORE_INDEX
from stages.core.params import AugmentParams, ModelParams, TrainParams, load_params, read_section
from stages.core.tilestore import TileStore, read_index
from stages.core.training.components import BatchSettings, configure_loss
from stages.core.training.loop import run_epoch
from stages.core.training.trainer import TrainingData, train
from tests.conftest import write_params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, TrainingData]:
    """A tiny sample run through the data stages, and tiny training params."""
    root = tmp_path_factory.mktemp("prepared")
    params = write_params(root / "params.yaml",
                          sample={"train_images": 6, "valid_images": 0, "test_images": 0, "image_size": 64},
                          tile={"size": 32, "stride": 32},
                          split={"ratios": {"train": 0.5, "val": 0.5, "test": 0.0}},
                          model={"encoder": "resnet18"},
                          train={"epochs": 2, "batch_size": 4, "workers": 0, "restart_epochs": 1})
    sample.main([str(root / "raw"), "--params", str(params)])
    tile.main([str(root / "raw"), str(root / "tiles"), "--params", str(params)])
    encode.main([str(root / "tiles"), str(root / "encoded"), "--report", str(root / "encode.json")])
    split.main([str(root / "tiles"), str(root / "encoded"), str(root / "splits"), "--params", str(params),
                "--distribution", str(root / "distribution.json")])
    store = TileStore(root / "tiles", root / "encoded")
    data = TrainingData(read_index(root / "splits/train.csv"), read_index(root / "splits/val.csv"), store,
                        store.class_table(), tile_size=32)
    return params, data


def run_training(prepared, out: Path, **overrides) -> dict[str, str]:
    """Train with the tiny params (plus overrides) into `out`; md5 of each output file."""
    params_path, data = prepared
    params = load_params(params_path)
    train_params = dataclasses.replace(read_section(params, "train", TrainParams), **overrides)
    train(read_section(params, "model", ModelParams), train_params, read_section(params, "augment", AugmentParams),
          data, out / "models", out / "live", progress=False)
    return {str(path.relative_to(out)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(out.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> dict[str, str]:
    """Hashes of a plain 2-epoch run, run outside any git repository (DVCLive needs none)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return run_training(prepared, root, epochs=2)


def test_two_runs_give_identical_checkpoints_and_metrics(prepared, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"models/best.pt", "models/last.pt", "live/metrics.json"} <= set(uninterrupted)
    assert run_training(prepared, tmp_path / "again", epochs=2) == uninterrupted


def test_resumed_run_ends_like_an_uninterrupted_one(prepared, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_training(prepared, tmp_path / "resumed", epochs=1)  # "stopped" after epoch 1
    resumed = run_training(prepared, tmp_path / "resumed", epochs=2, resume=True)
    assert resumed == uninterrupted
    metrics = json.loads((tmp_path / "resumed/live/metrics.json").read_text())
    assert metrics["step"] == 2 and "miou_land" in metrics["val"]


def test_resume_refuses_a_checkpoint_of_another_model(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_training(prepared, tmp_path / "run", epochs=1)
    params_path, data = prepared
    other = dataclasses.replace(data, tile_size=64)
    params = load_params(params_path)
    with pytest.raises(PipelineError, match="last.pt: was trained with tile_size=32, now 64"):
        train(read_section(params, "model", ModelParams),
              dataclasses.replace(read_section(params, "train", TrainParams), resume=True),
              read_section(params, "augment", AugmentParams), other, tmp_path / "run/models", tmp_path / "run/live",
              progress=False)


class NaNModel(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((images.shape[0], 3, *images.shape[2:]), float("nan"), requires_grad=True)


def test_a_non_finite_loss_stops_training_with_a_clear_error():
    loader = [(torch.zeros(2, 16, 16, 3, dtype=torch.uint8), torch.zeros(2, 16, 16, dtype=torch.uint8))]
    settings = BatchSettings(torch.device("cpu"), False, False, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(PipelineError, match="loss became nan in epoch 1 train, batch 1"):
        run_epoch(NaNModel(), loader, settings, configure_loss("ce"), 3, "epoch 1 train",
                  optimizer=torch.optim.SGD([torch.zeros(1)], lr=1), progress=False)


@pytest.mark.parametrize("objective", ["dice", "ce", "dice_ce"])
def test_each_objective_also_gives_the_dice_loss_and_ignores_ignored_pixels(objective):
    from segmentation_models_pytorch.losses import DiceLoss

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), generator=generator)
    target[:, :2] = IGNORE_INDEX
    loss, dice = configure_loss(objective)(logits, target)
    expected_dice = DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)(logits, target)
    expected_ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    expected = {"dice": expected_dice, "ce": expected_ce, "dice_ce": expected_dice + expected_ce}[objective]
    assert loss.item() == pytest.approx(expected.item()) and dice.item() == pytest.approx(expected_dice.item())
    assert not dice.requires_grad and loss.requires_grad
    loss.backward()
    assert logits.grad[:, :, :2].abs().max() == 0  # ignored pixels get no gradient
