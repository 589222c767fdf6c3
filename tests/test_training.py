"""Training is reproducible to the byte, resumes exactly, and stops on a non-finite loss."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from landcover.data.datasets import TileDataset
from landcover.data.geometry import tile_grid
from landcover.data.palette import IGNORE_INDEX
from landcover.data.scaling import UINT8_RGB, statistics_scaling, write_band_statistics
from landcover.data.tilestore import TileRecord, TileStore, read_index, tile_name
from landcover.io.errors import PipelineError
from landcover.io.params import AugmentParams, DataParams, ModelParams, TrainParams, load_params, read_section
from landcover.model.checkpoint import load_checkpoint
from landcover.training import trainer
from landcover.training.checkpoints import training_params
from landcover.training.components import BatchSettings, configure_loss
from landcover.training.loop import run_epoch
from landcover.training.trainer import TrainingData, train
from stages.train import training_scaling
from tests.conftest import REPO, WholeImageStore, prepare_tiny_sample


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, TrainingData]:
    """A tiny sample run through the data stages, and tiny training params."""
    root = tmp_path_factory.mktemp("prepared")
    params = prepare_tiny_sample(root, train={"epochs": 2, "batch_size": 4})
    store = TileStore(root / "tiles", root / "encoded")
    data = TrainingData(
        read_index(root / "splits/train.csv"),
        read_index(root / "splits/val.csv"),
        store,
        store.class_table(),
        tile_size=32,
    )
    return params, data


def run_training(
    prepared, out: Path, model: dict | None = None, augment: dict | None = None, **train_overrides
) -> dict[str, str]:
    """Train with the tiny params (plus overrides per section) into `out`; md5 of each file there."""
    params_path, data = prepared
    params = load_params(params_path)
    train(
        dataclasses.replace(read_section(params, "model", ModelParams), **(model or {})),
        dataclasses.replace(read_section(params, "train", TrainParams), **train_overrides),
        dataclasses.replace(read_section(params, "augment", AugmentParams), **(augment or {})),
        data,
        out / "models",
        out / "live",
        progress=False,
    )
    return {
        str(path.relative_to(out)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> dict[str, str]:
    """Hashes of a plain 2-epoch run, run outside any git repository (DVCLive needs none)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return run_training(prepared, root, epochs=2)


def test_two_runs_give_identical_checkpoints_and_metrics(prepared, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {
        "models/best.pt",
        "models/last.pt",
        "models/resume/best.pt",
        "models/resume/last.pt",
        "live/metrics.json",
    } <= set(uninterrupted)
    assert not [name for name in uninterrupted if name.endswith(".tmp")]  # no staging file left behind
    assert run_training(prepared, tmp_path / "again", epochs=2) == uninterrupted


def test_checkpoints_carry_the_params_they_were_trained_with(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_training(prepared, tmp_path / "run", epochs=1, lr=0.0025)
    params = load_params(prepared[0])
    expected = training_params(
        read_section(params, "model", ModelParams),
        dataclasses.replace(read_section(params, "train", TrainParams), lr=0.0025),
        read_section(params, "augment", AugmentParams),
    )
    for name in ("best.pt", "last.pt"):
        stored = load_checkpoint(tmp_path / "run/models" / name)["params"]
        assert stored == expected and stored["train.lr"] == 0.0025 and stored["model.encoder"] == "resnet18"
        assert "train.epochs" not in stored and "train.resume" not in stored


def test_without_augment_params_tiles_are_not_augmented_nor_augment_params_stored(prepared):
    # how the GPU check trains (tools/gpu_check.py): its machine has no albumentations
    params_path, data = prepared
    params = load_params(params_path)
    model_params, train_params = read_section(params, "model", ModelParams), read_section(params, "train", TrainParams)
    augmented = training_params(model_params, train_params, read_section(params, "augment", AugmentParams))
    assert training_params(model_params, train_params, None) == {
        key: value for key, value in augmented.items() if not key.startswith("augment.")
    }
    tiles = trainer.training_set(data.train, data.store, data.tile_size, None, train_params)
    assert tiles.augment is None
    image, mask = tiles[3]
    assert np.array_equal(image.numpy(), data.store.read_image(data.train[3]))
    assert np.array_equal(mask.numpy(), data.store.read_class_mask(data.train[3]))


def test_resumed_run_ends_like_an_uninterrupted_one(prepared, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_training(prepared, tmp_path / "resumed", epochs=1)  # "stopped" after epoch 1
    resumed = run_training(prepared, tmp_path / "resumed", epochs=2, resume=True)
    assert resumed == uninterrupted
    metrics = json.loads((tmp_path / "resumed/live/metrics.json").read_text())
    assert metrics["step"] == 2 and "miou_land" in metrics["val"]


@pytest.fixture(scope="module")
def one_epoch(prepared, tmp_path_factory) -> Path:
    """A finished 1-epoch run, to resume from (a refused resume writes nothing, so tests can share it)."""
    root = tmp_path_factory.mktemp("one_epoch")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run_training(prepared, root, epochs=1)
    return root


def test_resume_refuses_a_checkpoint_of_another_model(prepared, one_epoch, monkeypatch):
    monkeypatch.chdir(one_epoch)
    params_path, data = prepared
    other = dataclasses.replace(data, tile_size=64)
    params = load_params(params_path)
    with pytest.raises(PipelineError, match="resume/last.pt: was trained with tile_size=32, now 64"):
        train(
            read_section(params, "model", ModelParams),
            dataclasses.replace(read_section(params, "train", TrainParams), epochs=2, resume=True),
            read_section(params, "augment", AugmentParams),
            other,
            one_epoch / "models",
            one_epoch / "live",
            progress=False,
        )


@pytest.mark.parametrize(
    "changes, key, stored, now",
    [
        ({"lr": 0.002}, "train.lr", "0.003", "0.002"),
        ({"seed": 8}, "train.seed", "7", "8"),
        ({"batch_size": 2}, "train.batch_size", "4", "2"),
        ({"loss": "ce"}, "train.loss", "'dice_ce'", "'ce'"),
        ({"restart_epochs": 2}, "train.restart_epochs", "1", "2"),
        ({"augment": {"scale_min": 0.5}}, "augment.scale_min", "0.75", "0.5"),
    ],
)
def test_resume_refuses_changed_params_naming_the_first_that_differs(
    prepared, one_epoch, monkeypatch, changes, key, stored, now
):
    monkeypatch.chdir(one_epoch)
    before = {path: path.stat().st_mtime_ns for path in one_epoch.rglob("*") if path.is_file()}
    with pytest.raises(
        PipelineError,
        match=rf"was trained with {key}={stored}, params now say {now}; "
        "only train.epochs may change",
    ):
        run_training(prepared, one_epoch, epochs=2, resume=True, **changes)
    assert {path: path.stat().st_mtime_ns for path in one_epoch.rglob("*") if path.is_file()} == before


def test_a_run_killed_mid_training_resumes_to_the_same_bytes(prepared, tmp_path, monkeypatch):
    """A real `kill -9` of the train stage's process, then a resumed run, against an uninterrupted run."""
    monkeypatch.chdir(tmp_path)
    params_path, data = prepared
    epochs = 3  # the kill comes once the resume state exists: after epoch 1 or 2, never after the end
    reference = run_training(prepared, tmp_path / "reference", epochs=epochs)
    sections = load_params(params_path)
    sections["train"]["epochs"] = epochs
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(sections, sort_keys=False))
    out, root = tmp_path / "killed", params_path.parent
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stages.train",
            str(root / "tiles"),
            str(root / "encoded"),
            str(root / "splits"),
            str(out / "models"),
            "--live",
            str(out / "live"),
            "--params",
            str(params),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (out / "models/resume/last.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoint"
        time.sleep(0.01)
    process.kill()  # SIGKILL: no handler, no cleanup
    process.wait()
    assert not (out / "models/last.pt").exists()  # killed before the end
    assert run_training(prepared, out, epochs=epochs, resume=True) == reference


def test_a_nan_loss_keeps_the_last_good_checkpoint_and_closes_the_log(prepared, tmp_path, monkeypatch):
    import dvclive

    monkeypatch.chdir(tmp_path)
    ended_at = []

    class SpyLive(dvclive.Live):
        def end(self):
            ended_at.append(self.step)
            super().end()

    monkeypatch.setattr(dvclive, "Live", SpyLive)
    logged = []
    log_epoch, configure_loss_ = trainer.log_epoch, trainer.configure_loss
    monkeypatch.setattr(
        trainer, "log_epoch", lambda live, epoch, record: (logged.append(epoch), log_epoch(live, epoch, record))
    )

    def poisoned_after_epoch_1(name):
        loss = configure_loss_(name)
        return lambda logits, target: loss(logits, target) * (float("nan") if logged else 1.0)

    monkeypatch.setattr(trainer, "configure_loss", poisoned_after_epoch_1)
    with pytest.raises(PipelineError, match="loss became nan in epoch 2 train, batch 1"):
        run_training(prepared, tmp_path / "run", epochs=2)
    assert ended_at == [1]  # DVCLive was closed, at the last epoch it logged
    assert load_checkpoint(tmp_path / "run/models/resume/last.pt")["epoch"] == 1
    assert not (tmp_path / "run/models/last.pt").exists()  # an unfinished run publishes nothing


class Payload:
    """Unpickling this runs code: it creates the file at `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker, crafted = tmp_path / "code-ran", tmp_path / "crafted.pt"
    torch.save({"format": 1, "config": Payload(marker)}, crafted)
    with pytest.raises(PipelineError, match="crafted.pt: cannot load checkpoint"):
        load_checkpoint(crafted)
    assert not marker.exists()
    torch.load(crafted, weights_only=False)  # the payload is real: unpickled without weights_only, it runs
    assert marker.exists()


class NaNModel(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.full((images.shape[0], 3, *images.shape[2:]), float("nan"), requires_grad=True)


def test_a_non_finite_loss_stops_training_with_a_clear_error():
    loader = [(torch.zeros(2, 16, 16, 3, dtype=torch.uint8), torch.zeros(2, 16, 16, dtype=torch.uint8))]
    settings = BatchSettings(torch.device("cpu"), "fp32", False, UINT8_RGB)
    with pytest.raises(PipelineError, match="loss became nan in epoch 1 train, batch 1"):
        run_epoch(
            NaNModel(),
            loader,
            settings,
            configure_loss("ce"),
            3,
            "epoch 1 train",
            optimizer=torch.optim.SGD([torch.zeros(1)], lr=1),
            progress=False,
        )


@pytest.mark.parametrize("objective", ["dice", "ce", "dice_ce"])
def test_each_objective_is_the_named_loss_and_ignores_ignored_pixels(objective):
    from segmentation_models_pytorch.losses import DiceLoss

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), generator=generator)
    target[:, :2] = IGNORE_INDEX
    loss = configure_loss(objective)(logits, target)
    expected_dice = DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)(logits, target)
    expected_ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    expected = {"dice": expected_dice, "ce": expected_ce, "dice_ce": expected_dice + expected_ce}[objective]
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad[:, :, :2].abs().max() == 0  # ignored pixels get no gradient


class FlatStore(WholeImageStore):
    """Stands in for a TileStore: every image is zeros, its mask all class 1."""

    def whole_image(self, record: TileRecord) -> np.ndarray:
        return np.zeros((record.image_height, record.image_width, 3), dtype=np.uint8)

    def whole_class_mask(self, record: TileRecord) -> np.ndarray:
        return np.ones((record.image_height, record.image_width), dtype=np.uint8)


def records_of(image_id: str, height: int, width: int, size: int) -> list[TileRecord]:
    return [
        TileRecord(tile_name(image_id, y, x), image_id, y, x, size, height, width)
        for y, x in tile_grid(height, width, size, size)
    ]


def test_validation_counts_each_pixel_of_overlapping_edge_tiles_once():
    # 80 = 2 * 32 + 16: the last row and column of tiles repeat 16 pixels of their neighbours
    records = records_of("a", 80, 80, 32) + records_of("b", 64, 96, 32)
    counted = sum(int((mask != IGNORE_INDEX).sum()) for _, mask in TileDataset(records, FlatStore(), count_once=True))
    assert counted == 80 * 80 + 64 * 96
    plain = sum(int((mask != IGNORE_INDEX).sum()) for _, mask in TileDataset(records, FlatStore()))
    assert plain == 9 * 32 * 32 + 6 * 32 * 32  # without it, the overlaps count twice
    validation = TileDataset(records, FlatStore(), count_once=True, cached_images=2)
    corner = validation[8][1]  # tile at (48, 48) of image a
    assert (corner[:16] == IGNORE_INDEX).all() and (corner[:, :16] == IGNORE_INDEX).all()
    assert (corner[16:, 16:] == 1).all()
    assert (validation[0][1] == 1).all()  # the first tile, cut from the same kept mask, lost no pixel to it


def test_training_takes_batches_of_any_band_count_and_type_through_their_scaling():
    """A 4-band uint16 batch reaches the model scaled (here standardised by its statistics), and trains."""
    scaling = statistics_scaling((1, 2, 3, 4), "uint16", (1000.0,) * 4, (500.0,) * 4)
    settings = BatchSettings(torch.device("cpu"), "fp32", False, scaling)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 3000, (2, 16, 16, 4), dtype=np.uint16))
    inputs = settings.inputs(images)
    torch.testing.assert_close(inputs, (images.permute(0, 3, 1, 2).float() - 1000) / 500)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 3, 3, padding=1)
    before = model.weight.detach().clone()
    loader = [(images, torch.zeros(2, 16, 16, dtype=torch.uint8))]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run_epoch(model, loader, settings, configure_loss("ce"), 3, "epoch 1 train", optimizer=optimizer, progress=False)
    assert not torch.equal(model.weight, before)


def test_the_train_stage_scales_the_tiles_type_by_the_data_params(prepared, tmp_path):
    params_path, data = prepared
    params = read_section(load_params(params_path), "data", DataParams)
    assert training_scaling(params, data.store, data.train[0], tmp_path) == UINT8_RGB  # uint8 RGB tiles: as before
    with pytest.raises(PipelineError, match=r"^params: data.bands lists 4 bands, but the tiles of \S+ have 3$"):
        four_bands = dataclasses.replace(params, bands=(1, 2, 3, 4), value_range=[0, 255])
        training_scaling(four_bands, data.store, data.train[0], tmp_path)
    write_band_statistics(tmp_path / "band_statistics.json", (1, 2, 3), "uint8", ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)))
    stats = training_scaling(dataclasses.replace(params, scaling="statistics"), data.store, data.train[0], tmp_path)
    assert stats.mean == (1.0, 2.0, 3.0) and stats.std == (4.0, 5.0, 6.0) and not stats.clip


class CountingWrapper(torch.nn.Module):
    """Stands in for torch.compile's module: runs the model it wraps and counts the training-mode calls."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.wrapped = model
        self.training_calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.training_calls += self.training
        return self.wrapped(images)


def test_train_compile_runs_the_training_passes_compiled_and_checkpoints_the_model_itself(
    prepared, tmp_path, monkeypatch
):
    wrappers: list[CountingWrapper] = []

    def counting_compile(model: torch.nn.Module) -> torch.nn.Module:
        wrappers.append(CountingWrapper(model))
        return wrappers[-1]

    monkeypatch.chdir(tmp_path)
    run_training(prepared, tmp_path / "eager", epochs=2)
    monkeypatch.setattr(trainer, "compile_for_training", counting_compile)
    run_training(prepared, tmp_path / "compiled", epochs=2, compile=True)
    train_batches = (
        len(read_index(prepared[0].parent / "splits/train.csv")) // 4
    )  # batch_size 4, last short one dropped
    # every training batch of both epochs went through the compiled module, and no validation batch did
    assert len(wrappers) == 1 and wrappers[0].training_calls == 2 * train_batches
    compiled = load_checkpoint(tmp_path / "compiled/models/best.pt")
    eager = load_checkpoint(tmp_path / "eager/models/best.pt")
    assert compiled["params"]["train.compile"] is True and eager["params"]["train.compile"] is False
    # the model's own keys, loadable as usual; the stand-in changes no arithmetic, so the weights are the eager run's
    assert compiled["model"].keys() == eager["model"].keys()
    assert all(torch.equal(compiled["model"][key], eager["model"][key]) for key in eager["model"])
