"""The model factory (DeepLabV3+, optional local encoder weights), input normalisation, compiling for inference."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
from torch import nn

from stages.core.io.errors import PipelineError
from stages.core.io.params import NO_ENCODER_WEIGHTS

# ImageNet statistics, written out here because smp's get_preprocessing_fn fetches them from the hub.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_model(encoder: str, num_classes: int, encoder_weights: str | None = None) -> nn.Module:
    """DeepLabV3+ with `num_classes` softmax logits; encoder_weights: "none" (or None), "imagenet" or a local file.

    One logit per class fed to softmax, not the seed notebooks' per-class sigmoid thresholded at
    0.5, which can leave a pixel with no class or several.
    """
    import segmentation_models_pytorch as smp  # slow import; only stages that build models pay it

    hub_weights = "imagenet" if encoder_weights == "imagenet" else None
    try:
        model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=hub_weights, classes=num_classes)
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
    if encoder_weights not in (None, NO_ENCODER_WEIGHTS, "imagenet"):
        load_encoder_weights(model, Path(encoder_weights))
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


def compile_for_inference(model: nn.Module) -> nn.Module:
    """torch.compile an eval-mode model with its weights frozen as constants, so the compiler can fold
    batch norms into convolutions and pre-pack weights for oneDNN (measured on a 2-core CPU: 1.28x per
    2448 px image after a 15 s compile). Each new input shape compiles again.
    """
    # Freezing is set for this compile only: frozen weights would not see training updates.
    return cast(nn.Module, torch.compile(model.eval(), dynamic=False, options={"freezing": True}))


def normalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 NHWC batch -> float NCHW, scaled to [0, 1] and standardised (done on the device: 4x less to move)."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.permute(0, 3, 1, 2).float() / 255 - mean_t) / std_t
