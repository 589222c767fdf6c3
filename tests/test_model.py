"""The model factory and its weights options."""

from __future__ import annotations

import pytest
import torch

from stages.core.io.errors import PipelineError
from stages.core.model.model import build_model, normalise


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
    out = normalise(batch, (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    assert out.shape == (1, 3, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, 2.0, 1.0]))
