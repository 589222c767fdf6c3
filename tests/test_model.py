"""The model factory and its weights options."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from landcover.data.palette import ClassTable
from landcover.data.scaling import IMAGENET_MEAN, IMAGENET_STD, UINT8_RGB, BandScaling, statistics_scaling
from landcover.io.errors import PipelineError
from landcover.model.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    load_trained_model,
    read_model_interface,
    save_checkpoint,
)
from landcover.model.model import build_model, normalise


@pytest.mark.parametrize("num_classes", [7, 3])
def test_output_has_one_logit_per_class_at_input_resolution(num_classes):
    model = build_model("resnet18", num_classes).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 96, 144))
    assert out.shape == (2, num_classes, 96, 144)


def test_encoder_weights_from_a_local_file(tmp_path):
    source = build_model("resnet18", 7)
    # a torchvision-style classifier state dict: encoder keys plus an fc head that must be dropped
    state = {**source.encoder.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    loaded = build_model("resnet18", 7, str(tmp_path / "resnet18.pth"))
    for key, value in source.encoder.state_dict().items():
        torch.testing.assert_close(loaded.encoder.state_dict()[key], value)


def test_bad_weights_and_encoder_names_are_clear_errors(tmp_path):
    with pytest.raises(PipelineError, match="model.encoder_weights: .*missing.pth not found"):
        build_model("resnet18", 7, str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(PipelineError, match="wrong.pth: weights do not fit the encoder"):
        build_model("resnet18", 7, str(tmp_path / "wrong.pth"))
    with pytest.raises(PipelineError, match="model.encoder 'resnet5000' is not an encoder"):
        build_model("resnet5000", 7)


def test_normalise_gives_imagenet_standardised_nchw():
    batch = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    out = normalise(batch, dataclasses.replace(UINT8_RGB, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5)))
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, 2.0, 1.0]))


def test_the_uint8_default_gives_the_bits_of_the_former_formula_for_every_value():
    """x / 255, then (v - mean) / std with ImageNet's float32 statistics: what every model was trained on."""
    values = torch.arange(256, dtype=torch.uint8)
    batch = torch.stack([values, values.flip(0), values.roll(7)], dim=-1).view(1, 16, 16, 3)
    mean = torch.tensor(IMAGENET_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, -1, 1, 1)
    former = (batch.permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert torch.equal(normalise(batch, UINT8_RGB).view(torch.int32), former.view(torch.int32))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.int16, torch.float32])
def test_normalise_scales_each_band_of_any_type_by_its_range_and_statistics(dtype):
    scaling = BandScaling(
        bands=(4, 1),
        dtype={torch.uint8: "uint8", torch.uint16: "uint16", torch.int16: "int16", torch.float32: "float32"}[dtype],
        low=(10.0, -20.0),
        high=(110.0, 60.0),
        mean=(0.5, 0.25),
        std=(0.5, 2.0),
        clip=True,
    )
    batch = torch.tensor([[[[0, -20], [60, 20], [200, 100]]]], dtype=torch.float32).to(dtype)  # 1 x 1 x 3 x 2
    if dtype == torch.uint8 or dtype == torch.uint16:
        batch = torch.tensor([[[[0, 0], [60, 20], [200, 100]]]]).to(dtype)
    out = normalise(batch, scaling)
    assert out.dtype == torch.float32 and out.shape == (1, 2, 1, 3)
    raw = batch.permute(0, 3, 1, 2).double()
    low, high = torch.tensor([10.0, -20.0]).view(1, 2, 1, 1), torch.tensor([110.0, 60.0]).view(1, 2, 1, 1)
    expected = (((raw - low) / (high - low)).clamp(0, 1) - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor(
        [0.5, 2.0]
    ).view(1, 2, 1, 1)
    torch.testing.assert_close(out.double(), expected)
    # unclipped (statistics): raw values standardised, out of range stays out of range
    unclipped = dataclasses.replace(scaling, low=(0.0, 0.0), high=(1.0, 1.0), clip=False)
    torch.testing.assert_close(
        normalise(batch, unclipped).double(),
        (raw - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor([0.5, 2.0]).view(1, 2, 1, 1),
    )


def test_a_model_takes_the_bands_it_was_built_for():
    model = build_model("resnet18", 3, in_channels=4).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 4, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("in_channels", [4, 1])
def test_three_band_local_weights_reach_other_band_counts_as_smp_patches_them(tmp_path, in_channels):
    """Band i's filters are the RGB filters of channel i mod 3, times 3 / bands (one band: their sum); the rest
    of the encoder is the file's."""
    torch.manual_seed(0)
    source = build_model("resnet18", 7)
    torch.save(source.encoder.state_dict(), tmp_path / "resnet18.pth")
    loaded = build_model("resnet18", 7, str(tmp_path / "resnet18.pth"), in_channels=in_channels)
    rgb = source.encoder.conv1.weight.detach()
    patched = loaded.encoder.conv1.weight.detach()
    assert patched.shape == (64, in_channels, 7, 7)
    if in_channels == 1:
        torch.testing.assert_close(patched, rgb.sum(1, keepdim=True))
    else:
        for band in range(in_channels):
            torch.testing.assert_close(patched[:, band], rgb[:, band % 3] * 3 / in_channels)
    torch.testing.assert_close(loaded.encoder.layer1[0].conv1.weight, source.encoder.layer1[0].conv1.weight)
    with torch.no_grad():
        assert loaded.eval()(torch.zeros(1, in_channels, 32, 32)).shape == (1, 7, 32, 32)


def save_tiny_checkpoint(path, scaling: BandScaling | None) -> nn.Module:
    """A resnet18 checkpoint of `scaling`'s bands; None: the config as written before scalings were recorded."""
    torch.manual_seed(0)
    table = ClassTable.deepglobe()
    model = build_model("resnet18", len(table), in_channels=3 if scaling is None else scaling.channels).eval()
    config = checkpoint_config("resnet18", table, 32, scaling or UINT8_RGB)
    if scaling is None:
        del config["scaling"], config["in_channels"]
    save_checkpoint(path, config=config, model=model.state_dict(), params={}, epoch=1)
    return model


def test_a_checkpoint_without_a_scaling_reads_as_uint8_rgb(tmp_path):
    save_tiny_checkpoint(tmp_path / "old.pt", None)
    assert load_trained_model(tmp_path / "old.pt").scaling == UINT8_RGB
    interface = read_model_interface(tmp_path / "old.pt")
    assert interface.scaling == UINT8_RGB and interface.mean == IMAGENET_MEAN and interface.std == IMAGENET_STD


def test_a_checkpoint_records_its_bands_scaling_and_input_channels(tmp_path):
    scaling = statistics_scaling((4, 3, 2, 1), "uint16", (1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0))
    model = save_tiny_checkpoint(tmp_path / "four.pt", scaling)
    config = load_checkpoint(tmp_path / "four.pt")["config"]
    assert config["in_channels"] == 4 and config["scaling"] == scaling.to_config()
    trained = load_trained_model(tmp_path / "four.pt")
    assert trained.scaling == scaling == read_model_interface(tmp_path / "four.pt").scaling
    batch = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(trained.model(batch), model(batch))


def test_a_malformed_scaling_in_a_checkpoint_is_one_line_naming_it(tmp_path):
    save_tiny_checkpoint(tmp_path / "bad.pt", UINT8_RGB)
    checkpoint = load_checkpoint(tmp_path / "bad.pt")
    checkpoint["config"]["scaling"]["dtype"] = "int64"
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(PipelineError, match=r"bad.pt: its scaling is malformed \(ValueError: dtype must be one of"):
        read_model_interface(tmp_path / "bad.pt")
