"""Calibrated confidence: ECE and NLL, the temperature fit and its guard, the temperature in checkpoints,
probabilities (torch and ONNX) and the exported model's metadata, the calibration stage and its figure."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from landcover.data.palette import ClassTable
from landcover.data.scaling import UINT8_RGB
from landcover.evaluation.calibration import (
    TEMPERATURE_RANGE,
    PixelLogits,
    calibration_figures,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability,
    tile_logits,
)
from landcover.evaluation.card import card_content, card_markdown
from landcover.evaluation.model_plots import plot_reliability
from landcover.inference.export import model_metadata, onnx_bytes, read_onnx_interface, with_metadata
from landcover.inference.probabilities import trained_model_probabilities
from landcover.inference.runtimes import onnxruntime_probabilities
from landcover.io.errors import PipelineError
from landcover.model.checkpoint import (
    TEMPERATURE,
    ModelInterface,
    TrainedModel,
    checkpoint_config,
    load_checkpoint,
    load_trained_model,
    read_model_interface,
    read_training_record,
    save_checkpoint,
)
from landcover.model.model import build_model, normalise
from landcover.training.checkpoints import CheckpointPolicy

TABLE = ClassTable.deepglobe()
TILE = 32


def pixels_of(logits: torch.Tensor, labels: torch.Tensor) -> PixelLogits:
    return PixelLogits(logits, labels, len(labels))


def tempered_sample(temperature: float, count: int = 40_000, seed: int = 0) -> PixelLogits:
    """Logits, and labels drawn from softmax(logits / temperature): a model whose true temperature is known."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(count, 7, generator=generator) * 3
    labels = torch.multinomial((logits / temperature).softmax(dim=1), 1, generator=generator).squeeze(1)
    return pixels_of(logits, labels)


# --- the statistics -----------------------------------------------------------------------------------


def test_the_nll_of_hand_made_logits():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    expected = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 3
    assert negative_log_likelihood(logits, labels) == pytest.approx(expected, rel=1e-12)
    # at T = 2 the logits are halved
    halved = (math.log(2) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 3
    assert negative_log_likelihood(logits, labels, 2.0) == pytest.approx(halved, rel=1e-12)


def test_an_overconfident_model_has_the_gap_as_its_ece():
    """Every pixel at confidence 0.9, 60% of them right: one bin, ECE = 0.9 - 0.6."""
    probabilities = torch.tensor([[0.9, 0.1]]).repeat(10, 1)
    labels = torch.tensor([0] * 6 + [1] * 4)
    bins = reliability(probabilities, labels)
    assert bins.ece == pytest.approx(0.3)
    assert bins.pixels[13] == 10 and sum(bins.pixels) == 10  # 0.9 lies in (13/15, 14/15]
    assert bins.confidence[13] == pytest.approx(0.9) and bins.accuracy[13] == pytest.approx(0.6)
    assert bins.accuracy[0] is None


def test_the_ece_weights_each_bin_by_its_pixels():
    """Two bins: 3 pixels at 0.55 all right (gap 0.45), 1 pixel at 1.0 wrong (gap 1): (3 x 0.45 + 1) / 4."""
    probabilities = torch.tensor([[0.55, 0.45]] * 3 + [[1.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx((3 * 0.45 + 1.0) / 4)
    bins = reliability(probabilities, labels)
    assert bins.pixels[8] == 3 and bins.pixels[14] == 1  # 0.55 in (8/15, 9/15]; 1.0 in the last bin


def test_perfectly_calibrated_probabilities_have_an_ece_near_zero():
    generator = torch.Generator().manual_seed(1)
    confidence = 0.5 + 0.5 * torch.rand(200_000, generator=generator, dtype=torch.float64)
    right = torch.rand(200_000, generator=generator, dtype=torch.float64) < confidence
    probabilities = torch.stack([confidence, 1 - confidence], dim=1)
    labels = torch.where(right, 0, 1)
    assert expected_calibration_error(probabilities, labels) < 0.01
    # and the same pixels made overconfident are not
    sharpened = (probabilities.log() * 3).softmax(dim=1)
    assert expected_calibration_error(sharpened, labels) > 0.1


# --- the fit and its guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fit_recovers_the_temperature_the_labels_were_drawn_with(true_temperature):
    fit = fit_temperature(tempered_sample(true_temperature))
    assert fit.reason == ""
    assert fit.temperature == pytest.approx(true_temperature, rel=0.03)
    assert fit.nll_after <= fit.nll_before
    # it is the minimiser: a step either way raises the NLL
    pixels = tempered_sample(true_temperature)
    for other in (fit.temperature * 0.98, fit.temperature * 1.02):
        assert negative_log_likelihood(pixels.logits, pixels.labels, other) > fit.nll_after
    # and calibrated probabilities have a smaller ECE where the model was not calibrated
    if true_temperature != 1.0:
        assert calibration_figures(pixels, fit.temperature)["ece"] < calibration_figures(pixels, 1.0)["ece"]


def test_the_fit_is_deterministic():
    assert fit_temperature(tempered_sample(1.7)) == fit_temperature(tempered_sample(1.7))


def test_separated_pixels_keep_one():
    """Every pixel right: the NLL falls as T shrinks to the range's bound, so 1.0 is kept, with the reason."""
    logits = torch.randn(1000, 7, generator=torch.Generator().manual_seed(2)) * 5
    fit = fit_temperature(pixels_of(logits, logits.argmax(dim=1)))
    assert fit.temperature == 1.0 and "separated" in fit.reason
    assert fit.nll_after == fit.nll_before


def test_logits_that_say_nothing_keep_one():
    fit = fit_temperature(pixels_of(torch.zeros(70, 7), torch.arange(70) % 7))
    assert fit.temperature == 1.0 and "no usable confidence" in fit.reason


def test_a_temperature_beyond_the_range_keeps_one():
    high = TEMPERATURE_RANGE[1]
    fit = fit_temperature(tempered_sample(high * 3))
    assert fit.temperature == 1.0 and str(int(high)) in fit.reason


def test_no_pixels_keep_one():
    fit = fit_temperature(PixelLogits(torch.zeros(0, 7), torch.zeros(0, dtype=torch.long), 0))
    assert fit.temperature == 1.0 and fit.reason == "no labelled pixels to fit on"


def test_a_fit_that_does_not_lower_the_nll_keeps_one(monkeypatch):
    """The guard on the NLL itself, reached by making the computed NLL rise with any temperature but 1."""
    from landcover.evaluation import calibration

    real = calibration.negative_log_likelihood
    monkeypatch.setattr(
        calibration,
        "negative_log_likelihood",
        lambda logits, labels, temperature=1.0: real(logits, labels) + (temperature != 1.0),
    )
    fit = calibration.fit_temperature(tempered_sample(2.0))
    assert fit.temperature == 1.0 and "does not lower the NLL" in fit.reason and fit.fitted is not None


# --- logits of tiles -----------------------------------------------------------------------------------------


class Fixed(torch.nn.Module):
    """A stand-in model: logits that are the scaled input's first channels, so they are known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, -x], dim=1)


def test_tile_logits_leave_out_ignored_pixels_and_subsample_with_a_seed():
    images = torch.randint(0, 255, (2, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    masks = torch.randint(0, 6, (2, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    masks[0, :4] = 255
    batches = [(images, masks)]
    everything = tile_logits(Fixed(), batches, UINT8_RGB, torch.device("cpu"), expected_pixels=512)
    assert len(everything) == everything.seen == 512 - 64
    expected = normalise(images, UINT8_RGB)
    expected = torch.cat([expected, -expected], dim=1).permute(0, 2, 3, 1).reshape(-1, 6)
    kept = masks.reshape(-1) != 255
    torch.testing.assert_close(everything.logits, expected[kept])
    assert torch.equal(everything.labels, masks.reshape(-1)[kept].long())
    some = tile_logits(Fixed(), batches, UINT8_RGB, torch.device("cpu"), expected_pixels=512, max_pixels=128)
    again = tile_logits(Fixed(), batches, UINT8_RGB, torch.device("cpu"), expected_pixels=512, max_pixels=128)
    assert 64 < len(some) < 200 and some.seen == 448
    assert torch.equal(some.logits, again.logits)


# --- the temperature in checkpoints, probabilities and exports ---------------------------------------------------


def tiny_trained(temperature: float = 1.0) -> TrainedModel:
    torch.manual_seed(0)
    return TrainedModel(build_model("resnet18", len(TABLE)).eval(), TABLE, UINT8_RGB, TILE, temperature)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A checkpoint without a temperature (as before calibration) and one with T = 2.5, the same weights."""
    root = tmp_path_factory.mktemp("checkpoints")
    weights = tiny_trained().model.state_dict()
    config = checkpoint_config("resnet18", TABLE, TILE)
    save_checkpoint(root / "old.pt", config=config, model=weights, params={}, epoch=1)
    fit = {"temperature": 2.5, "nll_before": 1.0, "nll_after": 0.9, "fitted": 2.5, "pixels": 10, "reason": ""}
    save_checkpoint(
        root / "calibrated.pt", config={**config, TEMPERATURE: 2.5}, model=weights, params={}, epoch=1, calibration=fit
    )
    return root


def test_a_checkpoint_without_a_temperature_reads_as_one(checkpoints):
    assert load_trained_model(checkpoints / "old.pt").temperature == 1.0
    assert read_model_interface(checkpoints / "old.pt").temperature == 1.0
    record = read_training_record(checkpoints / "old.pt")
    assert record["temperature"] == 1.0 and record["calibration"] is None
    assert load_trained_model(checkpoints / "calibrated.pt").temperature == 2.5
    assert read_training_record(checkpoints / "calibrated.pt")["calibration"]["nll_after"] == 0.9


def test_a_malformed_temperature_is_refused_naming_the_file(checkpoints, tmp_path):
    checkpoint = load_checkpoint(checkpoints / "calibrated.pt")
    checkpoint.pop("format")
    save_checkpoint(tmp_path / "bad.pt", **{**checkpoint, "config": {**checkpoint["config"], TEMPERATURE: -1.0}})
    with pytest.raises(PipelineError, match="bad.pt: its temperature -1.0 is not a positive number"):
        read_model_interface(tmp_path / "bad.pt")


def batch() -> torch.Tensor:
    return torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def model_logits(trained: TrainedModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return trained.model(normalise(images, trained.scaling)).float()


@pytest.mark.parametrize("tta", [False, True])
def test_torch_probabilities_are_the_softmax_of_the_logits_over_the_temperature(checkpoints, tta):
    images = batch()
    calibrated = load_trained_model(checkpoints / "calibrated.pt")
    probabilities = trained_model_probabilities(calibrated, torch.device("cpu"), "fp32", tta=tta)(images)
    if not tta:
        expected = (model_logits(calibrated, images) / 2.5).softmax(dim=1)
        torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=1e-5)
    plain = load_trained_model(checkpoints / "old.pt")
    uncalibrated = trained_model_probabilities(plain, torch.device("cpu"), "fp32", tta=tta)(images)
    assert not torch.allclose(probabilities, uncalibrated, atol=1e-3)
    # the argmax of one pass does not change (TTA averages may, where views disagree)
    if not tta:
        assert torch.equal(probabilities.argmax(dim=1), uncalibrated.argmax(dim=1))


def test_the_exported_graph_divides_by_the_temperature_and_its_metadata_carries_it(tmp_path):
    images = batch()
    calibrated = tiny_trained(2.5)
    interface = ModelInterface(TABLE, UINT8_RGB, TILE, "0" * 64, 2.5)
    path = tmp_path / "model.onnx"
    path.write_bytes(with_metadata(onnx_bytes(calibrated), model_metadata(interface, "fp32", {})))
    expected = (model_logits(calibrated, images) / 2.5).softmax(dim=1)
    actual = onnxruntime_probabilities(path)(images)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    assert read_onnx_interface(path).temperature == 2.5
    # an uncalibrated model's graph has no division: the bytes of before
    plain = onnx_bytes(tiny_trained())
    assert plain == onnx_bytes(dataclasses.replace(tiny_trained(), temperature=1.0))
    assert plain != onnx_bytes(calibrated)


def test_an_export_without_a_temperature_reads_as_one(tmp_path):
    interface = ModelInterface(TABLE, UINT8_RGB, TILE, "0" * 64)
    metadata = model_metadata(interface, "fp32", {})
    assert metadata["temperature"] == "1.0"
    del metadata["temperature"]
    path = tmp_path / "old.onnx"
    path.write_bytes(with_metadata(onnx_bytes(tiny_trained()), metadata))
    assert read_onnx_interface(path).temperature == 1.0


# --- the train stage's record, the card, the figure ---------------------------------------------------------------


def test_the_policy_records_the_temperature_in_best_pt_only(tmp_path, checkpoints):
    policy = CheckpointPolicy(tmp_path, checkpoint_config("resnet18", TABLE, TILE), {})
    model = tiny_trained().model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy.after_epoch(1, [{"train": {}, "val": {}}], 0.5, model, optimizer, None)
    fit = {"temperature": 1.3, "nll_before": 1.0, "nll_after": 0.9, "fitted": 1.3, "pixels": 5, "reason": ""}
    policy.record_calibration(1.3, fit)
    policy.publish()
    assert load_trained_model(tmp_path / "best.pt").temperature == 1.3
    assert read_training_record(tmp_path / "best.pt")["calibration"] == fit
    assert load_trained_model(tmp_path / "last.pt").temperature == 1.0
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1  # the rest of the checkpoint is kept


def details(before: float, after: float, temperature: float = 1.2) -> dict:
    pixels = tempered_sample(temperature, count=5000)
    return {
        "temperature": temperature,
        "fit": None,
        "test": {
            "bins": 15,
            "pixels": 5000,
            "labelled_pixels": 5000,
            "before": calibration_figures(pixels, 1.0),
            "after": calibration_figures(pixels, temperature),
        },
    }


def test_the_reliability_diagram_is_drawn_and_byte_stable(tmp_path):
    figures = details(0.0, 0.0)
    plot_reliability(figures, tmp_path / "a.png")
    plot_reliability(figures, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_card_has_the_temperature_and_the_test_figures(checkpoints):
    test = {"ece_before": 0.07, "ece_after": 0.05, "nll_before": 0.46, "nll_after": 0.44}
    card = card_content(
        read_model_interface(checkpoints / "calibrated.pt"),
        read_training_record(checkpoints / "calibrated.pt"),
        {},
        {},
        {"check_tiles": 8},
        {},
        "0" * 64,
        {},
        {"temperature": 2.5, "test": test},
    )
    assert card["calibration"]["temperature"] == 2.5 and card["calibration"]["test"] == test
    assert card["calibration"]["val_nll"] == {"before": 1.0, "after": 0.9}
    text = card_markdown(card)
    assert "temperature 2.5000" in text and "| expected calibration error (15 bins) | 0.0700 | 0.0500 |" in text
    json.dumps(card)
    old = card_content(
        read_model_interface(checkpoints / "old.pt"),
        read_training_record(checkpoints / "old.pt"),
        {},
        {},
        {"check_tiles": 8},
        {},
        "",
        {},
    )
    assert old["calibration"]["temperature"] == 1.0 and "no fit recorded" in card_markdown(old)


def test_reliability_bins_cover_every_pixel():
    pixels = tempered_sample(1.5, count=3000)
    bins = calibration_figures(pixels, 1.0)["reliability"]
    assert sum(bins["pixels"]) == 3000 and len(bins["edges"]) == 16
    assert np.isclose(bins["edges"][-1], 1.0)


def test_the_calibration_stage_reports_the_test_figures_before_and_after(tmp_path, capsys):
    """The stage on a tiny project with a calibrated checkpoint: the headline figures recomputed from scratch,
    the details' bins, and the plot stage's figure drawn from them."""
    from stages import calibration as calibration_stage
    from tests.test_export import write_tiny_project

    trained = tiny_trained()
    root = write_tiny_project(tmp_path, trained)["root"]
    checkpoint = load_checkpoint(root / "best.pt")
    checkpoint.pop("format")
    fit = {"temperature": 1.7, "nll_before": 2.0, "nll_after": 1.9, "fitted": 1.7, "pixels": 4096, "reason": ""}
    config = {**checkpoint["config"], TEMPERATURE: 1.7}
    save_checkpoint(root / "best.pt", **{**checkpoint, "config": config, "calibration": fit})
    calibration_stage.main(
        [
            *("--checkpoint", str(root / "best.pt"), "--tiles", str(root / "tiles")),
            *("--encoded", str(root / "encoded"), "--split", str(root / "splits" / "test.csv")),
            *("--metrics", str(tmp_path / "calibration.json"), "--details", str(tmp_path / "details.json")),
        ]
    )
    headline = json.loads((tmp_path / "calibration.json").read_text())
    assert headline["temperature"] == 1.7 and headline["val"] == {"nll_before": 2.0, "nll_after": 1.9}
    # the test image "2" (64 px, four 32 px tiles, none overlapping), tile by tile
    from landcover.data.tilestore import TileStore, crop, read_index

    store = TileStore(root / "tiles", root / "encoded")
    records = read_index(root / "splits" / "test.csv")
    image, mask = store.whole_image(records[0]), store.whole_class_mask(records[0])
    tiles = torch.from_numpy(np.stack([crop(image, record) for record in records]))
    labels = torch.from_numpy(np.stack([crop(mask, record) for record in records])).reshape(-1).long()
    logits = model_logits(trained, tiles).permute(0, 2, 3, 1).reshape(-1, len(TABLE))
    for temperature, key in ((1.0, "before"), (1.7, "after")):
        assert headline["test"][f"nll_{key}"] == pytest.approx(
            negative_log_likelihood(logits, labels, temperature), abs=2e-5
        )
        expected_ece = expected_calibration_error((logits / temperature).softmax(dim=1), labels)
        assert headline["test"][f"ece_{key}"] == pytest.approx(expected_ece, abs=2e-5)
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["fit"] == fit and details["test"]["pixels"] == 64 * 64
    assert sum(details["test"]["after"]["reliability"]["pixels"]) == 64 * 64
    assert "calibration: temperature 1.7000" in capsys.readouterr().out
    plot_reliability(details, tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 0
