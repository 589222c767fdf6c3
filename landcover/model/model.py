"""The model factory (DeepLabV3+, optional local encoder weights), input normalisation, compiling for inference."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from landcover.data.scaling import BandScaling
from landcover.io.errors import PipelineError
from landcover.io.params import NO_ENCODER_WEIGHTS


def build_model(encoder: str, num_classes: int, encoder_weights: str | None = None, in_channels: int = 3) -> nn.Module:
    """DeepLabV3+ taking `in_channels` bands, with `num_classes` softmax logits; encoder_weights: "none" (or
    None), "imagenet" or a local file.

    One logit per class fed to softmax, not the seed notebooks' per-class sigmoid thresholded at
    0.5, which can leave a pixel with no class or several. Pretrained 3-band weights (the hub's or a
    local file's) reach a model of other band counts as smp patches them: the first convolution's
    filters repeat the RGB ones over the bands (band i takes channel i mod 3), scaled by 3 / in_channels.
    """
    import segmentation_models_pytorch as smp  # slow import; only stages that build models pay it

    hub_weights = "imagenet" if encoder_weights == "imagenet" else None
    local_weights = encoder_weights not in (None, NO_ENCODER_WEIGHTS, "imagenet")
    # A local 3-band file loads into a 3-band encoder, which is then patched, as smp patches the hub's weights.
    built_channels = 3 if local_weights else in_channels
    try:
        model = smp.DeepLabV3Plus(
            encoder_name=encoder, encoder_weights=hub_weights, classes=num_classes, in_channels=built_channels
        )
    except KeyError:
        raise PipelineError(
            f"params: model.encoder {encoder!r} is not an encoder segmentation-models-pytorch "
            "knows (e.g. resnet18, resnet34, resnet50)"
        ) from None
    except Exception as error:  # the hub raises many kinds of network errors
        if hub_weights is None:
            raise
        raise PipelineError(
            f"params: model.encoder_weights 'imagenet' could not be fetched for {encoder} "
            f"({type(error).__name__}); without internet, download the encoder weights "
            "elsewhere and set model.encoder_weights to the local file"
        ) from None
    if local_weights:
        load_encoder_weights(model, Path(cast(str, encoder_weights)))
        if in_channels != 3:
            model.encoder.set_in_channels(in_channels, pretrained=True)
    return model


def load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load a local encoder state dict (smp's, or a torchvision/timm classifier's: its head is dropped)."""
    if not path.is_file():
        raise PipelineError(f"params: model.encoder_weights: {path} not found (use none, imagenet or a weights file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PipelineError(f"{path}: cannot load encoder weights ({error})") from None
    state = state.get("state_dict", state)
    state = {key.removeprefix("encoder."): value for key, value in state.items() if not key.startswith("fc.")}
    try:
        model.encoder.load_state_dict(state)  # type: ignore[union-attr]
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise PipelineError(f"{path}: weights do not fit the encoder ({first})") from None


def compile_for_training(model: nn.Module) -> nn.Module:
    """torch.compile a model for its training passes: inductor's CPU backend fuses batch norm, activations and the
    other pointwise work around oneDNN's convolutions, forward and backward. The compiled module shares the model's
    parameters, so the optimizer, validation and checkpoints keep using the model itself. One input shape compiles
    once: the training loader drops its last short batch.
    """
    return cast(nn.Module, torch.compile(model, dynamic=False))


def compile_for_inference(model: nn.Module) -> nn.Module:
    """torch.compile an eval-mode model with its weights frozen as constants, so the compiler can fold
    batch norms into convolutions and pre-pack weights for oneDNN (measured on a 2-core CPU: 1.28x per
    2448 px image after a 15 s compile). Each new input shape compiles again.
    """
    # Freezing is set for this compile only: frozen weights would not see training updates.
    return cast(nn.Module, torch.compile(model.eval(), dynamic=False, options={"freezing": True}))


def per_band(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


def normalise(images: torch.Tensor, scaling: BandScaling) -> torch.Tensor:
    """NHWC batch (uint8, uint16, int16 or float32: raw band values) -> float32 NCHW, scaled and standardised as
    `scaling` says (data.scaling). Done on the device: a uint8 batch moves 4x fewer bytes than floats.

    Operations that change nothing are left out (a low of 0, a clip no value of the type can reach), so the
    uint8 default is exactly `x / 255` then `(v - mean) / std`, as before scalings were recorded: the same
    bits in training, and the same exported graph.
    """
    device = images.device
    values = images.permute(0, 3, 1, 2).float()  # exact for every type scaling allows
    if any(scaling.low):
        values = values - per_band(scaling.low, device)
    spans = tuple(high - low for low, high in zip(scaling.low, scaling.high))
    if len(set(spans)) > 1:
        values = values / per_band(spans, device)
    elif spans[0] != 1:
        # one number for every band: the division of uint8 by 255 that every model was trained with
        values = values / (int(spans[0]) if spans[0].is_integer() else spans[0])
    if scaling.clip_needed:
        values = values.clamp(0, 1)
    return (values - per_band(scaling.mean, device)) / per_band(scaling.std, device)
